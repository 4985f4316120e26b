"""Graph to closed forms: metrics per op, per block instance and for the whole model, canonical and stable."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .cost import CONVENTIONS, METRICS, Cost
from .errors import SymcostError
from .graph import Graph, OpNode, build
from .parse import load

ZERO = sp.Integer(0)


@dataclass(frozen=True)
class Saved:
    """A storage an op keeps for backward: its label, its bytes, and how many instances one op instance owns."""

    label: str
    nbytes: sp.Expr
    share: sp.Expr  # storage instances per op instance (1, or 1/L for a tensor shared by all L layers)
    first: bool  # counted here (False: an earlier op already saved it)


@dataclass(frozen=True)
class OpReport:
    node: OpNode
    metrics: dict
    saved: tuple


@dataclass(frozen=True)
class BlockReport:
    path: str
    block: str
    repeat: sp.Expr
    metrics: dict  # per instance


@dataclass
class Report:
    graph: Graph
    convention: str
    totals: dict
    blocks: list
    ops: list
    keep: tuple = ()
    repeat_symbols: tuple = field(default=())

    @property
    def env(self):
        return self.graph.env


def derive(graph: Graph, convention: str = "fma", keep: tuple = ()) -> Report:
    """Closed forms for a built graph. `keep` names derived dims to leave unexpanded (e.g. d)."""
    if convention not in CONVENTIONS:
        raise SymcostError(f"unknown FLOP convention '{convention}'; use one of {', '.join(CONVENTIONS)}")
    env = graph.env
    for name in keep:
        if name not in env.dims or env.dims[name].definition is None:
            raise SymcostError(f"--keep takes derived dimensions; '{name}' is not one")
    defs = {d.symbol: d.definition for d in env.dims.values() if d.definition is not None and d.name not in keep}

    def canon(e) -> sp.Expr:
        return sp.expand(sp.expand(e).xreplace(defs)) if defs else sp.expand(e)

    storages = graph.storages
    first_saver: dict[int, OpNode] = {}
    for node in graph.ops:
        for sid in node.saves:
            first_saver.setdefault(sid, node)

    ops = []
    for node in graph.ops:
        saved = tuple(
            Saved(storages[sid].label if storages[sid].label not in ("output",) else _tensor_label(graph, sid),
                  storages[sid].nbytes, storages[sid].mult / node.mult, first_saver[sid] is node)
            for sid in node.saves
        )
        act = sum((s.nbytes * s.share for s in saved if s.first), ZERO)
        metrics = {m: canon(act if m == "activation_bytes" else node.cost.metric(m, convention)) for m in METRICS}
        ops.append(OpReport(node, metrics, saved))

    # whole model
    total = sum((node.cost * node.mult for node in graph.ops), Cost())
    declared = [p for p in graph.params if p.loc is not None and not any(p in n.params for n in graph.ops)]
    total = total + Cost(
        params=sum((p.numel * p.mult for p in declared), ZERO),
        weight_bytes=sum((p.numel * p.dtype.nbytes * p.mult for p in declared), ZERO),
    )
    activation = sum((storages[sid].nbytes * storages[sid].mult for sid in first_saver), ZERO)
    saved_set = set(first_saver)
    for fam in graph.families:
        c, o = fam.carried in saved_set, fam.body_out in saved_set
        i, z = int(fam.init in saved_set), int(fam.final in saved_set)
        if c and o:
            correction = 1 - fam.count - i - z
        elif c:
            correction = -i
        elif o:
            correction = -z
        else:
            correction = 0
        activation += correction * storages[fam.carried].nbytes * fam.mult
    totals = {m: canon(activation if m == "activation_bytes" else total.metric(m, convention)) for m in METRICS}

    # per block instance
    blocks = []
    for b in graph.blocks:
        inside = [r for r in ops if r.node.path.startswith(b.path + "/")]
        cost = sum((r.node.cost * (r.node.mult / b.mult) for r in inside), Cost())
        act = ZERO
        for r in inside:
            for sid in r.node.saves:
                st = storages[sid]
                if first_saver[sid] is not r.node:
                    continue
                if st.creator.startswith(b.path + "/") or (sid in b.args and st.mult == b.mult):
                    act += st.nbytes * st.mult / b.mult
        metrics = {m: canon(act if m == "activation_bytes" else cost.metric(m, convention)) for m in METRICS}
        blocks.append(BlockReport(b.path, b.block, b.mult, metrics))

    repeat_syms = []
    for b in graph.blocks:
        for s in sorted(b.mult.free_symbols, key=lambda x: x.name):
            if s not in repeat_syms:
                repeat_syms.append(s)
    return Report(graph, convention, totals, blocks, ops, tuple(keep), tuple(repeat_syms))


def _tensor_label(graph: Graph, sid: int) -> str:
    for node in graph.ops:
        for t in node.outputs:
            if t.storage == sid:
                return t.name
    return "tensor"


def derive_file(path, *, convention: str = "fma", options=None, dtype=None, keep: tuple = ()) -> Report:
    """Load, build and derive a spec file in one call."""
    return derive(build(load(path), options=options, dtype=dtype), convention, keep)
