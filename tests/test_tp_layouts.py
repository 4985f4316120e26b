"""Tensor-parallel layouts as the reference implementations shard them: which tables split, which buffers are local,
and that a layer summing over split features must say how it is parallel."""
from __future__ import annotations

import pytest
import sympy as sp

import symcost
from symcost.errors import SymcostError
from helpers import same


def _sym(a, name):
    return a.symbol(name)


def test_position_and_type_tables_stay_whole():
    # Megatron-core's LanguageModelEmbedding keeps position embeddings serial (whole on every device) and vLLM
    # keeps GPT-2's wpe and BERT's token types whole; only the token table is split by vocabulary rows.
    for spec, table in (("gpt2", "P"), ("bert", "T"), ("bert", "P")):
        whole = symcost.derive(spec)
        split = symcost.derive(spec, tp=4)
        h, rows, V = _sym(whole, "h"), _sym(whole, table), _sym(whole, "V")
        assert same(sp.expand(split.params).coeff(rows), h), (spec, table)
        assert same(sp.expand(split.params).coeff(V), sp.expand(whole.params).coeff(V) / 4), spec
    # a lookup reads the rows it returns, never the table's size (tensor parallelism once subtracted 2·h·P)
    for tp in (None, 4):
        a = symcost.derive("gpt2", phase="prefill", tp=tp)
        assert sp.expand(a["io_bytes"]).coeff(a.symbol("P")) == 0


def test_tables_that_tensor_parallelism_cannot_split_by_rows_are_accepted():
    # OPT's 2050-row position table and BERT's 2 token types: splitting them by rows was an error; they stay whole
    # OPT-125m at TP 4, by hand (h = 768, f = 3072, L = 12, V = 50272): per layer q, k, v (weights and biases),
    # o's weight, fc1 (weight and bias) and fc2's weight split 4 ways; o's and fc2's biases and both LayerNorms
    # whole; the tied token table split by rows; the 2050-row position table and the final LayerNorm whole
    h, f, L, V = 768, 3072, 12, 50272
    layer = (4 * h * h + 3 * h + 2 * h * f + f) // 4 + 6 * h
    assert layer == 1_775_424
    opt = symcost.derive("opt", preset="opt-125m", tp=4, phase="decode", set={"b": 1, "c": 16})
    assert opt.at().params == L * layer + V * h // 4 + 2050 * h + 2 * h
    assert symcost.derive("bert", preset="bert-base-uncased", tp=4, set={"b": 1, "s": 16, "V": 30524}).at().params > 0


def test_loss_buffers_live_on_the_vocabulary_shard():
    # Megatron's vocabulary-parallel cross-entropy keeps the softmax of its [b, s, V/t] shard: every term of the
    # activations that grows with b·s·V divides by t, with or without sequence parallelism
    one = symcost.derive("llama", preset="llama-3-8b")
    eight = symcost.derive("llama", preset="llama-3-8b", tp=8)
    b, s, V = (_sym(one, n) for n in "bsV")
    assert sp.expand(one["activation_bytes"]).coeff(b * s * V) != 0
    assert same(sp.expand(eight["activation_bytes"]).coeff(b * s * V),
                sp.expand(one["activation_bytes"]).coeff(b * s * V) / 8)


def test_the_largest_batch_counts_the_sharded_loss():
    # by hand: at s = 8192, TP = 8, full recomputation, the softmax shard is 2·b·s·V/8 bytes (bf16): 262.7 MB a
    # sequence, not 2.1 GB; the answer and the next batch bracket the card's 80 GiB
    a = symcost.solve("llama", "b", "memory_bytes <= device", preset="llama-3-8b", tp=8, recompute="full",
                      device="h100-sxm", set={"s": 8192})
    assert a.value == 20
    at = symcost.derive("llama", preset="llama-3-8b", tp=8, recompute="full", device="h100-sxm",
                        set={"s": 8192})
    given = {at.symbol(str(k)): v for k, v in at.values.items()}
    total = sp.expand(at.memory.total.xreplace(given))
    b = at.symbol("b")
    # by hand, one more sequence under full recomputation keeps, in bf16: each layer's input 2·s·h (whole: no
    # sequence parallelism), the final norm's and the head's inputs 2·2·s·h, the loss's softmax shard 2·s·V/8,
    # and the int64 ids 8·s
    s_, h, L, V = 8192, 4096, 32, 128256
    kept = 2 * s_ * h * L + 4 * s_ * h + 2 * s_ * V // 8 + 8 * s_
    # and, for the backward pass of the one layer it rebuilds (docs/analysis.md, `recomputed`), in bf16: the two
    # norms' outputs and the residual sum whole (3·2·s·h), the rotated query and the merged context split by heads
    # (2·2·s·h/8), the rotated keys and the values of the kv = 8 heads of d = 128 (2·2·s·d·kv/8), the softmax
    # probabilities 2·a·s²/8, the MLP's gate, activation, up and product 4·2·s·f/8
    a_, kv, d, f = 32, 8, 128, 14336
    rebuilt = 3 * 2 * s_ * h + 2 * 2 * s_ * h // 8 + 2 * 2 * s_ * d * kv // 8 + 2 * a_ * s_ * s_ // 8 + 4 * 2 * s_ * f // 8
    assert total.coeff(b) == kept + rebuilt
    assert total.subs(b, 20) <= 80 * 2**30 < total.subs(b, 21)


def test_mamba_shards_as_vllm_does():
    # vLLM's MambaMixer: in_proj column-parallel; the depthwise conv, dt_proj, A_log and D split with the inner
    # channels; x_proj and out_proj row-parallel (all-reduced); the norm whole
    a = symcost.derive("mamba", tp=2, phase="decode")
    h, d, N, k, r, b = (_sym(a, n) for n in ("h", "d", "N", "k", "r", "b"))
    inner = 2 * d * h + (d * k + d) + d * (r + 2 * N) + (r * d + d) + d * N + d + d * h
    assert same(a.blocks["layer"].metrics["params"], inner / 2 + h)
    # per layer: out_proj's all-reduce of [b, h] and x_proj's of [b, r + 2N], fp32
    assert same(a.blocks["layer"].metrics["comm_bytes"], 4 * b * h + 4 * b * (r + 2 * N))
    # the per-channel states split with the channels
    assert same(a.blocks["layer"].metrics["kv_cache_bytes"], 4 * b * d * (N + k) / 2)


def test_mamba_130m_layer_under_tp2_by_hand():
    # h = 768, d = 1536, N = 16, k = 4, r = 48: (2·d·h + d·k + d + d·80 + 48·d + d + d·N + d + d·h)/2 + h
    a = symcost.derive("mamba", preset="mamba-130m", tp=2, phase="decode", set={"b": 1, "c": 16})
    h, d, N, k, r = 768, 1536, 16, 4, 48
    layer = (2 * d * h + d * k + d + d * (r + 2 * N) + r * d + d + d * N + d + d * h) // 2 + h
    assert layer == 1_886_208
    L, V = 24, 50280
    assert a.at().params == L * layer + V * h // 2 + h


SPLIT_THEN_PLAIN = """
dim b
dim s
dim h
dim f
input x: [b, s, h]
up = linear(x, f, parallel=column)
mid = linear(up, f)
down = linear(mid, h, parallel=row)
"""


def test_a_plain_linear_on_split_features_is_refused(tmp_path):
    spec = tmp_path / "tp.arch"
    spec.write_text(SPLIT_THEN_PLAIN)
    with pytest.raises(SymcostError) as e:
        symcost.derive(str(spec), tp=2)
    assert e.value.loc is not None and e.value.loc.line == 8
    assert "parallel=row" in (e.value.hint or "")
    # the marks are part of the model: without them the same layers are fine (and whole on one device)
    spec.write_text(SPLIT_THEN_PLAIN.replace(", parallel=column", "").replace(", parallel=row", ""))
    h, f = 4, 8  # up h·f + f, mid f·f + f, down f·h + h
    assert symcost.derive(str(spec)).at(b=1, s=1, h=h, f=f).params == (h * f + f) + (f * f + f) + (f * h + h)


def test_a_tied_head_reads_its_shard_of_the_table():
    # each device holds h·V/t of a tied table and its head multiplies by that shard: the memory traffic of a
    # decode step is the same tied or untied (the lookup reads only rows)
    for spec, preset in (("qwen2", "qwen2-0.5b"), ("llama", "llama-3-8b")):
        tied, untied = (symcost.derive(spec, preset=preset, tp=2, phase="decode", set={"b": 1, "c": 1024, "tied": t})
                        for t in (True, False))
        assert tied.at().io_bytes == untied.at().io_bytes, spec
        one = symcost.derive(spec, preset=preset, phase="decode", set={"b": 1, "c": 1024})
        V, h = one.symbol("V"), one.symbol("h")
        assert same(sp.expand(tied["io_bytes"]).coeff(V).coeff(h), sp.expand(one["io_bytes"]).coeff(V).coeff(h) / 2)


@pytest.mark.parametrize("spec, layer", [("gpt2", "layer"), ("llama", "layer"), ("bert", "post_ln_layer")])
def test_sequence_parallelism_splits_every_token_op_of_a_layer(spec, layer):
    # Korthikanti et al. 2022 §4.2.2: with tensor and sequence parallelism, LayerNorm, dropout and the residual
    # adds run on s/t tokens, the rest is tensor-parallel: a layer's work per device is exactly its whole work / t
    whole = symcost.derive(spec)
    split = symcost.derive(spec, tp=4, sp=True)
    for metric in ("flops_fwd", "flops_bwd", "activation_bytes"):
        assert same(split.blocks[layer].metrics[metric] * 4, whole.blocks[layer].metrics[metric]), metric


def test_sequence_parallelism_splits_the_pipeline_boundary():
    # the tensor sent between stages is [s/t, b, h] per device under sequence parallelism (Megatron-LM)
    common = dict(preset="llama-2-7b", pp=2, stage="middle", tp=2, set={"b": 1, "s": 4096})
    without, with_sp = symcost.derive("llama", **common), symcost.derive("llama", sp=True, **common)
    b, s, h = (without.symbol(n) for n in "bsh")
    # a middle stage receives the activation and sends it on: 2 bytes · b·s·h forward, its gradient back
    assert same(without["comm_bytes"] - with_sp["comm_bytes"], 2 * b * s * h)


def test_expert_parallel_decode_reads_the_experts_a_devices_slots_reach():
    # under expert parallelism each device keeps its own b tokens (docs/semantics.md): the group routes e·b·k
    # slots and a device serves b·k of them, reaching min(E/e, b·k) of its E/e experts, each read whole.
    # Mixtral-8x7B (E = 8, k = 2), b = 1: EP 8 holds one expert per layer and reads it (352,321,536 bytes by
    # hand: 3·h·f·2); EP 4 holds two and reads both, as many as a device without EP reads (the token's two)
    common = dict(preset="mixtral-8x7b", phase="decode", device="h100-sxm", set={"b": 1, "c": 4096})
    h, f, L = 4096, 14336, 32
    expert = 3 * h * f * 2
    assert expert == 352_321_536
    streamed = {}
    for ep in (None, 4, 8):
        a = symcost.derive("mixtral", ep=ep, **common)
        given = {a.symbol(k): v for k, v in a.values.items()}
        streamed[ep] = sp.expand(a.report.streamed_weights.xreplace(given))
    assert streamed[None] - streamed[8] == (2 * expert - expert) * L
    assert streamed[None] == streamed[4]


def test_tensor_parallel_experts_reduce_once_per_token():
    # a token's k expert outputs are summed on the device, then all-reduced once (vLLM's FusedMoE,
    # Megatron-core's dispatcher). Mixtral per layer under TP 8, training, bf16, by hand: attention and the MoE
    # each all-reduce b·s·h forward and backward, 4 ring all-reduces of 2·b·s·h bytes moving 2·(t−1)/t = 7/4
    # of it: 14·b·s·h (counted per slot it was k = 2 times more for the MoE: 21·b·s·h)
    a = symcost.derive("mixtral", tp=8)
    b, s, h = (a.symbol(n) for n in "bsh")
    assert same(a.blocks["layer"].metrics["comm_bytes"], 4 * sp.Rational(2 * 7, 8) * 2 * b * s * h)


def test_tp_on_a_spec_with_nothing_to_split_is_refused():
    with pytest.raises(SymcostError) as e:
        symcost.derive("resnet", preset="resnet-50", tp=4)
    assert "marks none" in e.value.message


BRANCHES = """
dim b
dim s
dim h
dim V
option split = false
input ids: int64[b, s]
param table: [V, h]
if split {
  x = embedding(ids, weight=table, parallel=vocab)
} else {
  x = embedding(ids, weight=table)
}
y = relu(x)
"""


def test_a_branch_not_taken_leaves_no_trace(tmp_path):
    # both branches are checked; the one not taken (which would split the table by rows) is undone, so under
    # TP 2 the table stays whole on every device, as written in the branch taken
    spec = tmp_path / "branches.arch"
    spec.write_text(BRANCHES.replace("y = relu(x)", "y = linear(x, h, parallel=column)"))
    kept = symcost.derive(str(spec), tp=2)
    h, V = kept.symbol("h"), kept.symbol("V")
    assert same(sp.expand(kept.params).coeff(V), h)
    taken = symcost.derive(str(spec), tp=2, set={"split": True})
    assert same(sp.expand(taken.params).coeff(V), h / 2)
    assert [o.node.path for o in kept.ops] == [o.node.path for o in taken.ops]
