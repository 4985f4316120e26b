"""Published training and serving formulas, derived from the shipped specs (tests/data/reference/formulas.md)."""
from __future__ import annotations

import pytest
import sympy as sp

from symcost.cost.accounting import derive
from symcost.model.builder import build
from symcost.lang.parse import load

from helpers import SPECS, same, sym

a, b, s, h, L, V, kv, f, c, t = (sym(n) for n in ("a", "b", "s", "h", "L", "V", "kv", "f", "c", "t"))
d = h / a


def gpt2(phase="train", options=None, **settings):
    return derive(build(load(SPECS / "gpt2.arch"), phase=phase, options=options), **settings)


def llama(phase="train", options=None, **settings):
    return derive(build(load(SPECS / "llama.arch"), phase=phase, options=options), **settings)


def layer(report, metric):
    return next(blk for blk in report.blocks if blk.path == "layer").metrics[metric]


def matmul_params(report) -> sp.Expr:
    """N: the weights of every matrix product (linear layers and the LM head), each instance counted."""
    total = sp.Integer(0)
    for r in report.ops:
        if r.node.op == "linear":
            weight = next(p for p in (*r.node.params, *(x for x in r.node.inputs if x.is_param)))
            total += sp.Mul(*weight.shape) * r.node.mult
    return sp.expand(total.xreplace(report.graph.env.derived_defs()))  # d = h/a, f = 4h


# ---- Korthikanti et al. 2022, Table 2: activation bytes per layer (16-bit) -------------------------------
KORTHIKANTI = [
    (dict(), s * b * h * (34 + 5 * a * s / h)),
    (dict(tp=t), s * b * h * (10 + 24 / t + 5 * a * s / (h * t))),
    (dict(tp=t, sp=True), s * b * h / t * (34 + 5 * a * s / h)),
    (dict(tp=t, recompute="selective"), s * b * h * (10 + 24 / t)),
    (dict(tp=t, sp=True, recompute="selective"), 34 * s * b * h / t),
    (dict(recompute="full"), 2 * s * b * h),
]


@pytest.mark.parametrize("settings,expected", KORTHIKANTI, ids=["none", "tp", "tp+sp", "tp+selective",
                                                                 "tp+sp+selective", "full"])
def test_korthikanti_activation_table(settings, expected):
    assert same(layer(gpt2(**settings), "activation_bytes"), expected)


def test_flash_attention_never_keeps_the_s_by_s_tensors():
    assert same(layer(gpt2(flash=True), "activation_bytes"), 34 * b * s * h)
    plain, flash = gpt2(), gpt2(flash=True)
    # and the fused kernel moves no s×s tensor through memory
    assert sp.degree(layer(plain, "io_bytes"), s) == 2
    assert sp.degree(layer(flash, "io_bytes"), s) == 1


# ---- Kaplan et al. 2020: C_forward = 2N + 2·n_layer·n_ctx·d_attn per token --------------------------------------
def test_kaplan_forward_flops_per_token():
    r = gpt2(options={"bias": False}, causal="half")
    logits = next(o for o in r.ops if o.node.path == "logits")
    per_token = (r.totals["matmul_flops_fwd"] - logits.metrics["matmul_flops_fwd"]) / (b * s)
    n_layers = matmul_params(r) - V * h  # non-embedding: the layers' matrices
    assert same(n_layers, 12 * L * h**2)
    assert same(per_token, 2 * n_layers + 2 * L * s * h)


# ---- Narayanan et al. 2021: 96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h)) per iteration, full recomputation -----------
def test_narayanan_training_flops_with_full_recomputation():
    r = gpt2(options={"bias": False}, recompute="full")
    tot = r.totals
    step = sp.expand(tot["matmul_flops_fwd"] + tot["matmul_flops_bwd"]
                     + sum(o.metrics["flops_recompute"] * o.node.mult for o in r.ops if o.node.op in ("linear", "matmul")))
    assert same(step, 96 * b * s * L * h**2 * (1 + s / (6 * h) + V / (16 * L * h)))


# ---- Chowdhery et al. 2022 (PaLM): 6N + 12·L·H·Q·T training FLOPs per token -------------------------------------
def test_palm_training_flops_per_token():
    r = gpt2(options={"bias": False})
    per_token = (r.totals["matmul_flops_fwd"] + r.totals["matmul_flops_bwd"]) / (b * s)
    heads, head_size = a, d  # H·Q = h
    assert same(per_token, 6 * matmul_params(r) + 12 * L * heads * head_size * s)


# ---- Megatron tensor parallelism: 4 all-reduces of b·s·h per layer per micro-batch ----------------------------
def test_tensor_parallel_all_reduces_once_per_shared_input():
    ring = 2 * (t - 1) / t
    # separate q, k, v (and gate, up) projections share their input: one backward all-reduce each
    assert same(layer(llama(tp=t), "comm_bytes"), 4 * ring * b * s * h * 2)


def test_tensor_parallel_traffic_keeps_replicated_tensors_whole():
    qkv = next(o for o in gpt2(tp=t).ops if o.node.path.endswith("causal_self_attention/qkv"))
    bias = True  # the spec's default: the column-parallel bias is sharded with the weight
    weights = (6 * h**2 + 6 * h) / t if bias else 6 * h**2 / t
    assert same(qkv.metrics["io_bytes"], 2 * b * s * h + 6 * b * s * h / t + weights)


def test_no_causal_halving_when_decoding():
    full = llama(phase="decode").totals["matmul_flops_fwd"]
    assert same(llama(phase="decode", causal="half").totals["matmul_flops_fwd"], full)


def test_dropout_is_the_identity_when_generating():
    prefill = gpt2(phase="prefill")
    assert not any(r.node.op == "dropout" and r.metrics["flops_fwd"] != 0 for r in prefill.ops)


def test_tensor_parallel_communication_per_layer():
    comm = layer(gpt2(tp=t), "comm_bytes")
    ring = 2 * (t - 1) / t  # a ring all-reduce moves 2(t−1)/t of the message per device
    assert same(comm, 4 * ring * b * s * h * 2)  # 16-bit activations
    assert same(layer(gpt2(tp=t, sp=True), "comm_bytes"), comm)  # reduce-scatter + all-gather move the same


def test_tensor_parallel_shards_the_layer():
    r = gpt2(tp=t)
    # column-parallel biases (3h + 4h) are sharded; row-parallel biases (h + h) and LayerNorms (4h) stay whole
    assert same(layer(r, "params"), (12 * h**2) / t + 7 * h / t + 6 * h)
    assert same(layer(r, "matmul_flops_fwd"), (24 * b * s * h**2 + 4 * b * s**2 * h) / t)


# ---- KV cache and generation -----------------------------------------------------------------------------------
def test_kv_cache_after_prefill_is_2_b_s_L_kv_d_bytes():
    r = llama(phase="prefill")
    assert same(r.totals["kv_cache_bytes"], 2 * b * s * L * kv * d * 2)
    assert same(gpt2(phase="prefill").totals["kv_cache_bytes"], 2 * b * s * L * h * 2)  # MHA: kv = a


def test_decode_step():
    r = llama(phase="decode")
    assert same(r.totals["kv_cache_bytes"], 2 * b * c * L * kv * d * 2)
    n = matmul_params(r)
    attention = L * 4 * b * c * h  # scores and values over the c cached tokens, every query head
    assert same(r.totals["matmul_flops_fwd"], 2 * n * b + attention)
    assert r.totals["flops_bwd"] == 0 and r.totals["activation_bytes"] == 0


def test_decode_reads_all_weights_and_the_whole_cache():
    r = llama(phase="decode", flash=True)
    reads = sp.Poly(r.totals["io_bytes"], b, c)
    # per new token: K and V of every cached token, in every layer, once
    assert same(reads.coeff_monomial(b * c), 2 * L * kv * d * 2)
    # and every weight once, except the embedding table, of which only the looked-up rows are read
    assert same(reads.coeff_monomial(1), r.totals["weight_bytes"] - 2 * V * h)


def test_gqa_keeps_kv_over_a_of_the_cache():
    mha = llama(phase="prefill").totals["kv_cache_bytes"].subs(kv, a)
    gqa = llama(phase="prefill").totals["kv_cache_bytes"]
    assert sp.simplify(gqa / mha) == kv / a


def test_kv_cache_matches_the_reference_measurements():
    """measured.json: bytes of a transformers DynamicCache after a prefill of tiny gpt2 and llama models."""
    import json

    from symcost.analysis.evaluate import Evaluator

    from helpers import REFERENCE

    path = REFERENCE / "measured.json"
    if not path.is_file():
        pytest.skip(f"no reference measurements at {path}")
    ref = json.loads(path.read_text())
    tiny = {
        "gpt2": ("gpt2.arch", dict(a=4, h=64, L=2, V=1000, P=128)),
        "llama": ("llama.arch", dict(a=4, kv=2, h=64, f=176, L=2, V=1000)),
    }
    dtypes = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    checked = 0
    for row in ref["kv_cache_bytes"]:
        spec, dims = tiny[row["model"]]
        r = derive(build(load(SPECS / spec), phase="prefill", dtype=dtypes[row["dtype"]]))
        got = Evaluator(r.env, {**dims, "b": row["b"], "s": row["s"]})(r.totals["kv_cache_bytes"])
        assert got == row["total_bytes"], row
        checked += 1
    assert checked == len(ref["kv_cache_bytes"]) > 0


# ---- pipeline, expert and data parallelism -----------------------------------------------------------------
def test_pipeline_parallel_stage_share_and_boundary_traffic():
    p = sym("p")
    r = gpt2(pp=p)
    # a device holds L/p whole layers
    assert next(blk for blk in r.blocks if blk.path == "layer").repeat == L / p
    assert same(layer(r, "params"), 12 * h**2 + 13 * h)
    whole, last = gpt2(), gpt2(pp=p, stage="last")
    V_, P_ = sym("V"), sym("P")
    # the first stage holds the embeddings and L/p layers; the last L/p layers, the final norm and the head,
    # which reads the tied token table, so that table is held on both ends
    assert same(r.totals["params"], L / p * (12 * h**2 + 13 * h) + V_ * h + P_ * h)
    assert same(last.totals["params"], L / p * (12 * h**2 + 13 * h) + 2 * h + V_ * h)
    middle = gpt2(pp=p, stage="middle")
    assert same(middle.totals["params"], L / p * (12 * h**2 + 13 * h))
    stages = r.totals["params"] + (p - 2) * middle.totals["params"] + last.totals["params"]
    assert same(stages, whole.totals["params"] + V_ * h)
    per_layer = sp.expand(whole.totals["activation_bytes"]).coeff(L)
    assert same(per_layer, 34 * b * s * h + 5 * a * b * s**2)
    assert same(sp.expand(r.totals["activation_bytes"]).coeff(L), per_layer / p)
    # a stage boundary sends b·s·h activations forward and their gradient back (16-bit)
    assert same(r.totals["comm_bytes"], 2 * 2 * b * s * h)
    assert gpt2(pp=sp.Integer(1)).totals["comm_bytes"] == 0


def test_expert_parallel_splits_expert_weights_and_moves_tokens():
    e, E_, k_ = sym("e"), sym("E"), sym("k")
    r = derive(build(load(SPECS / "mixtral.arch")), ep=e)
    dense = derive(build(load(SPECS / "mixtral.arch")))
    lay, lay_dense = layer(r, "params"), layer(dense, "params")
    assert same(lay_dense - lay, 3 * h * f * E_ * (1 - 1 / e))  # only the experts' matrices are split
    assert same(layer(r, "matmul_flops_fwd"), layer(dense, "matmul_flops_fwd"))  # each device keeps its tokens
    # dispatch and combine of each token's k copies, forward and backward, (e−1)/e of them leave the device
    routed = sp.Poly(layer(r, "comm_bytes"), h).coeff_monomial(h)
    assert same(routed, 2 * 2 * 2 * b * s * k_ * (e - 1) / e)


def test_data_parallel_traffic_per_step():
    from symcost.analysis.training import dp_communication_bytes

    psi = gpt2().totals["params"]
    assert same(dp_communication_bytes(psi, "mixed-bf16", 0, 64), 2 * psi * 2)  # 2Ψ elements at 16 bits
    assert same(dp_communication_bytes(psi, "mixed-bf16", 3, 64), 3 * psi * 2)  # ZeRO-3: 3Ψ


# ---- counting conventions -------------------------------------------------------------------------------
def test_embedding_lookups_in_or_out_and_elementwise_flops():
    plain = llama()
    chinchilla = llama(embedding="matmul", other="exclude")
    # the lookup as a one-hot product adds 2·b·s·V·h forward (Hoffmann et al. count embeddings this way)
    assert same(chinchilla.totals["matmul_flops_fwd"] - plain.totals["matmul_flops_fwd"], 2 * b * s * V * h)
    assert same(chinchilla.totals["flops_fwd"], chinchilla.totals["matmul_flops_fwd"])  # products only
    assert plain.totals["flops_fwd"] != plain.totals["matmul_flops_fwd"]
