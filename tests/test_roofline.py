"""Roofline bounds (symcost.roofline): a known op, the model sums, the phase summaries and MFU."""
from __future__ import annotations

import pytest
import sympy as sp

from symcost.cost.accounting import derive, derive_file
from symcost.errors import SymcostError
from symcost.analysis.evaluate import Evaluator
from symcost.model.builder import build
from symcost.analysis.hardware import load_device
from symcost.lang.parse import load
from symcost.analysis.roofline import (
    bound,
    decode_tokens_per_s,
    intensity,
    mfu,
    mfu_for,
    model_flops,
    phase_summary,
    ridge_point,
    roofline,
    time_lower_bound,
    train_step_time,
)

from helpers import SPECS, same, sym

M, K, N = sym("M"), sym("K"), sym("N")
LINEAR = """model mm "one linear layer"
dim M "rows"
dim K "inner"
dim N "columns"
default dtype bf16
input x: [M, K]
y = linear(x, N, bias=false)
"""


def same_ratio(a, b) -> bool:
    """Equality of rational functions: `expand` does not cancel a common denominator, `cancel` does."""
    return sp.cancel(a - b) == 0


LLAMA_2_7B = {"a": 32, "h": 4096, "kv": 32, "f": 11008, "L": 32, "V": 32000}


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    path = tmp_path_factory.mktemp("specs") / "mm.arch"
    path.write_text(LINEAR)
    return derive(build(load(path)))


@pytest.fixture(scope="module")
def h100():
    return load_device("h100-sxm")


def test_pure_intensity_of_a_matmul():
    w = sym("w")
    assert same_ratio(intensity(2 * M * K * N, (M * K + K * N + M * N) * w), 2 * M * K * N / ((M * K + K * N + M * N) * w))
    assert intensity(5, 0) is None
    assert ridge_point(sp.Integer(1000), sp.Integer(10)) == 100
    assert time_lower_bound(2000, 10, 1000, 10) == 2  # compute 2 s, memory 1 s
    assert bound(2000, 10, 1000, 10) == "compute" and bound(10, 10, 1000, 10) == "memory"
    assert bound(1000, 10, 1000, 10) == "balanced"
    assert bound(2 * M * K * N, 2 * (M * K + K * N + M * N), 1000, 10) == "depends"


def test_roofline_of_a_linear_op(linear, h100):
    rf = roofline(linear, h100)
    (row,) = rf.ops
    assert row.path == "y" and row.op == "linear"
    assert same(row.flops, 2 * M * K * N) and same(row.bytes, 2 * (M * K + K * N + M * N))  # bf16: 2 bytes
    assert same_ratio(row.intensity, 2 * M * K * N / ((M * K + K * N + M * N) * 2))
    assert row.bound == "depends" and rf.dtype == "bf16" and rf.peak == 989_400_000_000_000
    assert same(row.compute_time, 2 * M * K * N / rf.peak) and same(row.memory_time, row.bytes / rf.bandwidth)
    # a square 4096³ product is compute-bound (intensity 4096/3 ≈ 1365 > ridge ≈ 295); a matrix-vector one is not
    big = row.values(Evaluator(linear.env, {"M": 4096, "K": 4096, "N": 4096}))
    assert big["bound"] == "compute" and big["intensity"] == pytest.approx(4096 / 3)
    assert big["time"] == pytest.approx(2 * 4096**3 / 989.4e12)
    gemv = row.values(Evaluator(linear.env, {"M": 1, "K": 4096, "N": 4096}))
    assert gemv["bound"] == "memory" and gemv["time"] == pytest.approx(2 * (4096 + 4096**2 + 4096) / 3.35e12)


def test_model_roofline_sums(llama, h100):
    rf = roofline(llama, h100)
    ev = Evaluator(llama.env, {**LLAMA_2_7B, "b": 1, "s": 2048})
    total = float(ev(rf.total_time))
    assert total >= float(ev(rf.compute_floor)) and total >= float(ev(rf.memory_floor))
    assert total == pytest.approx(sum(o.values(ev)["total_time"] for o in rf.ops))
    assert all(o.path != "layer/grouped_query_attention/qh" for o in rf.ops)  # views move nothing: left out
    assert same(sum((o.mult * o.flops for o in rf.ops), sp.Integer(0)), llama.totals["flops_fwd"])
    import json

    from symcost import derive
    from symcost.present import render

    doc = json.loads(render(derive("llama", device="h100-sxm", set={**LLAMA_2_7B, "b": 1, "s": 2048}), "json"))
    assert len(doc["device"]["ops"]) == len(rf.ops) and doc["device"]["bound"] == "compute"


def test_phase_bounds_pure():
    # 7 GB of weights at 3.35 TB/s: ≤ 478.6 tokens/s at batch 1; a batch of 64 is 64× that while memory-bound
    tps = decode_tokens_per_s(sp.Integer(14 * 10**9), sp.Integer(7 * 10**9), 989.4e12, 3.35e12, batch=1)
    assert float(tps) == pytest.approx(3.35e12 / 7e9)
    assert train_step_time(100, 200, 10, recompute_flops=100) == 40
    assert train_step_time(100, 200, 10, bytes_moved=1000, bandwidth=10) == 100
    assert float(mfu(6e15, 10, 989.4e12)) == pytest.approx(6e15 / (10 * 989.4e12))
    assert float(mfu(6e15, 10, 989.4e12, devices=8)) == pytest.approx(6e15 / (80 * 989.4e12))


def test_phase_summaries(llama, h100):
    ev = Evaluator(llama.env, {**LLAMA_2_7B, "b": 1, "s": 2048})
    pre = phase_summary(llama, h100, "prefill")
    assert same(pre.flops, llama.totals["flops_fwd"])
    # every weight once, except the embedding table, of which a step reads only the looked-up rows
    V, h = sym("V"), sym("h")
    assert same(pre.bytes, llama.totals["weight_bytes"] - 2 * V * h)
    v = pre.values(ev)
    assert v["bound"] == "compute" and v["time"] == pytest.approx(float(ev(llama.totals["flops_fwd"])) / 989.4e12)
    train = phase_summary(llama, h100)  # the report's own phase: train
    assert train.phase == "train"
    assert same(train.flops, llama.totals["flops_fwd"] + llama.totals["flops_bwd"] + llama.totals["flops_recompute"])
    assert train.values(ev)["tokens_per_s"] == pytest.approx(2048 / train.values(ev)["time"])
    from symcost import derive
    from symcost.present import render

    a = derive("llama", phase="train", device="h100-sxm")
    assert "FLOPs /" in render(a) and "compute-bound" in render(a, values={**LLAMA_2_7B, "b": 1, "s": 2048})
    with pytest.raises(SymcostError, match="unknown phase"):
        phase_summary(llama, h100, "inference")


def test_decode_is_memory_bound(h100):
    report = derive_file(SPECS / "llama.arch", phase="decode")
    ev = Evaluator(report.env, {**LLAMA_2_7B, "b": 1, "c": 2048})
    dec = phase_summary(report, h100)
    assert dec.phase == "decode" and dec.tokens == sym("b")
    v = dec.values(ev)
    assert v["bound"] == "memory"
    table = 2 * 32000 * 4096  # the embedding table: a decode step reads one row of it, not all of it
    step_bytes = float(ev(report.totals["weight_bytes"] + report.totals["kv_cache_bytes"])) - table
    assert v["tokens_per_s"] == pytest.approx(3.35e12 / step_bytes)
    assert v["tokens_per_s"] < 3.35e12 / 13.2e9  # at least the 13.2 GB of bf16 weights outside the table


def test_decode_streams_only_the_routed_experts(h100):
    report = derive_file(SPECS / "mixtral.arch", phase="decode")
    one = Evaluator(report.env, {"a": 32, "kv": 8, "h": 4096, "f": 14336, "E": 8, "k": 2, "L": 32, "V": 32000,
                                 "w": 32768, "b": 1, "c": 4096})
    many = Evaluator(report.env, {**one.given, "b": 64})
    bytes_one, bytes_many = float(one(phase_summary(report, h100).bytes)), float(many(phase_summary(report, h100).bytes))
    experts = 3 * 4096 * 14336 * 2 * 32  # one expert's three matrices in every layer, 16-bit
    cache_per_sequence = 2 * 32 * 8 * 128 * 4096 * 2  # K and V, 32 layers, 8 heads of 128, 4096 tokens, 16-bit
    # one sequence reaches 2 of the 8 experts; 64 sequences reach all 8, and read 63 more caches
    assert bytes_many - bytes_one == pytest.approx(6 * experts + 63 * cache_per_sequence)


def test_mfu_for_a_report(llama, h100):
    ev = Evaluator(llama.env, {**LLAMA_2_7B, "b": 8, "s": 2048})
    flops = float(ev(model_flops(llama)))
    assert same(model_flops(llama), llama.totals["matmul_flops_fwd"] + llama.totals["matmul_flops_bwd"])
    assert mfu_for(llama, h100, 2.0, ev, devices=1) == pytest.approx(flops / (2.0 * 989.4e12))
    with pytest.raises(SymcostError, match="no published fp32 peak"):
        mfu_for(llama, load_device("tpu-v5e"), 1.0, ev, dtype="fp32")
