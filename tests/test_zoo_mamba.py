"""Mamba (MambaForCausalLM): in_proj, a depthwise causal convolution, x_proj, dt_proj, the selective scan as an op
with stated FLOPs, the gate, out_proj, RMSNorm, a tied head; the state cache (conv_states [b, d, k], ssm_states
[b, d, N]) independent of the sequence length.

Checked against tests/data/reference/zoo.json (transformers 5.23, FlopCounterMode and the meta device), and with
the torch extra against transformers itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import symcost
from symcost.analysis import validate as V
from symcost.analysis.hf import preset_config, resolve
from symcost.errors import SymcostError

from helpers import require_torch, same, sym
from test_zoo_beyond import REFERENCE, derived, tiny_reference

MAMBA = REFERENCE["mamba"]
PUBLISHED = MAMBA["published"]["state-spaces/mamba-130m-hf"]
META = {r["mode"]: r for r in json.loads((Path(__file__).resolve().parent / "data" / "reference" / "zoo.json")
                                         .read_text())["full_size_meta_flops"] if r["family"] == "mamba"}


def test_published_parameters_and_layer_tensors():
    config, source = preset_config("mamba-130m")
    assert derived(config, source, 1, {"s": 1})["params"] == PUBLISHED["params"] == 129_135_360
    per_layer = 0
    for shape in PUBLISHED["layer0"].values():
        layer = 1
        for x in shape:
            layer *= x
        per_layer += layer
    a = symcost.derive(preset="mamba-130m", set={"b": 1, "s": 1})
    blocks = {blk.path: blk for blk in a.report.blocks}
    assert a.at()(blocks["layer"].metrics["params"]) == per_layer == 3_771_648


def test_mapping_reads_transformers_derivations():
    config, source = preset_config("mamba-130m")
    r = resolve(config, source)
    assert (r.values["d"], r.values["r"], r.values["N"], r.values["k"]) == (1536, 48, 16, 4)
    auto = resolve({**config, "time_step_rank": "auto", "hidden_size": 1000, "intermediate_size": 7}, source)
    assert (auto.values["r"], auto.values["d"]) == (63, 2000)  # ceil(1000 / 16); int(expand · h), not the field
    with pytest.raises(SymcostError, match="time_step_rank='big' is not supported"):
        resolve({**config, "time_step_rank": "big"}, source)
    with pytest.raises(SymcostError, match="hidden_act='relu' is not supported"):
        resolve({**config, "hidden_act": "relu"}, source)
    assert resolve({**config, "use_bias": True, "use_conv_bias": False}, source).options == {
        "tied": True, "bias": True, "conv_bias": False}


def test_tiny_forward_flops_match_the_measured_reference():
    """Forward: the projections, the convolution over s + k − 1 outputs (padding k − 1 on both sides, then the
    first s kept), and the scan's contraction with C, 2·b·s·d·N per layer (FlopCounterMode's bmm)."""
    config = tiny_reference("mamba")
    assert derived(config, "tiny", 1, {"s": 1})["params"] == MAMBA["tiny"]["tiny_params"] == 67_520
    rows = [r for r in MAMBA["flops"] if r["mode"] == "fwd"]
    assert len(rows) == 4
    for row in rows:
        got = derived(config, "tiny", row["b"], {"s": row["s"]})
        assert got["matmul_flops_fwd"] == row["total"], row
        b, s, d, k, n, L = row["b"], row["s"], 128, 4, 8, 2
        assert row["per_op"]["convolution"] == L * 2 * b * d * k * (s + k - 1)
        assert row["per_op"]["bmm"] == L * 2 * b * s * d * n


def test_tiny_backward_counts_the_depthwise_weight_gradient_once():
    """symcost's fwd+bwd is 3 × every product, the convolution included (its weight gradient is a depthwise
    convolution: b·d·k·(s + k − 1) multiply-adds). FlopCounterMode's measured figure exceeds it by exactly its
    groups error: the weight gradient counted d times over, L·2·b·d·k·(s + k − 1)·(d − 1)."""
    config = tiny_reference("mamba")
    for row in (r for r in MAMBA["flops"] if r["mode"] == "fwd+bwd"):
        got = derived(config, "tiny", row["b"], {"s": row["s"]})
        fwd = next(r for r in MAMBA["flops"] if r["mode"] == "fwd" and r["b"] == row["b"] and r["s"] == row["s"])
        corrected = 3 * fwd["total"]
        assert got["matmul_flops_fwd"] + got["matmul_flops_bwd"] == corrected
        b, s, d, k, L = row["b"], row["s"], 128, 4, 2
        assert row["total"] - corrected == L * 2 * b * d * k * (s + k - 1) * (d - 1), row


def test_full_size_counts_match_the_meta_measurement():
    config, source = preset_config("mamba-130m")
    got = derived(config, source, 1, {"s": 2048})
    assert got["matmul_flops_fwd"] == META["fwd"]["total"] == 528_407_691_264
    conv = META["fwd+bwd"]["per_op"]["convolution"]
    raw_conv_bwd = META["fwd+bwd"]["per_op"]["convolution_backward"]
    d = 1536
    true_conv_bwd = 2 * conv  # the input gradient and the weight gradient, one convolution's work each
    assert raw_conv_bwd == conv + conv * d  # the counter's weight gradient: × d_inner
    assert got["matmul_flops_fwd"] + got["matmul_flops_bwd"] == (
        META["fwd+bwd"]["total"] - raw_conv_bwd + true_conv_bwd) == 1_585_223_073_792


def test_state_cache_is_independent_of_the_sequence_length():
    """After a prefill: per layer conv_states [b, d, k] and ssm_states [b, d, N], whatever s (2 < k included: the
    convolution state is zero-filled to k), as transformers holds them; a decode step keeps the same."""
    config = tiny_reference("mamba")
    for row in MAMBA["kv_cache"]:
        got = derived(config, "tiny", row["b"], {"s": row["prefill"]}, phase="prefill")
        assert got["kv_cache_bytes"] == row["bytes"], row
    step = derived(config, "tiny", 1, {"c": 1000}, phase="decode")
    assert step["kv_cache_bytes"] == 12_288
    preset, source = preset_config("mamba-130m")
    assert derived(preset, source, 1, {"s": 2048}, phase="prefill")["kv_cache_bytes"] == 24 * 1536 * (4 + 16) * 4


def test_decode_step_closed_form():
    """One token: the projections, the convolution over the k kept inputs (one output per channel), one scan step
    (2·b·d·N), the head; nothing grows with c."""
    a = symcost.derive("mamba", phase="decode")
    b, h, d, N, k, r, V, L = (sym(n) for n in "b h d N k r V L".split())
    assert same(a.totals["matmul_flops_fwd"], L * (6 * b * h * d + 6 * b * d * N + 4 * b * d * r + 2 * b * d * k)
                + 2 * b * h * V)
    assert same(a.totals["kv_cache_bytes"], L * (4 * b * d * N + 4 * b * d * k))
    assert sym("c") not in a.totals["io_bytes"].free_symbols


def test_scan_flops_are_stated_per_element():
    """The scan op alone: matmul 2·b·s·d·N forward, twice that backward; elementwise 6 per state element and
    6 per channel element forward, 2 per entry of A (docs/semantics.md)."""
    a = symcost.derive("mamba")
    scan = next(o for o in a.report.ops if o.node.op == "selective_scan")
    b, s, d, N = (sym(n) for n in "b s d N".split())
    assert same(scan.metrics["matmul_flops_fwd"], 2 * b * s * d * N)
    assert same(scan.metrics["matmul_flops_bwd"], 4 * b * s * d * N)
    assert same(scan.metrics["flops_fwd"] - scan.metrics["matmul_flops_fwd"], 6 * b * s * d * N + 6 * b * s * d + 2 * d * N)
    assert same(scan.metrics["params"], d * N + d)  # A_log and D


def test_scan_shape_errors(tmp_path):
    path = tmp_path / "bad.arch"
    path.write_text("dim b\ndim s\ndim d\ndim N\ninput x: [b, s, d]\ninput B: [b, s, N]\ninput C: [b, s, d]\n"
                    "y = selective_scan(x, x, B, C)\n")
    with pytest.raises(SymcostError, match=r"selective_scan: C \[b, s, d\] must match B \[b, s, N\]") as e:
        symcost.derive(str(path))
    assert e.value.loc.line == 8


@pytest.fixture(scope="module")
def hf():
    return require_torch()


def test_validate_reports_the_raw_counter_beside_the_corrected_one(hf):
    config, source = preset_config("mamba-130m")
    result = V.validate(config, source, None, [(1, 8), (2, 16)], ("params", "flops", "kv"), progress=None)
    assert result.ok, [c.as_json() for c in result.checks if not c.ok]
    raw = {(c.b, c.s): c.measured for c in result.checks if c.quantity == "matmul_flops_fwd_bwd_raw"}
    assert raw == {(1, 8): 6_074_368, (2, 16): 22_700_032}  # the reference's measured FlopCounterMode totals
    assert all(not c.exact for c in result.checks if c.quantity == "matmul_flops_fwd_bwd_raw")
    assert [c.measured for c in result.checks if c.quantity == "kv_cache_bytes"] == [12_288, 24_576]
    text = V.render_text(result)
    assert "FlopCounterMode's own fwd+bwd" in text and "ignores groups" in text


def test_fixed_size_cache_and_decoding_errors(tmp_path):
    path = tmp_path / "bad.arch"
    path.write_text("dim b\ndim s\ndim k\ndim w\ninput x: [b, 4, s]\ny = cache(x, axis=-1, keep=k, window=w)\n")
    with pytest.raises(SymcostError, match="give one of window, once and keep"):
        symcost.derive(str(path), phase="prefill")
    path.write_text("dim b\ndim s\noption decoding = true\n")
    with pytest.raises(SymcostError, match="'decoding' is a built-in option"):
        symcost.derive(str(path))
    with pytest.raises(SymcostError, match="'decoding' follows --phase"):
        symcost.derive("mamba", set={"decoding": True})
