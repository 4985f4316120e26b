"""Memory one device holds, by part, as the list charts, pages and sweeps draw (from analysis.memory)."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


@dataclass(frozen=True)
class Part:
    key: str  # weights | gradients | optimizer | activations | kv_cache
    title: str
    expr: sp.Expr  # bytes per device


def memory_parts(analysis) -> list[Part]:
    """The parts of an Analysis's memory per device (symcost.analysis.memory) that are not zero, in order."""
    from symcost.analysis.memory import TITLES

    return [Part(key, TITLES[key], expr) for key, expr in analysis.memory.parts.items() if expr != 0]
