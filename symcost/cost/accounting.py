"""Graph to closed forms: metrics per op, per block instance and for the whole model, canonical and stable."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp

from symcost.cost.parallel import (STAGES, all_to_all, declared_stage_share, expert_parallel, output_gathers,
                                   param_share, pipeline_share, pipeline_traffic, placement, saved_bytes,
                                   tensor_parallel)
from symcost.cost.record import CONVENTIONS, METRICS, ZERO, Cost
from symcost.errors import SymcostError
from symcost.model.graph import Graph, Kind, OpNode, inside, regions
from symcost.model.builder import build
from symcost.lang.parse import load


@dataclass(frozen=True)
class Saved:
    """A storage an op keeps for backward: its label, its bytes, and how many instances one op instance owns."""

    label: str
    nbytes: sp.Expr
    share: sp.Expr  # storage instances per op instance (1, or 1/L for a tensor shared by all L layers)
    first: bool  # counted here (False: an earlier op already saved it)


class OpReport:
    """One op's costs per instance; the closed forms are expanded on first use (--explain, JSON)."""

    def __init__(self, node: OpNode, saved: tuple, activation, convention: str, canon, cost: Cost | None = None):
        self.node, self.saved = node, saved
        self.cost = cost if cost is not None else node.cost  # as accounted under the report's settings
        self._raw = (activation, convention, canon)
        self._metrics: dict | None = None

    @property
    def metrics(self) -> dict:
        if self._metrics is None:
            act, convention, canon = self._raw
            self._metrics = {
                m: canon(act if m == "activation_bytes" else self.cost.metric(m, convention)) for m in METRICS
            }
        return self._metrics


@dataclass(frozen=True)
class BlockReport:
    path: str
    block: str
    repeat: sp.Expr
    metrics: dict  # per instance
    name: str = ""  # the instance's own name, the last part of its path
    scope: str = ""  # the path it is called under ("" at the top level)


@dataclass
class Report:
    graph: Graph
    convention: str
    totals: dict
    blocks: list
    ops: list
    keep: tuple = ()
    repeat_symbols: tuple = field(default=())
    settings: "Settings | None" = None
    streamed_weights: sp.Expr | None = None  # weight bytes one step must read (embedding rows, k of E experts)
    frozen_params: sp.Expr = ZERO  # parameters held (in `params`) that get no gradient: `param w: [..] frozen`

    @property
    def env(self):
        return self.graph.env


@dataclass(frozen=True)
class Settings:
    """How the graph is accounted: FLOP and causal conventions, recomputation, fused attention, parallelism."""

    convention: str = "fma"
    keep: tuple = ()
    recompute: str = "none"  # none | selective | full
    flash: bool = False  # fused regions run as one kernel (FlashAttention)
    tp: sp.Expr | None = None  # tensor-parallel degree t; None: one device
    sp: bool = False  # sequence parallelism (with tp)
    pp: sp.Expr | None = None  # pipeline-parallel degree p: each device holds L/p of every repeated layer
    ep: sp.Expr | None = None  # expert-parallel degree: each device holds E/ep of the experts
    causal: str = "full"  # full | half: count the kept half of causal attention products
    other: str = "include"  # include | exclude the elementwise FLOPs (softmax, norms, activations, …)
    embedding: str = "lookup"  # lookup: a gather, no FLOPs | matmul: a one-hot product, 2·tokens·V·h
    stage: str = "first"  # under pp, the stage reported: first (embedding + L/p layers), middle, last (+ head)


RECOMPUTE = ("none", "selective", "full")
CAUSAL = ("full", "half")


def derive(graph: Graph, convention: str = "fma", keep: tuple = (), **options) -> Report:
    """Closed forms for a built graph. `keep` names derived dims to leave unexpanded (e.g. d); `options` are
    the other Settings fields (recompute, flash, tp, sp, causal)."""
    st = _checked(Settings(convention, tuple(keep), **options), graph)
    canon = _canonical(graph, st)
    place = placement(graph)
    if st.pp is not None and "layers" not in place.values():
        raise SymcostError("pipeline parallelism splits repeated layers over stages; this spec repeats nothing")
    costs = _op_costs(graph, st, place)
    kept = _Kept(graph, st, place)
    ops = [_op_report(node, kept, costs, st, canon) for node in graph.ops]
    total, held = _whole_model(graph, st, costs, place)
    activation = _activation(graph, kept)
    totals = {m: canon(activation if m == "activation_bytes" else total.metric(m, st.convention)) for m in METRICS}
    blocks = _block_reports(graph, ops, costs, kept, st, canon)
    frozen = sum((n * p.mult for p, n in held if p.frozen), ZERO)
    return Report(graph, st.convention, totals, blocks, ops, st.keep, _repeat_symbols(graph), st,
                  canon(_streamed_weights(graph, costs, st.ep)), canon(frozen))


def _checked(st: Settings, graph: Graph) -> Settings:
    """The settings, each checked against its choices (and --keep against the graph's derived dims)."""
    if st.convention not in CONVENTIONS:
        raise SymcostError(f"unknown FLOP convention '{st.convention}'; use one of {', '.join(CONVENTIONS)}")
    if st.recompute not in RECOMPUTE:
        raise SymcostError(f"unknown recompute mode '{st.recompute}'; use one of {', '.join(RECOMPUTE)}")
    if st.causal not in CAUSAL:
        raise SymcostError(f"unknown causal convention '{st.causal}'; use one of {', '.join(CAUSAL)}")
    if st.other not in ("include", "exclude") or st.embedding not in ("lookup", "matmul"):
        raise SymcostError("other FLOPs are 'include' or 'exclude'; embedding FLOPs 'lookup' or 'matmul'")
    if st.stage not in STAGES:
        raise SymcostError(f"unknown pipeline stage '{st.stage}'; use one of {', '.join(STAGES)}")
    if st.sp and st.tp is None:
        raise SymcostError("sequence parallelism shards along the tensor-parallel group: give a degree with --tp")
    env = graph.env
    for name in st.keep:
        if name not in env.dims or env.dims[name].definition is None:
            raise SymcostError(f"--keep takes derived dimensions; '{name}' is not one")
    return st


def _canonical(graph: Graph, st: Settings):
    """The canonical form of a closed form: derived dims (but those kept) substituted, then expanded."""
    defs = {d.symbol: d.definition for d in graph.env.dims.values()
            if d.definition is not None and d.name not in st.keep}

    def canon(e) -> sp.Expr:
        return expand_sum(e.xreplace(defs) if defs else e)

    return canon


def _op_costs(graph: Graph, st: Settings, place: dict) -> dict:
    """Each op's per-instance, per-device cost under the settings (op id -> Cost)."""
    a2a = all_to_all(graph, st)
    gathers = output_gathers(graph, st)
    fused_io = _fused_traffic(graph) if st.flash else {}
    return {id(node): _account(node, graph, st, a2a, fused_io, place[id(node)], gathers) for node in graph.ops}


class _Kept:
    """The saved storages kept under the settings, the op that saves each first, and their bytes per device."""

    def __init__(self, graph: Graph, st: Settings, place: dict):
        self.storages, self._st, self._place = graph.storages, st, place
        self.savers: dict[int, list] = {}
        for node in graph.ops:
            for sid in node.saves:
                self.savers.setdefault(sid, []).append(node)
        carried = {fam.carried for fam in graph.families}
        self.kept = {sid for sid in self.savers if not dropped(self.storages[sid], self.savers[sid], carried, st)}
        self.first = {sid: nodes[0] for sid, nodes in self.savers.items() if sid in self.kept}

    def nbytes(self, sid: int) -> sp.Expr:
        return saved_bytes(self.storages[sid], self.savers.get(sid, ()), self._place, self._st)


def _op_report(node: OpNode, kept: _Kept, costs: dict, st: Settings, canon) -> OpReport:
    """One op's report: what it saves (kept storages only) and the activation bytes it is first to save."""
    storages = kept.storages
    saved = tuple(
        Saved(_label(node, storages[sid]), kept.nbytes(sid), storages[sid].mult / node.mult,
              kept.first.get(sid) is node)
        for sid in node.saves
        if sid in kept.kept
    )
    act = sp.Add(*(s.nbytes * s.share for s in saved if s.first))
    return OpReport(node, saved, act, st.convention, canon, costs[id(node)])


def _whole_model(graph: Graph, st: Settings, costs: dict, place: dict) -> tuple:
    """The whole model's cost on one device (every op, the declared parameters it holds, the pipeline's
    traffic), and the declared parameters with the elements of each it holds."""
    total = Cost.total((costs[id(node)], node.mult) for node in graph.ops)
    readers = _param_readers(graph)
    held = [(p, param_share(p, st) * declared_stage_share(readers.get(p.path, ()), place, st))
            for p in _declared(graph)]
    total = total + Cost(
        params=sum((n * p.mult for p, n in held), ZERO),
        active_params=sum((n * p.mult for p, n in held), ZERO),
        weight_bytes=sum((n * p.dtype.nbytes * p.mult for p, n in held), ZERO),
    )
    return total + Cost(comm_bytes=pipeline_traffic(graph, st)), held


def _activation(graph: Graph, kept: _Kept) -> sp.Expr:
    """Bytes saved for the backward pass: every kept storage once, loop-carried instances counted by family."""
    storages = kept.storages
    activation = sp.Add(*(kept.nbytes(sid) * storages[sid].mult for sid in kept.first))
    seen, shared = _shared_instances(graph, kept)
    return activation + shared + _family_corrections(graph, kept, seen)


def _shared_instances(graph: Graph, kept: _Kept) -> tuple:
    """Nested loops share instances: an inner loop's first input is the outer loop's carried tensor, and its
    last output may be the outer body's output. Count such an instance once, as the outer loop's. Returns the
    storages counted (kept or shared) and the bytes the shared ones add."""
    storages = kept.storages
    seen = set(kept.kept)
    added = ZERO
    carried_by = {f.carried: f for f in graph.families}
    final_of = {f.final: f for f in graph.families}
    for inner in graph.families:
        if inner.init in carried_by and inner.carried in kept.kept:
            outer = carried_by[inner.init]  # saved as the inner loop's first input (its family rule drops the copy)
            if outer.carried not in seen:
                seen.add(outer.carried)
                added += kept.nbytes(outer.carried) * storages[outer.carried].mult
    for outer in graph.families:
        inner = final_of.get(outer.body_out)
        if inner is not None and inner.body_out in kept.kept and outer.body_out not in seen:
            # the outer body's output is the inner loop's last output: saved, and its family rule drops the copy
            seen.add(outer.body_out)
            added += kept.nbytes(outer.body_out) * storages[outer.body_out].mult
    return seen, added


def _family_corrections(graph: Graph, kept: _Kept, seen: set) -> sp.Expr:
    """A loop-carried tensor's storage stands for count instances: x_0 (init) … x_count (final) overlap it."""
    total = ZERO
    for fam in graph.families:
        c, o = fam.carried in seen, fam.body_out in seen
        i, z = int(fam.init in seen), int(fam.final in seen)
        if c and o:
            correction = 1 - fam.count - i - z
        elif c:
            correction = -i
        elif o:
            correction = -z
        else:
            correction = 0
        total += correction * kept.nbytes(fam.carried) * fam.mult
    return total


def _block_reports(graph: Graph, ops: list, costs: dict, kept: _Kept, st: Settings, canon) -> list:
    """Per block instance: the ops below each block path, indexed once."""
    within: dict[str, list] = {}
    for r in ops:
        for path in r.node.blocks:
            within.setdefault(path, []).append(r)
    return [_block_report(b, within.get(b.path, []), costs, kept, st, canon) for b in graph.blocks]


def _block_report(b, ops_in: list, costs: dict, kept: _Kept, st: Settings, canon) -> BlockReport:
    """One block instance's metrics, from the ops inside it and the storages they are first to save."""
    # under pipeline parallelism a device holds L/p layers, each of them whole
    staged = st.pp is not None and b.mult.free_symbols and any(inside(r.node.tags, Kind.REPEAT) for r in ops_in)
    undo = st.pp if staged else 1
    cost = Cost.total((costs[id(r.node)], r.node.mult / b.mult * undo) for r in ops_in)
    acts = []
    for r in ops_in:
        for sid in r.node.saves:
            store = kept.storages[sid]
            if kept.first.get(sid) is not r.node:
                continue
            if b.path in store.blocks or (sid in b.args and store.mult == b.mult):
                acts.append(kept.nbytes(sid) * store.mult / b.mult * undo)
    act = sp.Add(*acts)
    metrics = {m: canon(act if m == "activation_bytes" else cost.metric(m, st.convention)) for m in METRICS}
    return BlockReport(b.path, b.block, b.mult / undo if staged else b.mult, metrics, b.name, b.scope)


def _repeat_symbols(graph: Graph) -> tuple:
    """The symbols of the blocks' multiplicities (repeat counts), in order of first use."""
    out = []
    for b in graph.blocks:
        for s in sorted(b.mult.free_symbols, key=lambda x: x.name):
            if s not in out:
                out.append(s)
    return tuple(out)


def _streamed_weights(graph: Graph, costs: dict, ep=None) -> sp.Expr:
    """Bytes of weights a step reads: what each op reads of its parameters (a lookup reads only its rows),
    and of a mixture's experts only those its b·k routed tokens can reach: min(1, b·k/E) of them. Under expert
    parallelism over e devices each keeps its own b tokens, so the group routes e·b·k slots and a device serves
    b·k of them on average: it reads min(E/e, b·k) of its E/e experts, each whole."""
    b = graph.env.dims["b"].symbol if "b" in graph.env.dims else sp.Integer(1)
    total = []
    for node in graph.ops:
        reads = costs[id(node)].weight_reads * node.mult
        if reads != 0 and node.params and node.params[0].mult != node.mult:  # inside experts: k/E used per token
            experts, active = graph.expert_regions[regions(node.tags, Kind.EXPERTS)[-1]]
            # reads already holds this device's E/e experts; the b·k slots it serves reach min(E/e, b·k) of them
            reads = reads * sp.Min(1, (1 if ep is None else ep) * b * active / experts)
        total.append(reads)
    return sp.Add(*total)


def _declared(graph: Graph) -> list:
    """Parameters declared with `param` (not made by an op), which ops read through weight=…"""
    made = {id(p) for n in graph.ops for p in n.params}
    return [p for p in graph.params if p.loc is not None and id(p) not in made]


def _param_readers(graph: Graph) -> dict:
    """Declared parameter name → the ops that read it."""
    out: dict[str, list] = {}
    for n in graph.ops:
        for t in n.inputs:
            store = graph.storages[t.storage]
            if t.is_param and store.label == "parameter":
                out.setdefault(store.creator, []).append(n)
    return out


def _account(node: OpNode, graph: Graph, st: Settings, a2a: dict, fused_io: dict, place: str,
             gathers: dict) -> Cost:
    """One op's per-instance, per-device cost under the settings: the counting conventions, then each kind of
    parallelism as a share of what the previous ones left (so tensor, expert and pipeline degrees compose)."""
    cost = node.cost
    if id(node) in fused_io:
        cost = replace(cost, io_bytes=fused_io[id(node)][0], io_sharded=fused_io[id(node)][1])
    cost = _conventions(cost, node, graph, st)
    cost = tensor_parallel(cost, node, st, gathers.get(id(node), ZERO))
    if st.tp is not None and inside(node.tags, Kind.EXPERTS):
        # a token's k expert outputs (and, backward, its k input gradients) are summed on the device before one
        # all-reduce, as vLLM's FusedMoE and Megatron-core's token dispatcher do: once per token, not per slot
        active = graph.expert_regions[regions(node.tags, Kind.EXPERTS)[-1]][1]
        cost = replace(cost, comm_bytes=cost.comm_bytes / active)
    cost = expert_parallel(cost, node, st, a2a)
    return pipeline_share(cost, place, st)


def _conventions(cost: Cost, node: OpNode, graph: Graph, st: Settings) -> Cost:
    """Embedding and elementwise FLOP conventions, causal halving, and recomputed work."""
    if st.embedding == "matmul" and node.as_product is not None:  # a lookup as a one-hot [tokens, V] @ [V, h]
        product = node.as_product
        if graph.phase != "train":
            product = replace(product, macs_bwd=ZERO, mm_outputs_bwd=ZERO)
        cost = replace(cost, macs_fwd=product.macs_fwd, mm_outputs_fwd=product.mm_outputs_fwd,
                       macs_bwd=product.macs_bwd, mm_outputs_bwd=product.mm_outputs_bwd,
                       other_fwd=ZERO, other_bwd=ZERO)
    if st.other == "exclude":
        cost = replace(cost, other_fwd=ZERO, other_bwd=ZERO, recompute_other=ZERO)
    if st.causal == "half" and node.causal is not False and graph.phase != "decode":  # one query sees every key
        half = node.causal
        cost = replace(cost, macs_fwd=cost.macs_fwd * half, mm_outputs_fwd=cost.mm_outputs_fwd * half,
                       macs_bwd=cost.macs_bwd * half, mm_outputs_bwd=cost.mm_outputs_bwd * half)
    region = inside(node.tags, Kind.FUSED)
    inside_repeat = inside(node.tags, Kind.REPEAT)
    if graph.phase == "train" and ((st.recompute == "selective" or st.flash) and region
                                   or st.recompute == "full" and inside_repeat):
        # recomputed in the backward pass: its forward work again
        cost = replace(cost, recompute_macs=cost.macs_fwd, recompute_mm_outputs=cost.mm_outputs_fwd,
                       recompute_other=cost.other_fwd)
    return cost


def dropped(store, saved_by: list, carried: set, st: Settings) -> bool:
    """Is a saved storage left out: recomputed in the backward pass, or never materialised?"""
    if st.recompute == "full":
        return inside(store.tags, Kind.REPEAT) and store.id not in carried
    if st.recompute == "selective" or st.flash:
        return any(all(r in n.tags for n in saved_by) for r in regions(store.tags, Kind.FUSED))
    return False


def _fused_traffic(graph: Graph) -> dict:
    """A fused kernel reads its region's inputs and writes what leaves the region, nothing in between:
    op id -> (bytes moved, the sharded part of them)."""
    readers: dict[int, list] = {}
    for node in graph.ops:
        for t in node.inputs:
            readers.setdefault(t.storage, []).append(node)
    storages = graph.storages
    out = {}
    for node in graph.ops:
        region = next(iter(regions(node.tags, Kind.FUSED)), None)
        if region is None:
            continue
        moved = [t for t in node.inputs if region not in storages[t.storage].tags]
        moved_bytes = [t.read_bytes for t in moved]
        written = [t for t in node.outputs
                   if region in storages[t.storage].tags and any(region not in n.tags for n in readers.get(t.storage, []))]
        total = sp.Add(*moved_bytes, *(t.nbytes for t in written))
        sharded = sp.Add(*(t.read_bytes for t in moved if t.sharded), *(t.nbytes for t in written if t.sharded))
        out[id(node)] = (total, sharded)
    return out


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


def derive_file(path, *, convention: str = "fma", options=None, dtype=None, keep: tuple = (), phase: str = "train",
                **settings) -> Report:
    """Load, build and derive a spec file in one call."""
    return derive(build(load(path), options=options, dtype=dtype, phase=phase), convention, keep, **settings)
