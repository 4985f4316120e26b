"""symcost solve: bounds, crossovers and limits, each checked against a hand computation."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import sympy as sp

import symcost
from symcost.analysis.quantity import parse_constraint, parse_term
from symcost.analysis.monotone import direction
from symcost.analysis.solve import leading, solve_bound
from symcost.cli import main
from symcost.errors import SymcostError
from tests.helpers import REFERENCE, sym

# Llama-2-70B (the llama-2-70b preset) and Llama-2-7B, from their configs
H70 = dict(h=8192, L=80, a=64, kv=8, f=28672, V=32000)
H7 = dict(h=4096, L=32, a=32, kv=32, f=11008, V=32000)
P7 = 6_738_415_616  # Llama-2-7B parameters (tests/data/reference/formulas.md)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _weights_per_device_70b(t: int) -> int:
    """bf16 bytes per device under --tp t (vocabulary-parallel embedding and head; norms replicated)."""
    h, L, a, kv, f, V = (H70[k] for k in ("h", "L", "a", "kv", "f", "V"))
    d = h // a
    sharded = L * (2 * h * h + 2 * h * kv * d + 3 * h * f) + 2 * V * h
    replicated = L * 2 * h + h
    return 2 * (sharded // t + replicated)


def _kv_per_sequence_70b(t: int, c: int) -> int:
    """K and V of c tokens, kv/t heads of d = 128 per device, 80 layers, 2 bytes."""
    return 2 * H70["L"] * c * (H70["kv"] // t) * (H70["h"] // H70["a"]) * 2


M80 = 80 * 2**30  # an H100 SXM has 80 GiB of HBM3 (specs/hardware/h100-sxm.json)


def test_max_decode_batch_llama2_70b_tp8_h100():
    a = symcost.derive("llama", preset="llama-2-70b", phase="decode", tp=8, device="h100-sxm", set={"c": 4096})
    ans = a.solve("b", "weight_bytes + kv_cache_bytes <= device")
    w, kv = _weights_per_device_70b(8), _kv_per_sequence_70b(8, 4096)
    assert ans.status == "found" and ans.value == (M80 - w) // kv == 409
    assert ans.at_value[0].holds and not ans.at_next[0].holds and ans.next_value == 410
    assert ans.at_value[0].lhs == w + 409 * kv and ans.at_next[0].lhs == w + 410 * kv
    b = ans.boundaries[0]
    assert b.direction == 1 and b.kind == "prefix" and b.end == 409
    assert b.real == pytest.approx((M80 - w) / kv, rel=1e-12)
    # the closed form c* = (M − W)/(KV per sequence): its symbols, evaluated at the preset, give the same number
    m = sym("M")
    point = {sym(k): v for k, v in {**H70, "c": 4096}.items()}
    point[m] = M80
    assert m in b.form.free_symbols
    assert sp.nsimplify(b.form.xreplace(point)) == sp.Rational(M80 - w, kv)
    # memory per device also holds a decode step's live activations (docs/analysis.md): a few batches fewer
    full = a.solve("b", "memory_bytes <= device")
    act = [a.at(b=n).evaluator(a.memory.parts["activations"]) for n in (408, 409)]
    assert 0 < act[0] < 408 * kv // 100  # under 1% of the KV cache
    assert w + 408 * kv + act[0] <= M80 < w + 409 * kv + act[1]
    assert full.value == 408 and full.at_value[0].lhs == w + 408 * kv + act[0]


def test_max_context_of_a_7b_kv_cache_in_24_gb_with_and_without_weights():
    a = symcost.derive("llama", preset="llama-2-7b", phase="decode", set={"b": 1})
    per_token = 2 * H7["L"] * H7["h"] * 2  # K and V, every layer, h wide, 2 bytes = 524,288
    alone = a.solve("c", "kv_cache_bytes <= 24GB")
    assert alone.value == 24 * 10**9 // per_token == 45776
    both = a.solve("c", "kv_cache_bytes + weight_bytes <= 24GB")
    assert both.value == (24 * 10**9 - 2 * P7) // per_token == 20071
    # memory per device adds the step's live activations to the weights and the cache: a little less context
    live = a.solve("c", ("memory_bytes", "<=", "24GB")).value
    assert live < 20071 and 2 * P7 + live * per_token + a.at(c=live).evaluator(a.memory.parts["activations"]) \
        <= 24 * 10**9
    form = alone.boundaries[0].form  # c* = 24e9 / (2·L·h·kv/a·2·b): 6e9·a/(b·h·kv·L)
    assert sp.expand(form - 6 * 10**9 * sym("a") / (sym("b") * sym("h") * sym("kv") * sym("L"))) == 0


def test_gpt2_attention_meets_mlp_at_twice_the_width_counting_matmuls():
    """Per layer, attention 8bsh² + 4bs²h vs MLP 16bsh² (matrix products only): s = 2h."""
    a = symcost.derive("gpt2", preset="gpt2-small", set={"b": 1}, other_flops="exclude")
    x = a.solve("s", "attention.flops_fwd = mlp.flops_fwd", want="crossover")
    (form, value), = x.roots
    assert sp.expand(form - 2 * sym("h")) == 0 and value == 2 * 768
    b, s, h = 1, 1536, 768
    assert (1536, 8 * b * s * h * h + 4 * b * s * s * h, 16 * b * s * h * h) in x.checks


def test_gpt2_crossover_with_elementwise_flops_is_a_checked_quadratic_root():
    a = symcost.derive("gpt2", preset="gpt2-small", set={"b": 1})
    x = a.solve("s", "attention.flops_fwd = mlp.flops_fwd", want="crossover")
    (form, value), = x.roots
    assert float(form.xreplace({sym("h"): 768, sym("a"): 12})) == pytest.approx(value, rel=1e-12)
    (lo, l1, r1), (hi, l2, r2) = x.checks
    assert (lo, hi) == (1491, 1492) and l1 < r1 and l2 > r2  # the sides cross between them
    assert 1400 < value < 1536  # softmax and masking add s² work to attention, GELU linear work to the MLP


def test_training_flops_per_token_per_parameter_tend_to_six():
    """C ≈ 6·N·tokens (tests/data/reference/formulas.md) is the h → ∞ limit of train FLOPs / (tokens·params)."""
    assert "C ≈ 6·N·tokens" in (REFERENCE / "formulas.md").read_text(encoding="utf-8")
    for spec in ("gpt2", "llama"):
        lead = symcost.derive(spec).limit("h", "train_flops / tokens / params")
        assert lead.limit == 6 and lead.degree == 0
    forward = leading(symcost.derive("gpt2", other_flops="exclude"), "s", "flops_fwd")
    assert sp.expand(forward.leading - 4 * sym("L") * sym("b") * sym("s") ** 2 * sym("h")) == 0  # 4bs²h per layer


def test_limit_of_a_roofline_bound_is_taken_at_the_given_dims(capsys):
    """tokens/s = b / max(compute, memory, …) has no symbolic limit sympy can take in several dims; at the given
    dims it has one: as b grows a decode step is bound by reading each sequence's KV cache, so tokens/s tends to
    bandwidth / (KV bytes of one sequence per device)."""
    a = symcost.derive("llama", preset="llama-2-70b", phase="decode", tp=8, device="h100-sxm", set={"c": 4096})
    kv_per_sequence = 2 * 80 * 4096 * 8 * 128 * 2 // 8  # K and V, L, c, kv·d, bf16, over 8 devices
    lead = a.limit("b", "tokens_per_s")
    assert lead.limit == sp.Rational(3_350_000_000_000, kv_per_sequence) and lead.degree is None
    assert lead.notes and "limit at the given dims" in lead.notes[0] and "c=4096" in lead.notes[0]
    code, out, _ = run(capsys, "solve", "llama", "--preset", "llama-2-70b", "--phase", "decode", "--tp", "8",
                       "--device", "h100-sxm", "--set", "c=4096", "--limit", "b", "--of", "tokens_per_s",
                       "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["limit_value"] == pytest.approx(3.35e12 / kv_per_sequence) and doc["notes"]
    code, _, err = run(capsys, "solve", "llama", "--preset", "llama-2-70b", "--phase", "decode", "--tp", "8",
                       "--device", "h100-sxm", "--limit", "b", "--of", "tokens_per_s")
    assert code == 2 and "give c a value" in err and "Traceback" not in err


def test_smallest_tensor_degree_skips_degrees_that_do_not_divide_the_heads():
    a = symcost.derive("llama", preset="llama-2-70b", phase="decode", tp="t", device="h100-sxm",
                       set={"b": 64, "c": 4096})
    ans = a.solve("t", "memory_bytes <= device", want="min")
    for t, fits in ((2, False), (4, True)):
        assert (_weights_per_device_70b(t) + 64 * _kv_per_sequence_70b(t, 4096) <= M80) is fits
    assert ans.value == 4 and ans.boundaries[0].end == 3  # t = 3 would fit but does not divide a = 64, kv = 8
    assert ans.at_next[0].invalid and "does not divide" in ans.at_next[0].invalid


def test_nothing_fits_and_no_upper_bound():
    a = symcost.derive("llama", preset="llama-2-70b", phase="decode", device="rtx-4090", set={"c": 4096})
    none = a.solve("b", "memory_bytes <= device")
    assert none.status == "none" and none.value is None and not none.at_value[0].holds
    free = a.solve("b", "weight_bytes <= 200GB")
    assert free.status == "unbounded" and free.value is None


def test_time_and_throughput_constraints_on_a_device():
    a = symcost.derive("llama", preset="llama-2-7b", phase="decode", device="h100-sxm", set={"c": 1024})
    ans = a.solve("b", "time <= 10ms", "tokens_per_s >= 2000")
    assert ans.status == "found"
    # bytes per step: weights + b·KV; decode is memory-bound here
    w, kv = 2 * P7, 2 * 32 * 1024 * 4096 * 2
    bw = Fraction(335, 100) * 10**12
    t_at = lambda b: max(Fraction(ans.at_value[0].lhs), Fraction(w + b * kv) / bw)  # noqa: E731
    assert t_at(ans.value) <= Fraction(1, 100) < Fraction(w + (ans.value + 1) * kv) / bw
    assert ans.at_value[1].holds


def test_direction_proofs():
    x, y = sym("x"), sym("y")
    assert direction(3 * x**2 + 5, x) == 1 and direction(1 / x, x) == -1 and direction(sp.Integer(4), x) == 0
    assert direction(x / sp.Max(2 * x + 1, 3 * x + 2), x) == 1  # tokens/s: b over a bound growing with b
    assert direction(sp.Max(x, 1 / x), x) is None
    assert direction(x**2 - 10 * x, x) is None


def test_constraint_language_builds_expressions_without_evaluating_text():
    a = symcost.derive("llama", preset="llama-2-7b", phase="decode", device="h100-sxm")
    c = parse_constraint(a, "weight_bytes + 2 * kv_cache_bytes <= 80 GiB")
    assert c.op == "<=" and c.rhs.expr == 80 * 2**30
    assert sp.expand(c.lhs.expr - a["weight_bytes"] - 2 * a["kv_cache_bytes"]) == 0
    assert parse_term(a, "train_flops / tokens").expr is not None
    assert parse_constraint(a, "memory_bytes <= device").rhs.expr == M80
    assert parse_constraint(a, "time_lower_bound_s <= 50ms").rhs.expr == sp.Rational(1, 20)
    for bad, words in (("memory_bytes <= 50ms", "compares bytes with seconds"), ("memory_bytes", "compares two"),
                       ("__import__('os') <= 1", "cannot read"), ("nonsense <= 1", "unknown quantity"),
                       ("memory_bytes <= 3 parsecs", "unknown unit"), ("(((memory_bytes <= 1", "not closed"),
                       ("memory_bytes <= 1 <= 2", "compares two")):
        with pytest.raises(SymcostError, match=words):
            parse_constraint(a, bad)


def test_errors_name_the_problem():
    a = symcost.derive("llama", preset="llama-2-7b", phase="decode")
    with pytest.raises(SymcostError, match="derived"):
        a.solve("d", "kv_cache_bytes <= 24GB")
    with pytest.raises(SymcostError, match="no value"):
        a.solve("c", "kv_cache_bytes <= 24GB * s")
    with pytest.raises(SymcostError, match="needs a device"):
        a.solve("b", "time <= 1s")
    with pytest.raises(SymcostError, match="crossover"):
        solve_bound(a, "c", ["kv_cache_bytes = 24GB"])


def test_cli_solve_text_and_json(capsys):
    code, out, _ = run(capsys, "solve", "llama", "--preset", "llama-2-70b", "--phase", "decode", "--tp", "8",
                       "--device", "h100-sxm", "--set", "c=4096", "--max", "b", "--where", "memory_bytes <= device")
    assert code == 0 and "  b = 408" in out and "b = 409:" in out and "fails" in out and "boundary b* =" in out
    code, out, _ = run(capsys, "solve", "llama", "--preset", "llama-2-7b", "--phase", "decode", "--set", "b=1",
                       "--max", "c", "--where", "kv_cache_bytes <= 24GB", "--format", "json")
    doc = json.loads(out)
    assert doc["schema"] == "symcost.solve/1" and doc["value"] == 45776 and doc["status"] == "found"
    assert [c["value"] for c in doc["checks"]] == [45776, 45777]
    assert doc["checks"][1]["constraints"][0]["holds"] is False
    code, out, _ = run(capsys, "solve", "gpt2", "--limit", "h", "--of", "train_flops / tokens / params",
                       "--format", "json")
    assert json.loads(out)["limit"] == "6"
    code, _, err = run(capsys, "solve", "gpt2", "--max", "b")
    assert code == 2 and "--where" in err
    code, _, err = run(capsys, "solve", "gpt2", "--max", "b", "--where", "params <= exec(1)")
    assert code == 2 and "error" in err


def test_pipeline_degree_must_divide_the_layers():
    a = symcost.derive("llama", preset="llama-2-70b", pp="p", set={"b": 1, "s": 16})
    with pytest.raises(SymcostError, match="which 3 does not divide"):
        a.at(p=3)
    assert a.at(p=4).params > 0
