"""Whisper (WhisperForConditionalGeneration): the convolutional front end over log-mel features, the frozen
sinusoidal encoder positions, the encoder–decoder with cross-attention, learned decoder positions, a tied head.

Checked against tests/data/reference/zoo.json (transformers 5.23 measured by FlopCounterMode and on the meta
device, independent of this package) and, with the torch extra, against transformers itself.
"""
from __future__ import annotations

import pytest

import symcost
from symcost.analysis import validate as V
from symcost.analysis.hf import preset_config, resolve
from symcost.errors import SymcostError

from helpers import require_torch
from test_zoo_beyond import REFERENCE, derived, tiny_reference

WHISPER = REFERENCE["whisper"]
PUBLISHED = {name.split("/")[-1]: entry for name, entry in WHISPER["published"].items()}


@pytest.mark.parametrize("name", ["whisper-tiny", "whisper-base"])
def test_published_parameters_include_the_frozen_encoder_positions(name):
    config, source = preset_config(name)
    a = symcost.derive(preset=name, set={"b": 1, "t": 1})
    values = a.at()
    assert values["params"] == PUBLISHED[name]["params"]  # 37,760,640 and 72,593,920 (meta device)
    assert values(a.frozen_params) == PUBLISHED[name]["params_requires_grad_false"] == 1500 * config["d_model"]


def test_per_layer_tensors_as_transformers_names_them():
    """Encoder layer: q, v, out with biases, k without, two LayerNorms, fc1/fc2; the decoder adds encoder_attn
    (same pattern) and its LayerNorm. Summed from the reference's tensor shapes."""
    entry = PUBLISHED["whisper-tiny"]
    enc = sum(_numel(s) for s in entry["encoder_layer0"].values())
    dec = sum(_numel(s) for s in entry["decoder_layer0"].values())
    a = symcost.derive(preset="whisper-tiny", set={"b": 1, "t": 1})
    blocks = {blk.path: blk for blk in a.report.blocks}
    values = a.at()
    assert values(blocks["encoder_layer"].metrics["params"]) == enc
    assert values(blocks["decoder_layer"].metrics["params"]) == dec


def _numel(shape) -> int:
    n = 1
    for x in shape:
        n *= x
    return n


def test_tiny_flops_match_the_measured_reference():
    """fwd and fwd+bwd at (b, t) with 2·S = 64 frames of features: the first convolution's backward is its weight
    gradient only, so fwd+bwd = 3·fwd − conv1's forward, as measured."""
    config = tiny_reference("whisper")
    assert derived(config, "tiny", 1, {"t": 1})["params"] == WHISPER["tiny"]["tiny_params"]
    rows = [r for r in WHISPER["flops"] if r["mode"] in ("fwd", "fwd+bwd") and "part" not in r]
    assert len(rows) == 6
    for row in rows:
        got = derived(config, "tiny", row["b"], {"t": row["t_dec"]})
        total = got["matmul_flops_fwd"] + (got["matmul_flops_bwd"] if row["mode"] == "fwd+bwd" else 0)
        assert total == row["total"], row
        if row["mode"] == "fwd":
            conv1 = 2 * row["b"] * 64 * 16 * 3 * 64  # 2·b·h·m·3·(2S)
            assert 3 * total - conv1 == next(r["total"] for r in rows if r["mode"] == "fwd+bwd"
                                             and r["b"] == row["b"] and r["t_dec"] == row["t_dec"])


def test_backward_of_the_features_would_add_exactly_conv1(tmp_path):
    """Measured: input_features.requires_grad_(True) adds conv1's forward to the backward. The same spec with the
    features needing a gradient derives exactly that."""
    from symcost.analysis.hf import specs_dir

    spec = (specs_dir() / "whisper.arch").read_text()
    path = tmp_path / "whisper_grad.arch"
    path.write_text(spec.replace("input features: [b, m, 2 * S] nograd", "input features: [b, m, 2 * S]"))
    config = tiny_reference("whisper")
    r = resolve(config, "tiny")
    a = symcost.derive(path, set={**r.values, "b": 1, "t": 4})
    for row in WHISPER["flops"]:
        if row["mode"] == "bwd" and row["b"] == 1 and row.get("note") == "input_features.requires_grad=True":
            assert a.at()["matmul_flops_bwd"] == row["total"]
            break
    else:
        pytest.fail("no reference row")


def test_full_size_forward_matches_the_meta_measurement():
    """whisper-tiny on meta, 3000 frames and 448 decoder tokens: 71,082,196,992 forward, fwd+bwd
    212,693,630,976 (= 3·fwd − conv1's 552,960,000)."""
    config, source = preset_config("whisper-tiny")
    got = derived(config, source, 1, {"t": 448})
    assert got["matmul_flops_fwd"] == 71_082_196_992
    assert got["matmul_flops_fwd"] + got["matmul_flops_bwd"] == 212_693_630_976
    assert 3 * got["matmul_flops_fwd"] - 552_960_000 == 212_693_630_976


def test_config_fields_the_spec_cannot_model_are_refused():
    config, source = preset_config("whisper-tiny")
    with pytest.raises(SymcostError, match="activation_function='relu' is not supported"):
        resolve({**config, "activation_function": "relu"}, source)
    with pytest.raises(SymcostError, match="LayerDrop"):
        resolve({**config, "encoder_layerdrop": 0.1}, source)
    with pytest.raises(SymcostError, match="alias of encoder_layers"):
        resolve({**config, "num_hidden_layers": 6}, source)
    r = resolve({**config, "decoder_attention_heads": 4, "decoder_ffn_dim": 1024, "tie_word_embeddings": False},
                source)
    assert (r.values["ad"], r.values["fd"], r.options["tied"]) == (4, 1024, False)
    untied = symcost.derive(hf_config=None, preset="whisper-tiny", set={"b": 1, "t": 1, "tied": False})
    assert untied.at()["params"] == PUBLISHED["whisper-tiny"]["params"] + 51865 * 384  # proj_out of its own


@pytest.fixture(scope="module")
def hf():
    return require_torch()


@pytest.mark.parametrize("name", ["whisper-tiny", "whisper-base"])
def test_validate_against_transformers(hf, name):
    config, source = preset_config(name)
    result = V.validate(config, source, None, None, ("params", "flops"), progress=None)
    assert result.ok, [c.as_json() for c in result.checks if not c.ok]
    assert result.checks[0].measured == PUBLISHED[name]["params"]
    flops = [c for c in result.checks if c.quantity.startswith("matmul")]
    assert len(flops) == 6 and all(c.derived == c.measured for c in flops)
