"""The zoo beyond the first decoders: GPT-NeoX/Pythia, Gemma-2, Qwen2-MoE, Phi-3, Whisper, ViT, ResNet, Mamba.

For each family: the published parameter counts of its presets derived through its mapping; the tiny models of
tests/data/reference/zoo.json (measured with transformers 5.23 by FlopCounterMode, independent of this package)
derived from the spec at the same configs and compared exactly; and `symcost validate` against transformers
itself (torch extra; skipped with a visible reason without it, a failure under CI=true).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from symcost.analysis import validate as V
from symcost.analysis.evaluate import Evaluator
from symcost.analysis.hf import preset_config, resolve
from symcost.cost.accounting import derive
from symcost.errors import SymcostError
from symcost.lang.parse import load
from symcost.model.builder import build

from helpers import require_torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REFERENCE = json.loads((Path(__file__).resolve().parent / "data" / "reference" / "zoo.json").read_text())["families"]

# Published parameter counts (tests/data/reference/formulas.md; transformers' count of the published configs)
PUBLISHED = {
    "pythia-1.4b": 1_414_647_808,
    "pythia-160m": 162_322_944,
    "phi-3-mini-4k": 3_821_079_552,
    "qwen1.5-moe-a2.7b": 14_315_784_192,
    "gemma-2-2b": 2_614_341_888,
    "gemma-2-9b": 9_241_705_984,
    "gemma-2-27b": 27_227_128_320,
    "vit-b-16": 86_389_248,
    "resnet-50": 25_557_032,
}


def derived(config: dict, source: str, b: int, lengths: dict, phase: str = "train", dtype: str = "fp32") -> dict:
    """Every total of the spec a config maps to, evaluated at batch b and the given sequence lengths."""
    r = resolve(config, source)
    graph = build(load(r.spec), options=r.options, dtype=dtype, phase=phase, released=tuple(r.values))
    report = derive(graph, "fma")
    lengths = {k: v for k, v in lengths.items() if k in graph.env.dims}
    ev = Evaluator(graph.env, {**r.values, "b": b, **lengths})
    return {m: ev(e) for m, e in report.totals.items()}


MODEL_TYPE = {"gpt_neox": "gpt_neox", "gemma2": "gemma2", "qwen2_moe": "qwen2_moe", "phi3": "phi3",
              "mistral": "mistral", "whisper": "whisper", "vit": "vit", "resnet": "resnet", "mamba": "mamba"}


def tiny_reference(family: str) -> dict:
    return {"model_type": MODEL_TYPE[family], **REFERENCE[family]["tiny"]["tiny_config"]}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_params(name):
    config, source = preset_config(name)
    assert derived(config, source, 1, {"s": 1, "H": 224})["params"] == PUBLISHED[name]


def test_published_counts_match_the_reference():
    for family, data in REFERENCE.items():
        for hub, entry in data["published"].items():
            short = hub.split("/")[-1].lower()
            if short in PUBLISHED and entry["params"] is not None:
                assert PUBLISHED[short] == entry["params"], hub


# ----------------------------------------------------------------------------- GPT-NeoX / Pythia


def test_gpt_neox_tiny_flops_match_the_measured_reference():
    config = tiny_reference("gpt_neox")
    rows = REFERENCE["gpt_neox"]["flops"]
    assert derived(config, "tiny", 1, {"s": 1})["params"] == REFERENCE["gpt_neox"]["tiny"]["tiny_params"]
    for row in rows:
        got = derived(config, "tiny", row["b"], {"s": row["s"]})
        total = got["matmul_flops_fwd"] + (got["matmul_flops_bwd"] if row["mode"] == "fwd+bwd" else 0)
        assert total == row["total"], row


def test_gpt_neox_sequential_residual_same_costs_as_parallel():
    config = tiny_reference("gpt_neox")
    par = derived(config, "p", 2, {"s": 32})
    seq = derived({**config, "use_parallel_residual": False}, "s", 2, {"s": 32})
    assert par["params"] == seq["params"] and par["matmul_flops_fwd"] == seq["matmul_flops_fwd"] == 14_680_064


def test_gpt_neox_rotary_fraction_from_either_spelling():
    config, source = preset_config("pythia-1.4b")
    assert resolve(config, source).values["r"] == 32  # floor(128 · 0.25)
    saved = {k: v for k, v in config.items() if k != "rotary_pct"}
    saved["rope_parameters"] = {"rope_theta": 10000, "partial_rotary_factor": 0.5, "rope_type": "default"}
    assert resolve(saved, "saved by transformers 5").values["r"] == 64


# ----------------------------------------------------------------------------- validate against transformers


@pytest.fixture(scope="module")
def hf():
    return require_torch()


def _validate(config: dict, source: str, shapes, parts=V.PARTS):
    result = V.validate(config, source, None, shapes, parts, progress=None)
    exact = [c for c in result.checks if c.exact]
    assert result.ok, [c.as_json() for c in exact if not c.ok]
    return result


@pytest.mark.parametrize("name, shapes", [("pythia-1.4b", [(2, 16), (1, 24)]), ("phi-3-mini-4k", [(2, 16), (1, 24)]),
                                          ("qwen1.5-moe-a2.7b", [(2, 16), (1, 24)]), ("gemma-2-2b", [(2, 16), (1, 24)]),
                                          ("vit-b-16", None), ("resnet-50", None)])
def test_validate_presets(hf, name, shapes):
    config, source = preset_config(name)
    result = _validate(config, source, shapes)
    assert result.checks[0].measured == PUBLISHED[name]
    expected = {"params", "tiny_params", "matmul_flops_fwd", "matmul_flops_fwd_bwd"}
    assert {c.quantity for c in result.checks} >= expected | ({"kv_cache_bytes"} if shapes else set())


# ----------------------------------------------------------------------------- Phi-3 and sliding-window caches


def test_phi3_tiny_flops_match_the_measured_reference():
    config = tiny_reference("phi3")
    assert derived(config, "tiny", 1, {"s": 1})["params"] == REFERENCE["phi3"]["tiny"]["tiny_params"]
    for row in REFERENCE["phi3"]["flops"]:
        got = derived(config, "tiny", row["b"], {"s": row["s"]})
        total = got["matmul_flops_fwd"] + (got["matmul_flops_bwd"] if row["mode"] == "fwd+bwd" else 0)
        assert total == row["total"], row


@pytest.mark.parametrize("family, window", [("phi3", 8), ("mistral", 8), ("gemma2", 8)])
def test_sliding_window_cache_keeps_w_minus_1_as_measured(family, window):
    """transformers' DynamicSlidingWindowLayer keeps the last w − 1 keys and values after a prefill (measured:
    a window of 8 holds 5 after 5 tokens and 7 after 7, 8, 9 or 20); without a window, all s."""
    base = tiny_reference(family)
    rows = REFERENCE[family]["kv_cache"]
    assert rows
    for row in rows:
        config = {**base, "sliding_window": None if "no" in row["variant"] else window}
        got = derived(config, family, row["b"], {"s": row["prefill"]}, phase="prefill")
        assert got["kv_cache_bytes"] == row["bytes"], row


def test_phi3_mini_caches_2046_tokens_per_layer():
    config, source = preset_config("phi-3-mini-4k")
    got = derived(config, source, 1, {"s": 4096}, phase="prefill", dtype="bf16")
    assert got["kv_cache_bytes"] == 32 * 2 * 32 * 96 * 2046 * 2  # layers · (K, V) · kv heads · d · tokens · bytes


# ----------------------------------------------------------------------------- Qwen2-MoE


def test_qwen_moe_active_parameters_are_the_published_ones():
    config, source = preset_config("qwen1.5-moe-a2.7b")
    got = derived(config, source, 1, {"s": 1})
    assert got["params"] == 14_315_784_192
    assert got["active_params"] == 2_689_173_504  # all but the 60 − 4 experts a token skips
    assert got["params"] - got["active_params"] == 24 * (60 - 4) * 3 * 1408 * 2048


def test_qwen_moe_per_token_flops_follow_the_measured_composition():
    """Per MoE layer and token (tests/data/reference/zoo.json, measured on the eager experts): router 2·h·E,
    shared expert 3·2·h·fs, its gate 2·h, routed k·3·2·h·fm — whatever the routing."""
    config = {**tiny_reference("qwen2_moe"), "mlp_only_layers": []}
    b, s = 2, 16
    got = derived(config, "tiny", b, {"s": s})
    h, E, fs, fm, k, L, V, a = 64, 8, 96, 32, 2, 3, 128, 4
    T = b * s
    attention = 4 * 2 * T * h * h + 2 * 2 * b * a * s * s * (h // a)
    moe = 2 * T * h * E + 3 * 2 * T * h * fs + 2 * T * h + k * 3 * 2 * T * h * fm
    assert got["matmul_flops_fwd"] == L * (attention + moe) + 2 * T * h * V


def test_qwen_moe_dense_layers_are_rejected_not_miscounted():
    config = tiny_reference("qwen2_moe")  # the reference's tiny model makes layer 1 dense
    with pytest.raises(SymcostError, match=r"mlp_only_layers=\[1\] is not supported: .*no dense layers"):
        resolve(config, "tiny")
    with pytest.raises(SymcostError, match=r"decoder_sparse_step=2"):
        resolve({**config, "mlp_only_layers": [], "decoder_sparse_step": 2}, "tiny")


# ----------------------------------------------------------------------------- Gemma 2


def test_gemma2_tiny_flops_match_the_measured_reference_within_the_window():
    """Eager attention masks the window over the full s×s product; the spec counts the band a windowed kernel
    computes. The two agree for s ≤ w (the reference's s = 6 with w = 8) and differ by exactly the masked part
    beyond it, on the local layers only."""
    config = tiny_reference("gemma2")
    assert derived(config, "tiny", 1, {"s": 1})["params"] == REFERENCE["gemma2"]["tiny"]["tiny_params"]
    a, d, w, local = 4, 32, 8, 2
    for row in REFERENCE["gemma2"]["flops"]:
        b, s = row["b"], row["s"]
        got = derived(config, "tiny", b, {"s": s})
        total = got["matmul_flops_fwd"] + (got["matmul_flops_bwd"] if row["mode"] == "fwd+bwd" else 0)
        masked = local * 2 * 2 * b * a * s * (s - min(s, w)) * d * (3 if row["mode"] == "fwd+bwd" else 1)
        assert total + masked == row["total"], row


def test_gemma2_layers_come_in_local_global_pairs():
    config, source = preset_config("gemma-2-2b")
    with pytest.raises(SymcostError, match="num_hidden_layers=25 is not supported: .*pairs"):
        resolve({**config, "num_hidden_layers": 25}, source)
    with pytest.raises(SymcostError, match="layer_types=.* is not supported"):
        resolve({**config, "layer_types": ["full_attention", "sliding_attention"] * 13}, source)
    assert resolve({**config, "layer_types": ["sliding_attention", "full_attention"] * 13}, source).values["L"] == 26
    caps = resolve({**config, "attn_logit_softcapping": None, "final_logit_softcapping": None}, source).options
    assert caps == {"attn_softcap": False, "final_softcap": False, "tied": True}


# ----------------------------------------------------------------------------- validate's inputs


def test_a_model_validate_cannot_call_is_a_clear_error(hf, monkeypatch):
    def refuses(*args, **kwargs):
        raise AttributeError("'ViTConfig' object has no attribute 'vocab_size'")

    monkeypatch.setattr(V, "_measure", refuses)
    config, source = preset_config("gpt2-small")
    with pytest.raises(SymcostError, match=r"could not run the tiny GPT2LMHeadModel as the mapping's inputs "
                                           r"'causal_lm' call it .*AttributeError: 'ViTConfig' object has no attribute"):
        V.validate(config, source, None, [(1, 8)], ("flops",), progress=None)


def test_input_kinds_build_what_each_family_takes(hf):
    torch, transformers = hf

    class Model:
        config = transformers.WhisperConfig(num_mel_bins=16, max_source_positions=32, vocab_size=100)

    batch = V._ids(Model(), 2, 5, "speech_seq2seq")
    assert tuple(batch["input_features"].shape) == (2, 16, 64)  # exactly 2·max_source_positions frames
    assert tuple(batch["decoder_input_ids"].shape) == (2, 5)
    Model.config = transformers.ViTConfig(image_size=32, num_channels=3)
    assert tuple(V._ids(Model(), 2, 48, "image", sized=True).shape) == (2, 3, 48, 48)
    assert tuple(V._ids(Model(), 2, 48, "image", sized=False).shape) == (2, 3, 32, 32)  # the config's size


# ----------------------------------------------------------------------------- ViT and ResNet


def _total(got: dict, mode: str) -> int:
    return got["matmul_flops_fwd"] + (got["matmul_flops_bwd"] if mode == "fwd+bwd" else 0)


def test_vit_tiny_flops_match_the_measured_reference():
    """The patch convolution's backward is its weight gradient only (the pixels need no gradient): measured
    fwd+bwd = 3·fwd − conv_fwd, and so derived."""
    config = tiny_reference("vit")
    assert derived(config, "tiny", 1, {})["params"] == REFERENCE["vit"]["tiny"]["tiny_params"]["ViTModel"]
    rows = [r for r in REFERENCE["vit"]["flops"] if r["model"] == "ViTModel" and r["image"] == 32
            and r["mode"] in ("fwd", "fwd+bwd")]
    assert len(rows) == 4
    for row in rows:
        assert _total(derived(config, "tiny", row["b"], {}), row["mode"]) == row["total"], row


def test_resnet_tiny_flops_match_the_measured_reference():
    config = tiny_reference("resnet")
    assert derived(config, "tiny", 2, {"H": 32})["params"] == REFERENCE["resnet"]["tiny"]["tiny_params"]
    rows = [r for r in REFERENCE["resnet"]["flops"] if r["mode"] in ("fwd", "fwd+bwd")]
    assert len(rows) == 6
    for row in rows:
        assert _total(derived(config, "tiny", row["b"], {"H": row["image"]}), row["mode"]) == row["total"], row


def test_resnet_50_full_size_forward_matches_the_meta_measurement():
    config, source = preset_config("resnet-50")
    assert derived(config, source, 1, {"H": 224})["matmul_flops_fwd"] == 8_178_368_512


def test_resnet_has_four_stages_of_bottlenecks():
    config, source = preset_config("resnet-50")
    with pytest.raises(SymcostError, match="is not supported: resnet.arch has four stages"):
        resolve({**config, "depths": [3, 4, 6, 3, 2], "hidden_sizes": [256, 512, 1024, 2048, 4096]}, source)
    with pytest.raises(SymcostError, match="layer_type='basic' is not supported"):
        resolve({**config, "layer_type": "basic"}, source)
