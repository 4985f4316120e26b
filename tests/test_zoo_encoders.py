"""BERT (encoder-only) and T5 (encoder–decoder) in the zoo: closed forms, published counts, tiny FLOPs, validate.

The closed-form and published-count tests need only symcost. The validate tests build transformers models: without
the torch extra they are skipped with the reason, except under CI (CI=true), where that is a failure.
"""
from __future__ import annotations

import json
import os

import pytest

from helpers import REFERENCE, block, op, report_for, same, sym
from symcost.analysis import validate as V
from symcost.analysis.evaluate import Evaluator
from symcost.analysis.hf import mappings, preset_config, presets, resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MEASURED = REFERENCE / "measured.json"
a, b, s, t, h, f, L, Ld, V_, P, T, dk, B = (sym(n) for n in ("a", "b", "s", "t", "h", "f", "L", "Ld", "V", "P", "T", "dk", "B"))
BERT_PRESETS = sorted(n for n in presets() if n.startswith("bert-"))
T5_PRESETS = sorted(n for n in presets() if n.startswith("t5-"))

# Published parameter counts. bert-*-uncased, t5-small and t5-base are also in shared/reference/measured.json
# (checked below); the cased BERTs and t5-large/3b/11b are the sizes of the released checkpoints (BertModel with
# pooler, T5ForConditionalGeneration), as transformers 5.23 builds them; v1.1 counts are the google/t5-v1_1-*
# checkpoints, whose untied LM head transformers 5.23 cannot build from a config (see test_t5_v1_1_untied_head).
PUBLISHED = {
    "bert-base-uncased": 109_482_240,
    "bert-large-uncased": 335_141_888,
    "bert-base-cased": 108_310_272,
    "bert-large-cased": 333_579_264,
    "t5-small": 60_506_624,
    "t5-base": 222_903_552,
    "t5-large": 737_668_096,
    "t5-3b": 2_851_598_336,
    "t5-11b": 11_307_321_344,
}
T5_V1_1 = {  # google/t5-v1_1-*: gated GELU, untied head, vocabulary 32128, 32 buckets
    "t5-v1_1-small": (dict(a=6, h=512, dk=64, f=1024, L=8, Ld=8), 76_961_152),
    "t5-v1_1-base": (dict(a=12, h=768, dk=64, f=2048, L=12, Ld=12), 247_577_856),
    "t5-v1_1-large": (dict(a=16, h=1024, dk=64, f=2816, L=24, Ld=24), 783_150_080),
}


@pytest.fixture(scope="module")
def bert():
    return report_for("bert.arch")


@pytest.fixture(scope="module")
def t5():
    return report_for("t5.arch")


@pytest.fixture(scope="module")
def t5_v1_1():
    return report_for("t5.arch", options={"tied": False, "gated": True})


def _reference() -> dict:
    if not MEASURED.is_file():
        pytest.skip(f"independent reference {MEASURED} is absent")
    return json.loads(MEASURED.read_text())


# ----------------------------------------------------------------------------- BERT closed forms


def test_bert_layer_params_post_ln(bert):
    layer = block(bert, "post_ln_layer").metrics["params"]
    assert same(layer, 4 * h**2 + 2 * h * f + 9 * h + f)
    assert same(layer.subs(f, 4 * h), 12 * h**2 + 13 * h)  # the GPT-2 count: post-LN moves norms, adds none
    assert same(block(bert, "post_ln_layer/bidirectional_attention").metrics["params"], 4 * h**2 + 4 * h)
    assert same(block(bert, "post_ln_layer/gelu_mlp").metrics["params"], 2 * h * f + f + h)


def test_bert_model_params(bert):
    embeddings = (V_ + P + T) * h + 2 * h  # word, position, token-type tables and their LayerNorm
    pooler = h**2 + h
    assert same(bert.totals["params"], L * (4 * h**2 + 2 * h * f + 9 * h + f) + embeddings + pooler)
    no_pooler = report_for("bert.arch", options={"pooler": False})
    assert same(no_pooler.totals["params"], L * (4 * h**2 + 2 * h * f + 9 * h + f) + embeddings)


def test_bert_flops_and_activations(bert):
    layer = block(bert, "post_ln_layer").metrics
    assert same(layer["matmul_flops_fwd"], 8 * b * s * h**2 + 4 * b * s**2 * h + 4 * b * s * h * f)
    assert same(layer["matmul_flops_fwd"].subs(f, 4 * h), 24 * b * s * h**2 + 4 * b * s**2 * h)
    assert same(op(bert, "dense").metrics["matmul_flops_fwd"], 2 * b * h**2)  # the pooler reads one token
    assert same(bert.totals["matmul_flops_fwd"],
                L * (8 * b * s * h**2 + 4 * b * s**2 * h + 4 * b * s * h * f) + 2 * b * h**2)
    assert same(bert.totals["matmul_flops_bwd"], 2 * bert.totals["matmul_flops_fwd"])
    # Korthikanti et al.'s 34bsh + 5abs² holds for a post-LN layer too (f = 4h, 16-bit, 1-byte masks)
    assert same(layer["activation_bytes"].subs(f, 4 * h), 34 * b * s * h + 5 * a * b * s**2)


# ----------------------------------------------------------------------------- T5 closed forms


def test_t5_layer_params(t5, t5_v1_1):
    assert same(block(t5, "encoder_layer").metrics["params"], 4 * a * h * dk + 2 * h * f + 2 * h)
    assert same(block(t5, "decoder_layer").metrics["params"], 8 * a * h * dk + 2 * h * f + 3 * h)
    assert same(block(t5, "encoder_layer").metrics["params"].subs(dk, h / a), 4 * h**2 + 2 * h * f + 2 * h)
    assert same(block(t5_v1_1, "encoder_layer").metrics["params"], 4 * a * h * dk + 3 * h * f + 2 * h)
    assert same(block(t5_v1_1, "decoder_layer").metrics["params"], 8 * a * h * dk + 3 * h * f + 3 * h)
    for r in (t5, t5_v1_1):
        bias = [b_ for b_ in r.blocks if b_.block == "t5_position_bias"]
        assert len(bias) == 2 and all(same(x.metrics["params"], a * B) and x.repeat == 1 for x in bias)


def test_t5_model_params(t5, t5_v1_1):
    enc, dec = 4 * a * h * dk + 2 * h * f + 2 * h, 8 * a * h * dk + 2 * h * f + 3 * h
    # one shared embedding (tied head), one bias table per stack (not per layer), two final norms
    assert same(t5.totals["params"], L * enc + Ld * dec + V_ * h + 2 * a * B + 2 * h)
    assert same(t5_v1_1.totals["params"], L * (enc + h * f) + Ld * (dec + h * f) + 2 * V_ * h + 2 * a * B + 2 * h)


def test_t5_forward_matmul_flops(t5):
    enc = 8 * a * b * s * h * dk + 4 * a * b * s**2 * dk + 4 * b * s * h * f
    self_att = 8 * a * b * t * h * dk + 4 * a * b * t**2 * dk
    cross = 4 * a * b * t * h * dk + 4 * a * b * s * h * dk + 4 * a * b * s * t * dk  # q, o on t; k, v on s
    dec = self_att + cross + 4 * b * t * h * f
    assert same(block(t5, "encoder_layer").metrics["matmul_flops_fwd"], enc)
    assert same(block(t5, "decoder_layer/t5_cross_attention").metrics["matmul_flops_fwd"], cross)
    assert same(block(t5, "decoder_layer").metrics["matmul_flops_fwd"], dec)
    assert same(t5.totals["matmul_flops_fwd"], L * enc + Ld * dec + 2 * b * t * h * V_)
    assert same(t5.totals["matmul_flops_bwd"], 2 * t5.totals["matmul_flops_fwd"])


def test_t5_attention_is_not_scaled_and_has_no_biases(t5):
    ops = [r.node for r in t5.ops]
    assert not any(n.op == "linear" and any(p.path.endswith(".bias") for p in n.params) for n in ops)
    scaled = [n.path for n in ops if n.op == "scale"]
    assert scaled == ["scaled"]  # only the tied head's h^-1/2, never 1/sqrt(dk) on the scores


# ----------------------------------------------------------------------------- published counts


_REPORTS: dict = {}


def _preset_params(name: str) -> int:
    config, source = preset_config(name)
    r = resolve(config, source)
    key = (str(r.spec), tuple(sorted(r.options.items())))
    if key not in _REPORTS:
        _REPORTS[key] = report_for(r.spec.name, options=r.options)
    report = _REPORTS[key]
    runtime = {k: 1 for k in ("b", "s", "t") if k in report.env.dims}
    return Evaluator(report.env, {**r.values, **runtime})(report.totals["params"])


@pytest.mark.parametrize("name", BERT_PRESETS + T5_PRESETS)
def test_published_params_every_preset(name):
    assert name in PUBLISHED, f"add {name}'s published parameter count to PUBLISHED"
    assert _preset_params(name) == PUBLISHED[name]


def test_published_params_agree_with_the_reference():
    published = _reference()["published_params"]
    names = [n for n in PUBLISHED if n in published]
    assert set(names) >= {"bert-base-uncased", "bert-large-uncased", "t5-small", "t5-base"}
    for name in names:
        assert PUBLISHED[name] == published[name]["params"], name
        assert published[name]["model_class"] == mappings()[preset_config(name)[0]["model_type"]]["validate"]["class"]


@pytest.mark.parametrize("name", sorted(T5_V1_1))
def test_t5_v1_1_checkpoint_params(t5_v1_1, name):
    dims, published = T5_V1_1[name]
    assert Evaluator(t5_v1_1.env, {**dims, "V": 32128, "B": 32, "b": 1, "s": 1, "t": 1})(t5_v1_1.totals["params"]) == published


# ----------------------------------------------------------------------------- tiny FLOPs, from the spec alone


@pytest.mark.parametrize("model", ["bert", "t5"])
def test_tiny_flops_of_the_reference_derived_from_the_spec(model):
    """measured.json's FlopCounterMode totals for its tiny configs, derived without torch (t = s for T5)."""
    ref = _reference()
    config = {"model_type": model, **ref["tiny_configs"][model]}
    r = resolve(config, f"reference tiny {model}")
    report = report_for(r.spec.name, options=r.options)
    rows = [x for x in ref["tiny_matmul_flops"] if x["model"] == model]
    assert len(rows) == 6
    for row in rows:
        runtime = {k: (row["b"] if k == "b" else row["s"]) for k in ("b", "s", "t") if k in report.env.dims}
        ev = Evaluator(report.env, {**r.values, **runtime})
        fwd = ev(report.totals["matmul_flops_fwd"])
        want = fwd if row["mode"] == "forward_eval_nograd" else fwd + ev(report.totals["matmul_flops_bwd"])
        assert want == row["total_flops"], (model, row)


# ----------------------------------------------------------------------------- validate against transformers


def _exact(result):
    return [c for c in result.checks if c.exact]


REFERENCE_SHAPES = [(2, 16), (3, 32), (1, 64)]


@pytest.mark.parametrize("name", BERT_PRESETS + T5_PRESETS)
def test_validate_every_preset(hf, name):
    config, source = preset_config(name)
    shapes = REFERENCE_SHAPES if name in ("bert-base-uncased", "t5-small") else [(2, 16)]
    result = V.validate(config, source, None, shapes, ("params", "flops"), progress=None)
    exact = _exact(result)
    assert len(exact) == 2 + 2 * len(shapes)
    bad = [(c.quantity, c.b, c.s, c.derived, c.measured) for c in exact if c.derived != c.measured]
    assert not bad and result.ok
    assert exact[0].measured == PUBLISHED[name]


@pytest.mark.parametrize("model, name", [("bert", "bert-base-uncased"), ("t5", "t5-small")])
def test_validate_matches_the_independent_reference(hf, model, name):
    ref = {(x["b"], x["s"], x["mode"]): x["total_flops"] for x in _reference()["tiny_matmul_flops"] if x["model"] == model}
    config, source = preset_config(name)
    result = V.validate(config, source, None, REFERENCE_SHAPES, ("flops",), progress=None)
    mode = {"matmul_flops_fwd": "forward_eval_nograd", "matmul_flops_fwd_bwd": "train_forward_backward"}
    rows = [c for c in result.checks if c.quantity in mode]
    assert len(rows) == 6
    for c in rows:
        want = ref[(c.b, c.s, mode[c.quantity])]
        assert (c.derived, c.measured) == (want, want), (c.quantity, c.b, c.s)


def _v1_1_small(**overrides) -> dict:
    config = {
        "model_type": "t5", "vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 1024, "num_layers": 8,
        "num_decoder_layers": 8, "num_heads": 6, "relative_attention_num_buckets": 32, "dropout_rate": 0.1,
        "feed_forward_proj": "gated-gelu", "is_gated_act": True, "tie_word_embeddings": False,
        "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    }
    return {**config, **overrides}


def test_t5_gated_gelu_tied_validates_exactly(hf):
    """v1.1's gated-GELU feed-forward with a tied head: everything transformers can build agrees exactly."""
    result = V.validate(_v1_1_small(tie_word_embeddings=True), "v1.1-small, tied", None, [(2, 16), (1, 33)],
                        ("params", "flops"), progress=None)
    assert result.options["gated"] is True and result.options["tied"] is True
    assert result.ok and all(c.derived == c.measured for c in _exact(result))
    assert _exact(result)[0].measured == 76_961_152 - 32128 * 512


def test_t5_v1_1_untied_head(hf):
    """transformers 5.23 cannot build v1.1's untied head from a config, so that variant cannot validate.

    T5Config.__post_init__ pops tie_word_embeddings (it only decides scale_decoder_outputs) and sets it True, and
    T5ForConditionalGeneration ties lm_head, encoder.embed_tokens and decoder.embed_tokens to `shared` under that
    one flag. So the model built from a v1.1 config has one V×h matrix fewer than the checkpoint (which only
    from_pretrained, with weights, unties), and forcing the flag off afterwards unties all three. The FLOPs agree.
    """
    torch, transformers = hf
    config = transformers.T5Config.from_dict(_v1_1_small())
    assert config.tie_word_embeddings is True and config.scale_decoder_outputs is False
    result = V.validate(_v1_1_small(), "v1.1-small", None, [(2, 16)], ("params", "flops"), progress=None)
    assert result.options == {"tied": False, "gated": True, "dropout": True}
    diffs = {c.quantity: c.derived - c.measured for c in _exact(result)}
    assert diffs == {"params": 32128 * 512, "tiny_params": 1000 * 64, "matmul_flops_fwd": 0, "matmul_flops_fwd_bwd": 0}
    assert _exact(result)[0].derived == T5_V1_1["t5-v1_1-small"][1]
    config.tie_word_embeddings = False
    with torch.device("meta"):
        untied = transformers.T5ForConditionalGeneration(config)
    assert sum(p.numel() for p in untied.parameters()) == T5_V1_1["t5-v1_1-small"][1] + 2 * 32128 * 512


def test_t5_inner_width_differs_from_model_width(hf, monkeypatch):
    """t5-3b/11b have a·dk ≠ h; a tiny model with a·dk = 128 ≠ h = 64 still agrees exactly."""
    table = mappings()
    table["t5"] = {**table["t5"], "tiny": {**table["t5"]["tiny"], "d_kv": 32}}
    monkeypatch.setattr("symcost.analysis.hf.mappings", lambda: table)
    config, source = preset_config("t5-3b")
    result = V.validate(config, source, None, [(2, 16), (1, 24)], ("flops",), progress=None)
    assert result.tiny_dims["dk"] * result.tiny_dims["a"] == 128 != result.tiny_dims["h"]
    assert result.ok and all(c.derived == c.measured for c in _exact(result))


def test_validate_saved_bytes_are_reported(hf):
    torch, transformers = hf
    pinned = torch.__version__.startswith("2.13.0") and transformers.__version__ == "5.23.0"
    for name in ("bert-base-uncased", "t5-small"):
        config, source = preset_config(name)
        result = V.validate(config, source, None, [(2, 16)], ("saved",), progress=None)
        act = [c for c in result.checks if c.quantity == "activation_bytes"]
        assert len(act) == 1 and not act[0].exact and result.ok
        assert act[0].derived == {"bert-base-uncased": 326_784, "t5-small": 960_256}[name]
        if pinned:  # the figures docs/validation.md accounts for term by term
            assert act[0].measured == {"bert-base-uncased": 371_840, "t5-small": 1_281_028}[name]
