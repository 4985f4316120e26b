"""Graph to closed forms: metrics per op, per block instance and for the whole model, canonical and stable."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import sympy as sp

from symcost.cost.record import CONVENTIONS, METRICS, Cost
from symcost.model.dims import fmt_shape
from symcost.errors import SymcostError
from symcost.model.graph import Graph, Kind, OpNode, inside, regions
from symcost.model.builder import build
from symcost.lang.parse import load

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
    st = Settings(convention, tuple(keep), **options)
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
    defs = {d.symbol: d.definition for d in env.dims.values() if d.definition is not None and d.name not in st.keep}

    def canon(e) -> sp.Expr:
        return expand_sum(e.xreplace(defs) if defs else e)

    storages = graph.storages
    a2a = _all_to_all(graph, st)
    gathers = _output_gathers(graph, st)
    fused_io = _fused_traffic(graph) if st.flash else {}
    place = placement(graph)
    if st.pp is not None and "layers" not in place.values():
        raise SymcostError("pipeline parallelism splits repeated layers over stages; this spec repeats nothing")
    costs = {id(node): _account(node, graph, st, a2a, fused_io, place[id(node)], gathers) for node in graph.ops}

    # which saved storages are kept, and how many bytes each holds per device
    savers: dict[int, list] = {}
    for node in graph.ops:
        for sid in node.saves:
            savers.setdefault(sid, []).append(node)
    carried = {fam.carried for fam in graph.families}
    kept = {sid for sid in savers if not _dropped(storages[sid], savers[sid], carried, st)}
    first_saver = {sid: nodes[0] for sid, nodes in savers.items() if sid in kept}

    def nbytes(sid: int) -> sp.Expr:
        store = storages[sid]
        n = store.nbytes
        if st.tp is not None and (store.sharded or st.sp):
            n = n / st.tp
        if st.pp is not None:  # a layer's tensors on L/p of the layers; the others where their savers run
            shares = [_stage_share("layers" if inside(store.tags, Kind.REPEAT) else place[id(s)], st)
                      for s in savers.get(sid, ())] or [_stage_share("layers", st)]
            n = n * (shares[0] if len(set(shares)) == 1 else sp.Max(*shares))
        return n

    ops = []
    for node in graph.ops:
        saved = tuple(
            Saved(_label(node, storages[sid]), nbytes(sid), storages[sid].mult / node.mult,
                  first_saver.get(sid) is node)
            for sid in node.saves
            if sid in kept
        )
        act = sp.Add(*(s.nbytes * s.share for s in saved if s.first))
        ops.append(OpReport(node, saved, act, st.convention, canon, costs[id(node)]))

    # whole model
    total = Cost.total((costs[id(node)], node.mult) for node in graph.ops)
    readers = _param_readers(graph)
    held = [(p, _param_share(p, st) * _declared_stage_share(readers.get(p.path, ()), place, st))
            for p in _declared(graph)]
    total = total + Cost(
        params=sum((n * p.mult for p, n in held), ZERO),
        active_params=sum((n * p.mult for p, n in held), ZERO),
        weight_bytes=sum((n * p.dtype.nbytes * p.mult for p, n in held), ZERO),
    )
    total = total + Cost(comm_bytes=_pipeline_traffic(graph, st))
    activation = sp.Add(*(nbytes(sid) * storages[sid].mult for sid in first_saver))
    # Nested loops share instances: an inner loop's first input is the outer loop's carried tensor, and its
    # last output may be the outer body's output. Count such an instance once, as the outer loop's.
    seen = set(kept)
    carried_by = {f.carried: f for f in graph.families}
    final_of = {f.final: f for f in graph.families}
    for inner in graph.families:
        if inner.init in carried_by and inner.carried in kept:
            outer = carried_by[inner.init]  # saved as the inner loop's first input (its family rule drops the copy)
            if outer.carried not in seen:
                seen.add(outer.carried)
                activation += nbytes(outer.carried) * storages[outer.carried].mult
    for outer in graph.families:
        inner = final_of.get(outer.body_out)
        if inner is not None and inner.body_out in kept and outer.body_out not in seen:
            # the outer body's output is the inner loop's last output: saved, and its family rule drops the copy
            seen.add(outer.body_out)
            activation += nbytes(outer.body_out) * storages[outer.body_out].mult
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
        activation += correction * nbytes(fam.carried) * fam.mult
    totals = {m: canon(activation if m == "activation_bytes" else total.metric(m, st.convention)) for m in METRICS}

    # per block instance: the ops below each block path, indexed once
    within: dict[str, list] = {}
    for r in ops:
        for path in r.node.blocks:
            within.setdefault(path, []).append(r)
    blocks = []
    for b in graph.blocks:
        ops_in = within.get(b.path, [])
        # under pipeline parallelism a device holds L/p layers, each of them whole
        staged = st.pp is not None and b.mult.free_symbols and any(inside(r.node.tags, Kind.REPEAT) for r in ops_in)
        undo = st.pp if staged else 1
        cost = Cost.total((costs[id(r.node)], r.node.mult / b.mult * undo) for r in ops_in)
        acts = []
        for r in ops_in:
            for sid in r.node.saves:
                store = storages[sid]
                if first_saver.get(sid) is not r.node:
                    continue
                if b.path in store.blocks or (sid in b.args and store.mult == b.mult):
                    acts.append(nbytes(sid) * store.mult / b.mult * undo)
        act = sp.Add(*acts)
        metrics = {m: canon(act if m == "activation_bytes" else cost.metric(m, st.convention)) for m in METRICS}
        blocks.append(BlockReport(b.path, b.block, b.mult / undo if staged else b.mult, metrics, b.name, b.scope))

    repeat_syms = []
    for b in graph.blocks:
        for s in sorted(b.mult.free_symbols, key=lambda x: x.name):
            if s not in repeat_syms:
                repeat_syms.append(s)
    frozen = sum((n * p.mult for p, n in held if p.frozen), ZERO)
    return Report(graph, st.convention, totals, blocks, ops, st.keep, tuple(repeat_syms), st,
                  canon(_streamed_weights(graph, costs)), canon(frozen))


def _streamed_weights(graph: Graph, costs: dict) -> sp.Expr:
    """Bytes of weights a step reads: what each op reads of its parameters (a lookup reads only its rows),
    and of a mixture's experts only those its b·k routed tokens can reach: min(1, b·k/E) of them."""
    b = graph.env.dims["b"].symbol if "b" in graph.env.dims else sp.Integer(1)
    total = []
    for node in graph.ops:
        reads = costs[id(node)].weight_reads * node.mult
        if reads != 0 and node.params and node.params[0].mult != node.mult:  # inside experts: k/E used per token
            reads = reads * sp.Min(1, b * node.mult / node.params[0].mult)
        total.append(reads)
    return sp.Add(*total)


def check_divisible(report: Report, values: dict) -> None:
    """Tensor and expert parallelism split whole rows, heads and experts, and a pipeline stage holds whole layers:
    a degree (a number, or a name given a value) must divide the size of every axis it splits, at the given dims
    (names -> ints)."""
    st, env = report.settings, report.env
    if st is None:
        return
    subs = {env.dims[n].symbol: sp.Integer(v) for n, v in values.items() if n in env.dims}
    for dim in env.dims.values():
        if dim.definition is not None:
            subs.setdefault(dim.symbol, dim.definition.xreplace(subs))
    tp, ep, pp = (None if d is None else d.xreplace(subs) for d in (st.tp, st.ep, st.pp))
    if tp is not None and tp.is_Integer:
        for size, loc in report.graph.splits:
            _divides(tp, size, subs, f"--tp {tp}: tensor parallelism splits the heads,", loc)
        for p in report.graph.params:
            if p.shard_axis is not None:
                _divides(tp, p.shape[p.shard_axis], subs, f"--tp {tp}: tensor parallelism splits {p.path} "
                         f"{fmt_shape(p.shape)} along", p.loc,
                         "a vocabulary that does not split is padded by Megatron-LM and vLLM: set it to the padded "
                         "size, or keep the embedding and head whole with --no-vocab-parallel")
    if st.sp and tp is not None and tp.is_Integer and "s" in env.dims:
        _divides(tp, env.dims["s"].symbol, subs, f"--tp {tp} --sp: sequence parallelism splits the sequence,",
                 env.dims["s"].loc)
    if ep is not None and ep.is_Integer:
        for count, loc in report.graph.expert_counts:
            _divides(ep, count, subs, f"--ep {ep}: expert parallelism splits the experts,", loc)
    if pp is not None and pp.is_Integer:
        for fam in report.graph.families:
            if fam.mult == 1:  # a top-level repeat: each stage runs count/p of its layers
                _divides(pp, fam.count, subs, "--pp {}: each pipeline stage holds whole layers: the repeat count".format(
                    pp), None)


def _divides(degree, size, subs: dict, what: str, loc, hint: str | None = None) -> None:
    value = size.xreplace(subs)
    if value.is_Integer and value % degree != 0:
        raise SymcostError(f"{what} {str(size).replace('**', '^')} = {value}, which {degree} does not divide", loc,
                           hint)


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


def _declared_stage_share(readers, place: dict, st: Settings) -> sp.Expr:
    """1 when the reported pipeline stage holds a declared parameter: some op on it reads the parameter (a tied
    table is held by the first stage for the lookup and by the last for the head)."""
    if st.pp is None or st.pp == 1:
        return sp.Integer(1)
    return sp.Integer(1 if any(_stage_share(place[id(n)], st) != 0 for n in readers) else 0)


def _param_share(p, st: Settings) -> sp.Expr:
    return p.numel / st.tp if (st.tp is not None and p.sharded) else p.numel


def _pipeline_traffic(graph: Graph, st: Settings) -> sp.Expr:
    """Per device and micro-batch: each stage boundary sends the carried activation forward and its gradient
    back (b·s·h elements per boundary for a Transformer)."""
    if st.pp is None or st.pp == 1:
        return ZERO
    carried = [graph.storages[f.carried].nbytes for f in graph.families if f.mult == 1]
    if not carried:
        return ZERO
    # a device sits between two stages at most: it sends one boundary's activation (the widest, if the
    # spec repeats several kinds of layer) forward and receives/sends its gradient back
    per_pass = carried[0] if len(carried) == 1 else sp.Max(*carried)
    return per_pass * (2 if graph.phase == "train" else 1)


def _account(node: OpNode, graph: Graph, st: Settings, a2a: dict, fused_io: dict, place: str,
             gathers: dict) -> Cost:
    """One op's per-instance, per-device cost under the settings: the counting conventions, then each kind of
    parallelism as a share of what the previous ones left (so tensor, expert and pipeline degrees compose)."""
    cost = node.cost
    if id(node) in fused_io:
        cost = replace(cost, io_bytes=fused_io[id(node)][0], io_sharded=fused_io[id(node)][1])
    cost = _conventions(cost, node, graph, st)
    cost = _tensor_parallel(cost, node, st, gathers.get(id(node), ZERO))
    cost = _expert_parallel(cost, node, st, a2a)
    return _pipeline_share(cost, place, st)


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
    if st.causal == "half" and node.causal and graph.phase != "decode":  # one query sees every key
        half = sp.Rational(1, 2)
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


def _tensor_parallel(cost: Cost, node: OpNode, st: Settings, gathered=ZERO) -> Cost:
    """Tensor parallelism over t devices: sharded weights and the work on sharded tensors split t ways; the
    all-reduces of row-parallel outputs (forward) and column-parallel inputs (backward) added."""
    if st.tp is None:
        return cost
    t = st.tp
    if node.sharded:
        if node.params:  # the share of this op's own weights one device holds (a row-parallel bias stays whole)
            whole = sp.Add(*(p.numel for p in node.params))
            held = sp.Add(*(p.numel / t if p.sharded else p.numel for p in node.params))
            whole_b = sp.Add(*(p.numel * p.dtype.nbytes for p in node.params))
            held_b = sp.Add(*((p.numel / t if p.sharded else p.numel) * p.dtype.nbytes for p in node.params))
            cost = replace(cost, params=cost.params * held / whole, active_params=cost.active_params * held / whole,
                           weight_bytes=cost.weight_bytes * held_b / whole_b)
        io = cost.io_bytes - cost.io_sharded * (1 - 1 / t)  # replicated inputs and whole outputs move in full
        cost = replace(cost, **{f: getattr(cost, f) / t for f in _COMPUTE_FIELDS}, io_bytes=io,
                       io_sharded=cost.io_sharded / t)
    ring = 2 * (t - 1) / t  # a ring all-reduce moves 2(t−1)/t of the message per device
    # a split output nothing reads (the logits when generating) is all-gathered: (t−1)/t of it per device
    return replace(cost, comm_bytes=cost.comm_bytes + (node.comm_fwd + node.comm_bwd) * ring + gathered * (t - 1) / t)


def _output_gathers(graph: Graph, st: Settings) -> dict:
    """Per op (id → bytes per instance): the outputs split over tensor-parallel devices that no op reads."""
    if st.tp is None:
        return {}
    read = {t.storage for node in graph.ops for t in node.inputs}
    out = {}
    for node in graph.ops:
        left = [t.nbytes for t in node.outputs if t.sharded and t.storage not in read
                and graph.storages[t.storage].creator == node.path]
        if left:
            out[id(node)] = sp.Add(*left)
    return out


def _expert_parallel(cost: Cost, node: OpNode, st: Settings, a2a: dict) -> Cost:
    """Expert parallelism over e devices: each keeps its own tokens and holds E/e of the experts, so expert
    weights (and their reads) shrink while the work on its tokens' k expert slots does not; tokens travel."""
    if st.ep is None or not inside(node.tags, Kind.EXPERTS):
        return cost
    e = st.ep
    return replace(cost, params=cost.params / e, weight_bytes=cost.weight_bytes / e,
                   io_bytes=cost.io_bytes - cost.weight_reads * (1 - 1 / e), weight_reads=cost.weight_reads / e,
                   comm_bytes=cost.comm_bytes + a2a.get(id(node), ZERO))


def _pipeline_share(cost: Cost, place: str, st: Settings) -> Cost:
    """Pipeline parallelism: the reported stage runs L/p of every repeated layer, and the ops outside the
    repeats only if they are placed on it (see placement)."""
    share = _stage_share(place, st)
    if share == 1:
        return cost
    return Cost(**{f.name: getattr(cost, f.name) * share for f in fields(Cost)})


STAGES = ("first", "middle", "last")


def placement(graph: Graph) -> dict:
    """Where pipeline parallelism puts each op: 'layers' for ops in a repeat (each stage holds L/p of them),
    'first' for ops before the first repeated op (the embedding), 'last' for the others (the head, the loss)."""
    out, seen = {}, False
    for node in graph.ops:
        if inside(node.tags, Kind.REPEAT):
            out[id(node)], seen = "layers", True
        else:
            out[id(node)] = "last" if seen else "first"
    return out


_placement = placement


def _stage_share(place: str, st: Settings) -> sp.Expr:
    if st.pp is None or st.pp == 1:
        return sp.Integer(1)
    if place == "layers":
        return 1 / st.pp
    return sp.Integer(1 if place == st.stage else 0)


def _all_to_all(graph: Graph, st: Settings) -> dict:
    """Expert parallelism: each token goes to the devices holding its k experts and comes back (all-to-all).
    Per op (id → bytes per instance): what enters an experts region (dispatch, at its first reader) and what
    leaves it (combine, at its producer), each moving (ep−1)/ep of its bytes, forward and backward."""
    if st.ep is None:
        return {}
    storages = graph.storages
    passes = 2 if graph.phase == "train" else 1
    share = (st.ep - 1) / st.ep * passes
    readers: dict[int, list] = {}
    for node in graph.ops:
        for t in node.inputs:
            readers.setdefault(t.storage, []).append(node)
    out: dict[int, sp.Expr] = {}
    seen: set = set()
    for node in graph.ops:
        region = next(iter(regions(node.tags, Kind.EXPERTS)), None)
        if region is None:
            continue
        moved = []
        for t in node.inputs:
            if not t.is_param and region not in storages[t.storage].tags and (region, t.storage) not in seen:
                seen.add((region, t.storage))
                moved.append(t.nbytes)
        for t in node.outputs:
            if any(region not in r.tags for r in readers.get(t.storage, [])):
                moved.append(t.nbytes)
        if moved:
            out[id(node)] = sp.Add(*moved) * share
    return out


_COMPUTE_FIELDS = ("macs_fwd", "mm_outputs_fwd", "macs_bwd", "mm_outputs_bwd", "other_fwd", "other_bwd",
                   "cache_bytes", "recompute_macs", "recompute_mm_outputs", "recompute_other", "weight_reads")


def _dropped(store, saved_by: list, carried: set, st: Settings) -> bool:
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
