"""Test helpers: spec paths, symbols, and an independent numeric walk of a graph."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

import sympy as sp

from symcost.cost.record import METRICS
from symcost.cost.accounting import derive
from symcost.model.dims import make_symbol
from symcost.model.builder import build
from symcost.lang.parse import load

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
REFERENCE = ROOT / "tests" / "data" / "reference"  # copies of the reference facts (see its README)

LLAMA_SIZES = {  # llama.arch dims of each preset (the models' published config.json), for hand computations
    "llama-2-7b": dict(a=32, kv=32, h=4096, f=11008, L=32, V=32000),
    "llama-2-13b": dict(a=40, kv=40, h=5120, f=13824, L=40, V=32000),
    "llama-3-8b": dict(a=32, kv=8, h=4096, f=14336, L=32, V=128256),
}


def sym(name: str) -> sp.Symbol:
    return make_symbol(name)


def same(a, b) -> bool:
    return sp.expand(a - b) == 0


def report_for(spec: str, **kwargs):
    return derive(build(load(SPECS / spec), **{k: v for k, v in kwargs.items() if k in ("options", "dtype")}),
                  kwargs.get("convention", "fma"), kwargs.get("keep", ()))


def block(report, path: str):
    return next(b for b in report.blocks if b.path == path)


def op(report, path: str):
    return next(r for r in report.ops if r.node.path == path)


def numeric_walk(module, values: dict[str, int], convention: str = "fma", options=None, dtype=None) -> dict:
    """Totals by unrolling every repeat at concrete sizes and counting each saved storage once.

    Independent of derive(): no multiplicities, no loop-carried bookkeeping, no symbolic expansion.
    """
    g = build(module, values=values, unroll=True, options=options, dtype=dtype)
    out = {m: sp.Integer(0) for m in METRICS}
    for p in g.params:  # multiplicities here come only from `experts` (E copies, k used per token)
        out["params"] += p.numel * p.mult
        out["active_params"] += p.numel * (p.mult if p.active_mult is None else p.active_mult)
        out["weight_bytes"] += p.numel * p.dtype.nbytes * p.mult
    for node in g.ops:
        for m in METRICS:
            if m not in ("params", "active_params", "weight_bytes", "activation_bytes"):
                out[m] += node.cost.metric(m, convention) * node.mult
    saved = {sid for node in g.ops for sid in node.saves}
    out["activation_bytes"] = sum((g.storages[sid].nbytes * g.storages[sid].mult for sid in saved), sp.Integer(0))
    return out


def require_torch():
    """(torch, transformers), or skip with the reason — but fail when CI=true: CI must run these checks."""
    try:
        return importlib.import_module("torch"), importlib.import_module("transformers")
    except ImportError as e:
        reason = f"symcost validate needs the torch extra (pip install 'symcost[torch]'): {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)


def validate_preset(main, capsys, name: str, published: int) -> list:
    """`symcost validate --preset NAME --format json`: every exact check agrees; returns the exact checks."""
    import json

    assert main(["validate", "--preset", name, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    exact = [c for c in data["checks"] if c["exact"]]
    assert [c["quantity"] for c in exact][:2] == ["params", "tiny_params"]
    assert all(c["derived"] == c["measured"] for c in exact), exact
    assert exact[0]["measured"] == published
    return exact
