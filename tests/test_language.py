"""Language features: experts (mixture of experts), options, block arguments, includes, kept derived dims."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from symcost.cost.accounting import derive
from symcost.model.builder import build
from symcost.lang.parse import load, parse_text
from symcost.lang.syntax import Module

from helpers import numeric_walk, same, sym

MOE = """
dim b "batch"
dim s "sequence"
dim h "hidden"
dim f "expert width"
dim E "experts"
dim k "experts per token"
default dtype bf16
include_marker
input x: [b, s, h]
block moe(x: [b, s, h]) {
  router = linear(x, E, bias=false)          # [b,s,h] @ [h,E]
  probs = softmax(router)
  top, idx = topk(probs, k)
  experts E top k {
    gate = linear(x, f, bias=false)
    up = linear(x, f, bias=false)
    act = silu(gate)
    prod = mul(act, up)
    down = linear(prod, h, bias=false)
  }
  return down
}
y = moe(x)
""".replace("include_marker", "")

b, s, h, f, E, k = (sym(n) for n in "b s h f E k".split())


def _moe():
    return Module("moe.arch", parse_text(MOE, "moe.arch"))


def test_experts_count_parameters_E_times_and_compute_k_times():
    r = derive(build(_moe()))
    assert same(r.totals["params"], h * E + 3 * E * h * f)
    assert same(r.totals["active_params"], h * E + 3 * k * h * f)
    assert same(r.totals["matmul_flops_fwd"], 2 * b * s * h * E + 6 * k * b * s * h * f)
    assert same(r.totals["matmul_flops_bwd"], 2 * r.totals["matmul_flops_fwd"])
    assert same(r.totals["weight_bytes"], 2 * r.totals["params"])
    # tokens routed to k experts: each expert-slot keeps its own gate, up, silu output and product
    routed = 2 * b * s * f * 4 * k
    assert same(r.totals["activation_bytes"], 2 * b * s * h + 2 * b * s * E + 8 * b * s * k + routed)
    # every expert's weights are read once; activations move k times
    down = next(o for o in r.ops if o.node.path == "moe/experts/down")
    assert same(down.metrics["params"] * down.node.mult, E * f * h)


def test_dense_models_use_every_parameter():
    from helpers import report_for

    for spec in ("gpt2.arch", "llama.arch"):
        r = report_for(spec)
        assert r.totals["active_params"] == r.totals["params"]


@settings(max_examples=25, deadline=None)
@given(b_=st.integers(1, 3), s_=st.integers(1, 5), h_=st.integers(1, 6), f_=st.integers(1, 6),
       E_=st.integers(1, 6), data=st.data())
def test_experts_match_numeric_walk(b_, s_, h_, f_, E_, data):
    k_ = data.draw(st.integers(1, E_))
    values = dict(b=b_, s=s_, h=h_, f=f_, E=E_, k=k_)
    r = derive(build(_moe()))
    walked = numeric_walk(_moe(), values)
    subs = {sym(n): v for n, v in values.items()}
    for m, v in walked.items():
        assert r.totals[m].xreplace(subs) == v, m


def test_k_cannot_exceed_E():
    from symcost.errors import SymcostError

    text = "dim b\ninput x: [b, 4]\nexperts 2 top 3 {\n  y = gelu(x)\n}\n"
    try:
        build(Module("t.arch", parse_text(text, "t.arch")))
    except SymcostError as e:
        assert "k cannot exceed E" in e.message and e.loc.line == 3
    else:
        raise AssertionError("expected an error")


def test_untaken_branch_is_checked(tmp_path):
    from symcost.errors import SymcostError

    text = "dim b\noption o = true\ninput x: [b, 4]\nif o {\n  y = gelu(x)\n} else {\n  y = gelo(x)\n}\n"
    try:
        build(Module("t.arch", parse_text(text, "t.arch")))
    except SymcostError as e:
        assert "gelo" in e.message and e.loc.line == 7
    else:
        raise AssertionError("expected an error from the branch not taken")


def test_block_dim_and_bool_arguments_and_includes(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mlp.arch").write_text(
        "block mlp(x: [b, h], width: dim, bias: bool) {\n  u = linear(x, width, bias=bias)\n"
        "  v = linear(u, h, bias=bias)\n  return v\n}\n"
    )
    (tmp_path / "m.arch").write_text(
        'include "lib/mlp.arch"\ninclude "lib/mlp.arch"\ndim b\ndim h\ninput x: [b, h]\n'
        "y = mlp(x, 3 * h, true)\nz = mlp(y, h, false)\n"
    )
    r = derive(build(load(tmp_path / "m.arch")))
    bb, hh = sym("b"), sym("h")
    assert same(r.totals["params"], (3 * hh * hh + 3 * hh + 3 * hh * hh + hh) + 2 * hh * hh)
    assert [blk.path for blk in r.blocks] == ["mlp", "mlp.2"]
    assert same(r.totals["matmul_flops_fwd"], 2 * bb * (6 * hh * hh + 2 * hh * hh))


def test_a_view_keeps_its_base_dtype():
    text = "dim n\ndefault dtype bf16\npos = arange(n)\ngrid = reshape(pos, [n, 1])\n"
    g = build(Module("t.arch", parse_text(text, "t.arch")))
    grid = next(o for o in g.ops if o.path == "grid")
    assert grid.outputs[0].dtype.name == "int64"


DEFAULT_DIM = """
dim b "batch"
dim s "sequence"
dim h "hidden"
dim f = default 4 * h "MLP width"
dim g = f / 2 "half the MLP"
default dtype bf16
input x: [b, s, h]
y = linear(x, f, bias=false)
z = linear(y, g, bias=false)
"""


def test_a_dim_with_a_default_is_derived_until_given_a_value(tmp_path):
    import symcost
    from symcost.errors import SymcostError
    import pytest

    spec = tmp_path / "m.arch"
    spec.write_text(DEFAULT_DIM)
    h, f = sym("h"), sym("f")
    plain = symcost.derive(str(spec))
    assert same(plain.params, 4 * h**2 + 4 * h * 2 * h)  # f = 4h, g = 2h
    assert plain.dims["f"].definition is not None and plain.dims["f"].default is not None
    given = symcost.derive(str(spec), set={"f": 10})
    assert same(given.params, h * f + f * f / 2)  # f free; g = f/2 follows it
    assert given.at(h=8).params == 8 * 10 + 10 * 5
    with pytest.raises(SymcostError, match="by default; give its value when deriving"):
        plain.at(f=12)
    # a plain derived dim still cannot be set
    with pytest.raises(SymcostError, match="'g' is derived"):
        symcost.derive(str(spec), set={"g": 10})
