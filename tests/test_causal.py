"""The causal convention counts what the mask keeps: half of a square grid, the band of a sliding window."""
from __future__ import annotations

import sympy as sp

import symcost


def _core(an, **values):
    # the attention products of one layer: scores and scores @ values, matmul FLOPs forward
    ops = [o for o in an.ops if o.node.path.endswith(("/scores", "/ctx")) and o.node.path.startswith("layer/")]
    assert len(ops) == 2
    given = {an.symbol(k): v for k, v in values.items()}
    return sum(sp.expand(o.metrics["matmul_flops_fwd"]).xreplace(given) for o in ops)


def test_a_window_keeps_its_band():
    a = symcost.derive("mistral", phase="prefill", causal="half", other_flops="exclude")
    full = symcost.derive("mistral", phase="prefill", other_flops="exclude")
    h, w = 4096, 4096
    for s in (1024, 4096, 8192, 32768):
        # by hand: query i sees min(i + 1, w) keys; at the half convention the triangle of the band counts
        # keys²/2, so each product keeps s·m − m²/2 of its s·m entries (m = min(s, w)), 2 FLOPs per multiply-add
        # and h multiply-adds per entry over all heads, for each of the two products
        m = min(s, w)
        kept = s * m - sp.Rational(m * m, 2)
        assert _core(a, b=1, s=s, h=h, w=w, a=32, kv=8) == 2 * 2 * h * kept, s
        if s <= w:
            assert 2 * _core(a, b=1, s=s, h=h, w=w, a=32, kv=8) == _core(full, b=1, s=s, h=h, w=w, a=32, kv=8)

