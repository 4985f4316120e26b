"""Mapping rules (symcost.analysis.rules) and the account of a config's fields (symcost.analysis.fields).

Rules are small expressions over config fields, parsed and evaluated node by node: arithmetic as transformers
computes it, null versus an absent field, strings, conditionals, nested fields. Every config field is read,
knowingly ignored, or an error naming it. The class audit (with the torch extra) checks every mapping against
transformers 5.23's config classes: each field a class defines is read or ignored by its mapping.
"""
from __future__ import annotations

import json
from fractions import Fraction

import pytest

from symcost.analysis import rules
from symcost.analysis.hf import mappings, preset_config, presets, resolve
from symcost.errors import SymcostError

from helpers import require_torch


def value(text: str, config: dict | None = None, defaults=None, aliases=None):
    fields = rules.Fields(config or {}, defaults, aliases)
    return rules.evaluate(rules.parse(text, "rule"), fields)


# ----------------------------------------------------------------------------- the rule language


@pytest.mark.parametrize("text, config, expected", [
    ("n_embd", {"n_embd": 768}, 768),
    ("4 * n_embd", {"n_embd": 768}, 3072),
    ("(image_size / patch_size)^2 + 1", {"image_size": 224, "patch_size": 16}, 197),
    ("(image_size / patch_size)^2 + 1", {"image_size": 225, "patch_size": 16}, Fraction(225, 16) ** 2 + 1),
    ("floor(d * partial_rotary_factor)", {"d": 128, "partial_rotary_factor": 0.25}, 32),
    ("floor(d * partial_rotary_factor)", {"d": 80, "partial_rotary_factor": 0.4}, 32),  # Phi-2: int(80·0.4)
    ("ceil(hidden_size / 16)", {"hidden_size": 768}, 48),
    ("ceil(hidden_size / 16)", {"hidden_size": 770}, 49),
    ("floor(7 / 2) + ceil(2.5) + min(3, 4, 2) + max(1, 9)", {}, 3 + 3 + 2 + 9),
    ("-x + 10", {"x": 3}, 7),
    ("if(n_inner != null, n_inner, 4 * n_embd)", {"n_inner": None, "n_embd": 64}, 256),
    ("if(n_inner != null, n_inner, 4 * n_embd)", {"n_inner": 100, "n_embd": 64}, 100),
    ("if(use_sliding_window, sliding_window, null)", {"use_sliding_window": False, "sliding_window": 4096}, None),
    ("if(use_sliding_window, sliding_window, null)", {"use_sliding_window": True, "sliding_window": 4096}, 4096),
    ('feed_forward_proj == "gated-gelu"', {"feed_forward_proj": "gated-gelu"}, True),
    ('feed_forward_proj == "gated-gelu"', {"feed_forward_proj": "relu"}, False),
    ("a != 0 or b != 0", {"a": 0, "b": 0.1}, True),
    ("not (a > 1 and b <= 2)", {"a": 2, "b": 2}, False),
    ("x == 1", {"x": 1.0}, True),
    ("x == null", {"x": 0}, False),
    ("2 ^ 10", {}, 1024),
])
def test_rules_compute(text, config, expected):
    got = value(text, config)
    assert got == expected and type(got) is not bool or expected in (True, False)
    assert (got is None) == (expected is None)


def test_null_is_a_value_and_absent_takes_the_class_default():
    rule = "if(n_inner != null, n_inner, 4 * n_embd)"
    assert value(rule, {"n_embd": 8}, defaults={"n_inner": None}) == 32  # absent -> default null
    assert value(rule, {"n_embd": 8}, defaults={"n_inner": 5}) == 5  # absent -> default 5
    assert value(rule, {"n_embd": 8, "n_inner": None}, defaults={"n_inner": 5}) == 32  # null stays null
    with pytest.raises(SymcostError, match="missing field 'n_inner'"):
        value(rule, {"n_embd": 8})


def test_nested_fields_and_spellings():
    aliases = {"rotary": ["rope_parameters.partial_rotary_factor", "rotary_pct"]}
    assert value("rotary", {"rope_parameters": {"partial_rotary_factor": 0.25}}, aliases=aliases) == 0.25
    assert value("rotary", {"rotary_pct": 0.5}, aliases=aliases) == 0.5  # the hub's legacy spelling
    assert value("rotary", {"rope_parameters": {"rope_theta": 1}, "rotary_pct": 0.5}, aliases=aliases) == 0.5
    assert value("d2 + d3", {"depths": [3, 4, 6, 3]}, aliases={"d2": "depths.2", "d3": ["depths.3"]}) == 9
    assert value("d4", {"depths": [3, 4, 6, 3]}, defaults={"d4": None}, aliases={"d4": "depths.4"}) is None
    with pytest.raises(SymcostError, match="missing field 'rope_parameters.partial_rotary_factor or rotary_pct'"):
        value("rotary", {}, aliases=aliases)
    fields = rules.Fields({"rope_parameters": {"partial_rotary_factor": 0.25}, "x": 1}, None, aliases)
    rules.evaluate(rules.parse("rotary", "r"), fields)
    assert set(fields.read) == {"rope_parameters"}  # the top-level field is what was read


@pytest.mark.parametrize("text, config, message", [
    ("x + 1", {"x": "64"}, r"'\+' needs numbers, but this is a string \('64'\)"),
    ("x * 2", {"x": True}, r"needs numbers, but this is a boolean"),
    ("x * 2", {"x": None}, r"needs numbers, but this is null"),
    ("x * 2", {"x": [1, 2]}, r"needs numbers, but this is a list"),
    ("x * 2", {"x": {"a": 1}}, r"needs numbers, but this is an object"),
    ('x < "a"', {"x": 1}, r"'<' compares numbers, but this is a string"),
    ("x == 1", {"x": True}, r"'==' compares a boolean \(true\) with a number \(1\)"),
    ("x != 0", {"x": "0.1"}, r"'!=' compares a string"),
    ("if(x, 1, 2)", {"x": None}, r"a condition must be true or false, but this is null"),
    ("if(x, 1, 2)", {"x": 1}, r"a condition must be true or false, but this is a number"),
    ("x * x", {"x": 10**20}, r"too large"),
    ("x", {"x": 10**40}, r"too large"),
    ("2 ^ x", {"x": 1000}, r"exponent must be at most 64"),
    ("x ^ 30", {"x": 10**6}, r"too large"),
    ("2 ^ 0.5", {}, r"exponent must be a whole number"),
    ("x / 0", {"x": 1}, r"division by zero"),
    ("0 ^ -1", {}, r"division by zero"),
    ("eval(x)", {"x": 1}, r"unknown function 'eval'"),
    ('__import__("os")', {}, r"unknown function '__import__'"),
    ("int(x)", {"x": 1.5}, r"unknown function 'int'"),
    ("x.y", {"x": 1}, r"unexpected character"),
    ("x[0]", {"x": [1]}, r"unexpected"),
    ("floor(x)", {"x": "12"}, r"floor\(\) takes numbers"),
    ("x if y else z", {}, r"unexpected"),
    ("(" * 3000 + "1" + ")" * 3000, {}, r"too long|nests too deeply"),
])
def test_hostile_rules_are_clear_errors(text, config, message):
    with pytest.raises(SymcostError, match=message):
        value(text, config)


def test_a_rule_is_never_evaluated_as_python(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("text reached eval/exec")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert value('if(kind == "a", floor(d * f), null)', {"d": 10, "f": 0.5, "kind": "a"}) == 5
    with pytest.raises(SymcostError):
        value('__import__("os").system("true")', {})


def test_a_deeply_nested_config_is_read_only_where_a_rule_points():
    deep = current = {}
    for _ in range(200):
        current["x"] = {}
        current = current["x"]
    assert value("n", {"n": 3, "deep": deep}) == 3
    with pytest.raises(SymcostError, match="deeper than 8"):
        value("p", {"x": deep}, aliases={"p": ".".join(["x"] * 20)})


# ----------------------------------------------------------------------------- mappings read configs completely


def _gpt2(**extra) -> dict:
    config, _ = preset_config("gpt2-small")
    return {**config, **extra}


def test_gpt2_n_inner_is_honoured():
    import symcost

    default = symcost.derive(preset="gpt2-small")
    assert default.at().params == 124_439_808
    h = default.symbol("h")
    layer = default.blocks["layer"].metrics["params"]
    assert (layer - (12 * h**2 + 13 * h)).expand() == 0  # the published closed form for the default 4h
    # n_inner set: the MLP is n_inner wide, and f is a dim of its own in the closed forms
    path = _write(_gpt2(n_inner=1000))
    a = symcost.derive(hf_config=path)
    f = a.symbol("f")
    assert (a.blocks["layer"].metrics["params"] - (4 * h**2 + 2 * h * f + 9 * h + f)).expand() == 0
    h_, L, V, P = 768, 12, 50257, 1024
    assert a.at().params == L * (4 * h_**2 + 2 * h_ * 1000 + 9 * h_ + 1000) + V * h_ + P * h_ + 2 * h_
    assert resolve(_gpt2(n_inner=None), "null").unset == ("f",)  # null: the spec's 4h


def _write(config: dict) -> str:
    import tempfile

    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(config, handle)
    handle.close()
    return handle.name


def test_an_unknown_field_that_may_change_the_model_is_an_error_naming_it():
    with pytest.raises(SymcostError, match=r"does not know the field n_expert=8"):
        resolve(_gpt2(n_expert=8), "cfg")
    with pytest.raises(SymcostError, match=r"fields (n_expert=8, lora_rank=16|lora_rank=16, n_expert=8)"):
        resolve(_gpt2(n_expert=8, lora_rank=16), "cfg")
    # a null unknown field changes nothing; known harmless ones are listed with their reason
    r = resolve(_gpt2(n_expert=None, layer_norm_epsilon=1e-5, architectures=["GPT2LMHeadModel"], n_ctx=1024), "cfg")
    assert r.fields.unknown == ["n_expert"]
    assert "layer_norm_epsilon" in r.fields.ignored and "architectures" in r.fields.ignored
    assert "n_inner" in r.fields.defaulted and "n_embd" in r.fields.read


@pytest.mark.parametrize("extra, message", [
    ({"activation_function": "relu"}, r"activation_function='relu' is not supported: gpt2.arch's MLP activation"),
    ({"scale_attn_weights": False}, r"scale_attn_weights=false is not supported"),
    ({"add_cross_attention": True}, r"add_cross_attention=true is not supported"),
    ({"pruned_heads": {"0": [1]}}, r"pruned_heads=an object of 1 is not supported"),
    ({"n_embd": "768"}, r"'n_embd'|must be a positive integer"),
    ({"n_layer": 12.5}, r"L must be a positive integer, but the gpt2 mapping's rule gives 12.5"),
    ({"n_layer": 0}, r"L must be a positive integer"),
    ({"n_layer": True}, r"L must be a positive integer"),
    ({"n_layer": 10**16}, r"L must be a positive integer"),
    ({"tie_word_embeddings": "yes"}, r"option tied must be true or false, but the gpt2 mapping's rule gives 'yes'"),
    ({"resid_pdrop": "0.1"}, r"'!=' compares a string \('0.1'\) with a number"),
])
def test_configs_the_spec_cannot_model_are_errors(extra, message):
    with pytest.raises(SymcostError, match=message):
        resolve(_gpt2(**extra), "cfg")


def test_explain_and_json_list_the_fields(capsys):
    from symcost.cli import main

    path = _write(_gpt2(n_inner=2048, layer_norm_epsilon=1e-5, rope_whatever=None))
    assert main(["derive", "--hf-config", path, "--explain"]) == 0
    out = capsys.readouterr().out
    assert "read: n_embd, n_head, n_inner, n_layer, n_positions, tie_word_embeddings, vocab_size" in out
    assert "ignored (numerics only: epsilons, initialisation, upcasting): layer_norm_epsilon" in out
    assert "unknown, null: rope_whatever" in out
    assert main(["derive", "--hf-config", path, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["fields"]["ignored"]["layer_norm_epsilon"].startswith("numerics")
    assert "n_inner" in doc["config"]["fields"]["read"]


def test_every_shipped_preset_is_read_completely():
    for name in presets():
        config, source = preset_config(name)
        r = resolve(config, source)  # raises on any field neither read nor ignored
        assert not r.fields.unknown, (name, r.fields.unknown)


def test_t5_gated_follows_feed_forward_proj_as_transformers_does():
    base = {"model_type": "t5", "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4,
            "vocab_size": 100}
    assert resolve({**base, "feed_forward_proj": "gated-gelu"}, "v1.1").options["gated"] is True
    # is_gated_act is recomputed from feed_forward_proj by T5Config: a stale value is ignored
    assert resolve({**base, "feed_forward_proj": "relu", "is_gated_act": True}, "x").options["gated"] is False
    with pytest.raises(SymcostError, match="feed_forward_proj='gated-silu' is not supported"):
        resolve({**base, "feed_forward_proj": "gated-silu"}, "x")


# ----------------------------------------------------------------------------- audit against transformers


@pytest.fixture(scope="module")
def hf():
    return require_torch()


@pytest.mark.parametrize("model_type", sorted(mappings()))
def test_every_field_of_the_config_class_is_read_or_ignored(hf, model_type):
    """transformers 5.23's config class for each mapping: every field it defines is accounted for, and each
    default the mapping states for an absent field is the class's own."""
    from symcost.analysis.fields import GENERIC_REQUIRED, GENERIC_TABLE, ignore_table
    from symcost.analysis.hf import _named_fields

    _, transformers = hf
    m = mappings()[model_type]
    cls = getattr(transformers, m["validate"]["config"])
    fields = cls().to_dict()
    known = _named_fields(m) | set(ignore_table(m, model_type)) | set(GENERIC_TABLE) | set(GENERIC_REQUIRED)
    missing = sorted(k for k in fields if k not in known and not k.startswith("_"))
    assert not missing, f"{model_type}: fields of {cls.__name__} the mapping neither reads nor ignores: {missing}"
    raw = cls.__dataclass_fields__ if hasattr(cls, "__dataclass_fields__") else {}
    for name, default in m.get("defaults", {}).items():
        aliases = m.get("fields", {})
        if name in aliases or name not in raw:
            continue  # a nested or legacy spelling, or a field transformers computes
        declared = raw[name].default
        if declared is not None and not callable(declared) and type(declared).__name__ != "_MISSING_TYPE":
            assert declared == default, (model_type, name, declared, default)
