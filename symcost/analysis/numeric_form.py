"""Closed forms in integer form W + N / D for whole arguments, and a majorant of every intermediate of one."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symcost.errors import SymcostError
from symcost.model.dims import placeholder

# Steps 1 and 2 of the notes in symcost/analysis/numeric.py. The inert functions below are the heads of the integer
# form; their class names are part of SymPy's canonical order of the expressions they appear in.


class _Max(sp.Function):
    """Inert maximum of integers (sympy's Max would keep re-simplifying)."""


class _Min(sp.Function):
    """Inert minimum of integers."""


class _FloorDiv(sp.Function):
    """⌊n / d⌋ of two integers."""

    nargs = 2


class _Abs(sp.Function):
    """|n| of an integer."""

    nargs = 1


class _Where(sp.Function):
    """`a` where the condition holds, else `b`."""

    nargs = 3


RELATIONS = (sp.StrictLessThan, sp.LessThan, sp.StrictGreaterThan, sp.GreaterThan, sp.Equality, sp.Unequality)


# --- integer form ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """A metric as W + N / D: W, N and D integer-valued for whole arguments; the terms that need no denominator stay
    in W, so only the fractional terms are scaled by D."""

    whole: sp.Expr
    num: sp.Expr
    den: sp.Expr


def integer_form(expr: sp.Expr) -> Form:
    holes: dict[sp.Symbol, sp.Expr] = {}
    terms = sp.Add.make_args(_hide(expr, holes))
    whole = sp.Add(*(t for t in terms if _integral(t)))
    num, den = sp.fraction(sp.together(sp.Add(*(t for t in terms if not _integral(t)))))
    return Form(*(_checked_integral(e.xreplace(holes), expr) for e in (whole, num, den)))


def _quotient(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """expr as (N, D), both integer-valued for whole arguments."""
    holes: dict[sp.Symbol, sp.Expr] = {}
    hidden = _hide(expr, holes)
    if _integral(hidden):
        return hidden.xreplace(holes), sp.Integer(1)
    num, den = sp.fraction(sp.together(hidden))
    return _checked_integral(num.xreplace(holes), expr), _checked_integral(den.xreplace(holes), expr)


def _checked_integral(part: sp.Expr, expr: sp.Expr) -> sp.Expr:
    if not _integral(part):
        raise SymcostError(f"cannot put {expr} over a whole-number denominator")
    return part


def _hide(expr: sp.Expr, holes: dict) -> sp.Expr:
    """Arithmetic kept as is; each function replaced by placeholders n/d standing for its integer form."""
    if expr.is_Rational or expr.is_Symbol:
        return expr
    if expr.is_Float:
        return sp.Rational(expr)
    if isinstance(expr, (sp.Add, sp.Mul)):
        return expr.func(*(_hide(a, holes) for a in expr.args))
    if isinstance(expr, sp.Pow):
        if not expr.exp.is_Integer:
            raise SymcostError(f"cannot compile the power {expr}: only whole exponents are supported")
        return _hide(expr.base, holes) ** expr.exp
    num, den = _barrier(expr)
    n = placeholder("n", integer=True)
    holes[n] = num
    if den == 1:
        return n
    d = placeholder("d", integer=True, **({"positive": True} if den.is_positive else {}))
    holes[d] = den
    return n / d


def _barrier(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Integer form of Max, Min, floor, ceiling, Abs and Piecewise."""
    if isinstance(expr, (sp.Max, sp.Min)):
        nums, den = _common([_positive(_quotient(a)) for a in expr.args])
        return (_Max if isinstance(expr, sp.Max) else _Min)(*nums), den
    if isinstance(expr, (sp.floor, sp.ceiling)):
        num, den = _quotient(expr.args[0])
        if den == 1:
            return num, den
        if isinstance(expr, sp.floor):
            return _FloorDiv(num, den), sp.Integer(1)
        return -_FloorDiv(-num, den), sp.Integer(1)
    if isinstance(expr, sp.Abs):
        num, den = _positive(_quotient(expr.args[0]))
        return _Abs(num), den
    if isinstance(expr, sp.Piecewise):
        return _piecewise(expr)
    raise SymcostError(f"cannot compile {type(expr).__name__} in {expr}")


def _positive(q: tuple[sp.Expr, sp.Expr]) -> tuple[sp.Expr, sp.Expr]:
    """The same quotient with a denominator known to be positive (n·d / d² when its sign is unknown)."""
    num, den = q
    if den.is_positive:
        return q
    if den.is_negative:
        return -num, -den
    return num * den, den**2


def _common(qs: list[tuple[sp.Expr, sp.Expr]]) -> tuple[list[sp.Expr], sp.Expr]:
    """Quotients with positive denominators brought over one (the product of the distinct ones)."""
    dens = list(dict.fromkeys(d for _, d in qs))
    den = sp.Mul(*dens)
    return [n * sp.Mul(*(e for e in dens if e != d)) for n, d in qs], den


def _piecewise(expr: sp.Piecewise) -> tuple[sp.Expr, sp.Expr]:
    pieces = list(expr.args)
    if pieces[-1].cond is not sp.true:
        raise SymcostError(f"cannot compile {expr}: a Piecewise needs an otherwise branch (condition True)")
    num, den = _quotient(pieces[-1].expr)
    for piece in reversed(pieces[:-1]):
        if piece.cond is sp.false:
            continue
        n, d = _quotient(piece.expr)
        cond = _condition(piece.cond)
        num, den = _Where(cond, n, num), (den if d == den else _Where(cond, d, den))
    return num, den


def _condition(cond):
    """A condition in integer form: each relation a op b becomes N(a − b) op 0 with a positive denominator dropped."""
    if isinstance(cond, RELATIONS):
        num, _ = _positive(_quotient(cond.lhs - cond.rhs))
        return type(cond)(num, sp.Integer(0), evaluate=False)
    if isinstance(cond, (sp.And, sp.Or, sp.Not)):
        return type(cond)(*(_condition(c) for c in cond.args), evaluate=False)
    if isinstance(cond, sp.ITE):
        return _Where(*(_condition(c) for c in cond.args))
    if cond in (sp.true, sp.false):
        return cond
    raise SymcostError(f"cannot compile the condition {cond}")


def _integral(expr) -> bool:
    """Built only from integers, symbols, +, ×, whole powers and the inert functions."""
    if expr in (sp.true, sp.false) or expr.is_Integer or expr.is_Symbol:
        return True
    if isinstance(expr, sp.Pow):
        return expr.exp.is_Integer and expr.exp >= 0 and _integral(expr.base)
    if isinstance(expr, (sp.Add, sp.Mul, _Max, _Min, _FloorDiv, _Abs, _Where, *RELATIONS, sp.And, sp.Or, sp.Not)):
        return all(_integral(a) for a in expr.args)
    return False


# --- bound ----------------------------------------------------------------------------------------------------------


def bound(expr):
    """A majorant ≥ 1 of |x| for every intermediate x of an integer-form expression."""
    if expr.is_Integer:
        return abs(expr)
    if expr.is_Symbol:
        return expr if expr.is_positive else _max(_Abs(expr), sp.Integer(1))
    if isinstance(expr, (sp.Add, sp.Mul)):
        return expr.func(*(bound(a) for a in expr.args))
    if isinstance(expr, sp.Pow):
        return bound(expr.base) ** expr.exp
    if isinstance(expr, _Where):
        return _max(*_condition_bounds(expr.args[0]), bound(expr.args[1]), bound(expr.args[2]))
    return _max(*(bound(a) for a in expr.args))  # _Max, _Min, _FloorDiv, _Abs


def _condition_bounds(cond) -> list:
    if isinstance(cond, RELATIONS):
        return [bound(cond.lhs), bound(cond.rhs)]
    return [b for c in cond.args for b in _condition_bounds(c)]


def _max(*parts):
    parts = [p for p in dict.fromkeys(parts) if p != 0]
    if not parts:
        return sp.Integer(0)
    return parts[0] if len(parts) == 1 else _Max(*parts)


# the numpy operations the inert functions and logic stand for (numeric_program walks expressions with these)
CHAINED = {_Max: "max", _Min: "min", sp.And: "and", sp.Or: "or"}  # folded pairwise over the arguments
APPLIED = {_FloorDiv: "floordiv", _Abs: "abs", _Where: "where", sp.Not: "not"}  # applied to all arguments at once
