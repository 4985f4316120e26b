"""Monotonicity proven from an expression's form: whether a closed form only grows or only shrinks in x > 0."""
from __future__ import annotations

import sympy as sp


def direction(e: sp.Expr, x: sp.Symbol) -> int | None:
    """+1 if e is nondecreasing in x on x > 0, −1 nonincreasing, 0 constant, None when not proven."""
    if x not in e.free_symbols:
        return 0
    if e == x:
        return 1
    if isinstance(e, (sp.Max, sp.Min)):
        return _same([direction(a, x) for a in e.args])
    if isinstance(e, (sp.floor, sp.ceiling)):
        return direction(e.args[0], x)
    if not e.has(sp.Max, sp.Min, sp.floor, sp.ceiling, sp.Piecewise):
        found = _rational_direction(e, x)
        if found is not None:
            return found
    if isinstance(e, sp.Add):
        return _same([direction(a, x) for a in e.args])
    if isinstance(e, sp.Mul):
        coeff, rest = e.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        if not all(f.is_positive for f in factors):
            return None
        found = _same([direction(f, x) for f in factors])
        return None if found is None else found * (1 if coeff > 0 else -1 if coeff < 0 else 0)
    if isinstance(e, sp.Pow) and e.exp.is_Integer and e.base.is_positive:
        found = direction(e.base, x)
        return None if found is None else found * (1 if e.exp > 0 else -1)
    return None


def _same(dirs: list) -> int | None:
    if None in dirs:
        return None
    moving = set(dirs) - {0}
    return 0 if not moving else moving.pop() if len(moving) == 1 else None


def _rational_direction(e: sp.Expr, x: sp.Symbol) -> int | None:
    try:
        num, den = sp.fraction(sp.together(sp.diff(e, x)))
        pn, pd = sp.Poly(num, x), sp.Poly(den, x)
    except (sp.PolynomialError, sp.GeneratorsNeeded):
        return None
    cd = pd.coeffs()
    if not all(c.is_number for c in cd + pn.coeffs()):
        return None
    if all(c >= 0 for c in cd):
        sign = 1
    elif all(c <= 0 for c in cd):
        sign = -1
    else:
        return None
    cn = pn.coeffs()
    if pn.is_zero:
        return 0
    if all(c >= 0 for c in cn):
        return sign
    if all(c <= 0 for c in cn):
        return -sign
    return None
