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


class OpReport:
    """One op's costs per instance; the closed forms are expanded on first use (--explain, JSON)."""

    def __init__(self, node: OpNode, saved: tuple, activation, convention: str, canon):
        self.node, self.saved = node, saved
        self._raw = (activation, convention, canon)
        self._metrics: dict | None = None

    @property
    def metrics(self) -> dict:
        if self._metrics is None:
            act, convention, canon = self._raw
            self._metrics = {
                m: canon(act if m == "activation_bytes" else self.node.cost.metric(m, convention)) for m in METRICS
            }
        return self._metrics


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
        return expand_sum(e.xreplace(defs) if defs else e)

    storages = graph.storages
    first_saver: dict[int, OpNode] = {}
    for node in graph.ops:
        for sid in node.saves:
            first_saver.setdefault(sid, node)

    ops = []
    for node in graph.ops:
        saved = tuple(
            Saved(_label(node, storages[sid]), storages[sid].nbytes, storages[sid].mult / node.mult, first_saver[sid] is node)
            for sid in node.saves
        )
        act = sp.Add(*(s.nbytes * s.share for s in saved if s.first))
        ops.append(OpReport(node, saved, act, convention, canon))

    # whole model
    total = Cost.total((node.cost, node.mult) for node in graph.ops)
    declared = [p for p in graph.params if p.loc is not None and not any(p in n.params for n in graph.ops)]
    total = total + Cost(
        params=sum((p.numel * p.mult for p in declared), ZERO),
        active_params=sum((p.numel * p.mult for p in declared), ZERO),
        weight_bytes=sum((p.numel * p.dtype.nbytes * p.mult for p in declared), ZERO),
    )
    activation = sp.Add(*(storages[sid].nbytes * storages[sid].mult for sid in first_saver))
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
        cost = Cost.total((r.node.cost, r.node.mult / b.mult) for r in inside)
        acts = []
        for r in inside:
            for sid in r.node.saves:
                st = storages[sid]
                if first_saver[sid] is not r.node:
                    continue
                if st.creator.startswith(b.path + "/") or (sid in b.args and st.mult == b.mult):
                    acts.append(st.nbytes * st.mult / b.mult)
        act = sp.Add(*acts)
        metrics = {m: canon(act if m == "activation_bytes" else cost.metric(m, convention)) for m in METRICS}
        blocks.append(BlockReport(b.path, b.block, b.mult, metrics))

    repeat_syms = []
    for b in graph.blocks:
        for s in sorted(b.mult.free_symbols, key=lambda x: x.name):
            if s not in repeat_syms:
                repeat_syms.append(s)
    return Report(graph, convention, totals, blocks, ops, tuple(keep), tuple(repeat_syms))


def expand_sum(e: sp.Expr) -> sp.Expr:
    """`expand`, but only on the terms that need it: op costs are mostly sums of monomials already."""
    terms = e.args if e.is_Add else (e,)
    if all(_monomial(t) for t in terms):
        return e
    return sp.Add(*(t if _monomial(t) else sp.expand(t) for t in terms))


def _monomial(t: sp.Expr) -> bool:
    if t.is_Atom:
        return True
    if t.is_Pow:
        return t.base.is_Atom
    if t.is_Mul:
        return all(a.is_Atom or (a.is_Pow and a.base.is_Atom) for a in t.args)
    return False


def _label(node: OpNode, storage) -> str:
    """What an op calls a storage it saves: one of its own tensors' names, or the storage's label (mask)."""
    for t in (*node.inputs, *node.outputs):
        if t.storage == storage.id:
            return t.name
    return storage.label


def derive_file(path, *, convention: str = "fma", options=None, dtype=None, keep: tuple = ()) -> Report:
    """Load, build and derive a spec file in one call."""
    return derive(build(load(path), options=options, dtype=dtype), convention, keep)
