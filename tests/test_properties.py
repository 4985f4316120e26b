"""Property tests: closed forms evaluated at random sizes equal an unrolled numeric walk of the same spec."""
from __future__ import annotations

import itertools

import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symcost.cost.record import METRICS
from symcost.cost.accounting import derive
from symcost.analysis.evaluate import Evaluator
from symcost.model.builder import build
from symcost.lang.parse import load, parse_text
from symcost.lang.syntax import Module

from helpers import SPECS, numeric_walk, sym

GPT2 = load(SPECS / "gpt2.arch")
LLAMA = load(SPECS / "llama.arch")
SYMBOLIC = {}


def _closed(module, key, convention, options, dtype):
    k = (key, convention, tuple(sorted((options or {}).items())), dtype)
    if k not in SYMBOLIC:
        SYMBOLIC[k] = derive(build(module, options=options, dtype=dtype), convention)
    return SYMBOLIC[k]


def _check(module, key, values, convention="fma", options=None, dtype=None):
    report = _closed(module, key, convention, options, dtype)
    ev = Evaluator(report.env, values)
    walked = numeric_walk(module, values, convention, options, dtype)
    for m in METRICS:
        assert ev(report.totals[m]) == walked[m], (m, values)


small = st.integers(min_value=1, max_value=5)


@settings(max_examples=40, deadline=None)
@given(a=small, d=small, b=small, s=st.integers(1, 9), L=st.integers(1, 4), V=st.integers(1, 60), P=st.integers(1, 20),
       conv=st.sampled_from(["fma", "mac", "exact"]), tied=st.booleans(), bias=st.booleans(), dropout=st.booleans(),
       dtype=st.sampled_from([None, "fp32", "fp8"]))
def test_gpt2_closed_forms_match_unrolled_walk(a, d, b, s, L, V, P, conv, tied, bias, dropout, dtype):
    values = dict(a=a, h=a * d, b=b, s=s, L=L, V=V, P=P)
    _check(GPT2, "gpt2", values, conv, dict(tied=tied, bias=bias, dropout=dropout), dtype)


@settings(max_examples=40, deadline=None)
@given(kv=small, group=st.integers(1, 3), d=small, b=small, s=st.integers(1, 9), L=st.integers(1, 4),
       f=st.integers(1, 40), V=st.integers(1, 60), conv=st.sampled_from(["fma", "mac", "exact"]), tied=st.booleans())
def test_llama_closed_forms_match_unrolled_walk(kv, group, d, b, s, L, f, V, conv, tied):
    a = kv * group
    values = dict(a=a, kv=kv, h=a * d, b=b, s=s, L=L, f=f, V=V)
    _check(LLAMA, "llama", values, conv, dict(tied=tied))


NESTED = """
dim b "batch"
dim n "width"
dim R "outer repeats"
dim K "inner repeats"
input x: [b, n]
block inner(t: [b, n]) {
  u = linear(t, n)
  g = gelu(u)
  return g
}
block outer(t: [b, n]) {
  m = layernorm(t)
  repeat K {
    m = inner(m)
  }
  y = mul(t, m)
  return y
}
z = rmsnorm(x)
repeat R {
  z = outer(z)
}
w = softmax(z)
"""

CARRIED_SAVED_BOTH_SIDES = """
dim b "batch"
dim n "width"
dim R "repeats"
input x: [b, n]
x0 = gelu(x)
repeat R {
  x0 = relu(x0)
}
y = gelu(x0)
"""


@settings(max_examples=30, deadline=None)
@given(b=small, n=small, R=st.integers(1, 4), K=st.integers(1, 4))
def test_nested_repeats_and_carried_tensors(b, n, R, K):
    module = Module("nested.arch", parse_text(NESTED, "nested.arch"))
    _check(module, "nested", dict(b=b, n=n, R=R, K=K))


CARRIED_IN_AND_OUT = """
dim b "batch"
dim n "width"
dim R "repeats"
input x: [b, n]
x0 = gelu(x)
y0 = gelu(x0)
repeat R {
  u = gelu(x0)
  x0 = relu(u)
}
y = gelu(x0)
"""


CARRIED_THROUGH_NESTED = """
dim b "batch"
dim n "width"
dim R "repeats"
input x0: [b, n]
x = gelu(x0)
repeat R {
  repeat 2 {
    x = gelu(x)
  }
  fused {
    x = relu(x)
  }
}
t = gelu(x)
"""


CARRIED_INNER_LAST = """
dim b "batch"
dim n "width"
dim R "repeats"
input x0: [b, n]
x = gelu(x0)
y = gelu(x)
repeat R {
  u = gelu(x)
  repeat 3 {
    x = relu(x)
  }
}
t = gelu(x)
"""


@settings(max_examples=25, deadline=None)
@given(b=small, n=small, R=st.integers(1, 5),
       spec=st.sampled_from([CARRIED_SAVED_BOTH_SIDES, CARRIED_IN_AND_OUT, CARRIED_THROUGH_NESTED, CARRIED_INNER_LAST]))
def test_loop_carried_storage_saved_inside_and_outside(b, n, R, spec):
    # relu saves its output (x_1..x_R), gelu saves its input: x_0..x_R are each counted once
    module = Module("carried.arch", parse_text(spec, "carried.arch"))
    _check(module, spec, dict(b=b, n=n, R=R))


def test_brute_force_matmul_rule():
    """Count multiplies and adds of a naive [M,K]@[K,N] and of its two gradient products, term by term."""
    spec = """
dim M "rows"
dim K "inner"
dim N "cols"
input x: fp32[M, K]
y = linear(x, N, bias=false)
"""
    module = Module("mm.arch", parse_text(spec, "mm.arch"))
    for M, K, N in itertools.product(range(1, 4), repeat=3):
        muls = adds = 0
        for _i, _j in itertools.product(range(M), range(N)):  # forward: each output sums K products
            muls += K
            adds += K - 1
        bwd_muls = bwd_adds = 0
        for _i, _k in itertools.product(range(M), range(K)):  # dX = dY @ Wᵀ
            bwd_muls += N
            bwd_adds += N - 1
        for _k, _j in itertools.product(range(K), range(N)):  # dW = Xᵀ @ dY
            bwd_muls += M
            bwd_adds += M - 1
        for conv, fwd, bwd in (
            ("exact", muls + adds, bwd_muls + bwd_adds),
            ("fma", 2 * muls, 2 * bwd_muls),  # a multiply-add counts 2
            ("mac", muls, bwd_muls),
        ):
            walked = numeric_walk(module, dict(M=M, K=K, N=N), conv)
            assert walked["matmul_flops_fwd"] == fwd, (conv, M, K, N)
            assert walked["matmul_flops_bwd"] == bwd, (conv, M, K, N)
        assert walked["io_bytes"] == 4 * (M * K + K * N + M * N)


def test_batched_matmul_rule_and_traffic():
    spec = """
dim A "batch"
dim M "rows"
dim K "inner"
dim N "cols"
input x: fp16[A, M, K]
input w: fp16[K, N]
y = matmul(x, w)
"""
    module = Module("bmm.arch", parse_text(spec, "bmm.arch"))
    A_, M, K, N = (sym(n) for n in ("A", "M", "K", "N"))
    r = derive(build(module))
    assert sp.expand(r.totals["matmul_flops_fwd"] - 2 * A_ * M * K * N) == 0
    assert sp.expand(r.totals["io_bytes"] - 2 * (A_ * M * K + K * N + A_ * M * N)) == 0
