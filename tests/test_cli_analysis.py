"""The command line for training and serving analysis: phases, devices, training state, compare."""
from __future__ import annotations

import json

from symcost.cli import main

from helpers import SPECS

LLAMA_7B = ["--preset", "llama-2-7b"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_on_a_device_prints_cache_bytes_per_token_and_tokens_per_second(capsys):
    code, out, _ = run(capsys, "derive", str(SPECS / "llama.arch"), *LLAMA_7B, "--phase", "decode",
                       "--device", "h100-sxm", "--set", "b=1", "c=4096")
    assert code == 0
    assert "KV cache bytes          4·b·h·kv·L·c/a   = 2.147 GB" in out
    assert "decode on h100-sxm" in out and "tokens/s      ≤" in out and "(memory-bound)" in out


def test_decode_json_has_the_stable_names(capsys):
    code, out, _ = run(capsys, "derive", str(SPECS / "llama.arch"), *LLAMA_7B, "--phase", "decode",
                       "--device", "h100-sxm", "--set", "b=1", "c=4096", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["phase"] == "decode"
    assert doc["totals"]["kv_cache_bytes"]["value"] == 2 * 1 * 4096 * 32 * 32 * 128 * 2
    assert doc["device"]["time_lower_bound_s"]["value"] > 0 and doc["device"]["bound"] == "memory"
    assert all("arithmetic_intensity" in op for op in doc["device"]["ops"])
    # bytes per token: every weight plus the whole cache, over b = 1 sequence
    assert doc["device"]["bytes"]["value"] >= doc["totals"]["weight_bytes"]["value"] - 2 * 32000 * 4096


def test_training_state_with_zero(capsys):
    code, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--preset", "gpt2-small", "--phase", "train",
                       "--zero", "1", "--dp", "8", "--format", "json")
    doc = json.loads(out)
    psi = 124_439_808
    assert code == 0
    assert doc["training"]["gradient_bytes"]["value"] == 2 * psi
    assert doc["training"]["optimizer_bytes"]["value"] == 12 * psi // 8


def test_compare_gqa(capsys):
    code, out, _ = run(capsys, "compare", str(SPECS / "llama.arch"), "--a", "kv=a", "--b", "kv=8", "--phase",
                       "prefill", "--format", "json")
    assert code == 0
    rows = {r["metric"]: r for r in json.loads(out)["rows"]}
    assert rows["kv_cache_bytes"]["ratio"]["expr"] == "8/a"


def test_tensor_parallel_header_and_comm(capsys):
    code, out, _ = run(capsys, "derive", str(SPECS / "gpt2.arch"), "--tp", "t", "--sp", "--recompute", "selective")
    assert code == 0
    assert "per device of tensor-parallel degree t · with sequence parallelism" in out
    assert "selective recomputation" in out and "communication bytes" in out


def test_devices_listing(capsys):
    code, out, _ = run(capsys, "devices", "--format", "json")
    names = {d["device"] for d in json.loads(out)}
    assert code == 0 and {"h100-sxm", "a100-80gb", "mi300x", "tpu-v5p"} <= names


def test_analysis_errors(capsys):
    code, _, err = run(capsys, "derive", str(SPECS / "llama.arch"), "--device", "h100-sxn")
    assert code == 2 and "did you mean 'h100-sxm'" in err
    code, _, err = run(capsys, "derive", str(SPECS / "llama.arch"), "--step-time", "1.0")
    assert code == 2 and "with --phase train and --device" in err
    code, _, err = run(capsys, "derive", str(SPECS / "llama.arch"), "--sp")
    assert code == 2 and "--tp" in err


def test_compare_two_recompute_modes(capsys):
    code, out, _ = run(capsys, "compare", str(SPECS / "gpt2.arch"), "--a", "recompute=selective", "--b",
                       "recompute=full", "--format", "json")
    rows = {r["metric"]: r for r in json.loads(out)["rows"]}
    assert code == 0
    # selective keeps 34·b·s·h per layer, full only the layer input: 2·b·s·h
    assert rows["activation_bytes"]["diff"]["expr"] == "-32*L*b*h*s"
    code, _, err = run(capsys, "compare", str(SPECS / "gpt2.arch"), "--a", "recompute=some")
    assert code == 2 and "recompute takes" in err
