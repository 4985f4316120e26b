"""Sweeps: the grid syntax, exact values against Analysis.at at every point, columns, formats, errors, the command."""
from __future__ import annotations

import csv
import io
import json
import random
from fractions import Fraction

import pytest

import symcost
from symcost.analysis.grid import check_values, parse_over, parse_values
from symcost.cli import main
from symcost.errors import SymcostError
from symcost.present import units

from helpers import SPECS


# ---- the grid syntax -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, values", [
    ("512..32768:x2", [512, 1024, 2048, 4096, 8192, 16384, 32768]),
    ("1..100:x10", [1, 10, 100]),
    ("3..30:x3", [3, 9, 27]),
    ("512..2048:+512", [512, 1024, 1536, 2048]),
    ("1..10:+4", [1, 5, 9]),
    ("7..7:+1", [7]),
    ("1,8,64", [1, 8, 64]),
    ("4096", [4096]),
    (" 2, 4 ", [2, 4]),
])
def test_axis_syntax(text, values):
    assert parse_values("s", text.strip()) == values


@pytest.mark.parametrize("text, message", [
    ("512..4096", "a range needs a step"),
    ("512..4096:x1", "multiplies by 2 or more"),
    ("512..4096:+0", "step must be a positive"),
    ("4096..512:x2", "ends below its start"),
    ("1,,2", "an empty item"),
    ("1,2,1", "lists 1 twice"),
    ("0,1", "must be positive"),
    ("-1,2", "'-1' is not a whole number"),
    ("1e3", "'1e3' is not a whole number"),
    ("2**10", "'2**10' is not a whole number"),
    ("__import__('os').system('true')", "is not a whole number"),
    ("1..4:*2", "not a range"),
    ("１,２", "is not a whole number"),  # full-width digits: ASCII only
    ("1..100000000000:+1", "values on one axis"),
])
def test_axis_syntax_errors_quote_the_text(text, message):
    with pytest.raises(SymcostError, match=message.replace("*", r"\*").replace("(", r"\(")) as e:
        parse_values("s", text)
    assert "--over s=" in str(e.value)


def test_over_items_and_api_values():
    assert parse_over(["s=1,2", "b=1..4:x2"]) == {"s": [1, 2], "b": [1, 2, 4]}
    for bad, message in (["s"], "NAME=VALUES"), (["s=1", "s=2"], "twice"), (["1s=2"], "not a dimension name"):
        with pytest.raises(SymcostError, match=message):
            parse_over(bad)
    assert check_values("b", range(1, 4)) == [1, 2, 3]
    assert check_values("b", 8) == [8]
    assert check_values("b", "1..4:x2") == [1, 2, 4]
    for bad in ([1.5], [True], [0], [], ["1"]):
        with pytest.raises(SymcostError):
            check_values("b", bad)


# ---- values: every point equals Analysis.at -----------------------------------------------------------------
@pytest.fixture(scope="module")
def prefill():
    return symcost.derive("llama", preset="llama-2-7b", phase="prefill", device="h100-sxm")


def test_every_point_equals_exact_substitution(prefill):
    table = symcost.sweep(prefill, over={"b": [1, 8, 64, 10**6], "s": range(512, 32769, 4096)}, metrics="all")
    rows = table.rows()
    assert len(rows) == len(table) == 4 * 8
    assert [(r["b"], r["s"]) for r in rows[:3]] == [(1, 512), (1, 4608), (1, 8704)]  # the first dim varies slowest
    assert any(r["flops_fwd"] > 2**53 for r in rows)  # exact past a double's integers
    for r in random.Random(7).sample(rows, 10) + [rows[-1]]:
        at = prefill.at(b=r["b"], s=r["s"])
        for m in prefill.totals:
            assert r[m] == at[m], m
        for path, block in prefill.blocks.items():
            assert r[f"{path}.flops_fwd"] == at(block.metrics["flops_fwd"])
        bound = prefill.summary.values(at.evaluator)
        assert r["time_lower_bound_s"] == bound["time"] and r["tokens_per_s"] == bound["tokens_per_s"]
        assert r["compute_time_s"] == bound["compute_time"] and r["memory_time_s"] == bound["memory_time"]
        assert r["memory_bytes"] == at.evaluator(prefill.memory.total)  # weights, KV cache and live activations
        assert r["memory_bytes"] > at["weight_bytes"] + at["kv_cache_bytes"]
        assert isinstance(r["time_lower_bound_s"], Fraction)


def test_float_arrays_agree_with_exact_values(prefill):
    table = symcost.sweep(prefill, over={"b": [1, 8, 64, 10**6], "s": [1, 512, 32768]},
                          metrics=["flops_fwd", "time", "tokens_per_s"])
    assert table.metrics == ["flops_fwd", "time_lower_bound_s", "tokens_per_s"]
    for m in table.metrics:
        floats, exact = table.array(m), table.exact(m)
        assert floats.shape == exact.shape == (4, 3)
        for f, x in zip(floats.ravel(), exact.ravel()):
            assert f == pytest.approx(float(x), rel=4e-16)
            if isinstance(x, int) and x < 2**53:
                assert f == x


def test_table_takes_the_short_names_sweep_takes(prefill):
    """A table answers to the names `metrics=` takes — "time", "tokens", "memory" — as to its own."""
    table = symcost.sweep(prefill, over={"b": [1, 8], "s": [512]}, metrics=["time", "tokens", "memory"])
    assert table.metrics == ["time_lower_bound_s", "tokens_per_s", "memory_bytes"]
    for short, name in (("time", "time_lower_bound_s"), ("tokens", "tokens_per_s"), ("memory", "memory_bytes")):
        assert table.column(short) == table.column(name)
        assert (table.array(short) == table.array(name)).all()
    # the same exact fraction of seconds as Analysis.at's phase bound at that point
    assert table.exact("time")[1, 0] == Fraction(prefill.at(b=8, s=512).summary["time"])
    with pytest.raises(SymcostError, match="no metric 'flops_fwd'"):
        table.array("flops_fwd")


def test_published_matmul_flops_by_hand():
    """GPT-2 small's forward matmul FLOPs, L·(24bsh² + 4bs²h) + 2bshV (Narayanan et al.), computed here by hand."""
    table = symcost.sweep("gpt2", over={"b": [1, 3], "s": [128, 1024]}, metrics=["matmul_flops_fwd", "params"],
                          preset="gpt2-small")
    h, L, V = 768, 12, 50257
    for row in table:
        b, s = row["b"], row["s"]
        assert row["matmul_flops_fwd"] == L * (24 * b * s * h * h + 4 * b * s * s * h) + 2 * b * s * h * V
        assert row["params"] == 124_439_808


def test_training_memory_columns():
    table = symcost.sweep("llama", over={"b": [1, 2]}, metrics=["memory_weights_bytes", "memory_gradients_bytes",
                          "memory_optimizer_bytes", "memory_activations_bytes", "memory_bytes", "params"],
                          preset="llama-2-7b", set={"s": 4096}, zero=1, dp=8)
    for row in table:
        psi = row["params"]  # mixed-precision AdamW under ZeRO-1 over 8: 2Ψ + 2Ψ + 12Ψ/8 (Rajbhandari et al.)
        assert (row["memory_weights_bytes"], row["memory_gradients_bytes"]) == (2 * psi, 2 * psi)
        assert row["memory_optimizer_bytes"] == Fraction(12 * psi, 8)
        assert row["memory_bytes"] == 4 * psi + Fraction(12 * psi, 8) + row["memory_activations_bytes"]


def test_formats(prefill):
    table = symcost.sweep(prefill, over=["s=512,1024", "b=1,8"], metrics="flops_fwd,tokens_per_s")
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [r["s"] for r in rows] == ["512", "512", "1024", "1024"]
    for got, want in zip(rows, table):
        assert int(got["flops_fwd"]) == want["flops_fwd"]
        assert float(got["tokens_per_s"]) == float(want["tokens_per_s"])
    doc = json.loads(table.to_json())
    assert doc["over"] == {"s": [512, 1024], "b": [1, 8]} and doc["fixed"]["h"] == 4096
    assert doc["metrics"]["tokens_per_s"]["unit"] == "tokens/s" and doc["device"] == "h100-sxm"
    assert [r["flops_fwd"] for r in doc["rows"]] == table.column("flops_fwd")


# ---- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("over, metrics, options, message", [
    ({"s": [1]}, ["flop_fwd"], {}, "unknown metric 'flop_fwd'"),
    ({"s": [1]}, ["time"], {}, "roofline bounds need a device"),
    ({"d": [1]}, None, {}, "'d' is derived"),
    ({"sz": [1]}, None, {}, "not a dimension of this spec"),
    ({}, None, {}, "nothing to sweep"),
    ({"h": [4096, 4000, 4100]}, ["params"], {"set": {"s": 1, "b": 1}}, "at h=4100: d = h/a"),
    ({"a": [32, 64, 8]}, ["params"], {"set": {"s": 1, "b": 1}, "tp": 16}, "at a=8: --tp 16 must divide a"),
    ({"s": [1, 2]}, ["flops_fwd"], {"preset": None}, "needs a value for"),
    ({"b": range(1, 10**4), "s": range(1, 10**4)}, None, {}, "the grid has 99,980,001 points"),
])
def test_errors(over, metrics, options, message):
    options = {"preset": "llama-2-7b", **options}
    with pytest.raises(SymcostError, match=message):
        symcost.sweep("llama", over=over, metrics=metrics, **options)


def test_options_cannot_be_swept_and_analyses_take_no_derive_options(prefill):
    with pytest.raises(SymcostError, match="'tied' is an option"):
        symcost.sweep("gpt2", over={"tied": [1]}, preset="gpt2-small")
    with pytest.raises(SymcostError, match="apply to a spec"):
        symcost.sweep(prefill, over={"s": [1]}, phase="decode")


# ---- the command -------------------------------------------------------------------------------------------
def run(capsys, *argv):
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_command_table_matches_derive(capsys, prefill):
    status, out, err = run(capsys, "sweep", str(SPECS / "llama.arch"), "--preset", "llama-2-7b", "--phase",
                           "prefill", "--device", "h100-sxm", "--over", "s=512..32768:x2", "--set", "b=1")
    assert status == 0, err
    lines = out.splitlines()
    head = lines[2].split()
    assert head[:3] == ["s", "params", "flops_fwd"] and head[-2:] == ["time_lower_bound_s", "tokens_per_s"]
    body = lines[3:]
    assert len(body) == 7
    for line, s in zip(body, [512 * 2**k for k in range(7)]):
        at = prefill.at(b=1, s=s)
        bound = prefill.summary.values(at.evaluator)
        cells = line.split("  ")
        cells = [c.strip() for c in cells if c.strip()]
        assert cells[0] == units.integer(s)
        assert cells[2] == units.quantity(at["flops_fwd"], "FLOP")
        assert cells[-2] == units.seconds(bound["time"]) and cells[-1] == units.plain(bound["tokens_per_s"])


def test_command_csv_and_errors(capsys):
    status, out, err = run(capsys, "sweep", "gpt2", "--preset", "gpt2-small", "--over", "b=1,2", "s=1..3:+1",
                           "--metrics", "params,layer.flops_fwd", "--format", "csv")
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6 and rows[0].keys() == {"b", "s", "params", "layer.flops_fwd"}
    status, out, err = run(capsys, "sweep", "gpt2", "--preset", "gpt2-small", "--over", "s=1,2", "--set", "s=4")
    assert status == 2 and "both swept (--over) and set (--set)" in err
    status, out, err = run(capsys, "sweep", "gpt2", "--over", "s=1..9")
    assert status == 2 and "a range needs a step" in err and "Traceback" not in err
