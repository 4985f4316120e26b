"""Search parallel layouts: tensor, pipeline and data degrees, micro-batch, ZeRO stage and recomputation.

The closed forms are derived once per discrete choice (recomputation mode; pipeline stage: the whole model when
p = 1, else the first and the last stage) with the degrees t, p, N_d and the micro-batch b as symbols, compiled
to numpy (`symcost.analysis.numeric.compile_exprs`, never from text), and evaluated over every layout at once.

Training (objective train), per optimizer step of a global batch of B sequences, each device of a layout
(t, p, d = N/(t·p), b, m = B/(d·b) micro-batches, ZeRO stage z, recomputation r):

  per micro-batch   μ = F/peak + C/link            F: forward + backward + recomputed FLOPs of the stage per
                                                   device; C: its comm_bytes (tensor-parallel all-reduces and
                                                   the stage-boundary sends) over one direction of the link
  pipeline          (m + p − 1)·μ                  m micro-batches through p stages (1F1B or GPipe): the bubble
                                                   is (p − 1)·μ, a fraction (p − 1)/m of the compute
  data parallel     G/link                         G: the stage's data-parallel bytes per step over m
                                                   micro-batches, ring volume (d − 1)/d, as derive counts them
                                                   (symcost.analysis.training.dp_communication_bytes: ZeRO-2
                                                   reduce-scatters every micro-batch, ZeRO-3 also gathers the
                                                   weights for each); not overlapped with compute
  step time         pipeline + data parallel       of the slower stage (first or last)
  memory            state_z + k·A + R_r            training state under ZeRO z over d devices + the activations
                                                   of k micro-batches in flight: k = min(p, m) on the first stage
                                                   (1F1B), 1 on the last, 1 without a pipeline + R_r, one layer's
                                                   tensors rebuilt under recomputation r; with a reserve,
                                                   / (1 − f) + R as derive's memory total

Every rate is the device's peak: the step time is a lower bound for the layout, no compute/communication
overlap assumed, every link the device's interconnect (across nodes the real links are slower). Decode
(objective decode): each of d replicas holds p stages of t devices, p micro-batches of b sequences in flight;
a stage's step takes max(F/peak, bytes/bandwidth, C/link) (symcost.analysis.roofline), tokens/s = d·b / that,
memory = weights + the KV cache of the p·b sequences for the stage's layers + the live activations of one step
(symcost.analysis.memory), with the reserve.

The searched degrees are symbols named t, p, N_d and m unless the spec uses those names (Whisper's t is a
length): then a free name is taken (t_, …); the micro-batch b is the spec's batch dim.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import sympy as sp

from symcost.errors import SymcostError

RECOMPUTE = ("none", "selective", "full")
SEARCHED = ("t", "p", "N_d", "b", "m")  # tensor, pipeline and data degrees, micro-batch, micro-batches per step
ZERO = (0, 1, 2, 3)
STAGES = ("whole", "first", "last")
OVER_MEMORY = "memory per device over the device's"  # why a layout (not a degree shape) is rejected


@dataclass
class Search:
    """The compiled closed forms of one plan: per recomputation mode, one program over (t, p, N_d, b)."""

    objective: str
    programs: dict  # recompute mode (or "decode") → Compiled
    peak: float
    bandwidth: float
    link: float
    capacity: float
    analysis: object  # the base analysis (dims, device, request)
    derive_seconds: float = 0.0
    zero: tuple = ZERO
    recompute: tuple = RECOMPUTE
    reserve_fraction: float = 0.0  # --reserve: total = used / (1 − f) + reserve_bytes, as derive's memory total
    reserve_bytes: float = 0.0
    names: dict = field(default_factory=lambda: {n: n for n in SEARCHED})  # searched → the symbol's name

    def run(self, mode: str, **values):
        """The compiled program of a recomputation mode at searched values (t, p, N_d, b, m: arrays or numbers)."""
        program = self.programs[mode]
        args = {a.name for a in program.args}
        return program(exact=False, **{self.names[k]: v for k, v in values.items() if self.names[k] in args})

    def total(self, used):
        """Memory per device held for `used` bytes of tensors: with the reserve (symcost.analysis.memory)."""
        return used / (1 - self.reserve_fraction) + self.reserve_bytes


@dataclass
class Layouts:
    """Layouts as flat arrays (one entry per layout) with their times and memory."""

    t: object
    p: object
    d: object
    b: object
    m: object
    zero: object
    recompute: object  # index into Search.recompute
    parts: dict  # name → array: compute, bubble, tp_comm, dp_comm, time, weights, gradients, optimizer,
    #                              activations, reserve, memory; decode: weights, kv_cache, activations, reserve,
    #                              memory, tokens_per_s
    stage: object = None  # index into STAGES: the stage whose memory is shown (the larger)


@dataclass
class Plan:
    search: Search
    devices: int
    global_batch: int | None
    best: list  # dicts, best first
    evaluated: int
    fitting: int
    rejected: dict  # reason → count
    shapes: list  # (t, p, d, reason or None)
    seconds: float  # evaluation time of all layouts
    total_seconds: float
    checks: list = field(default_factory=list)  # exact re-derivation of the best layout
    notes: list = field(default_factory=list)


# ---- derivation and compilation ------------------------------------------------------------------------------
def prepare(spec=None, *, device: str, objective: str = "train", preset=None, hf_config=None, set=None,
            recompute=RECOMPUTE, zero=ZERO, **settings) -> Search:
    """Derive and compile the closed forms the search evaluates (once per recomputation mode and stage)."""
    from symcost.api import derive
    from symcost.analysis.numeric import compile_exprs

    if objective not in ("train", "decode"):
        raise SymcostError(f"--objective is train or decode, not '{objective}'")
    for name in ("tp", "pp", "dp", "zero", "recompute", "stage", "phase", "micro_batches"):
        if settings.get(name) is not None:
            raise SymcostError(f"--{name} is what plan searches; leave it out")
    start = time.perf_counter()
    phase = "train" if objective == "train" else "decode"
    base = derive(spec, preset=preset, hf_config=hf_config, set=set, phase=phase, device=device, **settings)
    modes = tuple(recompute) if objective == "train" else ("none",)
    splits = any(node.sharded for node in base.graph.ops)  # anything tensor parallelism splits (else t = 1 only)
    names = _names(base)
    searched = [n for n in SEARCHED if objective == "train" or n != "m"]
    symbols = [base.symbol("b") if n == "b" and "b" in base.dims else _symbol(names[n]) for n in searched]
    micro = symbols[-1] if objective == "train" else None
    programs = {}
    for r in modes:
        exprs = {}
        for stage in STAGES:
            kw = dict(tp=names["t"] if splits else None, phase=phase, device=device, **settings)
            if objective == "train":
                kw.update(dp=names["N_d"], recompute=r)
            if stage != "whole":
                kw.update(pp=names["p"], stage=stage)
            a = derive(spec, preset=preset, hf_config=hf_config, set=set, **kw)
            exprs.update(_stage_exprs(a, stage, zero, micro) if objective == "train" else _decode_exprs(a, stage))
        subs = _fixed(base, [s.name for s in symbols])
        exprs = {k: sp.expand(e.xreplace(subs)) for k, e in exprs.items()}
        free = sorted({str(s) for e in exprs.values() for s in e.free_symbols} - {s.name for s in symbols})
        if free:
            raise SymcostError(f"plan needs a value for {', '.join(free)}", None,
                               f"give {' '.join(f + '=…' for f in free)} with --set")
        programs[r] = compile_exprs(exprs, symbols)
    dev = base.device
    dtype = base.env.default_dtype.name
    mem = base.memory
    return Search(objective, programs, float(dev.peak(dtype)), float(dev.memory_bandwidth),
                  float(dev.interconnect.per_direction), float(dev.memory_bytes), base,
                  time.perf_counter() - start, tuple(zero), modes, float(mem.reserve_fraction),
                  float(mem.reserve_bytes), names)


def _names(analysis) -> dict:
    """The symbol name of each searched quantity: itself, or with underscores added while the spec uses it."""
    taken = set(analysis.env.dims) | set(analysis.env.options)
    out = {"b": "b"}
    for n in ("t", "p", "N_d", "m"):
        name = n
        while name in taken:
            name += "_"
        out[n] = name
        taken.add(name)
    return out


def _symbol(name: str):
    from symcost.model.dims import make_symbol

    return make_symbol(name)


def _fixed(analysis, searched: list) -> dict:
    from symcost.analysis.evaluate import Evaluator

    values = {k: v for k, v in analysis.values.items() if k not in searched}
    return Evaluator(analysis.env, values).subs


def _stage_exprs(a, stage: str, zero, micro_batches) -> dict:
    """Per device and micro-batch: FLOPs, comm bytes, activations; per step of `micro_batches`: the training
    state's parts and the data-parallel bytes under each ZeRO stage, as derive counts them (frozen parameters
    have no gradient, optimizer state or gradient traffic)."""
    from symcost.analysis.memory import recomputed_activations
    from symcost.analysis.training import dp_communication_bytes, training_state_for

    t = a.totals
    out = {f"{stage}.flops": t["flops_fwd"] + t["flops_bwd"] + t["flops_recompute"],
           f"{stage}.comm": t["comm_bytes"], f"{stage}.act": t["activation_bytes"],
           f"{stage}.rec": recomputed_activations(a.report)}
    prec, opt = a.precision, a.request.optimizer
    for z in zero:
        st = training_state_for(a.report, precision=prec, optimizer=opt, zero=z, dp=a.dp)
        out[f"{stage}.w{z}"], out[f"{stage}.g{z}"], out[f"{stage}.o{z}"] = (st.weight_bytes, st.gradient_bytes,
                                                                             st.optimizer_bytes)
        out[f"{stage}.dp{z}"] = dp_communication_bytes(t["params"], prec, z, a.dp, exact=True,
                                                       frozen=a.report.frozen_params, micro_batches=micro_batches)
    return out


def _decode_exprs(a, stage: str) -> dict:
    """A stage's decode step (FLOPs, bytes, comm) and derive's memory parts for one micro-batch of b sequences:
    weights, the KV cache, the step's live activations (symcost.analysis.memory)."""
    s = a.summary
    parts = a.memory.parts
    return {f"{stage}.flops": s.flops, f"{stage}.bytes": s.bytes, f"{stage}.comm": s.comm_bytes,
            f"{stage}.weights": parts.get("weights", sp.S.Zero), f"{stage}.kv": parts.get("kv_cache", sp.S.Zero),
            f"{stage}.act": parts.get("activations", sp.S.Zero)}


# ---- enumeration ---------------------------------------------------------------------------------------------
def divisors(n: int) -> list[int]:
    small = [i for i in range(1, int(n**0.5) + 1) if n % i == 0]
    return sorted(set(small + [n // i for i in small]))


def shapes(search: Search, devices: int, global_batch: int | None, max_tp: int) -> list:
    """(t, p, d, reason) for every t·p·d = N with t ≤ max_tp; reason None when the shape is valid."""
    a = search.analysis
    out, reasons = [], {}
    for t in divisors(devices):
        if t > max_tp:
            continue
        for p in divisors(devices // t):
            for key in (("t", t), ("p", p)):
                if key not in reasons:
                    reasons[key] = _degree_problem(a, *key)
            d = devices // (t * p)
            reason = reasons[("t", t)] or reasons[("p", p)]
            if reason is None and global_batch is not None and global_batch % d:
                reason = f"the global batch does not split over the data-parallel degree"
            out.append((t, p, d, reason))
    return out


def _degree_problem(analysis, name: str, n: int) -> str | None:
    """Why tensor (name t) or pipeline (p) degree n cannot split this model, or None."""
    from dataclasses import replace

    from symcost.cost.parallel import indivisible

    report = analysis.report
    if name == "p" and n > 1 and not report.graph.families:
        return "the spec repeats no layers to split over pipeline stages"
    if name == "t" and n > 1 and not any(node.sharded for node in report.graph.ops):
        return "the spec marks no layer tensor-parallel (parallel=column, row or vocab)"
    probe = replace(report, settings=replace(report.settings, **{"tp" if name == "t" else "pp": sp.Integer(n)}))
    problem = indivisible(probe, analysis.values)
    return None if problem is None else f"{name} does not divide what it splits: {problem.problem}"


def layouts(shape_list: list, global_batch: int, max_micro: int | None = None):
    """Flat arrays (t, p, d, b, m) of every valid shape and micro-batch b dividing the local batch B/d."""
    import numpy as np

    rows = []
    for t, p, d, reason in shape_list:
        if reason is not None:
            continue
        local = global_batch // d
        for b in divisors(local):
            if max_micro is None or b <= max_micro:
                rows.append((t, p, d, b, local // b))
    if not rows:
        return None
    return np.array(rows, dtype=np.int64).T


# ---- evaluation ----------------------------------------------------------------------------------------------
def evaluate_train(search: Search, t, p, d, b, m) -> Layouts:
    """Every layout (t, p, d, b, m arrays) under every recomputation mode and ZeRO stage: times and memory."""
    import numpy as np

    n = len(t)
    cols = {k: [] for k in ("compute", "bubble", "tp_comm", "dp_comm", "time", "weights", "gradients",
                            "optimizer", "activations", "recomputed", "reserve", "memory", "inflight")}
    zs, rs, shown = [], [], []
    piped = p > 1
    for ri, r in enumerate(search.recompute):
        v = search.run(r, t=t, p=p, N_d=d, b=b, m=m)
        pick = lambda name: np.where(piped, np.maximum(v[f"first.{name}"], v[f"last.{name}"]), v[f"whole.{name}"])  # noqa: E731
        flops = pick("flops")
        per_mb_first = v["first.flops"] / search.peak + v["first.comm"] / search.link
        per_mb_last = v["last.flops"] / search.peak + v["last.comm"] / search.link
        per_mb_whole = v["whole.flops"] / search.peak + v["whole.comm"] / search.link
        slow_last = per_mb_last > per_mb_first
        per_mb = np.where(piped, np.maximum(per_mb_first, per_mb_last), per_mb_whole)
        compute_mb = np.where(piped, np.where(slow_last, v["last.flops"], v["first.flops"]), flops) / search.peak
        inflight_first = np.minimum(p, m)
        for z in search.zero:
            dp_bytes = np.where(piped, np.maximum(v[f"first.dp{z}"], v[f"last.dp{z}"]), v[f"whole.dp{z}"])
            mem = {}
            for stage, k in (("whole", 1), ("first", inflight_first), ("last", 1)):
                mem[stage] = (v[f"{stage}.w{z}"], v[f"{stage}.g{z}"], v[f"{stage}.o{z}"], v[f"{stage}.act"] * k,
                              v[f"{stage}.rec"])  # one layer rebuilt by recomputation, for one micro-batch
            tot = {s: sum(parts) for s, parts in mem.items()}
            use_last = piped & (tot["last"] > tot["first"])
            def part(i):  # noqa: E306
                return np.where(piped, np.where(use_last, mem["last"][i], mem["first"][i]), mem["whole"][i])
            cols["compute"].append(m * compute_mb)
            cols["tp_comm"].append(m * (per_mb - compute_mb))
            cols["bubble"].append((p - 1) * per_mb)
            cols["dp_comm"].append(dp_bytes / search.link)
            cols["time"].append((m + p - 1) * per_mb + dp_bytes / search.link)
            for i, name in enumerate(("weights", "gradients", "optimizer", "activations", "recomputed")):
                cols[name].append(part(i))
            held = np.where(piped, np.maximum(tot["first"], tot["last"]), tot["whole"])
            total = search.total(held)
            cols["reserve"].append(total - held)
            cols["memory"].append(total)
            cols["inflight"].append(np.where(piped & ~use_last, inflight_first, 1))
            zs.append(np.full(n, z))
            rs.append(np.full(n, ri))
            shown.append(np.where(piped, np.where(use_last, 2, 1), 0))
    reps = len(zs)
    parts = {k: np.concatenate(c) for k, c in cols.items()}
    return Layouts(np.tile(t, reps), np.tile(p, reps), np.tile(d, reps), np.tile(b, reps), np.tile(m, reps),
                   np.concatenate(zs), np.concatenate(rs), parts, np.concatenate(shown))


def evaluate_decode(search: Search, t, p, d, b) -> Layouts:
    """Every decode layout: a stage's step bound, tokens/s over all replicas, memory of the p·b sequences."""
    import numpy as np

    v = search.run("none", t=t, p=p, N_d=d, b=b)
    piped = p > 1
    out = {}
    for stage in STAGES:
        ct = v[f"{stage}.flops"] / search.peak
        mt = v[f"{stage}.bytes"] / search.bandwidth
        cm = v[f"{stage}.comm"] / search.link
        out[stage] = (ct, mt, cm, np.maximum(np.maximum(ct, mt), cm))
    first_slow = out["first"][3] >= out["last"][3]
    def pick(i):  # noqa: E306
        return np.where(piped, np.where(first_slow, out["first"][i], out["last"][i]), out["whole"][i])
    step = pick(3)
    # memory of a stage: its weights, the KV cache of the p micro-batches in flight, one step's live activations
    mem = {stage: (v[f"{stage}.weights"], p * v[f"{stage}.kv"], v[f"{stage}.act"]) for stage in STAGES}
    used = {stage: sum(parts) for stage, parts in mem.items()}
    shown = np.where(piped, np.where(used["last"] > used["first"], 2, 1), 0)  # index into STAGES
    def part(i):  # noqa: E306
        return np.choose(shown, [mem[stage][i] for stage in STAGES])
    held = np.choose(shown, [used[stage] for stage in STAGES])
    total = search.total(held)
    parts = {"compute": pick(0), "memory_time": pick(1), "tp_comm": pick(2), "time": step,
             "tokens_per_s": d * b / step, "weights": part(0), "kv_cache": part(1), "activations": part(2),
             "reserve": total - held, "memory": total}
    n = len(t)
    return Layouts(t, p, d, b, np.full(n, p), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), parts,
                   shown)


# ---- the search ----------------------------------------------------------------------------------------------
def plan(spec=None, *, devices: int, device: str, global_batch: int | None = None, objective: str = "train",
         preset=None, hf_config=None, set=None, max_tp: int = 8, max_batch: int = 1024, top: int = 5,
         recompute=RECOMPUTE, zero=ZERO, **settings) -> Plan:
    """The layouts of `devices` devices that minimise the training step time (objective train, a global batch of
    `global_batch` sequences) or maximise decode tokens/s (objective decode, micro-batches up to `max_batch`),
    with memory per device within the device's; the `top` best, best first."""
    import numpy as np

    _check_counts(devices, global_batch, objective, max_tp, max_batch, top)
    start = time.perf_counter()
    search = prepare(spec, device=device, objective=objective, preset=preset, hf_config=hf_config, set=set,
                     recompute=recompute, zero=zero, **settings)
    shape_list = shapes(search, devices, global_batch if objective == "train" else None, max_tp)
    rejected = {}
    for *_, reason in shape_list:
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
    if objective == "train":
        arrays = layouts(shape_list, global_batch, max_batch)
    else:
        arrays = _decode_layouts(shape_list, max_batch, global_batch)
    if arrays is None:
        raise SymcostError(f"no layout of {devices} devices is valid: " + "; ".join(f"{k} ({v} shapes)" for k, v in
                                                                                   rejected.items()))
    t0 = time.perf_counter()
    if objective == "train":
        found = evaluate_train(search, *arrays)
    else:
        found = evaluate_decode(search, *arrays[:4])
    seconds = time.perf_counter() - t0
    fits = found.parts["memory"] <= search.capacity
    evaluated, fitting = len(fits), int(np.count_nonzero(fits))
    if evaluated > fitting:
        rejected[OVER_MEMORY] = evaluated - fitting
    key = found.parts["time"] if objective == "train" else -found.parts["tokens_per_s"]
    order = np.flatnonzero(fits)
    # best first; ties (ZeRO stages that change only memory) broken by less memory, then fewer devices per replica
    order = order[np.lexsort((found.t[order] * found.p[order], found.parts["memory"][order], key[order]))][:top]
    best = [_row(search, found, i, global_batch) for i in order]
    result = Plan(search, devices, global_batch, best, evaluated, fitting, rejected, shape_list, seconds,
                  time.perf_counter() - start)
    if best:
        result.checks = check_layout(search, best[0], spec=spec, preset=preset, hf_config=hf_config, set=set,
                                     **settings)
    return result


def _check_counts(devices, global_batch, objective, max_tp, max_batch, top) -> None:
    for name, value in (("devices", devices), ("max_tp", max_tp), ("max_batch", max_batch), ("top", top)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 10**7:
            raise SymcostError(f"--{name.replace('_', '-')} takes a positive whole number (at most 10^7), not {value!r}")
    if objective == "train" and global_batch is None:
        raise SymcostError("a training plan needs the global batch in sequences: --global-batch B")
    if global_batch is not None and (isinstance(global_batch, bool) or not isinstance(global_batch, int)
                                     or not 1 <= global_batch <= 10**9):
        raise SymcostError(f"--global-batch takes a positive whole number of sequences, not {global_batch!r}")


def _decode_layouts(shape_list, max_batch: int, cap: int | None):
    import numpy as np

    rows = [(t, p, d) for t, p, d, reason in shape_list if reason is None]
    if not rows:
        return None
    shape = np.array(rows, dtype=np.int64)
    b = np.arange(1, max_batch + 1, dtype=np.int64)
    t, p, d = (np.repeat(shape[:, i], len(b)) for i in range(3))
    bb = np.tile(b, len(rows))
    keep = np.ones(len(bb), bool) if cap is None else d * p * bb <= cap
    return t[keep], p[keep], d[keep], bb[keep]


def _row(search: Search, found: Layouts, i: int, global_batch) -> dict:
    row = {"t": int(found.t[i]), "p": int(found.p[i]), "d": int(found.d[i]), "b": int(found.b[i]),
           "m": int(found.m[i])}
    if search.objective == "train":
        row.update(zero=int(found.zero[i]), recompute=search.recompute[int(found.recompute[i])])
    row["stage"] = STAGES[int(found.stage[i])]  # the pipeline stage whose memory is shown (whole: no pipeline)
    row.update({k: float(v[i]) for k, v in found.parts.items()})
    if search.objective == "train":
        model = _model_flops(search, global_batch)
        row["mfu"] = model / (row["time"] * search.peak * row["t"] * row["p"] * row["d"])
        row["tokens_per_s"] = global_batch * _seq(search) / row["time"]
    return row


def _seq(search: Search) -> int:
    return search.analysis.values.get("s", 1)


def _model_flops(search: Search, global_batch: int) -> float:
    a = search.analysis
    v = a.at(b=global_batch) if "b" in a.dims else a.at()
    return float(v.flops_fwd + v.flops_bwd)


def check_layout(search: Search, row: dict, **source) -> list:
    """The best layout's compiled numbers against a fresh derivation with its numeric degrees (and, in training,
    its ZeRO stage and micro-batch count), exactly: (stage, quantity, exact value, compiled value, agrees). The
    data-parallel bytes are checked against derive's own `dp_comm_bytes` too."""
    from symcost.api import derive

    out = []
    train = search.objective == "train"
    settings = {k: v for k, v in source.items() if k not in ("spec", "preset", "hf_config", "set")}
    for stage in (("first", "last") if row["p"] > 1 else ("whole",)):
        kw = dict(tp=row["t"], device=search.analysis.request.device, **settings)
        kw["phase"] = "train" if train else "decode"
        if train:
            kw.update(dp=row["d"], zero=row["zero"], recompute=row["recompute"], micro_batches=row["m"])
        if stage != "whole":
            kw.update(pp=row["p"], stage=stage)
        a = derive(source.get("spec"), preset=source.get("preset"), hf_config=source.get("hf_config"),
                   set=source.get("set"), **kw)
        v = a.at(b=row["b"])
        exprs = _stage_exprs(a, stage, (row["zero"],), row["m"]) if train else _decode_exprs(a, stage)
        if train:
            exprs[f"{stage}.dp_comm_bytes"] = a.dp_comm_bytes
        compiled = search.run(row["recompute"] if train else "none", t=row["t"], p=row["p"], N_d=row["d"],
                              b=row["b"], m=row["m"])
        for name, e in exprs.items():
            exact = v(e)
            quantity = name[len(stage) + 1:]  # the names are "{stage}.{quantity}", made above
            key = f"{stage}.dp{row['zero']}" if quantity == "dp_comm_bytes" else name
            got = float(compiled[key])
            ok = abs(float(exact) - got) <= 1e-9 * max(1.0, abs(float(exact)))
            out.append((stage, quantity, exact, got, ok))
    return out
