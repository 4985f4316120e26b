"""Memory per device: weights, gradients, optimizer state, activations and KV cache as one closed form.

What one device holds, in bytes, per phase (every part is per device under tensor, pipeline and expert
parallelism, as the report's totals are):

  train     weights + gradients + optimizer state (the training state: precision, optimizer, ZeRO stage and
            N_d; plain data parallelism when none is given) + activations: the tensors saved for the backward
            pass under the recompute setting, times the micro-batches a pipeline stage holds at once (1F1B:
            the first of p stages p, a middle one ⌈p/2⌉, the last 1; no pipeline: 1) + recomputed: with
            --recompute selective or full, the tensors recomputation rebuilds for one layer's backward pass

Recomputation frees a layer's tensors after its forward pass and rebuilds them when its backward pass runs, one
layer at a time: the peak holds the kept activations plus one layer's rebuilt tensors. `recomputed` is that
layer's share: the saved tensors the recompute mode drops (and running without recomputation keeps), per
instance of the outermost repeated block, the largest of the blocks (Whisper's encoder or decoder layer).
Korthikanti et al. (2022, "Reducing Activation Recomputation in Large Transformer Models") count only the
kept tensors (2sbhL for full recomputation); the part is shown separately so either figure can be read off.
  prefill   weights (in their own dtype: quantized ones at their bits) + the KV cache after the step + the
  decode    live activations of the step

The live activations of an inference step are bounded from above, conservatively and as a polynomial: every
tensor the step writes outside repeated blocks (the embedding output, the final norm, the logits …) held at
once, plus, for each repeated block, every tensor one instance writes (its input included) held at once — as
if nothing were freed inside a layer, and each layer's tensors freed before the next runs (every inference
framework frees them). Views (a cache read, a reshape) hold nothing of their own; with fused attention the
tensors a fused region keeps inside are never materialised. Transient buffers of a training step (gradients of
activations, workspaces) are not counted: in training the saved activations dominate.

A reserve for what the tensors do not account for is optional: a fraction f for allocator fragmentation (the
tensors fill at most 1 − f of the memory they take) and fixed bytes R for the framework (CUDA context,
workspaces, communication buffers):

  total = used / (1 − f) + R        (f = 0.1, R = 2 GB: a 90 GB tensor load needs 102 GB)

With a device, headroom = capacity − total, and the load fits when headroom ≥ 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symcost.model.graph import Kind, Region, regions

ORDER = ("weights", "gradients", "optimizer", "activations", "recomputed", "kv_cache")
LIVE = "a bound on what one step holds at once (every tensor outside the repeated blocks, and one instance of each " \
       "repeated block)"


def activations_convention(phase: str, brief: bool = False) -> str:
    """What "activations" counts in a phase: the text header's phrase (brief) or the JSON conventions' sentence.
    Training counts the tensors saved for backward; an inference step saves none (activation_bytes is 0) and
    memory per device counts a bound on its live tensors instead."""
    if phase == "train":
        return ("tensors saved for backward, each once" if brief
                else "bytes of every distinct storage saved for backward, counted once")
    if brief:
        return "live tensors of one step, bounded above (none saved for backward)"
    return "none saved for backward (activation_bytes is 0); memory.parts.activations is " + LIVE
TITLES = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer state",
          "activations": "activations", "recomputed": "recomputed", "kv_cache": "KV cache"}


@dataclass(frozen=True)
class Memory:
    """Bytes one device holds, by part (keys in ORDER, only those that apply), a reserve, and the capacity."""

    parts: dict  # name -> sympy.Expr
    reserve_fraction: sp.Rational
    reserve_bytes: sp.Expr
    capacity: sp.Expr | None  # the device's memory, or None without a device
    notes: tuple = ()

    @property
    def used(self) -> sp.Expr:
        """The tensors: the sum of the parts."""
        return sp.Add(*self.parts.values())

    @property
    def total(self) -> sp.Expr:
        """used / (1 − reserve_fraction) + reserve_bytes."""
        used = self.used
        if self.reserve_fraction != 0:
            used = sp.expand(used / (1 - self.reserve_fraction))
        return used + self.reserve_bytes

    @property
    def headroom(self) -> sp.Expr | None:
        """capacity − total (negative: it does not fit), or None without a device."""
        return None if self.capacity is None else self.capacity - self.total

    def fits(self, evaluator=None) -> bool | None:
        """Whether total ≤ capacity at the evaluator's dims; None without a device or while dims are free."""
        if self.capacity is None:
            return None
        room = self.headroom if evaluator is None else evaluator(self.headroom)
        if isinstance(room, int):
            return room >= 0
        if not room.is_number:
            return None
        return bool(room >= 0)


def memory(analysis) -> Memory:
    """Memory per device of an Analysis (symcost.api.Analysis) for its phase, settings and device."""
    report, req = analysis.report, analysis.request
    totals = report.totals
    notes = []
    if report.graph.phase == "train":
        from symcost.analysis.training import training_state_for

        st = analysis.training or training_state_for(report, precision=analysis.precision,
                                                     optimizer=req.optimizer, zero=0, dp=1)
        flight, why = in_flight(report)
        parts = {"weights": st.weight_bytes, "gradients": st.gradient_bytes, "optimizer": st.optimizer_bytes,
                 "activations": sp.expand(totals["activation_bytes"] * flight),
                 "recomputed": recomputed_activations(report)}
        notes.append("activations: the tensors saved for the backward pass" + why)
        if parts["recomputed"] != 0:
            notes.append(f"recomputed: the tensors {report.settings.recompute} recomputation rebuilds for one "
                         "layer's backward pass, held with the kept activations at the peak (Korthikanti et al. "
                         "2022 count the kept activations only)")
        if analysis.training is None:
            notes.append(f"training state: {st.precision.name}, {st.optimizer}, no ZeRO (give --zero or --dp to "
                         "shard it)")
    else:
        parts = {"weights": totals["weight_bytes"], "activations": live_activations(report),
                 "kv_cache": totals["kv_cache_bytes"]}
        notes.append("activations: " + LIVE)
    parts = {k: sp.expand(parts[k]) for k in ORDER if k in parts and parts[k] != 0}
    fraction = sp.Rational(req.reserve.numerator, req.reserve.denominator) if req.reserve is not None else sp.S.Zero
    reserve = sp.Integer(req.reserve_bytes or 0)
    device = analysis.device
    return Memory(parts, fraction, reserve, None if device is None else device.memory_bytes, tuple(notes))


def in_flight(report) -> tuple[sp.Expr, str]:
    """Micro-batches whose saved activations a pipeline stage holds at once under 1F1B (Narayanan et al. 2021):
    stage i of p holds p − i (given at least p micro-batches): the first p, a middle one ⌈p/2⌉, the last 1."""
    st = report.settings
    if st is None or st.pp is None or st.pp == 1:
        return sp.Integer(1), ""
    p = st.pp
    if st.stage == "first":
        return p, f" of the {p} micro-batches the first pipeline stage holds (1F1B)"
    if st.stage == "middle":
        return sp.ceiling(p / 2), f" of the ⌈{p}/2⌉ micro-batches a middle pipeline stage holds (1F1B)"
    return sp.Integer(1), " of the one micro-batch the last pipeline stage holds (1F1B)"


def recomputed_activations(report) -> sp.Expr:
    """Bytes one layer's backward pass holds again under recomputation (module docstring): the saved tensors the
    recompute mode drops and a step without recomputation keeps, per instance of the outermost repeated block
    (the largest block when several repeat); those outside repeats whole, on their pipeline stage."""
    from types import SimpleNamespace

    from symcost.cost.accounting import dropped
    from symcost.cost.parallel import placement, sharded_bytes

    graph, st = report.graph, report.settings
    if graph.phase != "train" or st is None or st.recompute == "none":
        return sp.S.Zero
    storages = graph.storages
    savers: dict[int, list] = {}
    for node in graph.ops:
        for sid in node.saves:
            savers.setdefault(sid, []).append(node)
    carried = {fam.carried for fam in graph.families}
    kept = SimpleNamespace(recompute="none", flash=st.flash)  # what a step without recomputation saves
    place = placement(graph)
    per: dict = {}
    for sid, nodes in savers.items():
        store = storages[sid]
        if not dropped(store, nodes, carried, st) or dropped(store, nodes, carried, kept):
            continue
        tag = _outer_repeat(store.tags)
        if tag is None and st.pp is not None and st.pp != 1 and place[id(nodes[0])] != st.stage:
            continue
        per.setdefault(tag, []).append(sharded_bytes(store, st) * store.mult)
    nodes_in: dict = {}
    for node in graph.ops:
        tag = _outer_repeat(node.tags)
        if tag is not None:
            nodes_in.setdefault(tag, []).append(node)
    layers = [sp.expand(sp.Add(*b) / (1 if tag is None else _region_mult(nodes_in[tag], tag)))
              for tag, b in per.items()]
    keep = st.keep
    defs = {d.symbol: d.definition for d in graph.env.dims.values() if d.definition is not None and d.name not in keep}
    peak = sp.S.Zero if not layers else layers[0] if len(layers) == 1 else sp.Max(*layers)
    return sp.expand(peak.xreplace(defs))


def live_activations(report) -> sp.Expr:
    """A polynomial upper bound on the activation bytes an inference step holds at once (module docstring)."""
    from symcost.cost.parallel import placement, sharded_bytes

    graph, st = report.graph, report.settings
    storages = graph.storages
    inner = _fused_inner(graph) if st is not None and st.flash else set()
    place = placement(graph)
    repeated: dict[Region, list] = {}
    outside: dict[int, sp.Expr] = {}
    for node in graph.ops:
        tag = _outer_repeat(node.tags)
        if tag is not None:
            repeated.setdefault(tag, []).append(node)
            continue
        if st is not None and st.pp is not None and st.pp != 1 and place[id(node)] != st.stage:
            continue
        for t in (*node.inputs, *node.outputs):
            store = storages[t.storage]
            if not t.is_param and t.storage not in inner and store.label not in ("parameter", "cache"):
                outside[t.storage] = store.mult
    total = [sharded_bytes(storages[sid], st) * mult for sid, mult in outside.items()]
    for tag, nodes in repeated.items():
        per = _region_mult(nodes, tag)
        held = {sid for sid, store in storages.items() if tag in store.tags and sid not in inner
                and store.label in ("output", "loop-carried")}
        total += [sharded_bytes(storages[sid], st) * storages[sid].mult / per for sid in held]
    keep = st.keep if st is not None else ()
    defs = {d.symbol: d.definition for d in graph.env.dims.values() if d.definition is not None and d.name not in keep}
    return sp.expand(sp.Add(*total).xreplace(defs))


def _outer_repeat(tags) -> Region | None:
    """The outermost repeat among the tags (regions are numbered as they are entered)."""
    repeats = regions(tags, Kind.REPEAT)
    return min(repeats, key=lambda t: t.index) if repeats else None


def _region_mult(nodes: list, tag: Region) -> sp.Expr:
    """How many instances of a repeated block run: the multiplicity of an op directly in its body."""
    direct = [n for n in nodes if not any(t != tag and t.kind in (Kind.REPEAT, Kind.EXPERTS) for t in n.tags)]
    return (direct or nodes)[0].mult


def _fused_inner(graph) -> set:
    """Storages made inside a fused region that only that region reads: a fused kernel never writes them."""
    readers: dict[int, list] = {}
    for node in graph.ops:
        for t in node.inputs:
            readers.setdefault(t.storage, []).append(node)
    out = set()
    for sid, store in graph.storages.items():
        fused = regions(store.tags, Kind.FUSED)
        if fused and all(fused[0] in n.tags for n in readers.get(sid, [])):
            out.add(sid)
    return out
