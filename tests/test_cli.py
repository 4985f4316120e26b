"""The command line: formats, conventions, config import, presets, and the README's promises."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import sympy as sp

from symcost.cli import main

from helpers import ROOT, SPECS, sym

GPT2_SMALL = ["--set", "a=12", "b=1", "s=1024", "h=768", "L=12", "V=50257", "P=1024"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_text_report(capsys):
    code, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), *GPT2_SMALL)
    assert code == 0
    assert "12·h² + 13·h" in out
    assert "124.4M (124,439,808)" in out
    assert "L·(24·b·s·h² + 4·b·s²·h) + 2·b·s·h·V" in out


def test_json_schema_and_values(capsys):
    code, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--format", "json", *GPT2_SMALL)
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "symcost.derive/1"
    assert doc["totals"]["params"]["value"] == 124_439_808
    metrics = {"params", "active_params", "flops_fwd", "matmul_flops_fwd", "flops_bwd", "matmul_flops_bwd",
               "activation_bytes", "weight_bytes", "io_bytes", "kv_cache_bytes", "flops_recompute", "comm_bytes"}
    assert set(doc["totals"]) == metrics
    layer = next(b for b in doc["blocks"] if b["path"] == "layer")
    assert layer["repeat"] == {"expr": "L", "value": 12}
    assert set(layer["per_instance"]) == metrics
    h = sym("h")
    # the expr field is SymPy's str() form; parse it back only in the test, with known symbols
    expr = sp.parse_expr(layer["per_instance"]["params"]["expr"], local_dict={"h": h})
    assert sp.expand(expr - (12 * h**2 + 13 * h)) == 0
    qkv = next(o for o in doc["ops"] if o["path"] == "layer/causal_self_attention/qkv")
    assert qkv["op"] == "linear" and qkv["inputs"][0]["shape"] == ["b", "s", "h"]
    assert qkv["outputs"][0]["shape"] == ["b", "s", "3*h"]
    assert all(m["value"] is not None for m in doc["totals"].values())


def test_json_without_values_has_null(capsys):
    _, out, _ = run(capsys, "derive", str(SPECS / "llama.arch"), "--format", "json")
    doc = json.loads(out)
    assert doc["totals"]["params"]["value"] is None
    assert doc["totals"]["params"]["expr"] == "3*L*f*h + 2*L*h**2 + 2*L*h + 2*L*h**2*kv/a + 2*V*h + h"


def test_latex(capsys):
    _, out, _ = run(capsys, "derive", str(SPECS / "llama.arch"), "--format", "latex")
    assert out.count(r"\begin{align*}") == out.count(r"\end{align*}") >= 2
    assert r"\frac{2 h^{2} n_{kv}}{a}" in out  # the spec's tex name for kv
    assert "N_{\\text{params}} &= L \\left(3 h f + 2 h^{2} + \\frac{2 h^{2} n_{kv}}{a} + 2 h\\right) + 2 h V + h" in out


def test_markdown(capsys):
    _, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--format", "markdown", *GPT2_SMALL)
    assert "| parameters | $12 h^{2} + 13 h$ |" in out
    assert "| 124.4M (124,439,808) |" in out  # the exact count beside the readable one, as in text


def test_explain_walks_every_op(capsys):
    _, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--explain")
    assert "layer/causal_self_attention/scores" in out
    assert "qh [b, a, s, d], kc [b, a, s, d] → [b, a, s, s] bf16" in out
    assert "mask: a·b·s² bytes" in out  # the dropout mask, 1 byte per element


@pytest.mark.parametrize("conv,factor", [("mac", sp.Rational(1, 2)), ("fma", 1)])
def test_flop_conventions(capsys, conv, factor):
    _, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--format", "json", "--flops", conv, *GPT2_SMALL)
    _, ref, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--format", "json", *GPT2_SMALL)
    got = json.loads(out)["totals"]["matmul_flops_fwd"]["value"]
    assert got == json.loads(ref)["totals"]["matmul_flops_fwd"]["value"] * factor
    assert json.loads(out)["conventions"]["flops"] == conv


def test_exact_convention_subtracts_one_add_per_output(capsys):
    _, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--format", "json", "--flops", "exact")
    doc = json.loads(out)
    logits = next(o for o in doc["ops"] if o["path"] == "logits")
    assert logits["per_instance"]["matmul_flops_fwd"]["expr"] == "2*V*b*h*s - V*b*s"


def test_dtype_override_scales_bytes(capsys):
    _, a, _ = run(capsys, "derive", str(SPECS / "llama.arch"), "--format", "json", "--preset", "llama-2-7b")
    _, b, _ = run(capsys, "derive", str(SPECS / "llama.arch"), "--format", "json", "--preset", "llama-2-7b", "--dtype", "fp32")
    assert json.loads(b)["totals"]["weight_bytes"]["value"] == 2 * json.loads(a)["totals"]["weight_bytes"]["value"]


def test_option_flip_untied_head(capsys):
    _, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--format", "json", *GPT2_SMALL, "tied=false")
    assert json.loads(out)["totals"]["params"]["value"] == 124_439_808 + 50257 * 768


def test_hf_config_chooses_spec_by_model_type(capsys, tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
           "intermediate_size": 11008, "vocab_size": 32000}  # num_key_value_heads defaults to the heads
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    code, out, _ = run(capsys, "derive", "--hf-config", str(path), "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["params"]["value"] == 6_738_415_616


def test_hf_config_errors(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    code, _, err = run(capsys, "derive", "--hf-config", str(path))
    assert code == 2 and "missing field 'num_hidden_layers'" in err
    path.write_text(json.dumps({"model_type": "llamma"}))
    code, _, err = run(capsys, "derive", "--hf-config", str(path))
    assert code == 2 and "model_type 'llamma' has no mapping" in err and "did you mean 'llama'" in err
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                "intermediate_size": 8, "vocab_size": 10, "head_dim": 32}))
    code, _, err = run(capsys, "derive", "--hf-config", str(path))
    assert code == 2 and "head_dim=32" in err and "d = 16" in err
    path.write_text("{not json")
    code, _, err = run(capsys, "derive", "--hf-config", str(path))
    assert code == 2 and "not valid JSON" in err


def test_presets_listing(capsys):
    code, out, _ = run(capsys, "presets", "--format", "json")
    names = {p["name"] for p in json.loads(out)}
    assert code == 0
    assert {"gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "llama-2-7b", "llama-2-13b", "llama-2-70b",
            "llama-3-8b", "llama-3-70b", "mistral-7b-v0.1"} <= names


def test_ops_listing(capsys):
    code, out, _ = run(capsys, "ops")
    assert code == 0 and "linear(x, out=none, bias=true, weight=none, parallel=none)" in out
    assert "cache(x, axis=-2, window=none, once=false, keep=none)" in out
    code, out, _ = run(capsys, "ops", "softmax")
    assert code == 0 and "saves its output" in out
    code, _, err = run(capsys, "ops", "sofmax")
    assert code == 2 and "did you mean 'softmax'" in err


def test_ops_listing_shows_whole_first_sentences(capsys):
    """Each op's line ends its docstring's first sentence, never a line cut where the source wrapped."""
    from symcost.ops.registry import OPS

    _, out, _ = run(capsys, "ops")
    lines = out.splitlines()
    assert len(lines) == len(OPS)
    for line in lines:
        assert line.rstrip().endswith("."), line
    listed = {line.split("(")[0]: line for line in lines}
    assert listed["cache"].rstrip().endswith("Keys or values kept for later tokens, [.., s, d] along `axis`.")
    assert listed["dropout"].rstrip().endswith("Dropout; saves a 1-byte mask the size of its input.")
    # a sentence wrapped over two source lines is joined, not cut at the line break
    batchnorm = OPS["batchnorm"].fn.__doc__.split("\n")[0]
    assert not batchnorm.rstrip().endswith(".") and "(`affine=false`: none)." in listed["batchnorm"]


def test_first_sentence_rules():
    from symcost.ops.registry import first_sentence

    assert first_sentence("One. Two.") == "One."
    assert first_sentence("Positions 0..n-1 as int64 [n].\n\nMore.") == "Positions 0..n-1 as int64 [n]."
    assert first_sentence("A [.., k] view, wrapped\n    over lines. `x` next.") == "A [.., k] view, wrapped over lines."
    assert first_sentence("") == ""


def test_output_is_deterministic_across_processes():
    outs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        for fmt in ("text", "json", "latex"):
            proc = subprocess.run(
                [sys.executable, "-m", "symcost", "derive", str(SPECS / "llama.arch"), "--format", fmt],
                capture_output=True, text=True, env=env, cwd=ROOT, check=True,
            )
            outs.add((fmt, proc.stdout))
    assert len(outs) == 3


def _readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    i = text.index(title)
    start = text.index("```", i)
    end = text.index("```", start + 3)
    return text[start + 3 : end].strip("\n")


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    shown = commands[1].splitlines()  # set-up (a browser, the pinned versions), then the test command
    assert ci[-len(shown):] == shown and ci[-1] == shown[-1] == "python3 -m pytest"
    assert "-c constraints/ci.txt" in shown[-2] and "chromium" in shown[0]
    assert commands[0].endswith("symcost derive specs/llama.arch")
