"""Encoder–decoder generation from the same spec: `dim t decode` names the length a decode step fixes to 1, and
`cache(x, once=true)` marks keys and values written once at prefill (cross-attention over the encoder output), so
a decode step runs neither them nor the encoder.

The reference figures are tests/data/reference/zoo.json's `encoder_decoder_generation` (transformers 5.23:
EncoderDecoderCache contents after a prefill, self-attention and cross-attention separately, and FlopCounterMode's
count of one decode step), independent of this package.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sympy as sp

import symcost
from symcost.analysis import validate as V
from symcost.analysis.hf import preset_config
from symcost.errors import SymcostError

from helpers import require_torch, same, sym
from test_zoo_beyond import derived

GENERATION = json.loads((Path(__file__).resolve().parent / "data" / "reference" / "zoo.json").read_text())[
    "encoder_decoder_generation"]


def _config(model: str) -> dict:
    cfg = {k: v for k, v in GENERATION["tiny_configs"][model].items() if k != "attn_implementation"}
    return {"model_type": model, **cfg}


def _rows(model: str) -> list:
    rows = [r for r in GENERATION["rows"] if r["model"] == model]
    assert rows
    return rows


@pytest.mark.parametrize("model", ["whisper", "t5"])
def test_caches_after_a_prefill_hold_self_and_cross_attention_separately(model):
    """Self-attention: Ld layers × K and V × b·heads·t·d entries; cross-attention: the same at the encoder's
    length, whatever the decoder's; as transformers' EncoderDecoderCache holds them."""
    config = _config(model)
    for row in _rows(model):
        lengths = {"t": row["t_prefill"], "s": row.get("s_encoder", 1)}
        got = derived(config, "tiny", row["b"], lengths, phase="prefill")
        assert got["kv_cache_bytes"] == row["self_bytes"] + row["cross_bytes"], row


def test_validate_splits_the_caches_as_transformers_does():
    """What validate compares: the caches that grow (self-attention) and those written once (cross-attention)."""
    plan = V.Plan(_config("whisper"), "tiny", None, False)
    for row in _rows("whisper"):
        split = plan.derived_caches(plan.full.values, row["b"], row["t_prefill"])
        assert split == (row["self_bytes"], row["cross_bytes"]), row


@pytest.mark.parametrize("model", ["whisper", "t5"])
def test_one_decode_step_matches_flop_counter_mode_with_the_cache(model):
    """One new token per sequence against c = t + 1 cached ones: the decoder's projections on one token, the
    self-attention over c, the cross-attention over the encoder's S (or s) positions from the cache, the head —
    no encoder, no cross-attention key or value projection, as measured."""
    config = _config(model)
    for row in _rows(model):
        lengths = {"c": row["t_prefill"] + 1, "s": row.get("s_encoder", 1)}
        got = derived(config, "tiny", row["b"], lengths, phase="decode")
        assert got["matmul_flops_fwd"] == row["decode_step_fwd"], row
        assert got["kv_cache_bytes"] == row["after_step_self_bytes"] + row["after_step_cross_bytes"], row
        assert row["after_step_cross_bytes"] == row["cross_bytes"]  # the cross-attention cache does not grow


def test_prefill_is_the_encoder_plus_the_decoder_prefill():
    """The prefill derives the whole forward: the encoder once and the decoder over its t tokens, the cross
    keys and values computed once — the measured encoder_fwd + decoder_prefill_fwd."""
    for model in ("whisper", "t5"):
        config = _config(model)
        for row in _rows(model):
            got = derived(config, "tiny", row["b"], {"t": row["t_prefill"], "s": row.get("s_encoder", 1)},
                          phase="prefill")
            assert got["matmul_flops_fwd"] == row["encoder_fwd"] + row["decoder_prefill_fwd"], row


def test_t5_decode_closed_form():
    """Per decoder layer and token: 12·a·h·dk (self Q, K, V, O and cross Q, O) + 4·a·s·dk (cross-attention over the
    s encoder positions) + 4·a·dk·c (self-attention over c) + 4·h·f; plus the head 2·h·V. Nothing of L."""
    a = symcost.derive("t5", phase="decode")
    b, A, h, dk, f, s, c, V, Ld = (sym(n) for n in "b a h dk f s c V Ld".split())
    want = Ld * (12 * A * b * h * dk + 4 * A * b * s * dk + 4 * A * b * dk * c + 4 * b * h * f) + 2 * b * h * V
    assert same(a.totals["matmul_flops_fwd"], want)
    assert sym("L") not in a.totals["matmul_flops_fwd"].free_symbols  # the encoder is not run
    assert sym("t") not in a.totals["kv_cache_bytes"].free_symbols
    assert same(a.totals["kv_cache_bytes"], Ld * (4 * A * b * s * dk + 4 * A * b * dk * c))  # bf16: 2 bytes · K, V
    assert same(a.totals["params"], symcost.derive("t5").totals["params"])  # the encoder's weights are still held


def test_decode_reads_only_what_it_runs():
    """Memory traffic of a decode step reads the decoder's weights, not the encoder's nor the cross-attention
    key and value projections'; the cross cache is read (S entries), not written."""
    a = symcost.derive("whisper", phase="decode")
    traffic = a.totals["io_bytes"]
    assert sym("L") not in traffic.free_symbols and sym("f") not in traffic.free_symbols
    weights = sp.expand(traffic).coeff(sym("Ld")).coeff(sym("h"), 2)
    assert weights == 24  # six h×h matrices in fp32: self Q, K, V, O and cross Q, O (cross K, V not run)


def _spec(tmp_path, text: str) -> str:
    path = tmp_path / "spec.arch"
    path.write_text(text)
    return str(path)


def test_decode_dim_errors(tmp_path):
    with pytest.raises(SymcostError, match="'u' is marked decode, and so is 't'") as e:
        symcost.derive(_spec(tmp_path, "dim b\ndim t decode\ndim u decode\ninput x: [b, t, 4]\nk = cache(x)\n"))
    assert e.value.loc is not None and e.value.loc.line == 3
    with pytest.raises(SymcostError, match=r"decode computes one new token per sequence \(t = 1\)"):
        symcost.derive("t5", phase="decode", set={"t": 4})
    with pytest.raises(SymcostError, match="once or window, not both"):
        symcost.derive(_spec(tmp_path, "dim b\ndim s\ndim w\ninput x: [b, s, 4]\nk = cache(x, once=true, window=w)\n"),
                       phase="prefill")
    with pytest.raises(SymcostError, match="name it s, or mark"):
        symcost.derive(_spec(tmp_path, "dim b\ndim n\ninput x: [b, n, 4]\nk = cache(x)\n"), phase="decode")
    with pytest.raises(SymcostError) as e:  # only a free dim can be the one a step fixes
        symcost.derive(_spec(tmp_path, "dim b\ndim h\ndim t = 2 * h decode\n"))
    assert e.value.loc.line == 3


def test_a_decode_dim_changes_nothing_outside_decode(tmp_path):
    text = "dim b\ndim t{mark}\ndim h\ninput x: [b, t, h]\ny = linear(x, h)\nk = cache(y)\n"
    for phase in ("train", "prefill"):
        plain = symcost.derive(_spec(tmp_path, text.format(mark="")), phase=phase)
        marked = symcost.derive(_spec(tmp_path, text.format(mark=" decode")), phase=phase)
        assert all(same(plain.totals[m], marked.totals[m]) for m in plain.totals)
    step = symcost.derive(_spec(tmp_path, text.format(mark=" decode")), phase="decode")
    assert same(step.totals["matmul_flops_fwd"], 2 * sym("b") * sym("h") ** 2)  # t = 1


def test_cross_cache_of_a_preset_in_bf16():
    """whisper-base in bf16 after a 448-token prefill: the cross-attention cache is 2·Ld·b·S·h·2 bytes."""
    config, source = preset_config("whisper-base")
    got = derived(config, source, 1, {"t": 448}, phase="prefill", dtype="bf16")
    assert got["kv_cache_bytes"] == 6 * 2 * 1500 * 512 * 2 + 6 * 2 * 448 * 512 * 2


@pytest.fixture(scope="module")
def hf():
    return require_torch()


@pytest.mark.parametrize("name", ["t5-small", "whisper-tiny"])
def test_validate_checks_generation(hf, name):
    config, source = preset_config(name)
    result = V.validate(config, source, None, [(1, 6), (2, 9)], ("kv",), progress=None)
    assert result.ok, [c.as_json() for c in result.checks if not c.ok]
    kinds = [c.quantity for c in result.checks]
    assert kinds.count("kv_cache_self") == kinds.count("kv_cache_cross") == kinds.count("decode_step_flops") == 2
    assert "decode step" in V.render_text(result) and "c=7" in V.render_text(result)


def test_a_cache_written_once_stops_what_only_feeds_it():
    """docs/examples/encdec.arch: the cross-attention keys are cached straight from their projection. A decode step
    runs the decoder's four h×h projections on one token, the self-attention over c and the cross-attention over
    the s cached positions — not the encoder, not the cross key and value projections."""
    root = Path(__file__).resolve().parents[1]
    a = symcost.derive(str(root / "docs" / "examples" / "encdec.arch"), phase="decode")
    b, s, h, c = (sym(n) for n in "b s h c".split())
    assert same(a.totals["matmul_flops_fwd"], 8 * b * h**2 + 4 * b * s * h + 4 * b * h * c)
    assert same(a.totals["kv_cache_bytes"], 8 * b * s * h + 8 * b * h * c)
    assert same(a.totals["params"], 9 * h**2)
    prefill = symcost.derive(str(root / "docs" / "examples" / "encdec.arch"), phase="prefill")
    assert same(prefill.totals["matmul_flops_fwd"] - symcost.derive(
        str(root / "docs" / "examples" / "encdec.arch")).totals["matmul_flops_fwd"], 0)  # prefill = the forward
