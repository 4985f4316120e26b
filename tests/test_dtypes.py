"""Dtypes by role: quantized weights (sub-byte, group scales, zero points), the KV cache's and the activations'
dtypes, each checked against a hand count of Llama 2 7B's tensors."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import sympy as sp

import symcost
from symcost.cli import main
from symcost.errors import SymcostError
from symcost.model.dims import Env
from symcost.model.dtypes import quantized

# Llama 2 7B (the preset): h 4096, f 11008, L 32, a = kv = 32, V 32000
H, F, L, V = 4096, 11008, 32, 32000
LAYER_MATRICES = L * (4 * H * H + 3 * H * F)  # q, k, v, o and gate, up, down in every layer
EMBED = HEAD = V * H
NORMS = (2 * L + 1) * H  # two RMSNorm gains per layer and the final one
KV_PER_TOKEN = 2 * L * H * 2  # keys and values of every layer, bf16


def llama(phase="decode", **kw):
    values = {"b": 1, "c": 512} if phase == "decode" else {"b": 1, "s": 512}
    return symcost.derive("llama", preset="llama-2-7b", phase=phase, set=values, **kw)


def test_hand_counts_add_up_to_the_published_parameters():
    assert LAYER_MATRICES == 6_476_005_376
    assert LAYER_MATRICES + EMBED + HEAD + NORMS == 6_738_415_616 == llama().at().params


def test_int4_with_a_bf16_scale_per_128_is_4125_bits_on_the_linear_layers_only():
    a = llama(weights="int4", group=128, scale="bf16")
    assert a.env.roles.weights.bits == sp.Rational(33, 8)
    # GPTQ, AWQ, bitsandbytes: the layers' linear weights quantized; embedding, LM head and norms stay bf16
    expected = Fraction(LAYER_MATRICES) * Fraction(33, 64) + 2 * (EMBED + HEAD + NORMS)
    assert a.at().weight_bytes == expected == 3_864_010_752
    assert a.at().params == 6_738_415_616  # quantization changes bytes, not parameters


@pytest.mark.parametrize("quantize, matrices", [("layers", LAYER_MATRICES), ("linear", LAYER_MATRICES + HEAD),
                                                ("matrices", LAYER_MATRICES + HEAD + EMBED)])
def test_quantize_chooses_which_matrices(quantize, matrices):
    a = llama(weights="int4", group=128, quantize=quantize)
    rest = LAYER_MATRICES + EMBED + HEAD + NORMS - matrices
    assert a.at().weight_bytes == Fraction(matrices) * Fraction(33, 64) + 2 * rest


@pytest.mark.parametrize("zero, bits", [(True, Fraction(4) + Fraction(16 + 4, 128)),  # zero points packed at 4 bits
                                        ("fp16", Fraction(4) + Fraction(16 + 16, 128)), (None, Fraction(33, 8))])
def test_zero_points_add_their_bits_per_group(zero, bits):
    a = llama(weights="int4", group=128, zero_point=zero)
    assert Fraction(str(a.env.roles.weights.bits)) == bits
    assert a.at().weight_bytes == Fraction(LAYER_MATRICES) * bits / 8 + 2 * (EMBED + HEAD + NORMS)


def test_sub_byte_types_are_sized_in_bits():
    env = Env()
    assert {n: env.dtypes[n].bits for n in ("int4", "nf4", "fp4", "int3", "int2", "fp6", "int8", "bf16")} == {
        "int4": 4, "nf4": 4, "fp4": 4, "int3": 3, "int2": 2, "fp6": 6, "int8": 8, "bf16": 16}
    plain = llama(weights="nf4")  # no group: the 4-bit values alone
    assert plain.at().weight_bytes == LAYER_MATRICES // 2 + 2 * (EMBED + HEAD + NORMS)
    assert quantized(env.dtypes["int8"], 64, env.dtypes["fp32"]).nbytes == 1 + sp.Rational(4, 64)


def test_kv_cache_in_fp8_halves_bf16s_and_its_reads():
    base, fp8 = llama(), llama(kv="fp8")
    assert base.at().kv_cache_bytes == KV_PER_TOKEN * 512
    assert fp8.at().kv_cache_bytes * 2 == base.at().kv_cache_bytes
    pre, pre8 = llama("prefill"), llama("prefill", kv="fp8")
    assert pre8.at().kv_cache_bytes * 2 == pre.at().kv_cache_bytes == KV_PER_TOKEN * 512
    # decode reads the whole cache once per step: the traffic falls by half the cache (and half the new entry)
    drop = base.at().io_bytes - fp8.at().io_bytes
    assert drop == KV_PER_TOKEN * 512 // 2 + KV_PER_TOKEN // 2


def test_quantized_weights_and_kv_flow_into_the_decode_roofline():
    a = llama(weights="int4", group=128, kv="fp8", device="rtx-4090")
    s = a.summary
    # every weight a step reads once (the embedding table only its looked-up rows): all but the table
    streamed = Fraction(LAYER_MATRICES) * Fraction(33, 64) + 2 * (HEAD + NORMS)
    assert a.at()(s.bytes) == streamed + KV_PER_TOKEN * 512 // 2
    assert s.peak == a.device.peak_flops["bf16"]  # weight-only: the arithmetic stays in bf16
    assert any("computes in bf16" in n for n in s.notes)


def test_activations_dtype_sets_the_peak_and_the_activation_bytes():
    a = llama("prefill", activations="fp8", device="h100-sxm")
    assert a.summary.peak == a.device.peak_flops["fp8"]
    base = llama("prefill").memory.parts["activations"]
    ids = 8 * 512  # the int64 token ids keep their own dtype
    assert a.at()(a.memory.parts["activations"]) == (llama("prefill").at()(base) - ids) // 2 + ids


def test_header_and_json_state_the_dtypes(capsys):
    args = ["derive", "llama", "--preset", "llama-2-7b", "--phase", "decode", "--weights", "int4", "--group", "128",
            "--zero-point", "--kv", "fp8", "--set", "b=1", "c=16"]
    assert main(args) == 0
    header = capsys.readouterr().out.splitlines()[1]
    assert ("weights int4 (4.15625 bits: a bf16 scale and an int4 zero point per 128 weights) in the linear layers "
            "of repeated blocks") in header and "KV cache fp8 (1 byte)" in header
    assert main([*args, "--format", "json"]) == 0
    conv = json.loads(capsys.readouterr().out)["conventions"]
    w = conv["dtypes"]["weights"]
    assert (w["dtype"], w["bits"], w["group"], w["scale"], w["zero_point"], w["quantize"]) == (
        "int4", 4.15625, 128, "bf16", "int4", "layers")
    assert conv["dtypes"]["kv_cache"] == {"dtype": "fp8", "bytes": 1, "bits": 8, "given": True}


def test_a_sub_byte_default_dtype_prints_bits(capsys):
    assert main(["derive", "gpt2", "--phase", "prefill", "--dtype", "int4", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["conventions"]["dtype_bytes"] == 0.5
    assert main(["derive", "gpt2", "--phase", "prefill", "--dtype", "int4"]) == 0
    assert "default dtype int4 (4 bits)" in capsys.readouterr().out
    # an integer type carries no gradient: training in one is refused (its backward pass would be wrong)
    assert main(["derive", "gpt2", "--dtype", "int8"]) == 2
    assert "carries no gradient" in capsys.readouterr().err


@pytest.mark.parametrize("kw, words", [
    (dict(phase="train", weights="int4"), "training precision is --precision"),
    (dict(phase="train", kv="fp8"), "training keeps no KV cache"),
    (dict(phase="decode", group=128), "--weights"),
    (dict(phase="decode", quantize="linear"), "--weights"),
    (dict(phase="decode", weights="int4", scale="fp16"), "--group"),
    (dict(phase="decode", weights="int4", zero_point=True), "--group"),
    (dict(phase="decode", weights="int4", group=0), "positive integer"),
    (dict(phase="decode", weights="int4", group=True), "positive integer"),
])
def test_settings_that_make_no_sense_are_errors(kw, words):
    with pytest.raises(SymcostError) as e:
        symcost.derive("llama", **kw)
    assert words in e.value.message


def test_an_unknown_dtype_names_the_flag_and_suggests():
    with pytest.raises(SymcostError) as e:
        symcost.derive("llama", phase="decode", weights="int5")
    assert e.value.message.startswith("--weights: unknown dtype 'int5'") and "int4" in e.value.hint
    assert main(["derive", "llama", "--phase", "decode", "--kv", "fp9"]) == 2


def test_quantized_weights_shard_under_tensor_parallelism():
    one, two = llama(weights="int4", group=128), llama(weights="int4", group=128, tp=2)
    # every matrix splits in two (the embedding and head by vocabulary); the norm gains stay whole
    assert two.at().weight_bytes == (one.at().weight_bytes - 2 * NORMS) / 2 + 2 * NORMS
