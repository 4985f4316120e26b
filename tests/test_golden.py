"""The published results of tests/data/reference/formulas.md, derived from the shipped specs."""
from __future__ import annotations

import sympy as sp

from symcost.analysis.evaluate import Evaluator

from helpers import block, op, same, sym

a, b, s, h, L, V, P, kv, f = (sym(n) for n in ("a", "b", "s", "h", "L", "V", "P", "kv", "f"))
d = h / a


def test_gpt2_layer_params(gpt2):
    assert same(block(gpt2, "layer").metrics["params"], 12 * h**2 + 13 * h)


def test_gpt2_attention_and_mlp_params(gpt2):
    assert same(block(gpt2, "layer/causal_self_attention").metrics["params"], 4 * h**2 + 4 * h)
    assert same(block(gpt2, "layer/gelu_mlp").metrics["params"], 8 * h**2 + 5 * h)


def test_gpt2_model_params(gpt2):
    # L(12h² + 13h) + Vh + Ph + 2h: tied head adds nothing
    assert same(gpt2.totals["params"], L * (12 * h**2 + 13 * h) + V * h + P * h + 2 * h)


def test_gpt2_layer_forward_matmul_flops(gpt2):
    assert same(block(gpt2, "layer").metrics["matmul_flops_fwd"], 24 * b * s * h**2 + 4 * b * s**2 * h)


def test_gpt2_attention_flops_breakdown(gpt2):
    qkv = op(gpt2, "layer/causal_self_attention/qkv").metrics["matmul_flops_fwd"]
    scores = op(gpt2, "layer/causal_self_attention/scores").metrics["matmul_flops_fwd"]
    ctx = op(gpt2, "layer/causal_self_attention/ctx").metrics["matmul_flops_fwd"]
    proj = op(gpt2, "layer/causal_self_attention/proj").metrics["matmul_flops_fwd"]
    assert same(qkv, 6 * b * s * h**2)
    assert same(scores, 2 * b * s**2 * h)
    assert same(ctx, 2 * b * s**2 * h)
    assert same(proj, 2 * b * s * h**2)


def test_logits_flops(gpt2, llama):
    assert same(op(gpt2, "logits").metrics["matmul_flops_fwd"], 2 * b * s * h * V)
    assert same(op(llama, "logits").metrics["matmul_flops_fwd"], 2 * b * s * h * V)


def test_gpt2_model_forward_matmul_flops(gpt2):
    assert same(gpt2.totals["matmul_flops_fwd"], L * (24 * b * s * h**2 + 4 * b * s**2 * h) + 2 * b * s * h * V)


def test_backward_is_twice_forward_for_matmuls(gpt2, llama):
    for r in (gpt2, llama):
        assert same(r.totals["matmul_flops_bwd"], 2 * r.totals["matmul_flops_fwd"])


def test_gpt2_layer_activations_korthikanti(gpt2):
    assert same(block(gpt2, "layer").metrics["activation_bytes"], 34 * b * s * h + 5 * a * b * s**2)
    assert same(block(gpt2, "layer/causal_self_attention").metrics["activation_bytes"], 11 * b * s * h + 5 * a * b * s**2)
    assert same(block(gpt2, "layer/gelu_mlp").metrics["activation_bytes"], 19 * b * s * h)


def test_gpt2_small_params_exact(gpt2):
    ev = Evaluator(gpt2.env, dict(a=12, h=768, L=12, V=50257, P=1024, b=1, s=1024))
    assert ev(gpt2.totals["params"]) == 124_439_808


def _gpt3(gpt2, seq):
    ev = Evaluator(gpt2.env, dict(a=96, h=12288, L=96, V=50257, P=2048, b=1, s=seq))
    layers = ev(block(gpt2, "layer").metrics["activation_bytes"] * L)
    return layers, ev(gpt2.totals["activation_bytes"]), ev(gpt2.totals["weight_bytes"])


def test_gpt3_activations_vs_weights(gpt2):
    layers, total, weights = _gpt3(gpt2, 2048)
    assert abs(layers / 1e9 - 275.4) < 0.1
    assert abs(weights / 1e9 - 350) < 1.5  # 175B parameters at 2 bytes
    assert round(layers / weights, 2) == 0.79 and round(total / weights, 2) == 0.79
    layers, total, weights = _gpt3(gpt2, 4096)
    assert abs(layers / 1e9 - 937.4) < 0.1
    assert round(layers / weights, 2) == 2.68
    # the whole model adds the embedding dropout mask, final norm, logits and log-probabilities
    assert 0 < total - layers < 0.002 * total and abs(total / weights - 2.68) < 0.01


def test_llama_layer_params(llama):
    assert same(block(llama, "layer").metrics["params"], 2 * h**2 + 2 * h * kv * d + 3 * h * f + 2 * h)


def test_llama_2_7b_params_exact(llama):
    ev = Evaluator(llama.env, dict(a=32, kv=32, h=4096, f=11008, L=32, V=32000, b=1, s=1))
    assert ev(llama.totals["params"]) == 6_738_415_616


def test_llama_with_mha_has_gpt_attention_flops(llama):
    attn = block(llama, "layer/grouped_query_attention").metrics["matmul_flops_fwd"]
    assert same(attn, 4 * b * s * h**2 + 4 * b * s * h * kv * d + 4 * b * s**2 * h)
    assert same(attn.subs(kv, a), 8 * b * s * h**2 + 4 * b * s**2 * h)


def test_swiglu_is_three_matrices(llama):
    assert same(block(llama, "layer/swiglu_mlp").metrics["params"], 3 * h * f)
    assert same(block(llama, "layer/swiglu_mlp").metrics["matmul_flops_fwd"], 6 * b * s * h * f)


def test_gqa_keeps_kv_heads_in_saved_keys_and_values(llama):
    # K and V are saved at kv heads (a broadcast view reads its base), Q at a heads
    act = block(llama, "layer/grouped_query_attention").metrics["activation_bytes"]
    assert same(act, 2 * b * s * h + 2 * b * s * h + 4 * b * s * kv * d + 2 * a * b * s**2 + 2 * b * s * h)


def test_printed_forms_golden(gpt2):
    from symcost.present.text import forms_for

    forms = forms_for(gpt2)
    assert forms.text(block(gpt2, "layer").metrics["params"]) == "12·h² + 13·h"
    assert forms.text(gpt2.totals["matmul_flops_fwd"], gpt2.repeat_symbols) == "L·(24·b·s·h² + 4·b·s²·h) + 2·b·s·h·V"
    assert forms.text(block(gpt2, "layer").metrics["activation_bytes"]) == "5·a·b·s² + 34·b·s·h"
    assert forms.latex(block(gpt2, "layer").metrics["params"]) == "12 h^{2} + 13 h"
    assert str(block(gpt2, "layer").metrics["params"]) == "12*h**2 + 13*h"


def test_keep_derived_head_size():
    from helpers import report_for

    r = report_for("llama.arch", keep=("d",))
    dd = sym("d")
    assert same(block(r, "layer").metrics["params"], 2 * h * a * dd + 2 * h * kv * dd + 3 * h * f + 2 * h)
    assert dd in block(r, "layer").metrics["params"].free_symbols


def test_closed_forms_are_fully_expanded(gpt2, llama):
    """The fast canonical form is structurally identical to SymPy's expand (stable printing)."""
    for r in (gpt2, llama):
        forms = [*r.totals.values()] + [e for b in r.blocks for e in b.metrics.values()]
        forms += [e for o in r.ops for e in o.metrics.values()]
        for e in forms:
            assert e == sp.expand(e)
