"""The cost record every op returns, and the counting conventions that turn it into FLOPs."""
from __future__ import annotations

from dataclasses import dataclass, fields

import sympy as sp

ZERO = sp.Integer(0)

FMA = 2  # a multiply-add counts two FLOPs (the default convention)
CONVENTIONS = ("fma", "mac", "exact")

# Names of the metrics every report carries, in display order.
METRICS = (
    "params",
    "active_params",
    "flops_fwd",
    "matmul_flops_fwd",
    "flops_bwd",
    "matmul_flops_bwd",
    "activation_bytes",
    "weight_bytes",
    "io_bytes",
    "kv_cache_bytes",
    "flops_recompute",
    "comm_bytes",
)
METRIC_TITLES = {
    "params": "parameters",
    "active_params": "  active per token",
    "flops_fwd": "forward FLOPs",
    "matmul_flops_fwd": "  of which matmul",
    "flops_bwd": "backward FLOPs",
    "matmul_flops_bwd": "  of which matmul",
    "activation_bytes": "activation bytes",
    "weight_bytes": "weight bytes",
    "io_bytes": "memory traffic (bytes)",
    "kv_cache_bytes": "KV cache bytes",
    "flops_recompute": "recomputed FLOPs",
    "comm_bytes": "communication bytes",
}
METRIC_UNITS = {
    "params": "",
    "active_params": "",
    "flops_fwd": "FLOP",
    "matmul_flops_fwd": "FLOP",
    "flops_bwd": "FLOP",
    "matmul_flops_bwd": "FLOP",
    "activation_bytes": "B",
    "weight_bytes": "B",
    "io_bytes": "B",
    "kv_cache_bytes": "B",
    "flops_recompute": "FLOP",
    "comm_bytes": "B",
}


def shown(metrics: dict) -> list[str]:
    """The metrics worth printing: parameters always; active parameters when they differ; others when nonzero
    (no KV cache in training, no backward pass when generating)."""
    out = []
    for m in METRICS:
        if m == "params" or (m == "active_params" and metrics[m] != metrics["params"]):
            out.append(m)
        elif m != "active_params" and metrics[m] != 0:
            out.append(m)
    return out


@dataclass(frozen=True)
class Cost:
    """Additive costs of one op (or a sum of ops), independent of the FLOP convention.

    Matmuls are kept as multiply-accumulate counts (Σ M·K·N) and output counts (Σ M·N), from which
    every convention follows: fma = 2·macs, mac = macs, exact = 2·macs − outputs.
    """

    params: sp.Expr = ZERO
    active_params: sp.Expr = ZERO  # parameters one token uses (differs from params inside `experts`)
    weight_bytes: sp.Expr = ZERO
    macs_fwd: sp.Expr = ZERO
    mm_outputs_fwd: sp.Expr = ZERO
    macs_bwd: sp.Expr = ZERO
    mm_outputs_bwd: sp.Expr = ZERO
    other_fwd: sp.Expr = ZERO
    other_bwd: sp.Expr = ZERO
    io_bytes: sp.Expr = ZERO
    cache_bytes: sp.Expr = ZERO  # bytes this op keeps in the KV cache for later tokens
    recompute_macs: sp.Expr = ZERO  # forward work done again in the backward pass (recomputation)
    recompute_mm_outputs: sp.Expr = ZERO
    recompute_other: sp.Expr = ZERO
    comm_bytes: sp.Expr = ZERO  # bytes each device sends for tensor-parallel all-reduces
    weight_reads: sp.Expr = ZERO  # the part of io_bytes that reads parameters
    io_sharded: sp.Expr = ZERO  # the part of io_bytes in tensor-parallel sharded tensors and weights

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, k) -> "Cost":
        return Cost(*(getattr(self, f.name) * k for f in fields(self)))

    __rmul__ = __mul__

    @staticmethod
    def total(weighted) -> "Cost":
        """Σ weight·cost over (cost, weight) pairs, building each field's sum once (fast for many ops)."""
        terms: list[list] = [[] for _ in fields(Cost)]
        for cost, weight in weighted:
            for i, f in enumerate(fields(Cost)):
                v = getattr(cost, f.name)
                if v != 0:
                    terms[i].append(v if weight == 1 else v * weight)
        return Cost(*(sp.Add(*t) for t in terms))

    def metric(self, name: str, convention: str = "fma") -> sp.Expr:
        """One named metric (activation_bytes excepted: it is not additive, see derive.py)."""
        if name == "matmul_flops_fwd":
            return _matmul(self.macs_fwd, self.mm_outputs_fwd, convention)
        if name == "matmul_flops_bwd":
            return _matmul(self.macs_bwd, self.mm_outputs_bwd, convention)
        if name == "flops_fwd":
            return _matmul(self.macs_fwd, self.mm_outputs_fwd, convention) + self.other_fwd
        if name == "flops_bwd":
            return _matmul(self.macs_bwd, self.mm_outputs_bwd, convention) + self.other_bwd
        if name == "kv_cache_bytes":
            return self.cache_bytes
        if name == "flops_recompute":
            return _matmul(self.recompute_macs, self.recompute_mm_outputs, convention) + self.recompute_other
        return getattr(self, name)


def _matmul(macs, outputs, convention: str):
    if convention == "fma":
        return FMA * macs
    if convention == "mac":
        return macs
    if convention == "exact":
        return 2 * macs - outputs
    raise ValueError(f"unknown FLOP convention {convention!r}")


def matmul(m, k, n) -> Cost:
    """[m,k] @ [k,n]: forward m·k·n multiply-adds; backward computes both input gradients,
    [m,n] @ [n,k] and [k,m] @ [m,n], so twice the multiply-adds."""
    return batched_matmul(1, m, k, n)


def batched_matmul(batch, m, k, n) -> Cost:
    """`batch` independent [m,k] @ [k,n] products (attention scores per head)."""
    return Cost(
        macs_fwd=batch * m * k * n,
        mm_outputs_fwd=batch * m * n,
        macs_bwd=2 * batch * m * k * n,
        mm_outputs_bwd=batch * (m * k + k * n),
    )


def elementwise(n, fwd, bwd) -> Cost:
    """n elements at `fwd` FLOPs each forward and `bwd` each backward."""
    return Cost(other_fwd=n * fwd, other_bwd=n * bwd)
