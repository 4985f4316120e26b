"""Memory one device holds, by part (weights, gradients, optimizer state, activations, KV cache), as closed forms."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


@dataclass(frozen=True)
class Part:
    key: str  # weights | gradients | optimizer | activations | kv_cache
    title: str
    expr: sp.Expr  # bytes per device


def memory_parts(analysis) -> list[Part]:
    """The parts of an Analysis's per-device memory that are not zero, in a fixed order.

    Training: the training state (weights, gradients, optimizer state with its master weights, after ZeRO
    sharding) and the activations saved for backward. Prefill and decode: the weights and the KV cache (and
    activations, which these phases do not keep: zero). Costs are per device under --tp/--pp/--ep."""
    t = analysis.totals
    st = analysis.training
    if st is not None:
        parts = [Part("weights", "weights", st.weight_bytes), Part("gradients", "gradients", st.gradient_bytes),
                 Part("optimizer", f"optimizer state ({st.precision.name}, {st.optimizer})", st.optimizer_bytes),
                 Part("activations", "activations saved for backward", t["activation_bytes"])]
    else:
        parts = [Part("weights", "weights", t["weight_bytes"]), Part("kv_cache", "KV cache", t["kv_cache_bytes"]),
                 Part("activations", "activations", t["activation_bytes"])]
    return [p for p in parts if p.expr != 0]
