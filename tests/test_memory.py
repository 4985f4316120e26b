"""Memory per device: the parts of each phase, the reserve, and the verdict against a device — each against a
hand count (the ZeRO paper's example, Llama 2 70B's KV cache on H100s, a layer's tensors listed one by one)."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import sympy as sp

import symcost
from symcost.analysis.memory import Memory
from symcost.cli import main
from symcost.errors import SymcostError
from symcost.settings import parse_size

from helpers import same, sym

TOY = """model toy
dim b "batch"
dim n "parameters"
default dtype fp16
input x: [b, n]
param w: [n]
y = mul(x, w)
"""


@pytest.fixture()
def toy(tmp_path):
    path = tmp_path / "toy.arch"
    path.write_text(TOY)
    return str(path)


@pytest.mark.parametrize("zero, gb", [(0, Fraction(120)), (1, Fraction(31_406_250_000, 10**9)),
                                      (2, Fraction(16_640_625_000, 10**9)), (3, Fraction(1_875_000_000, 10**9))])
def test_zero_paper_example_model_states(toy, zero, gb):
    # Rajbhandari et al. 2020, figure 1: Ψ = 7.5B, N_d = 64, mixed-precision Adam: 2Ψ + 2Ψ + 12Ψ, sharded by stage
    a = symcost.derive(toy, phase="train", zero=zero, dp=64, precision="mixed-fp16", optimizer="adam",
                       set={"b": 1, "n": 7_500_000_000})
    m, v = a.memory, a.at()
    assert list(m.parts) == ["weights", "gradients", "optimizer", "activations"]
    states = sum(v(m.parts[k]) for k in ("weights", "gradients", "optimizer"))
    assert states == gb * 10**9
    assert v(m.parts["activations"]) == 7_500_000_000 * 2  # mul keeps x (fp16) for its backward; w is a weight
    assert v(m.total) == states + 15 * 10**9 and m.capacity is None and m.headroom is None and m.fits() is None


# Llama 2 70B (preset): h 8192, f 28672, L 80, a 64, kv 8 (d 128), V 32000; TP = 8 on an H100 SXM (80 GiB)
H, F, L, KV_D, V = 8192, 28672, 80, 8 * 128, 32000


def test_llama2_70b_decode_at_batch_600_does_not_fit_eight_h100s(capsys):
    args = ["derive", "llama", "--preset", "llama-2-70b", "--phase", "decode", "--device", "h100-sxm", "--tp", "8",
            "--set", "b=600", "c=4096"]
    a = symcost.derive("llama", preset="llama-2-70b", phase="decode", device="h100-sxm", tp=8,
                       set={"b": 600, "c": 4096})
    m, v = a.memory, a.at()
    kv = 2 * L * 600 * 4096 * KV_D * 2 // 8  # keys and values, every layer, bf16, heads split 8 ways
    matrices = L * (2 * H * H + 2 * H * KV_D + 3 * H * F) + 2 * V * H  # all split 8 ways (vocabulary too)
    norms = (2 * L + 1) * H  # replicated on every device
    assert v(m.parts["kv_cache"]) == kv == 100_663_296_000
    assert v(m.parts["weights"]) == 2 * (matrices // 8 + norms)
    assert v(m.total) > 80 * 2**30 and m.fits(v.evaluator) is False
    assert v(m.headroom) == 80 * 2**30 - v(m.total)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "80 GiB on h100-sxm" in out
    assert main([*args, "--format", "json"]) == 0
    mem = json.loads(capsys.readouterr().out)["memory"]
    assert mem["fits"] is False and mem["capacity"] == 80 * 2**30
    assert mem["parts"]["kv_cache"]["value"] == kv and mem["headroom"]["value"] < 0
    assert main([*args[:-2], "b=16", "c=4096", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["memory"]["fits"] is True


def test_prefill_live_activations_listed_tensor_by_tensor():
    # a Llama layer writes, in bf16: x (its input), n1, out, r1, n2, down, r2 ([b,s,h] each); q, qr, ctx ([b,s,a·d]);
    # k, v, kr ([b,s,kv·d]); scores, scaled, masked, probs ([b,a,s,s]); gate, up, act, prod ([b,s,f]).
    # Outside the layers: ids (int64 [b,s]), the embedding output, the layers' output and the final norm
    # ([b,s,h]), the logits ([b,s,V]).
    a = symcost.derive("llama", phase="prefill")
    b, s, h, kv, f, V_, a_ = (sym(n) for n in ("b", "s", "h", "kv", "f", "V", "a"))
    d = h / a_
    layer = 2 * (7 * b * s * h + 3 * b * s * a_ * d + 3 * b * s * kv * d + 4 * b * a_ * s * s + 4 * b * s * f)
    outside = 8 * b * s + 2 * (3 * b * s * h + b * s * V_)
    assert same(a.memory.parts["activations"], layer + outside)
    flash = symcost.derive("llama", phase="prefill", flash_attention=True)  # the s×s tensors never exist
    assert same(flash.memory.parts["activations"], layer + outside - 8 * b * a_ * s * s)


def test_decode_parts_and_tensor_parallel_activations():
    a = symcost.derive("llama", phase="decode", tp=2)
    b, c, a_ = sym("b"), sym("c"), sym("a")
    assert list(a.memory.parts) == ["weights", "activations", "kv_cache"]
    assert same(a.memory.parts["kv_cache"], a.totals["kv_cache_bytes"])
    # the four [b, a, 1, c] score tensors in bf16, split over 2 devices by heads
    scores = a.memory.parts["activations"].coeff(a_ * b * c)
    assert scores == 4


def test_pipeline_stages_hold_their_micro_batches_in_flight():
    base = dict(phase="train", pp=4, set={"L": 8})
    first = symcost.derive("gpt2", **base)
    last = symcost.derive("gpt2", stage="last", **base)
    middle = symcost.derive("gpt2", stage="middle", **base)
    assert same(first.memory.parts["activations"], 4 * first.totals["activation_bytes"])  # 1F1B: p in flight
    assert same(middle.memory.parts["activations"], 2 * middle.totals["activation_bytes"])
    assert same(last.memory.parts["activations"], last.totals["activation_bytes"])


@pytest.mark.parametrize("phase", ["train", "prefill", "decode"])
def test_activations_convention_says_what_the_phase_counts(phase):
    """JSON conventions.activations and the text header name what the numbers count: training saves tensors for
    backward; an inference step saves none (activation_bytes is 0) and memory bounds its live tensors."""
    dims = {"b": 1, "c": 32} if phase == "decode" else {"b": 1, "s": 16}
    a = symcost.derive("llama", preset="llama-2-7b", phase=phase, set=dims)
    doc = json.loads(symcost.render(a, "json"))
    said = doc["conventions"]["activations"]
    header = symcost.render(a).splitlines()[1]
    saved = a.at()(a.totals["activation_bytes"])
    live = a.at()(a.memory.parts["activations"])
    if phase == "train":
        assert saved > 0 and live == saved  # no pipeline: memory holds the saved tensors of one batch
        assert "saved for backward" in said and "none" not in said
        assert "activations: tensors saved for backward, each once" in header
    else:
        assert saved == 0 and live > 0
        assert said.startswith("none saved for backward (activation_bytes is 0)")
        assert "memory.parts.activations" in said and "one step holds at once" in said
        assert "activations: live tensors of one step, bounded above" in header
        assert any("one step holds at once" in n for n in a.memory.notes)


def test_training_state_defaults_to_plain_data_parallelism():
    a = symcost.derive("gpt2", phase="train")
    m = a.memory  # mixed-bf16 AdamW: 2 + 2 + 12 bytes per parameter
    assert same(m.parts["weights"] + m.parts["gradients"] + m.parts["optimizer"], 16 * a.totals["params"])


def test_reserve_total_and_headroom():
    used = {"weights": sp.Integer(90 * 10**9)}
    m = Memory(used, sp.Rational(1, 10), sp.Integer(2 * 10**9), sp.Integer(80 * 10**9))
    assert m.used == 90 * 10**9 and m.total == 102 * 10**9 and m.headroom == -22 * 10**9 and m.fits() is False
    a = symcost.derive("llama", preset="llama-2-7b", phase="decode", device="rtx-4090", reserve=0.1,
                       reserve_bytes="2GB", set={"b": 1, "c": 1024})
    v = a.at()
    assert v(a.memory.total) == Fraction(v(a.memory.used)) / Fraction(9, 10) + 2 * 10**9
    assert a.memory.fits(v.evaluator) is True


def test_reserve_in_the_header_and_json(capsys):
    args = ["derive", "llama", "--preset", "llama-2-7b", "--phase", "decode", "--reserve", "0.1",
            "--reserve-bytes", "1.5GiB", "--set", "b=1", "c=16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "memory reserve 10% for fragmentation + 1.611 GB for the framework" in out.splitlines()[1]
    assert "used / 0.9 + 1.611 GB" in out
    assert main([*args, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["conventions"]["memory_reserve"] == {"fraction": 0.1, "bytes": 3 * 2**29}
    assert doc["memory"]["reserve_bytes"] == 3 * 2**29 and doc["memory"]["fits"] is None


@pytest.mark.parametrize("text, size", [("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5 GiB", 3 * 2**29),
                                        ("7", 7), ("100kB", 10**5), ("3B", 3), ("1TiB", 2**40)])
def test_sizes_parse_exactly(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text, words", [("2KB", "kB is 10^3 bytes"), ("2 parsecs", "unknown unit"),
                                         ("0.5B", "whole number"), ("-1GB", "not a size"), ("GB", "not a size")])
def test_bad_sizes_are_clear_errors(text, words):
    with pytest.raises(SymcostError) as e:
        parse_size(text, "--reserve-bytes")
    assert words in e.value.message + (e.value.hint or "")


@pytest.mark.parametrize("flags, words", [(["--reserve", "1"], "[0, 1)"), (["--reserve", "10"], "percentage"),
                                          (["--reserve-bytes", "2XB"], "unknown unit")])
def test_bad_reserve_settings_exit_2(capsys, flags, words):
    assert main(["derive", "llama", "--phase", "decode", *flags]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("recompute, rebuilt", [("full", 32 * 1024 * 768 + 5 * 12 * 1024**2),
                                                ("selective", 5 * 12 * 1024**2), ("none", None)])
def test_recomputation_rebuilds_one_layer_at_the_peak(recompute, rebuilt):
    # GPT-2 small (h 768, a 12), b = 1, s = 1024, bf16. Korthikanti et al. 2022 (eq. 1): a layer saves
    # s·b·h·(34 + 5·a·s/h) bytes; full recomputation keeps the 2·s·b·h input of each of the L layers and rebuilds
    # the other 32·s·b·h + 5·a·s²·b (88,080,384 bytes) for one layer's backward pass; selective recomputation
    # rebuilds the attention core, 5·a·s²·b (62,914,560). The paper's totals (2sbhL, 34sbhL) leave that layer out;
    # here it is its own part.
    a = symcost.derive("gpt2", preset="gpt2-small", phase="train", recompute=recompute, set={"b": 1, "s": 1024})
    m, v = a.memory, a.at()
    if rebuilt is None:
        assert "recomputed" not in m.parts
        return
    assert v(m.parts["recomputed"]) == rebuilt
    assert v(m.total) == sum(v(x) for x in m.parts.values())
    assert any(n.startswith("recomputed:") for n in m.notes)
    doc = json.loads(symcost.present.render(a, "json", values={"b": 1, "s": 1024}))
    assert doc["memory"]["parts"]["recomputed"]["value"] == rebuilt
    assert any(n.startswith("recomputed:") for n in doc["memory"]["notes"])


def test_recomputed_layer_is_the_largest_of_the_repeated_blocks():
    # Whisper: the encoder and decoder layers repeat separately; backward passes one layer at a time, so the peak
    # holds the larger of the two rebuilt sets. fp32 (4 bytes), b = 1, S = 1500, t = 448, h 384, a 6, f 1536.
    b, S, t, h, a_, f = 1, 1500, 448, 384, 6, 1536
    # an encoder layer rebuilds, beside its kept input: the first norm's output, q, k, v, the attention context,
    # the residual sum and the second norm's output (7 [S, h]), the softmax probabilities [a, S, S] and the MLP's
    # pre- and post-GELU [S, f] (2)
    enc = 4 * b * (7 * S * h + a_ * S * S + 2 * S * f)
    # a decoder layer: self-attention probabilities [a, t, t], cross-attention probabilities [a, t, S], the cross
    # keys and values [S, h] (2), 11 [t, h] tensors and 2 [t, f]: far less at t = 448
    dec = 4 * b * (a_ * t * t + a_ * t * S + 2 * S * h + 11 * t * h + 2 * t * f)
    an = symcost.derive("whisper", preset="whisper-tiny", phase="train", recompute="full", set={"b": 1, "t": 448})
    assert an.at()(an.memory.parts["recomputed"]) == max(enc, dec) == enc
    B, S_, T, H, A, AD, F_, FD = (sym(n) for n in ("b", "S", "t", "h", "a", "ad", "f", "fd"))
    closed = an.memory.parts["recomputed"]
    assert isinstance(closed, sp.Max)
    forms = {sp.expand(x) for x in closed.args}
    assert forms == {sp.expand(4 * B * (7 * S_ * H + A * S_ * S_ + 2 * S_ * F_)),
                     sp.expand(4 * B * (AD * T * T + AD * T * S_ + 2 * S_ * H + 11 * T * H + 2 * T * FD))}
