"""Language constructs: repeats over a pattern of layer kinds and the integrality of repeat counts; inputs and
parameters that need no gradient; block-local names that shadow the spec's dims; expand; conditions over
boolean expressions and decidable comparisons; expressions parsed on their own."""
from __future__ import annotations

import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

import symcost
from symcost.analysis.training import training_state_for
from symcost.errors import SymcostError
from symcost.lang import syntax as S
from symcost.lang.parse import parse_expression

from helpers import numeric_walk, same, sym

HEAD = "dim b\ndim s\ndim h\ndim L\ndim W \"window\"\n"


@pytest.fixture
def spec(tmp_path):
    def write(text: str, name: str = "t.arch"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


# ---- repeat over a pattern ----------------------------------------------------------------------------------------
LAYER = """
block layer(x: [b, s, h], local: bool) {
  q = linear(x, h, bias=false)
  k = linear(x, h, bias=false)
  if local {
    kc = cache(k, axis=-2, window=W)
  } else {
    kc = cache(k, axis=-2)
  }
  scores = matmul(q, kc, transpose_b=true)
  y = add(x, scores)
  out = reshape(y, [b, s, h])
  return out
}
"""
ALTERNATING = HEAD + LAYER.replace("add(x, scores)", "linear(scores, h, bias=false)") + """
input x: [b, s, h]
repeat L pattern [sliding, full] {
  x = layer(x, sliding)
}
"""
PAIRS = HEAD + LAYER.replace("add(x, scores)", "linear(scores, h, bias=false)") + """
input x: [b, s, h]
repeat L / 2 {
  x = layer(x, true)
  x = layer(x, false)
}
"""


@pytest.mark.parametrize("phase", ["train", "prefill"])
def test_pattern_equals_the_loop_over_pairs(spec, phase):
    a = symcost.derive(spec(ALTERNATING), phase=phase)
    b = symcost.derive(spec(PAIRS, "pairs.arch"), phase=phase)
    for metric, value in a.totals.items():
        assert same(value, b.totals[metric]), metric
    if phase == "prefill":  # half the layers keep min(s, W) keys, half keep s
        bb, s, h, L, W = (sym(n) for n in "b s h L W".split())
        # a windowed cache keeps the last W − 1 entries (transformers' sliding-window cache)
        assert same(a.totals["kv_cache_bytes"], 4 * bb * h * L / 2 * (s + sp.Min(s, W - 1)))


def test_pattern_with_three_kinds_matches_the_unrolled_walk(spec):
    text = HEAD + """
input x: [b, s, h]
repeat L pattern [u, v, w] {
  if u {
    x = linear(x, h)
  } else {
    if v or not w {
      x = gelu(x)
    } else {
      y = linear(x, 2 * h)
      x = linear(y, h, bias=false)
    }
  }
}
"""
    path = spec(text)
    a = symcost.derive(path)
    values = dict(b=2, s=3, h=4, L=6, W=1)
    walked = numeric_walk(symcost.lang.parse.load(path), values)
    got = a.at(**values)
    for metric in ("params", "flops_fwd", "flops_bwd", "activation_bytes"):
        assert got[metric] == walked[metric], metric
    h, L = sym("h"), sym("L")
    assert same(a.totals["params"], L / 3 * ((h * h + h) + (2 * h * h + 2 * h + 2 * h * h)))


@pytest.mark.parametrize("text", [ALTERNATING, PAIRS])
def test_an_odd_layer_count_is_a_located_error_at_evaluation(spec, text):
    a = symcost.derive(spec(text))
    assert a.at(b=1, s=8, h=4, L=6, W=4)["params"] == 6 * (2 * 4 * 4 + 8 * 4)  # q, k [h, h]; the last [h, s]
    with pytest.raises(SymcostError) as info:
        a.at(b=1, s=8, h=4, L=5, W=4)
    err = info.value
    assert err.message in ("the repeat count L = 5: it must be a multiple of 2 (the pattern has 2 kinds)",
                           "the repeat count L / 2 = 5/2 at L=5: it must be a whole number of layers")
    assert err.loc is not None and err.loc.line == text.split("\n").index(
        next(line for line in text.split("\n") if line.startswith("repeat"))) + 1
    assert "^" in str(err)


def test_an_odd_layer_count_is_an_error_in_a_concrete_walk(spec):
    with pytest.raises(SymcostError, match="multiple of 2"):
        numeric_walk(symcost.lang.parse.load(spec(ALTERNATING)), dict(b=1, s=2, h=2, L=3, W=1))


def test_an_even_count_by_construction_needs_no_check(spec):
    a = symcost.derive(spec(HEAD + "dim P\ninput x: [b]\nrepeat 2 * P pattern [u, w] {\n  x = gelu(x)\n}\n"))
    assert a.env.constraints == []


# ---- gradients ----------------------------------------------------------------------------------------------------
def test_a_frozen_weight_gets_no_gradient_and_no_optimizer_state(spec):
    text = HEAD + "param w: [h, h] frozen\ninput x: [b, s, h]\ny = linear(x, weight=w, bias=false)\nz = linear(y, h)\n"
    a = symcost.derive(spec(text))
    b, s, h = sym("b"), sym("s"), sym("h")
    assert same(a.totals["params"], 2 * h * h + h)
    assert same(a.frozen_params, h * h)
    # y = x·Wᵀ: only dx (W frozen); z: dy and dW2
    assert same(a.totals["matmul_flops_bwd"], 2 * b * s * h * h + 4 * b * s * h * h)
    state = training_state_for(a.report, precision="fp32", optimizer="adamw")
    assert same(state.gradient_bytes, 4 * (h * h + h))
    assert same(state.optimizer_bytes, 8 * (h * h + h))
    assert same(state.weight_bytes, 4 * (2 * h * h + h))
    # x is kept only for the frozen weight's gradient: not saved by y
    y = next(r for r in a.ops if r.node.path == "y")
    assert y.saved == ()


def test_ops_on_data_alone_have_no_backward(spec):
    text = HEAD + "input x: [b, s, h] nograd\ny = gelu(x)\nz = linear(y, h)\nw = gelu(z)\n"
    a = symcost.derive(spec(text))
    b, s, h = sym("b"), sym("s"), sym("h")
    ops = {r.node.path: r for r in a.ops}
    assert ops["y"].metrics["flops_bwd"] == 0 and ops["y"].saved == ()
    assert same(ops["z"].metrics["matmul_flops_bwd"], 2 * b * s * h * h)  # the weight gradient only
    assert same(ops["w"].metrics["flops_bwd"], 16 * b * s * h)
    assert [t.grad for t in ops["z"].node.outputs] == [True]


def test_a_repeat_over_data_counts_every_layer_as_needing_gradients(spec):
    text = HEAD + "input x: [b, s, h] nograd\nrepeat L {\n  x = linear(x, h, bias=false)\n}\n"
    a = symcost.derive(spec(text))
    b, s, h, L = (sym(n) for n in "b s h L".split())
    # the body is costed once for all L layers: the carried input needs a gradient after the first layer
    assert same(a.totals["matmul_flops_bwd"], 4 * L * b * s * h * h)


def test_frozen_table_in_a_lookup(spec):
    text = HEAD + "dim V\ninput ids: int64[b, s]\nparam table: [V, h] frozen\ne = embedding(ids, weight=table)\n"
    a = symcost.derive(spec(text))
    assert a.totals["flops_bwd"] == 0 and a.totals["activation_bytes"] == 0


# ---- shadowing ---------------------------------------------------------------------------------------------------
def test_block_local_names_shadow_the_specs_dims(spec):
    text = HEAD + "dim k \"experts per token\"\nblock attn(x: [b, s, h]) {\n  k = linear(x, h)\n  q = linear(k, h)\n" \
                  "  return q\n}\ninput x: [b, s, h]\ny = attn(x)\nz = linear(y, k)\n"
    a = symcost.derive(spec(text))
    h, k = sym("h"), sym("k")
    assert same(a.totals["params"], 2 * (h * h + h) + h * k + k)


def test_shipped_attention_blocks_work_in_a_spec_with_a_dim_named_k(spec, tmp_path):
    from helpers import SPECS

    text = (SPECS / "llama.arch").read_text().replace('include "blocks/', f'include "{SPECS}/blocks/')
    text = text.replace("dim V", "dim k \"unused\"\ndim V", 1)
    (tmp_path / "blocks").symlink_to(SPECS / "blocks")
    path = spec(text.replace(f'include "{SPECS}/blocks/', 'include "blocks/'), "llama_k.arch")
    assert symcost.derive(path).totals["params"] == symcost.derive(SPECS / "llama.arch").totals["params"]


# ---- expand ----------------------------------------------------------------------------------------------------
def test_expand_is_a_view_reading_its_base(spec):
    text = HEAD + "param cls: [1, 1, h]\ninput x: [b, s, h]\nc = expand(cls, [b, 1, h])\ny = concat(c, x, axis=1)\n"
    a = symcost.derive(spec(text))
    b, s, h = sym("b"), sym("s"), sym("h")
    ops = {r.node.path: r for r in a.ops}
    assert ops["c"].node.outputs[0].shape == (b, 1, h)
    assert ops["c"].metrics["io_bytes"] == 0
    assert same(ops["y"].metrics["io_bytes"], 4 * h + 4 * b * s * h + 4 * b * (s + 1) * h)


# ---- conditions ----------------------------------------------------------------------------------------------------
CONDITIONS = HEAD + """option tied = true
option bias = false
input x: [b, s, h]
block head(x: [b, s, h], gated: bool) {
  if gated and not bias {
    y = linear(x, 2 * h, bias=bias)
  } else {
    y = linear(x, h, bias=not bias)
  }
  return y
}
if tied or bias {
  z = head(x, true)
} else {
  z = head(x, false)
}
if 2 * h > h and s >= 1 and h != 2 * h {
  w = gelu(z)
}
"""


@pytest.mark.parametrize("tied,bias,params", [(True, False, "2h^2"), (False, False, "h^2+h"),
                                              (True, True, "h^2"), (False, True, "h^2")])
def test_conditions_over_options_and_block_booleans(spec, tied, bias, params):
    a = symcost.derive(spec(CONDITIONS), set={"tied": tied, "bias": bias})
    h = sym("h")
    want = {"2h^2": 2 * h * h, "h^2+h": h * h + h, "h^2": h * h}[params]
    assert same(a.totals["params"], want)
    assert any(r.node.path == "w" for r in a.ops)


def test_conditional_sizes_and_comparisons_with_numbers(spec):
    text = HEAD + "option wide = true\ninput x: [b, s, h]\ny = linear(x, if(wide, 4 * h, h))\n" \
                  "if 4 * h > 4096 {\n  z = gelu(y)\n}\n"
    with pytest.raises(SymcostError, match="cannot decide 4\\*h > 4096"):
        symcost.derive(spec(text))
    a = symcost.derive(spec(text.replace("4 * h > 4096", "3 < 4 and \"a\" != \"b\"")), set={"wide": False})
    h = sym("h")
    assert same(a.totals["params"], h * h + h) and any(r.node.path == "z" for r in a.ops)


def test_a_comparison_with_values_is_decided_in_a_concrete_walk(spec):
    text = HEAD + "input x: [b, s, h]\nif W < s {\n  y = gelu(x)\n} else {\n  y = relu(x)\n}\n"
    module = symcost.lang.parse.load(spec(text))
    small = numeric_walk(module, dict(b=1, s=8, h=2, L=1, W=4))
    large = numeric_walk(module, dict(b=1, s=8, h=2, L=1, W=16))
    assert small["flops_fwd"] == 8 * 16 and large["flops_fwd"] == 1 * 16


# ---- expressions on their own ---------------------------------------------------------------------------------------
def test_parse_expression_builds_nodes():
    e = parse_expression('if(use_sliding_window and window != null, window, 0) * 2 + (a / b)^2')
    assert isinstance(e, S.BinOp) and e.op == "+"
    cond = e.left.left
    assert isinstance(cond, S.IfExpr)
    assert cond.cond == S.BoolOp("and", S.Name("use_sliding_window", None),
                                 S.Compare("!=", S.Name("window", None), S.Null(None), None), None)
    assert parse_expression('model_type == "gpt2"') == S.Compare("==", S.Name("model_type", None),
                                                                 S.Str("gpt2", None), None)
    assert parse_expression("not a or b") == S.BoolOp("or", S.Not(S.Name("a", None), None), S.Name("b", None), None)
    assert parse_expression("-x^2") == S.Neg(S.BinOp("^", S.Name("x", None), S.Num("2", None), None), None)
    assert parse_expression("ceil(h / 16)") == S.Func("ceil", (S.BinOp("/", S.Name("h", None), S.Num("16", None),
                                                                       None),), None)


@pytest.mark.parametrize("text,col,says", [("a +", 4, "end of the expression"), ("a < b < c", 7, "'<'"),
                                           ("sqrt(a)", 1, "sqrt"), ("a = b", 3, "'='"), ("dim x", 5, "'x'")])
def test_parse_expression_errors_are_located(text, col, says):
    with pytest.raises(SymcostError) as info:
        parse_expression(text, "map.json")
    err = info.value
    assert says in err.message and err.loc.file == "map.json" and (err.loc.line, err.loc.column) == (1, col)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(1, 50))
def test_comparisons_of_numbers_agree_with_python(x, y):
    from symcost.model.dims import Env

    env = Env()
    for op, fn in (("==", x.__eq__), ("!=", x.__ne__), ("<", x.__lt__), ("<=", x.__le__), (">", x.__gt__),
                   (">=", x.__ge__)):
        assert env.truth(parse_expression(f"{x} {op} {y}"), {}) is fn(y)


def test_data_parallel_traffic_leaves_out_frozen_parameters(spec):
    from symcost.analysis.training import dp_communication_bytes

    text = HEAD + "param w: [h, h] frozen\ninput x: [b, s, h]\ny = linear(x, weight=w, bias=false)\nz = linear(y, h)\n"
    a = symcost.derive(spec(text))
    h = sym("h")
    assert same(dp_communication_bytes(a.totals["params"], "fp32", 0, 8, frozen=a.frozen_params), 8 * (h * h + h))
    assert same(dp_communication_bytes(a.totals["params"], "fp32", 3, 8, frozen=a.frozen_params),
                8 * (2 * h * h + h) + 4 * (h * h + h))


def test_a_symbolic_count_may_come_out_as_no_layers_but_not_fewer(spec):
    text = HEAD + "dim D\ninput x: [b, s, h]\nrepeat L - D {\n  x = linear(x, h, bias=false)\n}\n"
    a = symcost.derive(spec(text))
    assert a.at(b=1, s=1, h=2, L=3, D=3, W=1)["params"] == 0
    with pytest.raises(SymcostError, match="the repeat count L - D = -1 at D=4, L=3: it must be a whole number"):
        a.at(b=1, s=1, h=2, L=3, D=4, W=1)


NESTED_FUSED = HEAD + """input x: [b, s, h]
fused {
  y = gelu(x)
  fused {
    z = gelu(y)
    w = gelu(z)
  }
  u = add(w, y)
}
v = linear(u, h)
"""


def test_a_fused_region_inside_another_is_one_kernel(spec):
    # the outer region is the kernel: it reads x and writes u (4·b·s·h bytes each, fp32); nothing in between
    # moves. The linear reads u and its weights and writes v.
    a = symcost.derive(spec(NESTED_FUSED), phase="prefill", flash_attention=True)
    b, s, h = sym("b"), sym("s"), sym("h")
    assert same(a.totals["io_bytes"], (4 + 4) * b * s * h + (4 * b * s * h + 4 * (h * h + h) + 4 * b * s * h))


def test_nested_regions_give_the_same_output_under_any_hash_seed(spec):
    import os
    import subprocess
    import sys

    from helpers import ROOT

    path = spec(NESTED_FUSED)
    outputs = set()
    for seed in ("0", "1", "5", "12"):  # 5 and 12 once iterated the two fused regions innermost first
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        run = subprocess.run([sys.executable, "-m", "symcost", "derive", str(path), "--flash-attention", "--phase",
                              "prefill", "--set", "b=1", "s=8", "h=4", "W=1", "L=1", "--device", "h100-sxm"],
                             capture_output=True, text=True, env=env, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1
