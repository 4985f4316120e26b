"""Closed forms to numbers in bulk: metrics compiled once into numpy programs, exact where float64 cannot be."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Sequence

import sympy as sp

from symcost.analysis.numeric_form import integer_form
from symcost.analysis.numeric_program import Output, Program, program
from symcost.errors import SymcostError, suggest

# How it works.
#
# 1. Integer form (numeric_form.py). Each metric is rewritten, from its expression objects, as W + N / D where W, N
#    and D use only integers, the arguments, +, −, ×, whole powers, and inert functions (maximum, minimum, floor
#    division, absolute value, select). Terms with rational coefficients or negative powers go over a common
#    denominator (sympy.together); the others stay in W, unscaled. Max/Min/Piecewise/floor/ceiling are put in integer
#    form argument by argument. Arguments are whole numbers, so every intermediate of W, N and D is an integer.
# 2. Bound (numeric_form.bound). For W, N and D a majorant B is built: coefficients made positive, subtractions made
#    additions, a max of the parts for the functions. B is at least 1, at least |x| for every intermediate x of the
#    expression (any sub-sum or sub-product, hence also what CSE shares), and is itself monotone, so B computed in
#    float64 reaches 2**53 exactly when the true B does.
# 3. Rule. A point is exact in float64 when B(W) + B(N) < 2**53 and B(D) < 2**53: then every integer on the way is
#    below 2**53 and every float64 +, −, ×, max, min, floor division on it is exact; only N / D rounds, so a whole
#    value comes out exact and any other within one ulp (`_value`). Elsewhere the same program runs on numpy object
#    arrays of Python ints and the point gets its exact int or Fraction (`Result.exact`). For sums of positive terms B
#    is the value itself, and a chunk is checked with one max-reduction per metric.
# 4. Program (numeric_program.py). All N, D and bounds go through sympy.cse together, then a tree walker turns them
#    into a flat list of numpy ufunc calls over registers, freeing each register after its last use. No text is
#    parsed or evaluated: no sympify, parse_expr, lambdify, eval or exec. Large grids run in chunks of BLOCK points,
#    on several threads (numpy releases the GIL inside ufuncs).

EXACT_BELOW = 2**53  # integers below this (in magnitude) are float64s, and so are their exact sums and products
BLOCK = 1 << 15  # points per chunk: a chunk's temporaries stay in cache


def compile_exprs(exprs: dict[str, sp.Expr], args: Sequence[sp.Symbol]) -> "Compiled":
    """Compile metrics (name → expression) into one numeric program taking `args`, in that order."""
    args = list(args)
    names = [a.name for a in args]
    if len(set(names)) != len(names):
        raise SymcostError(f"argument names repeat: {', '.join(names)}")
    known = set(args)
    exprs = {m: sp.Integer(e) if isinstance(e, int) else e for m, e in exprs.items()}
    for metric, expr in exprs.items():
        extra = sorted(map(str, expr.free_symbols - known))
        if extra:
            raise SymcostError(f"metric '{metric}' depends on {', '.join(extra)}, not among the arguments ({', '.join(names)})")
    return Compiled(list(exprs), args, program([integer_form(e) for e in exprs.values()], args))


class Result(dict):
    """Metric name → float64 array over the broadcast grid of the arguments.

    Where every intermediate stays below 2**53 (the rule in this module's notes) a whole value is held exactly and any
    other within one ulp. Where the rule fails, `exact[name]` maps the point's index tuple to its exact value (an int,
    or a Fraction when not whole) and the array holds that value correctly rounded. `objects(name)` gives the exact
    value at every point as an object array.
    """

    def __init__(self, values: dict, exact: dict, compiled: "Compiled", floats: list):
        super().__init__(values)
        self.exact: dict[str, dict[tuple[int, ...], int | Fraction]] = exact
        self._compiled, self._floats = compiled, floats
        self._regs = None  # the float64 registers, run again once for objects()

    def objects(self, name: str):
        """An object array of exact ints (Fractions where not whole) at every point."""
        import numpy as np

        if self._regs is None:
            self._regs = self._compiled.program.run(self._floats, float)
        parts = self._compiled._parts(self._regs, self._floats, self._compiled.names.index(name), self[name].shape)
        out = np.asarray(np.frompyfunc(_exact_or_none, 3, 1)(*parts), dtype=object).reshape(self[name].shape)
        for index, v in self.exact[name].items():
            out[index] = v
        return out


class Compiled:
    """Metrics compiled for numeric evaluation; call with a value or array per argument (they broadcast like numpy)."""

    def __init__(self, names: list[str], args: list[sp.Symbol], program: Program):
        self.names, self.args, self.program = names, args, program
        self.workers = min(4, os.cpu_count() or 1)

    def __call__(self, exact: bool = True, **values) -> Result:
        """Values over the broadcast grid; exact=False skips the exactness rule and its recomputation (every
        value in float64 arithmetic, for searches that rank many points and check their winners exactly)."""
        import numpy as np

        originals = self._arguments(values)
        floats = [_as_float(a) for a in originals]
        shape = np.broadcast_shapes(*(f.shape for f in floats)) if floats else ()
        grid = shape or (1,)  # a single point runs as a grid of one
        floats = [f.reshape((1,) * (len(grid) - f.ndim) + f.shape) for f in floats]
        out = {m: np.empty(grid) for m in self.names}
        chunks = _chunks(grid)
        if self.workers > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                failed = list(pool.map(lambda c: self._chunk(floats, out, c, exact), chunks))
        else:
            failed = [self._chunk(floats, out, c, exact) for c in chunks]
        exact = self._recompute(originals, grid, failed, out)
        if not shape:
            out = {m: v.reshape(()) for m, v in out.items()}
            exact = {m: {(): v for v in e.values()} for m, e in exact.items()}
        return Result(out, exact, self, floats)

    def exact(self, **values) -> dict[str, int | Fraction]:
        """Exact values at one point: ints, or Fractions where a value is not whole."""
        import numpy as np

        originals = self._arguments(values)
        for a, v in zip(self.args, originals):
            if np.ndim(v) != 0:
                raise SymcostError(f"exact() takes one value per argument; '{a.name}' has shape {np.shape(v)}")
        regs = self._object_run([np.array([int(v)], dtype=object) for v in originals])
        return {m: _exact(*(_first(regs[r]) if r is not None else k for r, k in ((o.whole, 0), (o.num, 0), (o.den, 1))))
                for m, o in zip(self.names, self.program.outputs)}

    def _arguments(self, values: dict) -> list:
        import numpy as np

        names = [a.name for a in self.args]
        for name in values:
            if name not in names:
                raise SymcostError(f"unknown argument '{name}'; the compiled metrics take {', '.join(names) or 'none'}",
                                   None, suggest(name, names))
        missing = [n for n in names if n not in values]
        if missing:
            raise SymcostError(f"missing argument{'s' * (len(missing) > 1)} {', '.join(repr(n) for n in missing)}; "
                               f"the compiled metrics take {', '.join(names)}")
        return [_checked(a, np.asarray(values[a.name])) for a in self.args]

    def _chunk(self, floats: list, out: dict, region: tuple, exact: bool = True) -> tuple | None:
        """Evaluate one chunk in float64 into `out`; the points that failed the exactness rule, if any."""
        import numpy as np

        regs = self.program.run([f[_within(f, region)] for f in floats], float)
        bad = []
        for m, o in zip(self.names, self.program.outputs):
            out[m][region] = _value(regs, o)
            if not exact:
                continue
            if np.max(regs[o.bound]) >= EXACT_BELOW or (o.den is not None and np.max(regs[o.den_bound]) >= EXACT_BELOW):
                bad.append((m, o))
        if not bad:
            return None
        shape = out[self.names[0]][region].shape
        fails = {m: np.broadcast_to(_over(regs, o), shape) for m, o in bad}
        where = np.nonzero(np.logical_or.reduce(list(fails.values())))
        which = np.stack([fails[m][where] if m in fails else np.zeros(len(where[0]), bool) for m in self.names], axis=1)
        return tuple(w + sl.start for w, sl in zip(where, region)), which

    def _recompute(self, originals: list, shape: tuple, failed: list, out: dict) -> dict:
        """Evaluate the points that failed the exactness rule with Python ints; fix their rounded values in `out`."""
        import numpy as np

        exact: dict = {m: {} for m in self.names}
        failed = [f for f in failed if f is not None]
        if not failed:
            return exact
        index = tuple(np.concatenate([w[k] for w, _ in failed]) for k in range(len(shape)))
        which = np.concatenate([b for _, b in failed])
        regs = self._object_run([_python_ints(np.broadcast_to(a, shape)[index]) for a in originals])
        keys = list(zip(*(i.tolist() for i in index)))
        for j, (m, o) in enumerate(zip(self.names, self.program.outputs)):
            sel = np.nonzero(which[:, j])[0]
            if not len(sel):
                continue
            if o.den is None:
                values = np.broadcast_to(regs[o.whole], (len(keys),))[sel]
            else:
                parts = [np.broadcast_to(regs[r], (len(keys),))[sel] for r in (o.whole, o.num, o.den)]
                values = np.frompyfunc(_exact, 3, 1)(*parts)
            exact[m] = dict(zip([keys[p] for p in sel], values.tolist()))
            out[m][tuple(i[sel] for i in index)] = np.frompyfunc(_to_float, 1, 1)(values).astype(np.float64)
        return exact

    def _object_run(self, points: list) -> list:
        import numpy as np

        return self.program.run(points, lambda v: np.array([v], dtype=object))

    def _parts(self, regs: list, floats: list, i: int, shape: tuple) -> tuple:
        """W, N and D of metric i over the whole grid, in float64 (regs: the program run on `floats`)."""
        import numpy as np

        o = self.program.outputs[i]
        grid = _grid(floats)
        return tuple(np.broadcast_to(regs[r] if r is not None else k, grid).reshape(shape)
                     for r, k in ((o.whole, 0.0), (o.num, 0.0), (o.den, 1.0)))


def _checked(arg: sp.Symbol, a):
    """An argument's values: whole numbers (and positive, or not negative, as its symbol is declared)."""
    import numpy as np

    kind = a.dtype.kind
    if kind == "O":
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in a.flat):
            raise SymcostError(f"argument '{arg.name}' takes whole numbers")
    elif kind == "f":
        if not np.all(np.isfinite(a) & (a == np.floor(a))):
            raise SymcostError(f"argument '{arg.name}' takes whole numbers")
    elif kind not in "iu":
        raise SymcostError(f"argument '{arg.name}' takes whole numbers, not {a.dtype}")
    if a.size and arg.is_positive and not np.all(a > 0):
        raise SymcostError(f"argument '{arg.name}' must be positive")
    if a.size and arg.is_nonnegative and not np.all(a >= 0):
        raise SymcostError(f"argument '{arg.name}' must not be negative")
    return a


def _python_ints(a):
    """A 1-D object array of Python ints from whole-number values of any dtype."""
    import numpy as np

    if a.dtype.kind in "iu":
        return a.astype(object)
    return np.array([int(v) for v in a], dtype=object)


def _as_float(a):
    import numpy as np

    if a.dtype.kind == "O":
        return np.frompyfunc(_to_float, 1, 1)(a).astype(np.float64)
    return a.astype(np.float64, copy=False)


def _chunks(shape: tuple) -> list[tuple[slice, ...]]:
    """Regions of about BLOCK points covering the grid: single indices on the leading axes, a run on one axis, all
    of the trailing axes."""
    import numpy as np

    axis, inner = len(shape) - 1, 1
    while axis > 0 and inner * shape[axis] <= BLOCK:
        inner *= shape[axis]
        axis -= 1
    step = max(1, BLOCK // max(inner, 1))
    tail = tuple(slice(0, n) for n in shape[axis + 1 :])
    return [tuple(slice(i, i + 1) for i in lead) + (slice(j, min(j + step, shape[axis])),) + tail
            for lead in np.ndindex(*shape[:axis]) for j in range(0, shape[axis], step)]


def _within(f, region: tuple) -> tuple:
    """The part of an argument array (1 on broadcast axes) that a region reads."""
    return tuple(sl if n != 1 else slice(None) for sl, n in zip(region, f.shape))


def _value(regs: list, o: Output):
    """W + N / D in float64. When all three are known not negative, W + fl(N / D) is within one ulp and exact when
    whole (N / D is then a whole number below 2**53); otherwise W + ⌊N / D⌋ + fl(remainder / D) avoids cancelling."""
    import numpy as np

    if o.den is None:
        return regs[o.whole]
    if not o.signed:
        return np.add(regs[o.whole], np.true_divide(regs[o.num], regs[o.den]))
    q, r = np.divmod(regs[o.num], regs[o.den])
    return np.add(np.add(regs[o.whole], q), np.true_divide(r, regs[o.den]))


def _over(regs: list, o: Output):
    """Where a metric's bound (or its denominator's) reaches 2**53."""
    import numpy as np

    over = np.greater_equal(regs[o.bound], EXACT_BELOW)
    return over if o.den is None else np.logical_or(over, np.greater_equal(regs[o.den_bound], EXACT_BELOW))


def _first(v):
    return v[0] if hasattr(v, "__len__") else v


def _grid(floats: list) -> tuple:
    import numpy as np

    return np.broadcast_shapes(*(f.shape for f in floats)) if floats else (1,)


def _exact(whole, num, den) -> int | Fraction:
    """W + N / D from integers: an int when whole, else a Fraction."""
    whole, num, den = int(whole), int(num), int(den)
    if den == 0:
        raise SymcostError("division by zero")
    q, r = divmod(num, den)
    return whole + q if r == 0 else whole + Fraction(num, den)


def _exact_or_none(whole: float, num: float, den: float) -> int | Fraction | None:
    """W + N / D from float64 integers (None where one is not finite: such points are in Result.exact)."""
    if not all(abs(v) < float("inf") for v in (whole, num, den)) or den == 0:
        return None
    return _exact(whole, num, den)


def _to_float(v) -> float:
    try:
        return float(v)
    except OverflowError:
        return float("inf") if v > 0 else float("-inf")
