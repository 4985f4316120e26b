"""Compiled closed forms against exact substitution: random expressions, grids, values past 2**53, errors."""
from __future__ import annotations

import builtins
import itertools
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symcost.analysis import numeric, numeric_form, numeric_program
from symcost.analysis.numeric import EXACT_BELOW, compile_exprs
from symcost.errors import SymcostError

from helpers import SPECS, report_for, sym

b, s, h, a = (sym(n) for n in ("b", "s", "h", "a"))
ARGS = [b, s, h, a]


def reference(expr: sp.Expr, point: dict) -> int | Fraction:
    """The exact value by substitution: an int when whole, else a Fraction."""
    v = expr.xreplace({k: sp.Integer(x) for k, x in point.items()})
    assert v.is_Rational, v
    return int(v) if v.is_Integer else Fraction(int(v.p), int(v.q))


def close(got: float, want: int | Fraction) -> bool:
    """Whole values below 2**53 exactly; others within an ulp (and 2**-53 near zero)."""
    if isinstance(want, int) and abs(want) < EXACT_BELOW:
        return got == want
    f = float(want)
    return abs(got - f) <= math.ulp(f) + 2.0**-53


def check(exprs: dict, args: list, values: dict) -> None:
    """Every point of a sweep against substitution, and exact() at each point."""
    compiled = compile_exprs(exprs, args)
    result = compiled(**values)
    shape = np.broadcast_shapes(*(np.shape(v) for v in values.values()))
    grid = {k: np.broadcast_to(v, shape) for k, v in values.items()}
    for index in itertools.product(*map(range, shape)):
        point = {x: int(grid[x.name][index]) for x in args}
        at = compiled.exact(**{x.name: v for x, v in point.items()})
        for m, expr in exprs.items():
            want = reference(expr, point)
            assert at[m] == want and type(at[m]) is type(want), (m, point)
            if index in result.exact[m]:
                assert result.exact[m][index] == want, (m, point)
            assert close(float(result[m][index]), want), (m, point, result[m][index], want)


# --- random expressions -----------------------------------------------------------------------------------------

coefficients = st.one_of(st.integers(-20, 20).filter(bool), st.fractions(-20, 20, max_denominator=12).filter(bool))


def expressions(depth: int = 3):
    leaf = st.one_of(st.sampled_from(ARGS), coefficients.map(sp.Rational))
    if depth == 0:
        return leaf
    sub = expressions(depth - 1)
    return st.one_of(
        leaf,
        st.lists(sub, min_size=2, max_size=4).map(lambda xs: sp.Add(*xs)),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: sp.Mul(*xs)),
        st.tuples(st.sampled_from(ARGS), st.integers(-2, 3).filter(bool)).map(lambda t: t[0] ** t[1]),
        st.tuples(sub, sub).map(lambda t: sp.Max(*t)),
        st.tuples(sub, sub).map(lambda t: sp.Min(*t)),
        sub.map(sp.floor),
        sub.map(sp.ceiling),
        st.tuples(sub, sub, sub, sub).map(lambda t: sp.Piecewise((t[0], sp.Lt(t[2], t[3])), (t[1], True))),
    )


def defined(expr: sp.Expr) -> bool:
    """No division by a sum that could be zero (powers of arguments only in denominators)."""
    return all(not (p.exp.is_negative and not p.base.is_Symbol) for p in expr.atoms(sp.Pow))


small = st.integers(1, 40)
huge = st.integers(1, 10**12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(expressions().filter(defined), min_size=1, max_size=3),
       st.lists(st.one_of(small, huge), min_size=4, max_size=4), st.lists(small, min_size=3, max_size=3))
def test_random_expressions_match_substitution(exprs, point, more):
    values = dict(zip(("b", "s", "h", "a"), point))
    values["s"] = np.array([values["s"], *more])  # a small grid along s
    check({f"m{i}": e for i, e in enumerate(exprs)}, ARGS, values)


def test_cost_shaped_expressions():
    exprs = {
        "flops": 24 * b * s * h**2 + 4 * b * s**2 * h,
        "kv": 2 * b * s * h**2 / a + sp.Rational(3, 2) * b * h,
        "window": sp.Min(s, 4096) * b * h - 7 * sp.Max(h / a, 64),
        "inverse": b * h**-2 * s - sp.Rational(1, 3) / a,
        "tiles": sp.ceiling(s / 128) * sp.floor(h / (2 * a)) + sp.Piecewise((s, sp.Le(s, h)), (h - s, True)),
    }
    check(exprs, ARGS, {"b": np.array([[1], [7]]), "s": np.array([1, 100, 4096, 5000]), "h": 768, "a": np.array([1, 12, 7, 64])})


# --- grids, scalars and the exact path ------------------------------------------------------------------------------


def test_broadcasting_grid_shape_and_values():
    compiled = compile_exprs({"f": b * s + h}, [b, s, h])
    result = compiled(b=np.arange(1, 4)[:, None, None], s=np.arange(1, 5)[None, :, None], h=np.array([10, 20]))
    assert result["f"].shape == (3, 4, 2) and result["f"].dtype == np.float64
    want = np.arange(1, 4)[:, None, None] * np.arange(1, 5)[None, :, None] + np.array([10, 20])
    assert np.array_equal(result["f"], want)


def test_scalars_give_zero_dimensional_arrays():
    compiled = compile_exprs({"f": 3 * b * s**2, "zero": sp.Integer(0)}, [b, s])
    result = compiled(b=2, s=5)
    assert result["f"].shape == () and float(result["f"]) == 150.0 and float(result["zero"]) == 0.0
    assert compiled.exact(b=2, s=5) == {"f": 150, "zero": 0}
    big = compiled(b=10**12, s=10**6)
    assert big.exact["f"] == {(): 3 * 10**24} and big["f"] == float(3 * 10**24)


def test_llama_over_huge_batches_is_exact():
    totals = report_for("llama.arch").totals
    args = sorted(set().union(*(e.free_symbols for e in totals.values())), key=lambda x: x.name)
    values = {"b": np.array([1, 10**6, 10**9, 10**12])[:, None], "s": np.array([2048, 131072]), "h": 4096, "a": 32,
              "kv": 8, "f": 14336, "L": 32, "V": 128256}
    check(totals, args, values)
    result = compile_exprs(totals, args)(**values)
    assert result.exact["flops_fwd"], "values past 2**53 must take the exact path"
    objects = result.objects("flops_fwd")
    for i, j in itertools.product(range(4), range(2)):
        point = {x: int(np.broadcast_to(values[x.name], (4, 2))[i, j]) for x in args}
        assert objects[i, j] == reference(totals["flops_fwd"], point) and type(objects[i, j]) is int


def test_exactness_rule_catches_large_intermediates():
    """A difference of two huge terms is small, but float64 would lose it: the point must be recomputed."""
    compiled = compile_exprs({"d": (b * s + 1) * (b * s - 1) - b**2 * s**2}, [b, s])
    result = compiled(b=np.array([3, 10**8]), s=10**6)
    assert result.exact["d"] == {(1,): -1}
    assert list(result["d"]) == [-1.0, -1.0]


def test_objects_are_exact_fractions_where_not_whole():
    compiled = compile_exprs({"t": b * s / 3 + h}, [b, s, h])
    objects = compiled(b=np.array([1, 3]), s=1, h=2).objects("t")
    assert list(objects) == [Fraction(7, 3), 3] and type(objects[1]) is int


def test_shared_subexpressions_are_computed_once():
    shared = (b * s + h) ** 2
    one = compile_exprs({"x": shared + a}, ARGS)
    two = compile_exprs({"x": shared + a, "y": shared + 2 * a, "z": shared * 3}, ARGS)
    assert len(two.program.steps) < 3 * len(one.program.steps)


# --- errors and guarantees ------------------------------------------------------------------------------------------


def test_missing_argument_is_named():
    compiled = compile_exprs({"f": b * s}, [b, s])
    with pytest.raises(SymcostError, match="missing argument 's'"):
        compiled(b=1)
    with pytest.raises(SymcostError, match="missing argument 'b'"):
        compiled.exact(s=1)


def test_unknown_argument_is_named():
    compiled = compile_exprs({"f": b * s}, [b, s])
    with pytest.raises(SymcostError, match="unknown argument 'bb'") as err:
        compiled(b=1, s=2, bb=3)
    assert "did you mean 'b'" in str(err.value)


def test_bad_values_and_free_symbols_are_errors():
    compiled = compile_exprs({"f": b * s}, [b, s])
    with pytest.raises(SymcostError, match="'b' takes whole numbers"):
        compiled(b=1.5, s=2)
    with pytest.raises(SymcostError, match="'s' must be positive"):
        compiled(b=1, s=np.array([1, 0]))
    with pytest.raises(SymcostError, match="depends on h"):
        compile_exprs({"f": b * h}, [b, s])


def test_compiles_without_evaluating_text(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("text was evaluated")

    def no_text(real):
        def guarded(source, *args, **kwargs):
            if isinstance(source, str):
                raise AssertionError("text was evaluated")
            return real(source, *args, **kwargs)
        return guarded

    import sympy.parsing.sympy_parser as parser

    monkeypatch.setattr(sp, "sympify", refuse)
    monkeypatch.setattr(sp, "parse_expr", refuse)
    monkeypatch.setattr(sp, "lambdify", refuse)
    monkeypatch.setattr(parser, "parse_expr", refuse)
    monkeypatch.setattr(builtins, "eval", no_text(builtins.eval))
    monkeypatch.setattr(builtins, "exec", no_text(builtins.exec))
    compiled = compile_exprs({"f": sp.Max(b * s / a, h) + sp.floor(s / 3)}, ARGS)
    assert compiled.exact(b=2, s=9, h=4, a=3) == {"f": 9}
    assert float(compiled(b=2, s=9, h=4, a=3)["f"]) == 9.0


def test_module_source_names_no_text_evaluation():
    for module in (numeric, numeric_form, numeric_program):
        source = Path(module.__file__).read_text()
        for word in ("sympify(", "parse_expr(", "lambdify(", "eval(", "exec("):
            assert word not in source, (module.__name__, word)


def test_numpy_is_not_imported_with_symcost():
    code = "import sys, symcost, symcost.analysis.numeric; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(SPECS).parent, env={"PYTHONPATH": str(Path(SPECS).parent)})
    assert out.stdout.strip() == "False"
