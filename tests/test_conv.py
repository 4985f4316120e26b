"""Convolutions, pooling and batch norm: exact output sizes, parameters and FLOPs, checked against FlopCounterMode
totals measured on tiny Hugging Face models (tests/data/reference/conv_measured.json) and against brute-force
counts of window positions; inputs that need no gradient skip the first convolution's input gradient."""
from __future__ import annotations

import json

import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

import symcost
from symcost.errors import SymcostError
from symcost.lang.parse import parse_text
from symcost.lang.syntax import Module
from symcost.model.builder import build

from helpers import REFERENCE, ROOT, same, sym

MEASURED = json.loads((REFERENCE / "conv_measured.json").read_text())
SPECS = ROOT / "tests" / "data" / "specs"


def _rows(family: str, **match):
    return [r for r in MEASURED[family]["flops"] if all(r.get(k) == v for k, v in match.items())]


def _flops(values) -> tuple[int, int]:
    """(fwd, bwd) matmul-like FLOPs: what FlopCounterMode counts."""
    return values["matmul_flops_fwd"], values["matmul_flops_bwd"]


# ---- ViT: a patch-embedding conv over pixels that need no gradient ----------------------------------------------
def test_vit_tiny_parameters_and_flops_match_transformers():
    cfg = MEASURED["vit"]["tiny_config"]
    a = symcost.derive(SPECS / "vit_tiny.arch")
    dims = dict(P=cfg["patch_size"], h=cfg["hidden_size"], a=cfg["num_attention_heads"], f=cfg["intermediate_size"],
                L=cfg["num_hidden_layers"])
    assert a.at(b=1, g=cfg["image_size"] // cfg["patch_size"], **dims)["params"] == MEASURED["vit"]["tiny_params"]["ViTModel"]
    checked = 0
    for fwd in _rows("vit", model="ViTModel", mode="fwd"):
        b, image = fwd["b"], fwd["image"]
        bwd = next(r for r in _rows("vit", model="ViTModel", mode="bwd", b=b, image=image))
        both = next(r for r in _rows("vit", model="ViTModel", mode="fwd+bwd", b=b, image=image))
        got_fwd, got_bwd = _flops(a.at(b=b, g=image // cfg["patch_size"], **dims))
        assert (got_fwd, got_bwd, got_fwd + got_bwd) == (fwd["total"], bwd["total"], both["total"])
        # the patch conv has a weight gradient only: fwd + bwd = 3·fwd − conv fwd
        assert got_fwd + got_bwd == 3 * fwd["total"] - fwd["per_op"]["convolution"]
        checked += 1
    assert checked == 3


def test_vit_patch_grid_has_no_floor():
    a = symcost.derive(SPECS / "vit_tiny.arch")
    b, g, P, h = sym("b"), sym("g"), sym("P"), sym("h")
    conv = next(r for r in a.ops if r.node.op == "conv2d")
    assert conv.node.outputs[0].shape == (b, h, g, g)
    assert same(conv.metrics["matmul_flops_fwd"], 2 * b * h * 3 * P**2 * g**2)
    assert not a.totals["matmul_flops_fwd"].has(sp.floor)


def test_pixels_that_need_a_gradient_add_the_first_conv_input_gradient(tmp_path):
    text = (SPECS / "vit_tiny.arch").read_text().replace(" nograd", "")
    path = tmp_path / "vit_grad.arch"
    path.write_text(text)
    vals = dict(b=2, g=4, P=8, h=64, a=4, f=128, L=2)
    with_grad = symcost.derive(path).at(**vals)
    without = symcost.derive(SPECS / "vit_tiny.arch").at(**vals)
    conv_fwd = _rows("vit", model="ViTModel", mode="fwd", b=2, image=32)[0]["per_op"]["convolution"]
    assert with_grad["matmul_flops_bwd"] - without["matmul_flops_bwd"] == conv_fwd
    assert with_grad["matmul_flops_fwd"] == without["matmul_flops_fwd"]


# ---- ResNet: strided convs, batch norm, max and adaptive pooling ------------------------------------------------
def test_resnet_tiny_parameters_and_flops_match_transformers():
    a = symcost.derive(SPECS / "resnet_tiny.arch")
    assert a.at(b=2, H=32)["params"] == MEASURED["resnet"]["tiny_params"]
    checked = 0
    for fwd in _rows("resnet", mode="fwd"):
        b, image = fwd["b"], fwd["image"]
        both = _rows("resnet", mode="fwd+bwd", b=b, image=image)[0]
        bwd = next(r for r in _rows("resnet", mode="bwd", b=b, image=image) if "note" not in r)
        got_fwd, got_bwd = _flops(a.at(b=b, H=image))
        assert (got_fwd, got_bwd, got_fwd + got_bwd) == (fwd["total"], bwd["total"], both["total"])
        checked += 1
    assert checked == 3


def test_resnet_with_pixel_gradient_matches_requires_grad_measurement(tmp_path):
    path = tmp_path / "r.arch"
    path.write_text((SPECS / "resnet_tiny.arch").read_text().replace(" nograd", ""))
    a = symcost.derive(path)
    for row in (r for r in MEASURED["resnet"]["flops"] if r.get("note") == "pixel_values.requires_grad=True"):
        assert a.at(b=row["b"], H=row["image"])["matmul_flops_bwd"] == row["total"]


def test_resnet_sizes_stay_polynomial_when_the_image_is_a_multiple_of_32(tmp_path):
    path = tmp_path / "r.arch"
    text = (SPECS / "resnet_tiny.arch").read_text()
    path.write_text(text.replace('dim H "image side"', 'dim G "image side / 32"\ndim H = 32 * G'))
    a = symcost.derive(path)
    assert not a.totals["matmul_flops_fwd"].has(sp.floor)
    assert a.at(b=2, G=1)["matmul_flops_fwd"] == _rows("resnet", mode="fwd", b=2, image=32)[0]["total"]
    assert a.at(b=2, G=2)["matmul_flops_fwd"] == _rows("resnet", mode="fwd", b=2, image=64)[0]["total"]


def test_batchnorm_has_two_parameters_per_channel_and_no_buffers():
    a = _derive("dim b\ndim c\ndim H\ninput x: [b, c, H, H]\ny = batchnorm(x)\nz = batchnorm(y, affine=false)\n")
    assert same(a.totals["params"], 2 * sym("c"))


# ---- Whisper's front end: conv1 (stride 1) and conv2 (stride 2) over mel features --------------------------------
WHISPER_STEM = """
dim b
dim m "mel bins"
dim S "encoder positions (max_source_positions)"
dim h
input mel: [b, m, 2 * S] {grad}
c1 = conv1d(mel, h, 3, padding=1)
g1 = gelu(c1)
c2 = conv1d(g1, h, 3, stride=2, padding=1)
g2 = gelu(c2)
"""


@pytest.mark.parametrize("nograd", [True, False])
def test_whisper_conv_front_end(nograd):
    a = _derive(WHISPER_STEM.format(grad="nograd" if nograd else ""))
    b, S, h = sym("b"), sym("S"), sym("h")
    assert a.ops[2].node.outputs[0].shape == (b, h, S)  # floor((2S − 1)/2) + 1 = S: no floor left
    cfg = MEASURED["whisper"]["tiny_config"]
    dims = dict(m=cfg["num_mel_bins"], S=cfg["max_source_positions"], h=cfg["d_model"])
    for fwd in _rows("whisper", mode="fwd", part="encoder_only"):
        got = a.at(b=fwd["b"], **dims)
        assert got["matmul_flops_fwd"] == fwd["per_op"]["convolution"]
        note = None if nograd else "input_features.requires_grad=True"
        bwd = next(r for r in _rows("whisper", mode="bwd", b=fwd["b"]) if r.get("note") == note)
        assert got["matmul_flops_bwd"] == bwd["per_op"]["convolution_backward"]


# ---- Mamba's depthwise conv: groups = channels, padding k − 1, trimmed to s -------------------------------------
MAMBA_CONV = """
dim b
dim s
dim h
dim d "inner width"
dim k "conv kernel"
input x: [b, s, h]
up = linear(x, d, bias=false)
t = transpose(up)
c = conv1d(t, d, k, padding=k - 1, groups=d)
trimmed = slice(c, s)
"""


def test_depthwise_conv_counts_groups_in_both_passes():
    a = _derive(MAMBA_CONV)
    b, s, h, d, k = (sym(n) for n in "b s h d k".split())
    conv = next(r for r in a.ops if r.node.op == "conv1d")
    assert conv.node.outputs[0].shape == (b, d, s + k - 1)
    assert same(conv.metrics["params"], d * k + d)
    assert same(conv.metrics["matmul_flops_fwd"], 2 * b * d * k * (s + k - 1))
    assert same(conv.metrics["matmul_flops_bwd"], 2 * conv.metrics["matmul_flops_fwd"])
    cfg, resolved = MEASURED["mamba"]["tiny_config"], MEASURED["mamba"]["tiny_resolved"]
    layers = cfg["num_hidden_layers"]
    for row in _rows("mamba", mode="fwd+bwd"):
        got = conv.metrics["matmul_flops_fwd"].xreplace(
            {b: row["b"], s: row["s"], d: resolved["intermediate_size"], k: cfg["conv_kernel"]})
        assert layers * got == row["per_op"]["convolution"]
        assert 2 * layers * got == row["predicted"]["conv_bwd_corrected"]
        # FlopCounterMode's weight gradient ignores groups: × d too many
        raw = layers * (got + got * resolved["intermediate_size"])
        assert raw == row["per_op"]["convolution_backward"]


# ---- exact sizes --------------------------------------------------------------------------------------------------
def _windows(length: int, k: int, s: int, p: int, d: int) -> int:
    """Brute force: the window starts i (stride s) whose dilated kernel fits in the padded input."""
    return sum(1 for i in range(0, length + 2 * p, s) if i + d * (k - 1) <= length + 2 * p - 1)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3), d=st.integers(1, 3))
def test_conv_and_pool_sizes_count_window_positions(length, k, s, p, d):
    want = _windows(length, k, s, p, d)
    text = f"dim b\ninput x: [b, 2, {length}]\ny = conv1d(x, 4, {k}, stride={s}, padding={p}, dilation={d})\n"
    if want <= 0:
        with pytest.raises(SymcostError, match="kernel does not fit"):
            _derive(text)
        return
    a = _derive(text)
    assert a.ops[0].node.outputs[0].shape[-1] == want
    if 2 * p <= k:
        pool = _derive(f"dim b\ninput x: [b, 2, {length}, {length}]\n"
                       f"y = max_pool2d(x, {k}, stride={s}, padding={p}, dilation={d})\n")
        assert pool.ops[0].node.outputs[0].shape[-2:] == (want, want)


def test_symbolic_length_records_a_constraint_checked_with_values(tmp_path):
    path = tmp_path / "c.arch"
    path.write_text("dim b\ndim L\ninput x: [b, 2, L]\ny = conv1d(x, 4, 5)\n")
    a = symcost.derive(path)
    assert a.at(b=1, L=5)["matmul_flops_fwd"] == 2 * 4 * 2 * 5 * 1
    with pytest.raises(SymcostError) as info:
        a.at(b=1, L=3)
    assert "conv1d: the output size L - 4 = -1 at L=3" in str(info.value)
    assert info.value.loc is not None and (info.value.loc.line, info.value.loc.column) == (4, 5)


def test_groups_must_divide_the_channels():
    with pytest.raises(SymcostError, match="3 groups do not divide the 8 input channels"):
        _derive("dim b\ninput x: [b, 8, 10]\ny = conv1d(x, 6, 3, groups=3)\n")


def test_conv_with_a_declared_weight_and_adaptive_pooling():
    a = _derive("dim b\ndim c\ndim H\ninput x: [b, c, H, H] nograd\nparam w: [2 * c, c, 3, 3]\n"
                "y = conv2d(x, weight=w, padding=1, bias=false)\np = adaptive_avg_pool2d(y, 1)\n")
    b, c, H = sym("b"), sym("c"), sym("H")
    assert a.ops[-1].node.outputs[0].shape == (b, 2 * c, 1, 1)
    assert same(a.totals["params"], 18 * c**2)
    conv = a.ops[0]
    assert same(conv.metrics["matmul_flops_fwd"], 2 * b * 2 * c * c * 9 * H**2)
    assert same(conv.metrics["matmul_flops_bwd"], conv.metrics["matmul_flops_fwd"])  # weight gradient only


def _derive(text: str):
    from symcost.cost.accounting import derive

    module = Module("t.arch", parse_text(text, "t.arch"))
    report = derive(build(module))

    class _A:  # the parts of an Analysis these tests read
        totals, ops = report.totals, report.ops

        @staticmethod
        def at(**values):
            from symcost.analysis.evaluate import Evaluator

            ev = Evaluator(report.env, values)
            return {m: ev(e) for m, e in report.totals.items()}

    return _A
