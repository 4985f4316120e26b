"""Comparisons (symcost.analysis.compare): llama multi-head vs multi-query vs grouped-query attention, options, errors."""
from __future__ import annotations

import json

import pytest
import sympy as sp

from symcost.analysis.compare import compare, compare_exprs, compare_ops, variants
from symcost.errors import SymcostError
from symcost.present.compare import render
from symcost.settings import request

from helpers import SPECS, same, sym

a, h, L, V, kv, b, s = (sym(n) for n in ("a", "h", "L", "V", "kv", "b", "s"))
LLAMA = SPECS / "llama.arch"
LLAMA_2_7B = ["a=32", "h=4096", "f=11008", "L=32", "V=32000"]


def derive_variants(spec, set_a, set_b, common=()):
    return variants(request(str(spec), values=list(common)), None, set_a, set_b)


def _row(rows, metric, path=None):
    return next(r for r in rows if r.metric == metric and r.path == path)


@pytest.fixture(scope="module")
def mha_vs_mqa():
    return derive_variants(LLAMA, ["kv=a"], ["kv=1"])


def test_kv_projections_shrink_by_kv_over_a():
    # A: multi-head (kv = a), B: kv as written. K and V are [h, kv·d] = [h, kv·h/a]: B/A = kv/a
    va, vb = derive_variants(LLAMA, ["kv=a"], [])
    rows = compare_ops(va.report, vb.report, metrics=["params"])
    assert {r.path for r in rows} == {"layer/grouped_query_attention/k", "layer/grouped_query_attention/v"}
    for r in rows:
        assert same(r.a, h**2) and same(r.b, h**2 * kv / a)
        assert sp.simplify(r.ratio - kv / a) == 0


def test_multi_head_vs_multi_query(mha_vs_mqa):
    va, vb = mha_vs_mqa
    assert va.substitutions == {"kv": a} and vb.substitutions == {"kv": 1}
    rows = compare(va.report, vb.report)
    params = _row(rows, "params")
    # the K and V projections: 2·L·h² (kv = a) → 2·L·h²/a (kv = 1)
    assert same(params.diff, 2 * L * h**2 / a - 2 * L * h**2)
    assert sp.simplify(params.diff_factored + 2 * L * h**2 * (a - 1) / a) == 0
    # their inputs' K, V outputs saved for backward: 4·b·s·h·L (kv = a) → 4·b·s·h·L/a (kv = 1)
    assert same(_row(rows, "activation_bytes").diff, 4 * b * s * h * L / a - 4 * b * s * h * L)
    op_rows = compare_ops(va.report, vb.report, metrics=["params"])
    assert all(r.ratio == 1 / a for r in op_rows)
    assert "kv_cache_bytes" not in {r.metric for r in rows}  # 0 on both sides in training: skipped
    text = render(op_rows, va, vb)
    assert "A: kv=a" in text and "B / A  1/a" in text


def test_numeric_variants_with_common_dims():
    # Llama 2 7B (kv = 32) vs grouped-query kv = 8: the common dims are evaluated, kv is substituted
    va, vb = derive_variants(LLAMA, ["kv=32"], ["kv=8"], common=LLAMA_2_7B)
    (row,) = compare(va.report, vb.report, metrics=["params"])
    assert same(row.diff, -48 * L * h**2 / a)  # 2·L·h²·(8 − 32)/a
    out = json.loads(render([row], va, vb, "json"))
    values = out["rows"][0]
    assert values["a"]["value"] == 6_738_415_616 and values["diff"]["value"] == -805_306_368
    assert values["b"]["value"] == 6_738_415_616 - 805_306_368
    assert out["schema"] == "symcost.compare/1" and out["labels"] == ["kv=32", "kv=8"]
    assert "6.738B (6,738,415,616)" in render([row], va, vb)


def test_option_variants():
    va, vb = derive_variants(LLAMA, ["tied=false"], ["tied=true"])
    row = _row(compare(va.report, vb.report, metrics=["params"]), "params")
    assert same(row.diff, -V * h)
    assert va.analysis.env.options["tied"] is False and vb.analysis.env.options["tied"] is True


def test_compare_exprs():
    r = compare_exprs(4 * h**2, h**2)
    assert r.ratio == sp.Rational(1, 4) and same(r.diff, -3 * h**2)
    assert compare_exprs(0, h).ratio is None


@pytest.mark.parametrize(
    "set_a, needle",
    [
        (["kv=heads"], "takes a positive integer or the name of another dimension"),
        (["d=a"], "derived"),
        (["kvv=a"], "neither a dimension nor an option"),
        (["kv=0"], "must be positive"),
    ],
)
def test_variant_errors(set_a, needle):
    with pytest.raises(SymcostError) as e:
        derive_variants(LLAMA, set_a, [])
    assert needle in str(e.value)


def test_variant_error_hints():
    with pytest.raises(SymcostError) as e:
        derive_variants(LLAMA, ["kv=aa"], [])
    assert e.value.hint and "'a'" in e.value.hint
    va, vb = derive_variants(LLAMA, [], [])
    with pytest.raises(SymcostError) as e:
        compare(va.report, vb.report, metrics=["parms"])
    assert "params" in e.value.hint
