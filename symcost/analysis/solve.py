"""Inverse questions on closed forms: the extreme value of a dim under constraints, crossovers, and limits.

The largest or smallest whole value of a dim under constraints, where two quantities cross, and how a quantity
behaves as a dim grows.

Bounds (`solve_bound`). Every other dim takes its given value, so each constraint becomes g(x) OP 0 in the one
unknown x. `monotone.direction` proves g monotone on x > 0 from its expression (sums and products of monotone
positive parts, Max/Min of parts moving the same way, or a rational function whose derivative has a numerator and a
denominator of one sign); a monotone constraint holds on a prefix or a suffix of the integers, found by doubling (a
bracket) and bisection, each step an exact evaluation. The answer is the end of the intersection, moved to the
nearest value that is valid (a degree must divide the heads, derived dims must come out whole), and is shown with
every constraint evaluated there and at the next integer. The closed form of the boundary solves g = 0 with the
other dims as symbols (the device's memory as M): Max/Min are replaced by the branch active at the answer, and a
polynomial of degree ≤ 2 in x (after clearing denominators) is solved by sympy; the root that lies between the
answer and the next integer is the one shown, so the formula is checked against the number.

Crossovers (`crossover`): the positive roots of lhs − rhs in x, numerically (exact real roots of the polynomial)
and as closed forms. Limits (`leading`): the leading term of a quantity in x (a rational function: leading
coefficient over leading coefficient) and its limit as x → ∞.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp

from symcost.analysis.monotone import direction
from symcost.analysis.quantity import Constraint, parse_constraint, parse_term
from symcost.errors import SymcostError

LIMIT = 10**18  # the largest value searched: beyond it a dim is "unbounded"
SCAN = 100_000  # values tried from the boundary to find one that is valid (a degree dividing the heads)
MAX_DEGREE = 2  # closed forms of boundaries up to quadratics


# ---- bounds --------------------------------------------------------------------------------------------------
@dataclass
class Check:
    """One constraint at one value of the unknown: both sides, exactly, and whether it holds."""

    constraint: Constraint
    value: int
    lhs: object
    rhs: object
    holds: bool
    invalid: str | None = None  # why this value of the unknown is not a valid one (a degree not dividing the heads)


@dataclass
class Boundary:
    """Where one constraint stops holding: its kind (prefix: holds up to `end`; suffix: from `end` on), the closed
    form of the real boundary x* (None when there is none) and its value."""

    constraint: Constraint
    direction: int | None
    kind: str  # prefix | suffix | all | none
    end: int | None
    form: sp.Expr | None = None
    real: float | None = None
    note: str | None = None


@dataclass
class BoundAnswer:
    unknown: str
    want: str  # max | min
    status: str  # found | none | unbounded
    value: int | None
    constraints: list
    boundaries: list
    at_value: list = field(default_factory=list)  # Checks at the answer
    at_next: list = field(default_factory=list)  # Checks at the next integer (answer + 1 for max, − 1 for min)
    next_value: int | None = None
    given: dict = field(default_factory=dict)
    symbols: dict = field(default_factory=dict)  # display symbol → (meaning, value), e.g. M → device memory
    notes: list = field(default_factory=list)
    limit: int = LIMIT


def unknown_symbol(analysis, name: str) -> sp.Symbol:
    """The symbol of a dim that can be solved for (a base dim or a parallel degree, not a derived one)."""
    sym = analysis.symbol(name)
    dim = analysis.dims[name]
    if dim.definition is not None:
        raise SymcostError(f"'{name}' is derived ({name} = {dim.definition}); solve for a dim it is made of")
    return sym


def _substitution(analysis, unknown: str) -> dict:
    from symcost.analysis.evaluate import Evaluator

    values = {k: v for k, v in analysis.values.items() if k != unknown}
    return Evaluator(analysis.env, values).subs


def _univariate(analysis, expr: sp.Expr, subs: dict, x: sp.Symbol, text: str) -> sp.Expr:
    e = expr.xreplace(subs)
    free = sorted(str(s) for s in e.free_symbols - {x})
    if free:
        raise SymcostError(f"'{text}' depends on {', '.join(free)}, which {'has' if len(free) == 1 else 'have'} no "
                           f"value", None, f"give {' '.join(f + '=…' for f in free)} with --set (or a preset)")
    return e


def _exact(e: sp.Expr, x: sp.Symbol, n: int):
    v = e.xreplace({x: sp.Integer(n)})
    if not v.is_number:
        raise SymcostError(f"cannot evaluate {e} at {x} = {n}")
    if v.is_Rational:
        return Fraction(int(v.p), int(v.q))
    if v.is_infinite:
        return math.inf
    return Fraction(sp.Rational(sp.N(v, 40)).p, sp.Rational(sp.N(v, 40)).q)


def valid(analysis, name: str, n: int) -> str | None:
    """None when `name = n` is a valid value (derived dims whole, degrees dividing what they split), else why not."""
    if n < 1:
        return "not positive"
    try:
        analysis.at(**{name: n})
    except SymcostError as e:
        return str(e).splitlines()[0]
    return None


def solve_bound(analysis, unknown: str, constraints, want: str = "max", limit: int = LIMIT) -> BoundAnswer:
    """The largest (want="max") or smallest ("min") whole value of `unknown` for which every constraint holds.

    constraints: texts such as 'memory_bytes <= device' (see symcost.analysis.quantity), or (name, op, value)
    tuples with a number, a text value ('24GB') or another quantity's name."""
    if want not in ("max", "min"):
        raise SymcostError(f"want is max or min, not {want!r}")
    if not constraints:
        raise SymcostError("give at least one constraint, such as 'memory_bytes <= device'")
    x = unknown_symbol(analysis, unknown)
    parsed = [as_constraint(analysis, c) for c in constraints]
    for c in parsed:
        if c.op == "=":
            raise SymcostError(f"'{c.text}' is an equation: ask for a crossover instead (--crossover {unknown})")
    subs = _substitution(analysis, unknown)
    gs = [_univariate(analysis, c.lhs.expr - c.rhs.expr, subs, x, c.text) for c in parsed]
    bounds = [_boundary(c, g, x, limit) for c, g in zip(parsed, gs)]
    answer = BoundAnswer(unknown, want, "found", None, parsed, bounds, given=dict(analysis.values), limit=limit)
    lo = max([b.end for b in bounds if b.kind == "suffix"], default=1)
    hi = min([b.end for b in bounds if b.kind == "prefix"], default=None)
    if any(b.kind == "none" for b in bounds) or (hi is not None and (hi < 1 or lo > hi)) or lo > limit:
        answer.status, answer.value = "none", None
        _prove(analysis, answer, parsed, gs, x, 1 if want == "max" or lo > limit else lo, None)
        return answer
    if want == "max" and hi is None:
        answer.status = "unbounded"
        answer.notes.append(f"every constraint holds up to {unknown} = {limit:.0e}, the largest value searched")
        _prove(analysis, answer, parsed, gs, x, max(lo, 1), None)
        return answer
    start, stop, step = (hi, lo - 1, -1) if want == "max" else (lo, (hi if hi is not None else limit) + 1, 1)
    value, skipped = _first_valid(analysis, unknown, start, stop, step)
    if value is None:
        answer.status = "none"
        answer.notes.append(f"no valid value of {unknown} between {min(lo, start)} and {max(start, stop)}: {skipped}")
        _prove(analysis, answer, parsed, gs, x, start, None)
        return answer
    if skipped:
        answer.notes.append(f"{unknown} = {start} is not valid ({skipped}); the nearest valid value is {value}")
    answer.value = value
    nxt = value + 1 if want == "max" else value - 1
    _prove(analysis, answer, parsed, gs, x, value, nxt if nxt >= 1 else None)
    _closed_forms(analysis, answer, parsed, x, subs)
    return answer


def as_constraint(analysis, c) -> Constraint:
    """A constraint from its text or a (name, op, value) tuple."""
    if isinstance(c, Constraint):
        return c
    if isinstance(c, str):
        return parse_constraint(analysis, c)
    if isinstance(c, tuple) and len(c) == 3:
        name, op, value = c
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
            raise SymcostError(f"a constraint's value is a number or a text such as '24GB', not {value!r}")
        shown = repr(value) if isinstance(value, float) else str(value)
        return parse_constraint(analysis, f"{name} {op} {shown}")
    raise SymcostError(f"a constraint is a text such as 'memory_bytes <= device' or a (name, op, value) tuple, "
                       f"not {c!r}")


def _holds(c: Constraint, g: sp.Expr, x, n: int) -> bool:
    v = _exact(g, x, n)
    return c.holds(v, 0)


def _boundary(c: Constraint, g: sp.Expr, x, limit: int) -> Boundary:
    d = direction(g, x)
    if d == 0:
        return Boundary(c, d, "all" if _holds(c, g, x, 1) else "none", None)
    note = None
    if d is None:  # assume monotone, moving the way the values at 1 suggest; the answer is still checked
        prefix = _holds(c, g, x, 1)
        note = "monotonicity not proven from the expression: searched as if monotone"
    else:
        prefix = (d > 0) == (c.op in ("<=", "<"))
    end = _search(lambda n: _holds(c, g, x, n), prefix, limit)
    if end is None:
        return Boundary(c, d, "all" if prefix else "none", None, note=note)
    return Boundary(c, d, "prefix" if prefix else "suffix", end, note=note)


def _search(ok, prefix: bool, limit: int) -> int | None:
    """Prefix: the largest n ≥ 1 with ok(n) (0 when ok(1) fails, None when ok holds up to the limit).
    Suffix: the smallest n with ok(n) (None when none up to the limit)."""
    if prefix and not ok(1):
        return 0
    if not prefix and ok(1):
        return 1
    lo, hi = 1, 2  # invariant: the predicate differs between lo and hi, once hi is found
    while (ok(hi) if prefix else not ok(hi)):
        lo, hi = hi, hi * 2
        if lo > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid) == prefix:
            lo = mid
        else:
            hi = mid
    return lo if prefix else hi


def _first_valid(analysis, name: str, start: int, stop: int, step: int):
    first_reason = None
    for i, n in enumerate(range(start, stop, step)):
        if i >= SCAN:
            break
        reason = valid(analysis, name, n)
        if reason is None:
            return n, first_reason
        first_reason = first_reason or reason
    return None, first_reason


def _prove(analysis, answer: BoundAnswer, parsed, gs, x, value: int, nxt: int | None) -> None:
    answer.at_value = [_check(analysis, c, answer.unknown, value) for c in parsed]
    answer.next_value = nxt
    if nxt is not None:
        answer.at_next = [_check(analysis, c, answer.unknown, nxt) for c in parsed]


def _check(analysis, c: Constraint, name: str, n: int) -> Check:
    """Both sides at `name = n`, evaluated from the full closed forms with the Evaluator (exact)."""
    from symcost.analysis.evaluate import Evaluator

    ev = Evaluator(analysis.env, {**analysis.values, name: n})
    left, right = (_number(ev(side.expr)) for side in (c.lhs, c.rhs))
    return Check(c, n, left, right, c.holds(left, right), valid(analysis, name, n))


def _number(v):
    if isinstance(v, int):
        return Fraction(v)
    if isinstance(v, sp.Expr) and v.is_Rational:
        return Fraction(int(v.p), int(v.q))
    if isinstance(v, sp.Expr) and v.is_number:
        r = sp.Rational(sp.N(v, 40))
        return Fraction(int(r.p), int(r.q))
    raise SymcostError(f"a side did not evaluate to a number: {v}")


# ---- closed forms --------------------------------------------------------------------------------------------
def _closed_forms(analysis, answer: BoundAnswer, parsed, x, subs) -> None:
    """The boundary x* = f(dims) of each monotone constraint, checked against the number; the device's memory,
    where a constraint names it, as the symbol M."""
    m = _display_symbol(analysis, "M") if analysis.device is not None else None
    for b in answer.boundaries:
        if b.kind not in ("prefix", "suffix") or b.end is None:
            continue
        c = parse_constraint(analysis, b.constraint.text, {"device_memory": m} if m is not None else None)
        g = c.lhs.expr - c.rhs.expr
        point = dict(subs)
        if m is not None and m in g.free_symbols:
            point[m] = analysis.device.memory_bytes
            answer.symbols[str(m)] = ("the device's memory", analysis.device.memory_bytes)
        form, real, note = boundary_form(g, x, point, b.end if b.kind == "prefix" else b.end - 1)
        b.form, b.real, b.note = form, real, b.note or note


def _display_symbol(analysis, name: str) -> sp.Symbol:
    from symcost.model.dims import make_symbol

    while name in analysis.dims:
        name += "_"
    return make_symbol(name)


def boundary_form(g: sp.Expr, x: sp.Symbol, subs: dict, below: int):
    """The root of g = 0 in x lying in [below, below + 1] (where a monotone g changes sign), as a closed form in the
    other symbols, with its value at `subs`; (None, None, why) when there is none within reach."""
    if below < 1:
        return None, None, None
    point = {**subs}
    branch, note = _branch(g, x, point, below)
    if branch is None:
        return None, None, note
    num, _ = sp.fraction(sp.together(branch))
    num = sp.expand(num)
    try:
        poly = sp.Poly(num, x)
    except sp.PolynomialError:
        return None, None, "no closed form: the boundary is not polynomial in " + str(x)
    if poly.degree() < 1 or poly.degree() > MAX_DEGREE:
        return None, None, f"no closed form: degree {poly.degree()} in {x}; the answer is numeric"
    roots = sp.solve(num, x, dict=False)
    for r in roots:
        v = r.xreplace(point)
        v = sp.N(v, 30)
        if v.is_real and below <= v <= below + 1:
            return _tidy(r), float(v), note
    return None, None, "no closed form found between the answer and the next integer; the answer is numeric"


def _tidy(e: sp.Expr) -> sp.Expr:
    return sp.factor_terms(sp.together(e))


def _branch(g: sp.Expr, x: sp.Symbol, point: dict, below: int):
    """g with every Max/Min replaced by the argument active both at x = below and at below + 1."""
    maxmin = [m for m in sp.preorder_traversal(g) if isinstance(m, (sp.Max, sp.Min))]
    if not maxmin:
        return g, None
    chosen = {}
    for m in maxmin:
        picks = set()
        for n in (below, below + 1):
            values = [a.xreplace(chosen).xreplace(point).xreplace({x: sp.Integer(n)}) for a in m.args]
            best = max(values) if isinstance(m, sp.Max) else min(values)
            picks.add(values.index(best))
        if len(picks) != 1:
            return None, "no closed form: the active branch of a Max/Min changes at the boundary; the answer is numeric"
        chosen[m] = m.args[picks.pop()]
    return g.xreplace(chosen), "closed form on the branch of each Max/Min active at the answer"


# ---- crossovers ----------------------------------------------------------------------------------------------
@dataclass
class Crossover:
    unknown: str
    constraint: Constraint
    roots: list  # (closed form or None, exact-ish value as float)
    below: object  # lhs − rhs sign description below the first root: '<' or '>'
    given: dict
    checks: list = field(default_factory=list)  # (n, lhs, rhs) at floor and ceiling of each root
    notes: list = field(default_factory=list)


def crossover(analysis, unknown: str, equation) -> Crossover:
    """Where lhs = rhs for the unknown > 0: each positive real root as a number and, where sympy finds one, a
    closed form in the other dims (roots checked against each other)."""
    x = unknown_symbol(analysis, unknown)
    c = as_constraint(analysis, equation)
    if c.op != "=":
        raise SymcostError(f"a crossover is an equation 'A = B', not '{c.text}'")
    subs = _substitution(analysis, unknown)
    g_sym = c.lhs.expr - c.rhs.expr
    g = _univariate(analysis, g_sym, subs, x, c.text)
    if x not in g.free_symbols:
        raise SymcostError(f"neither side of '{c.text}' depends on {unknown}")
    num = sp.expand(sp.fraction(sp.together(g))[0])
    try:
        poly = sp.Poly(num, x)
    except sp.PolynomialError:
        raise SymcostError(f"'{c.text}' is not a polynomial equation in {unknown} once the other dims are given; "
                           "only polynomial crossovers are solved") from None
    values = sorted({float(r) for r in poly.real_roots() if r > 0})
    forms = _crossover_forms(g_sym, x, subs, values)
    answer = Crossover(unknown, c, list(zip(forms, values)), None, dict(analysis.values))
    for v in values:
        for n in sorted({math.floor(v), math.ceil(v)}):
            if n >= 1:
                ch = _check(analysis, Constraint(c.text, c.lhs, "<=", c.rhs), unknown, n)
                answer.checks.append((n, ch.lhs, ch.rhs))
    if not values:
        ch = _check(analysis, Constraint(c.text, c.lhs, "<=", c.rhs), unknown, 1)
        answer.below = "<" if ch.lhs < ch.rhs else ">"
        answer.notes.append(f"the sides never meet for {unknown} > 0")
    return answer


def _crossover_forms(g_sym, x, subs, values) -> list:
    num = sp.expand(sp.fraction(sp.together(g_sym))[0])
    try:
        degree = sp.Poly(num, x).degree()
    except sp.PolynomialError:
        return [None] * len(values)
    if degree > MAX_DEGREE + 1:
        return [None] * len(values)
    roots = [r for r in sp.solve(num, x) if r != 0]
    out = []
    for v in values:
        match = None
        for r in roots:
            rv = sp.N(r.xreplace(subs), 30)
            if rv.is_real and abs(float(rv) - v) <= 1e-9 * max(1.0, abs(v)):
                match = _tidy(r)
                break
        out.append(match)
    return out


# ---- leading terms and limits --------------------------------------------------------------------------------
@dataclass
class Leading:
    unknown: str
    term: object  # the Term asked about
    leading: sp.Expr  # the leading term c·x^k
    degree: object  # k (an integer, or None when not a rational function)
    limit: sp.Expr  # the limit as x → ∞
    value: object = None  # the quantity at the given dims (when all have values)
    leading_value: object = None  # the leading term there
    given: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _limit(analysis, e, x, text: str, unknown: str) -> tuple[sp.Expr, list]:
    """sympy's limit of a term with a max or min (a roofline bound) as x → ∞, the other dims symbolic; where sympy
    cannot take it so (a max of terms in several dims), the limit at the other dims' values, with a note."""
    try:
        return sp.limit(e, x, sp.oo), []
    except (NotImplementedError, ValueError, TypeError):
        pass
    from symcost.analysis.evaluate import Evaluator

    given = {k: v for k, v in analysis.values.items() if k != unknown}
    at = Evaluator(analysis.env, given)(e)
    free = sorted(str(f) for f in getattr(at, "free_symbols", set()) if f != x)
    if free:
        raise SymcostError(f"the limit of '{text}' as {unknown} → ∞ cannot be taken with other dims symbolic (a max "
                           "or min of terms)", None, f"give {', '.join(free)} a value with --set (or a preset): the "
                           "limit is then taken at those values")
    try:
        lim = sp.limit(at, x, sp.oo)
    except (NotImplementedError, ValueError, TypeError):
        raise SymcostError(f"the limit of '{text}' as {unknown} → ∞ cannot be taken, even at the given dims") from None
    return lim, [f"limit at the given dims ({', '.join(f'{k}={v}' for k, v in given.items())}): with them symbolic "
                 "sympy cannot take the limit of a max or min of terms in several dims"]


def leading(analysis, unknown: str, text) -> Leading:
    """The leading term of a quantity (a term such as 'train_flops / tokens / params') as the unknown → ∞, the
    other dims kept as symbols, and its limit."""
    x = unknown_symbol(analysis, unknown)
    term = parse_term(analysis, text) if isinstance(text, str) else text
    e = term.expr
    if x not in e.free_symbols:
        raise SymcostError(f"'{term.text}' does not depend on {unknown}")
    if e.has(sp.Max, sp.Min, sp.Piecewise, sp.floor, sp.ceiling):
        lim, notes = _limit(analysis, e, x, term.text, unknown)
        return Leading(unknown, term, lim, None, lim, given=dict(analysis.values), notes=notes)
    num, den = sp.fraction(sp.together(e))
    pn, pd = sp.Poly(sp.expand(num), x), sp.Poly(sp.expand(den), x)
    k = pn.degree() - pd.degree()
    coeff = sp.factor(sp.cancel(pn.LC() / pd.LC()))
    lead = coeff * x**k
    if k > 0:
        lim = sp.oo if coeff.is_positive else -sp.oo if coeff.is_negative else sp.oo * sp.sign(coeff)
    elif k == 0:
        lim = coeff
    else:
        lim = sp.Integer(0)
    out = Leading(unknown, term, lead, k, lim, given=dict(analysis.values))
    if unknown in analysis.values:
        from symcost.analysis.evaluate import Evaluator

        ev = Evaluator(analysis.env, analysis.values)
        value, lv = ev(e), ev(lead)
        if getattr(value, "is_number", isinstance(value, int)) and getattr(lv, "is_number", isinstance(lv, int)):
            out.value, out.leading_value = value, lv
    return out
