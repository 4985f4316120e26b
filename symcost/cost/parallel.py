"""Parallelism passes: tensor, sequence, expert and pipeline parallelism as shares of one device's costs."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import sympy as sp

from symcost.cost.record import ZERO, Cost
from symcost.errors import Loc, SymcostError
from symcost.model.dims import fmt_expr, fmt_shape
from symcost.model.graph import Graph, Kind, OpNode, inside, regions

if TYPE_CHECKING:
    from symcost.cost.accounting import Report, Settings

STAGES = ("first", "middle", "last")

# the work on sharded tensors, which tensor parallelism splits among the devices
COMPUTE_FIELDS = ("macs_fwd", "mm_outputs_fwd", "macs_bwd", "mm_outputs_bwd", "other_fwd", "other_bwd",
                  "cache_bytes", "recompute_macs", "recompute_mm_outputs", "recompute_other", "weight_reads")


# the work on the tokens outside tensor-parallel regions, which sequence parallelism splits (Korthikanti et al.
# 2022, §4.2.2: LayerNorm, dropout and the residual adds on s/t tokens)
SEQUENCE_FIELDS = tuple(f for f in COMPUTE_FIELDS if f not in ("cache_bytes", "weight_reads"))


# ---- tensor and sequence parallelism ----------------------------------------------------------------------------

def tensor_parallel(cost: Cost, node: OpNode, st: Settings, gathered=ZERO) -> Cost:
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
        cost = replace(cost, **{f: getattr(cost, f) / t for f in COMPUTE_FIELDS}, io_bytes=io,
                       io_sharded=cost.io_sharded / t)
    elif st.sp:  # the ops between tensor-parallel regions (norms, dropout, residual adds) run on s/t tokens
        local = cost.io_bytes - cost.weight_reads  # the tokens' tensors; a norm's gain is read whole
        cost = replace(cost, **{f: getattr(cost, f) / t for f in SEQUENCE_FIELDS}, io_bytes=local / t + cost.weight_reads)
    ring = 2 * (t - 1) / t  # a ring all-reduce moves 2(t−1)/t of the message per device
    # a split output nothing reads (the logits when generating) is all-gathered: (t−1)/t of it per device
    return replace(cost, comm_bytes=cost.comm_bytes + (node.comm_fwd + node.comm_bwd) * ring + gathered * (t - 1) / t)


def output_gathers(graph: Graph, st: Settings) -> dict:
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


def param_share(p, st: Settings) -> sp.Expr:
    """The elements of a parameter one device holds under tensor parallelism."""
    return p.numel / st.tp if (st.tp is not None and p.sharded) else p.numel


def sharded_bytes(store, st: Settings | None) -> sp.Expr:
    """A storage's bytes on one device: split t ways when it is sharded, or under sequence parallelism (but the
    model's inputs, token ids and positions, arrive whole: the sequence is split after the embedding)."""
    n = store.nbytes
    if st is not None and st.tp is not None and (store.sharded or (st.sp and store.label != "input")):
        n = n / st.tp
    return n


# ---- expert parallelism -----------------------------------------------------------------------------------------

def expert_parallel(cost: Cost, node: OpNode, st: Settings, a2a: dict) -> Cost:
    """Expert parallelism over e devices: each keeps its own tokens and holds E/e of the experts, so expert
    weights (and their reads) shrink while the work on its tokens' k expert slots does not; tokens travel."""
    if st.ep is None or not inside(node.tags, Kind.EXPERTS):
        return cost
    e = st.ep
    return replace(cost, params=cost.params / e, weight_bytes=cost.weight_bytes / e,
                   io_bytes=cost.io_bytes - cost.weight_reads * (1 - 1 / e), weight_reads=cost.weight_reads / e,
                   comm_bytes=cost.comm_bytes + a2a.get(id(node), ZERO))


def all_to_all(graph: Graph, st: Settings) -> dict:
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


# ---- pipeline parallelism ---------------------------------------------------------------------------------------

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


def stage_share(place: str, st: Settings) -> sp.Expr:
    """The share of an op's instances the reported pipeline stage runs: L/p of the layers, all or nothing else."""
    if st.pp is None or st.pp == 1:
        return sp.Integer(1)
    if place == "layers":
        return 1 / st.pp
    return sp.Integer(1 if place == st.stage else 0)


def pipeline_share(cost: Cost, place: str, st: Settings) -> Cost:
    """Pipeline parallelism: the reported stage runs L/p of every repeated layer, and the ops outside the
    repeats only if they are placed on it (see placement)."""
    share = stage_share(place, st)
    if share == 1:
        return cost
    return Cost(**{f.name: getattr(cost, f.name) * share for f in fields(Cost)})


def saved_bytes(store, savers, place: dict, st: Settings) -> sp.Expr:
    """A saved storage's bytes on one device: sharded_bytes, and under pipeline parallelism a layer's tensors on
    L/p of the layers, the others where their savers run."""
    n = sharded_bytes(store, st)
    if st.pp is not None:
        shares = [stage_share("layers" if inside(store.tags, Kind.REPEAT) else place[id(s)], st)
                  for s in savers] or [stage_share("layers", st)]
        n = n * (shares[0] if len(set(shares)) == 1 else sp.Max(*shares))
    return n


def declared_stage_share(readers, place: dict, st: Settings) -> sp.Expr:
    """1 when the reported pipeline stage holds a declared parameter: some op on it reads the parameter (a tied
    table is held by the first stage for the lookup and by the last for the head)."""
    if st.pp is None or st.pp == 1:
        return sp.Integer(1)
    return sp.Integer(1 if any(stage_share(place[id(n)], st) != 0 for n in readers) else 0)


def pipeline_traffic(graph: Graph, st: Settings) -> sp.Expr:
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
    if st.sp and st.tp is not None:  # the boundary tensor is split along the sequence: [s/t, b, h] per device
        per_pass = per_pass / st.tp
    return per_pass * (2 if graph.phase == "train" else 1)


# ---- degrees that must divide what they split -------------------------------------------------------------------

@dataclass(frozen=True)
class Indivisible:
    """A parallelism degree that does not divide the size of an axis it splits."""

    flag: str  # the setting as given: "--tp 3", "--tp 3 --sp"
    splits: str  # what it splits: "tensor parallelism splits the heads,"
    size: sp.Expr  # the axis's size as a closed form
    value: sp.Integer  # the size at the given dims
    degree: sp.Integer
    loc: Loc | None
    hint: str | None = None

    @property
    def problem(self) -> str:
        """What is split and its size: "tensor parallelism splits the heads, a = 30"."""
        return f"{self.splits} {fmt_expr(self.size)} = {self.value}"

    def error(self) -> SymcostError:
        return SymcostError(f"{self.flag}: {self.splits} {fmt_expr(self.size)} = {self.value}, which {self.degree} "
                            "does not divide", self.loc, self.hint)


def check_divisible(report: Report, values: dict) -> None:
    """Tensor and expert parallelism split whole rows, heads and experts, and a pipeline stage holds whole layers:
    a degree (a number, or a name given a value) must divide the size of every axis it splits, at the given dims
    (names -> ints)."""
    problem = indivisible(report, values)
    if problem is not None:
        raise problem.error()


def indivisible(report: Report, values: dict) -> Indivisible | None:
    """The first axis a degree of the report's settings splits but does not divide at the given dims, or None."""
    st, env = report.settings, report.env
    if st is None:
        return None
    subs = {env.dims[n].symbol: sp.Integer(v) for n, v in values.items() if n in env.dims}
    for dim in env.dims.values():
        if dim.definition is not None:
            subs.setdefault(dim.symbol, dim.definition.xreplace(subs))
    tp, ep, pp = (None if d is None else d.xreplace(subs) for d in (st.tp, st.ep, st.pp))
    splits = []  # (flag, degree, what it splits, its size, location, hint)
    if tp is not None and tp.is_Integer:
        splits += _tensor_parallel_splits(report, tp)
    if ep is not None and ep.is_Integer:
        splits += [(f"--ep {ep}", ep, "expert parallelism splits the experts,", count, loc, None)
                   for count, loc in report.graph.expert_counts]
    if pp is not None and pp.is_Integer:  # a top-level repeat: each stage runs count/p of its layers
        splits += [(f"--pp {pp}", pp, "each pipeline stage holds whole layers: the repeat count", fam.count, None,
                    None) for fam in report.graph.families if fam.mult == 1]
    for flag, degree, what, size, loc, hint in splits:
        value = size.xreplace(subs)
        if value.is_Integer and value % degree != 0:
            return Indivisible(flag, what, size, value, degree, loc, hint)
    return None


def _tensor_parallel_splits(report: Report, tp: sp.Integer) -> list:
    """What --tp splits: the heads, every axis a parameter is split along, and (with --sp) the sequence."""
    st, env = report.settings, report.env
    out = [(f"--tp {tp}", tp, "tensor parallelism splits the heads,", size, loc, None)
           for size, loc in report.graph.splits]
    vocab = ("a vocabulary that does not split is padded by Megatron-LM and vLLM: set it to the padded size, or keep "
             "the embedding and head whole with --no-vocab-parallel")
    out += [(f"--tp {tp}", tp, f"tensor parallelism splits {p.path} {fmt_shape(p.shape)} along",
             p.shape[p.shard_axis], p.loc, vocab) for p in report.graph.params if p.shard_axis is not None]
    if st.sp and "s" in env.dims:
        out.append((f"--tp {tp} --sp", tp, "sequence parallelism splits the sequence,", env.dims["s"].symbol,
                    env.dims["s"].loc, None))
    return out
