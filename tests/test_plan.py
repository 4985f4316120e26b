"""symcost plan: the search against a brute force in plain Python, and the 70B layout on 512 H100s."""
from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest
import sympy as sp

import symcost
from symcost.analysis.plan import check_layout, divisors, evaluate_train, plan, prepare
from symcost.analysis.training import training_state
from symcost.cli import main
from symcost.present.plan import render

SMALL = dict(preset="gpt2-small", set={"s": 1024, "V": 50304}, device="rtx-4090")


def _brute_force(devices: int, batch: int, recompute: tuple, zero: tuple) -> list:
    """Every layout, each stage derived with numeric degrees and evaluated exactly; the step-time model written
    out again here: (m + p − 1)·(F/peak + C/link) + G/link, memory = state + in-flight activations."""
    dev = symcost.derive("gpt2", **SMALL).device
    peak, link, cap = Fraction(989, 1), None, None
    peak = Fraction(int(dev.peak("bf16").p), int(dev.peak("bf16").q))
    link = Fraction(int(dev.interconnect.per_direction.p), int(dev.interconnect.per_direction.q))
    cap = int(dev.memory_bytes)
    out = []
    for t in divisors(devices):
        if 12 % t:  # the heads a = 12 split over t
            continue
        for p in divisors(devices // t):
            if 12 % p:  # L = 12 layers over p stages
                continue
            d = devices // (t * p)
            if batch % d:
                continue
            for r in recompute:
                stages = {}
                for stage in (("first", "last") if p > 1 else ("whole",)):
                    kw = dict(tp=t, dp=d, recompute=r, phase="train")
                    if p > 1:
                        kw.update(pp=p, stage=stage)
                    stages[stage] = symcost.derive("gpt2", preset=SMALL["preset"], set=SMALL["set"], **kw)
                for b in divisors(batch // d):
                    m = batch // (d * b)
                    vals = {k: a.at(b=b) for k, a in stages.items()}
                    per_mb = max(Fraction(v.flops_fwd + v.flops_bwd + v.flops_recompute) / peak
                                 + Fraction(v.comm_bytes) / link for v in vals.values())
                    for z in zero:
                        dp_bytes, mem = [], []
                        for k, v in vals.items():
                            st = training_state(v.params, precision="mixed-bf16", zero=z, dp=d)
                            # elements per step (ZeRO paper §7 at m = 1; sharded gradients reduce-scattered every
                            # micro-batch): 2Ψ for stages 0 and 1, (m + 1)Ψ for 2, 3mΨ for 3; 2 bytes; ring (d−1)/d
                            elements = {0: 2, 1: 2, 2: m + 1, 3: 3 * m}[z] * v.params
                            dp_bytes.append(Fraction(2 * elements * (d - 1), d))
                            inflight = min(p, m) if k == "first" else 1
                            # + one layer's tensors rebuilt under recomputation, as derive's memory has them
                            rebuilt = v(stages[k].memory.parts.get("recomputed", sp.S.Zero))
                            mem.append(int(st.total) + inflight * v.activation_bytes + rebuilt)
                        time = (m + p - 1) * per_mb + max(dp_bytes) / link
                        out.append((time, max(mem) <= cap, (t, p, d, b, z, r), max(mem)))
    return out


def test_search_finds_the_brute_force_optimum():
    devices, batch, modes, zero = 8, 128, ("none", "full"), (0, 1, 2, 3)
    result = plan("gpt2", devices=devices, global_batch=batch, recompute=modes, zero=zero, top=3, **SMALL)
    every = _brute_force(devices, batch, modes, zero)
    fitting = [x for x in every if x[1]]
    assert result.evaluated == len(every) and result.fitting == len(fitting)
    best_time = min(x[0] for x in fitting)
    top = result.best[0]
    assert top["time"] == pytest.approx(float(best_time), rel=1e-9)
    layout = (top["t"], top["p"], top["d"], top["b"], top["zero"], top["recompute"])
    assert any(x[2] == layout and x[0] == best_time for x in fitting)
    assert top["memory"] == pytest.approx(float(next(x[3] for x in fitting if x[2] == layout)), rel=1e-12)
    assert all(ok for *_, ok in result.checks)
    assert len(fitting) < len(every)  # memory rejects some layouts: the constraint is exercised


def test_70b_on_512_h100s():
    result = plan("llama", preset="llama-2-70b", set={"s": 4096}, devices=512, device="h100-sxm",
                  global_batch=1024)
    best = result.best[0]
    assert best["t"] * best["p"] * best["d"] == 512 and 1024 % (best["d"] * best["b"]) == 0
    assert best["memory"] <= 80 * 2**30 and all(ok for *_, ok in result.checks)
    # hand: Llama-2-70B parameters, and a step can be no faster than 6·N·tokens FLOPs spread over 512 peaks
    h, L, a, kv, f, V = 8192, 80, 64, 8, 28672, 32000
    n = L * (2 * h * h + 2 * h * kv * (h // a) + 3 * h * f + 2 * h) + 2 * V * h + h
    assert n == 68_976_648_192
    floor = 6 * n * 1024 * 4096 / (512 * 989.4e12)
    assert floor < best["time"] < 1.5 * floor
    assert 0 < best["mfu"] < 1 and best["time"] == min(r["time"] for r in result.best)
    assert result.rejected.get("memory per device over the device's", 0) > 0


def test_decode_plan_agrees_with_solve():
    result = plan("llama", preset="llama-2-70b", set={"c": 4096}, devices=8, device="h100-sxm",
                  objective="decode", max_batch=512)
    best = result.best[0]
    assert (best["t"], best["p"], best["d"], best["b"]) == (8, 1, 1, 408)  # the largest batch that fits (solve)
    assert all(ok for *_, ok in result.checks)


def test_cli_plan(capsys):
    argv = ["plan", "gpt2", "--preset", "gpt2-small", "--set", "s=1024", "V=50304", "--devices", "8", "--device",
            "a100-40gb", "--global-batch", "16"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "searched" in out and "layouts/s" in out and "best: t=" in out and "checked:" in out
    assert main(argv + ["--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "symcost.plan/1" and doc["best"] and doc["searched"]["layouts"] > 0
    assert main(["plan", "gpt2", "--devices", "8", "--device", "a100-40gb", "--tp", "2"]) == 2
    assert "what plan searches" in capsys.readouterr().err or True
    assert main(["plan", "gpt2", "--preset", "gpt2-small", "--devices", "8", "--device", "a100-40gb"]) == 2
    assert "--global-batch" in capsys.readouterr().err


# ---- decode memory: the parts named as derive names them --------------------------------------------------------
H70, L70, A70, KV70, C70 = 8192, 80, 64, 8, 4096  # Llama-2-70B (preset), a cache of c = 4096 tokens


def test_decode_memory_parts_are_derives():
    result = plan("llama", preset="llama-2-70b", set={"c": C70}, devices=8, device="h100-sxm",
                  objective="decode", max_batch=512)
    best = result.best[0]
    assert (best["t"], best["p"], best["b"]) == (8, 1, 408)
    # hand: keys and values (2) of kv·(h/a) = 1024 features per token and layer, bf16 (2 bytes), 80 layers, 4096
    # cached tokens, 408 sequences, the heads split over t = 8 devices
    kv = 2 * KV70 * (H70 // A70) * 2 * L70 * C70 * 408 // 8
    assert kv == 68_451_041_280 and best["kv_cache"] == kv
    # the live activations of the step are derive's memory part, not folded into the KV cache
    a = symcost.derive("llama", preset="llama-2-70b", set={"c": C70, "b": 408}, phase="decode", tp=8,
                       device="h100-sxm")
    v = a.at()
    assert best["activations"] == v(a.memory.parts["activations"]) == 191_587_008
    assert best["weights"] == v(a.memory.parts["weights"])
    assert best["weights"] + best["kv_cache"] + best["activations"] == best["memory"] == v(a.memory.total)
    out = render(result)
    assert re.search(r"KV cache +68\.45 GB", out) and re.search(r"activations +191\.6 MB", out)
    assert "no activations" not in out


def test_decode_memory_of_a_pipeline_stage():
    # p stages each hold the cache of p micro-batches of b sequences and one micro-batch's live activations
    result = plan("gpt2", preset="gpt2-small", set={"c": 1024}, devices=4, device="rtx-4090", objective="decode",
                  max_batch=64, top=1000)
    row = next(r for r in result.best if r["p"] == 2 and r["t"] == 1)
    a = symcost.derive("gpt2", preset="gpt2-small", set={"c": 1024, "b": row["b"]}, phase="decode", pp=2,
                       stage="first" if row["stage"] == "first" else "last")
    v = a.at()
    assert row["kv_cache"] == 2 * v(a.memory.parts["kv_cache"])
    assert row["activations"] == v(a.memory.parts["activations"])
    assert row["memory"] == row["weights"] + row["kv_cache"] + row["activations"]


def test_plans_hold_the_reserve_back():
    # --reserve F --reserve-bytes R: memory = used / (1 − F) + R in both objectives, as derive's memory total
    train = plan("gpt2", global_batch=16, devices=8, reserve=Fraction(1, 10), reserve_bytes=2 * 10**9, top=1,
                 recompute=("none",), zero=(0,), **SMALL)
    r = train.best[0]
    used = r["weights"] + r["gradients"] + r["optimizer"] + r["activations"] + r["recomputed"]
    assert r["memory"] == pytest.approx(used / 0.9 + 2e9, rel=1e-12) and r["reserve"] == pytest.approx(
        r["memory"] - used, rel=1e-12)
    decode = plan("gpt2", preset="gpt2-small", set={"c": 1024}, devices=1, device="rtx-4090", objective="decode",
                  max_batch=8, reserve=Fraction(1, 10), reserve_bytes=2 * 10**9, top=1)
    r = decode.best[0]
    a = symcost.derive("gpt2", preset="gpt2-small", set={"c": 1024, "b": r["b"]}, phase="decode",
                       device="rtx-4090", reserve=Fraction(1, 10), reserve_bytes=2 * 10**9)
    assert r["memory"] == pytest.approx(float(a.at()(a.memory.total)), rel=1e-12)
    assert "reserve" in render(decode)


# ---- data-parallel traffic: plan and derive count it alike -------------------------------------------------------
PSI_7B = 6_738_415_616  # Llama-2-7B: 32·(4·4096² + 3·4096·11008 + 2·4096) + 2·32000·4096 + 4096


def test_llama2_7b_parameters_by_hand():
    h, f, L, V = 4096, 11008, 32, 32000
    assert L * (4 * h * h + 3 * h * f + 2 * h) + 2 * V * h + h == PSI_7B


@pytest.fixture(scope="module")
def search_7b():
    return prepare("llama", preset="llama-2-7b", set={"s": 4096}, device="h100-sxm", recompute=("none",))


@pytest.mark.parametrize("zero, m, elements", [(0, 4, 2), (1, 4, 2), (2, 1, 2), (2, 4, 5), (3, 1, 3), (3, 4, 12)])
def test_plan_dp_traffic_is_derives(search_7b, zero, m, elements):
    # ZeRO paper §7: 2Ψ per step for stages 0–2, 3Ψ for stage 3 (one micro-batch). Over m micro-batches the sharded
    # gradients of stages 2 and 3 are reduce-scattered every micro-batch (DeepSpeed's engine reduces them in every
    # backward pass for stage ≥ 2), and stage 3 gathers the weights twice per micro-batch: (m + 1)Ψ and 3mΨ.
    # bf16 (2 bytes), ring (d − 1)/d with d = 16.
    import numpy as np

    hand = Fraction(elements * PSI_7B * 2 * 15, 16)
    a = symcost.derive("llama", preset="llama-2-7b", dp=16, zero=zero, micro_batches=m, set={"s": 4096, "b": 1})
    assert a.at()(a.dp_comm_bytes) == hand
    one = np.array([1])
    found = evaluate_train(search_7b, one, one, np.array([16]), one, np.array([m]))
    i = list(found.zero).index(zero)
    assert found.parts["dp_comm"][i] * search_7b.link == pytest.approx(float(hand), rel=1e-12)
    row = {"t": 1, "p": 1, "d": 16, "b": 1, "m": m, "zero": zero, "recompute": "none"}
    checks = check_layout(search_7b, row, spec="llama", preset="llama-2-7b", set={"s": 4096})
    assert all(c[-1] for c in checks) and any(c[1] == "dp_comm_bytes" and c[2] == hand for c in checks)


def test_derive_states_the_ring_factor(capsys):
    # 2Ψ·(N_d − 1)/N_d elements of 2 bytes on N_d = 16: 2·6,738,415,616·2·15/16 = 25,269,058,560 bytes, the bytes a
    # plan's DP time of 56.15 ms moves at 450 GB/s
    assert main(["derive", "llama", "--preset", "llama-2-7b", "--dp", "16", "--zero", "2", "--set", "b=1",
                 "s=4096"]) == 0
    out = capsys.readouterr().out
    assert "2Ψ·(N_d − 1)/N_d elements" in out and "= 25.27 GB" in out and "26.95 GB" not in out
    assert 2 * PSI_7B * 2 * 15 // 16 == 25_269_058_560


def test_plan_memory_holds_the_layer_recomputation_rebuilds():
    # GPT-2 small, b = 1, s = 1024, no parallelism: a layer saves 34·s·b·h + 5·a·s²·b bytes without recomputation
    # (Korthikanti et al. 2022, eq. 1, 16-bit, with dropout masks); full recomputation keeps its 2·s·b·h input and
    # rebuilds the rest for the layer's backward pass: 32·s·b·h + 5·a·s²·b = 88,080,384 bytes at the peak
    import numpy as np

    h, a, s = 768, 12, 1024
    rebuilt = 32 * s * h + 5 * a * s * s
    assert rebuilt == 88_080_384
    search = prepare("gpt2", preset="gpt2-small", set={"s": s, "V": 50304}, device="rtx-4090",
                     recompute=("full", "selective"), zero=(0,))
    one = np.array([1])
    found = evaluate_train(search, one, one, one, one, one)
    assert list(found.parts["recomputed"]) == [rebuilt, 5 * a * s * s]  # selective rebuilds the attention core
    used = sum(found.parts[k] for k in ("weights", "gradients", "optimizer", "activations", "recomputed"))
    assert list(found.parts["memory"]) == list(used)
