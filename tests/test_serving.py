"""Serving end to end: the exact sum of per-step bounds against brute-force loops over c with Fractions, and
Llama 2 7B with 4-bit weights on an RTX 4090 against a hand computation."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import sympy as sp
from hypothesis import example, given, settings, strategies as st

import symcost
from symcost.analysis.serving import sum_of_max
from symcost.cli import main
from symcost.errors import SymcostError

from helpers import sym

C = sym("c")
small = st.fractions(min_value=-50, max_value=50, max_denominator=7)


def brute(terms: dict, lo: int, hi: int) -> Fraction:
    total = Fraction(0)
    for c in range(lo, hi + 1):
        vals = [e.xreplace({C: sp.Integer(c)}) for e in terms.values()]
        total += max(Fraction(int(x.p), int(x.q)) for x in vals)
    return total


def rational(x: Fraction) -> sp.Rational:
    return sp.Rational(x.numerator, x.denominator)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(small, small), min_size=1, max_size=3), st.integers(-20, 40), st.integers(0, 60),
       st.one_of(st.none(), st.integers(-10, 60)))
@example([(Fraction(0), Fraction(1))], 0, 0, None)  # the term c alone
@example([(Fraction(3), Fraction(-1)), (Fraction(0), Fraction(1))], 0, 6, 2)  # a crossing at c = 1.5, a window
def test_sum_of_max_equals_the_loop(lines, lo, width, window):
    terms = {}
    for i, (alpha, beta) in enumerate(lines):
        c = C if window is None or i else sp.Min(C, window)  # the first term through a sliding window
        terms[f"t{i}"] = rational(alpha) + rational(beta) * c
    total, segments = sum_of_max(terms, C, lo, lo + width)
    assert total == brute(terms, lo, lo + width)
    covered = [c for a, b, _ in segments for c in range(a, b + 1)]
    assert covered == list(range(lo, lo + width + 1))


def test_an_empty_range_sums_to_zero():
    assert sum_of_max({"x": C}, C, 5, 4) == (0, [])


def decode_loop(analysis, lo: int, hi: int, **dims) -> Fraction:
    """Σ over c of the decode phase's own per-step bound, each step derived and evaluated on its own."""
    req = analysis.request
    dec = symcost.derive(req.spec or "llama", preset=req.preset, phase="decode", device=req.device,
                         weights=req.weights, group=req.group, kv=req.kv, tp=req.tp)
    total = Fraction(0)
    for c in range(lo, hi + 1):
        total += dec.summary.values(dec.at(c=c, **dims).evaluator)["time"]
    return total


def test_serving_sum_matches_a_step_by_step_loop_across_a_crossover():
    # Llama 2 7B at batch 512 on an H100: compute-bound at short caches, memory-bound as the cache grows
    probe = symcost.derive("llama", preset="llama-2-7b", device="h100-sxm", generate=2, set={"b": 512, "s": 100})
    star = probe.at()(probe.serving.crossovers[("compute", "memory")])
    s = int(star) - 8
    a = symcost.derive("llama", preset="llama-2-7b", device="h100-sxm", generate=17, set={"b": 512, "s": s})
    v = a.serving.values(a.at().evaluator)
    assert [seg[2] for seg in v["segments"]] == ["compute", "memory"]
    assert v["segments"][0][1] == int(star)  # the last c still compute-bound is the crossover's floor
    assert v["decode_time"] == decode_loop(a, s + 1, s + 16, b=512)
    assert v["tpot"] == v["decode_time"] / 16 and v["latency"] == v["ttft"] + v["decode_time"]
    assert v["ttft"] == a.summary.values(a.at().evaluator)["time"]
    assert v["tokens_per_s"] == Fraction(512 * 17) / v["latency"]


def test_a_sliding_window_splits_the_sum_where_the_window_fills():
    a = symcost.derive("mistral", preset="mistral-7b-v0.1", device="a100-80gb", generate=41,
                       set={"b": 8, "s": 4080})
    v = a.serving.values(a.at().evaluator)
    assert a.serving.work_sums is None  # min(c, w) is not linear: no single closed form per regime
    assert v["decode_time"] == decode_loop(a, 4081, 4120, b=8)
    # the window's w − 1 = 4095 entries: transformers' sliding-window cache keeps the last w − 1
    assert v["kv_end"] == a.at()(a.serving.kv_end) == 2 * 32 * 8 * 4095 * (8 * 128) * 2


# Llama 2 7B (preset), weights int4 with a bf16 scale per 128 (the linear layers), on an RTX 4090
H, F, L, V = 4096, 11008, 32, 32000
STREAMED = Fraction(L * (4 * H * H + 3 * H * F)) * Fraction(33, 64) + 2 * (V * H + (2 * L + 1) * H)  # not the table
KV_PER_TOKEN = 2 * L * H * 2  # keys and values of every layer in bf16
BANDWIDTH = 1008 * 10**9


def test_time_per_output_token_of_llama2_7b_int4_on_an_rtx_4090(capsys):
    args = ["derive", "llama", "--preset", "llama-2-7b", "--device", "rtx-4090", "--weights", "int4", "--group",
            "128", "--generate", "256", "--set", "b=1", "s=512"]
    assert main([*args, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)["serving"]
    # 255 decode steps at c = 513 … 767, each reading the weights once and the cache: memory-bound, so the mean
    # step is the bytes at the mean cache length 640 over the bandwidth
    tpot = (STREAMED + KV_PER_TOKEN * 640) / BANDWIDTH
    assert out["decode_steps"] == 255 and out["cache_range"] == [513, 767]
    assert out["regimes"] == [{"from": 513, "to": 767, "bound": "memory"}]
    assert out["tpot_s"] == float(tpot)
    a = symcost.derive("llama", preset="llama-2-7b", device="rtx-4090", weights="int4", group=128, generate=256,
                       set={"b": 1, "s": 512})
    assert a.serving.values(a.at().evaluator)["tpot"] == tpot  # exactly
    # the compute term stays far below: at most 2 FLOPs per parameter plus the attention's, at 165.2 TFLOP/s
    flops_bound = 2 * 6_738_415_616 + 4 * H * L * 767 + 7 * 32 * L * 767 + 10**7
    assert Fraction(flops_bound, 165_200 * 10**9) < (STREAMED + KV_PER_TOKEN * 513) / BANDWIDTH
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"time per output token ≥ {float(tpot * 1000):.4g} ms" in text and "memory-bound throughout" in text


def test_efficiencies_scale_the_bounds():
    kw = dict(preset="llama-2-7b", device="rtx-4090", generate=64, set={"b": 1, "s": 128})
    full = symcost.derive("llama", **kw)
    half = symcost.derive("llama", bandwidth_efficiency=0.5, flops_efficiency=0.8, **kw)
    vf, vh = (x.serving.values(x.at().evaluator) for x in (full, half))
    assert vh["tpot"] == 2 * vf["tpot"]  # memory-bound decode at half the bandwidth
    assert half.summary.peak == full.summary.peak * sp.Rational(4, 5)


def test_one_token_has_no_decode_steps():
    a = symcost.derive("llama", preset="llama-2-7b", device="h100-sxm", generate=1, set={"b": 1, "s": 64})
    v = a.serving.values(a.at().evaluator)
    assert v["tpot"] is None and v["decode_time"] == 0 and v["latency"] == v["ttft"]


def test_closed_form_sums_are_the_step_at_the_mean_cache_length():
    a = symcost.derive("llama", device="h100-sxm", generate=100)
    sv, s = a.serving, a.symbol("s")
    bytes_step, _ = sv.work["memory"]
    assert sp.expand(sv.work_sums["memory"] - 99 * bytes_step.xreplace({sv.cache: s + 50})) == 0
    brute = sp.Add(*(bytes_step.xreplace({sv.cache: s + k}) for k in range(1, 100)))
    assert sp.expand(sv.work_sums["memory"] - brute) == 0


@pytest.mark.parametrize("kw, words", [(dict(generate=8), "add --device"),
                                       (dict(generate=8, phase="decode", device="h100-sxm"), "--phase prefill"),
                                       (dict(generate=0, device="h100-sxm"), "positive integer"),
                                       (dict(flops_efficiency=0.5), "add --device"),
                                       (dict(bandwidth_efficiency=1.5, device="h100-sxm"), "(0, 1]")])
def test_serving_settings_errors(kw, words):
    with pytest.raises(SymcostError) as e:
        symcost.derive("llama", **kw)
    assert words in e.value.message


def test_generate_implies_prefill_and_serving_is_none_otherwise():
    a = symcost.derive("llama", device="h100-sxm", generate=4)
    assert a.request.phase == "prefill" and a.serving is not None
    assert symcost.derive("llama", phase="prefill", device="h100-sxm").serving is None
