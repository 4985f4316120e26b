"""Roofline lower bounds: per op, per model and per phase, as closed forms and (with an Evaluator) numbers.

The roofline model (Williams, Waterman & Patterson 2009): an op that does F FLOPs and moves B bytes between
memory and the chip cannot finish sooner than

    time ≥ max(F / peak, B / bandwidth)

Its arithmetic intensity I = F / B (FLOPs per byte) against the device's ridge point peak / bandwidth says
which term binds: I above the ridge is compute-bound, below it memory-bound.

Inputs, per op, from a Report: F = `flops_fwd` (matmuls and elementwise work, forward) and B = `io_bytes`
(bytes read plus bytes written; docs/semantics.md). For `[M,K] @ [K,N]` in a dtype of w bytes that is
I = 2MKN / ((MK + KN + MN)·w). The peak is the device's dense peak for the dtype the arithmetic runs in, the
activations' (`report.env.roles.compute.name`: the default dtype unless --activations; weight-only quantization
dequantizes to it, so --weights int4 keeps the bf16 peak) — elementwise FLOPs run on slower vector units, so using the tensor peak
for them keeps the bound a lower bound. `io_bytes` assumes no fusion and no cache reuse; the per-op bounds
summed are a lower bound for an unfused implementation. The phase summaries instead use only the bytes any
implementation must move (every weight read once, plus the KV cache when the report has `kv_cache_bytes`),
so they are lower bounds on time (upper bounds on throughput) for any implementation.

Every function here takes and returns SymPy expressions (or plain numbers) and works without a Report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from symcost.errors import SymcostError, suggest

Expr = sp.Expr
ZERO = sp.Integer(0)


# ---- pure closed forms -----------------------------------------------------------------------------------
def intensity(flops: Expr, bytes_moved: Expr) -> Expr | None:
    """Arithmetic intensity F / B in FLOPs per byte (None when nothing is moved)."""
    bytes_moved = _num(bytes_moved)
    if bytes_moved == 0:
        return None
    return sp.cancel(_num(flops) / bytes_moved)


def ridge_point(peak: Expr, bandwidth: Expr) -> Expr:
    """The intensity (FLOPs/byte) where compute time equals memory time: peak / bandwidth."""
    return _num(peak) / _num(bandwidth)


def compute_time(flops: Expr, peak: Expr) -> Expr:
    return _num(flops) / _num(peak)


def memory_time(bytes_moved: Expr, bandwidth: Expr) -> Expr:
    return _num(bytes_moved) / _num(bandwidth)


def time_lower_bound(flops: Expr, bytes_moved: Expr, peak: Expr, bandwidth: Expr) -> Expr:
    """max(F / peak, B / bandwidth), in seconds."""
    return sp.Max(compute_time(flops, peak), memory_time(bytes_moved, bandwidth))


def bound(flops: Expr, bytes_moved: Expr, peak: Expr, bandwidth: Expr) -> str:
    """'compute', 'memory', 'balanced', or 'depends' (the sign of F·bandwidth − B·peak is not fixed by the dims)."""
    diff = sp.expand(_num(flops) * _num(bandwidth) - _num(bytes_moved) * _num(peak))
    if diff == 0:
        return "balanced"
    if diff.is_positive:
        return "compute"
    if diff.is_negative:
        return "memory"
    return "depends"


def prefill_latency(flops: Expr, bytes_moved: Expr, peak: Expr, bandwidth: Expr) -> Expr:
    """Lower bound on the time to process a prompt: max(forward FLOPs / peak, bytes that must move / bandwidth)."""
    return time_lower_bound(flops, bytes_moved, peak, bandwidth)


def decode_tokens_per_s(step_flops: Expr, step_bytes: Expr, peak: Expr, bandwidth: Expr, batch: Expr = 1) -> Expr:
    """Upper bound on generated tokens/s: one step makes `batch` tokens and takes ≥ max(F/peak, B/bandwidth).

    step_bytes should be at least the weights plus the KV cache read once per step (memory-bound at small b).
    """
    return _num(batch) / time_lower_bound(step_flops, step_bytes, peak, bandwidth)


def train_step_time(
    flops_fwd: Expr, flops_bwd: Expr, peak: Expr, recompute_flops: Expr = 0, bytes_moved: Expr = 0, bandwidth: Expr | None = None
) -> Expr:
    """Lower bound on one training step: (forward + backward + recomputed forward FLOPs) / peak.

    With `bytes_moved` and `bandwidth`, the max with the memory time instead.
    """
    flops = flops_fwd + flops_bwd + recompute_flops
    if bandwidth is None or bytes_moved == 0:
        return compute_time(flops, peak)
    return time_lower_bound(flops, bytes_moved, peak, bandwidth)


def mfu(model_flops: Expr, step_time: Expr, peak: Expr, devices: Expr = 1) -> Expr:
    """Model FLOPs utilisation: model FLOPs per step / (measured step time × peak × devices).

    Model FLOPs exclude recomputation (counting it gives the hardware FLOPs utilisation, HFU).
    """
    return _num(model_flops) / (_num(step_time) * _num(peak) * _num(devices))


def _num(x):
    """An int or float as an exact SymPy number (floats through their shortest repr); expressions unchanged."""
    if isinstance(x, bool):
        raise SymcostError(f"expected a number or expression, not {x!r}")
    if isinstance(x, int):
        return sp.Integer(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise SymcostError(f"expected a finite number, not {x}")
        frac = Fraction(repr(x))
        return sp.Rational(frac.numerator, frac.denominator)
    if isinstance(x, sp.Basic):
        return x
    raise SymcostError(f"expected a number or SymPy expression, not {type(x).__name__}")


# ---- from a Report ---------------------------------------------------------------------------------------
def peak_for(report, device, dtype: str | None = None) -> Expr:
    """The device's dense peak for `dtype`, by default the report's default dtype."""
    return device.peak(dtype or report.env.roles.compute.name)


@dataclass(frozen=True)
class OpBound:
    """One op's roofline, per instance; `mult` is how many times it runs."""

    path: str
    op: str
    mult: Expr
    flops: Expr
    bytes: Expr
    intensity: Expr | None
    compute_time: Expr
    memory_time: Expr
    time: Expr  # max(compute_time, memory_time), per instance
    bound: str  # compute | memory | balanced | depends (symbolically)

    def values(self, evaluator) -> dict:
        """Numbers (floats, seconds) for an evaluator that sets every dim the op depends on."""
        f, b, m = _value(evaluator, self.flops), _value(evaluator, self.bytes), _value(evaluator, self.mult)
        ct, mt = _value(evaluator, self.compute_time), _value(evaluator, self.memory_time)
        if None in (f, b, ct, mt):
            return {"flops": f, "bytes": b, "mult": m, "intensity": None, "time": None, "total_time": None, "bound": self.bound}
        t = max(ct, mt)
        kind = "compute" if ct > mt else "memory" if mt > ct else "balanced"
        return {
            "flops": f, "bytes": b, "mult": m, "intensity": f / b if b else None,
            "compute_time": ct, "memory_time": mt, "time": t, "total_time": t * m if m is not None else None, "bound": kind,
        }


@dataclass(frozen=True)
class Roofline:
    device: str
    dtype: str
    peak: Expr
    bandwidth: Expr
    ops: list
    flops_metric: str
    bytes_metric: str

    @property
    def ridge(self) -> Expr:
        return self.peak / self.bandwidth

    @property
    def total_time(self) -> Expr:
        """Σ over ops of runs × max(F/peak, B/bandwidth): the model's unfused lower bound."""
        return sp.Add(*(o.mult * o.time for o in self.ops))

    @property
    def compute_floor(self) -> Expr:
        """Σ F / peak: the bound if every op were compute-bound (≤ total_time)."""
        return sp.expand(sp.Add(*(o.mult * o.flops for o in self.ops)) / self.peak)

    @property
    def memory_floor(self) -> Expr:
        """Σ B / bandwidth: the bound if every op were memory-bound (≤ total_time)."""
        return sp.expand(sp.Add(*(o.mult * o.bytes for o in self.ops)) / self.bandwidth)


def roofline(report, device, dtype: str | None = None, flops_metric: str = "flops_fwd", bytes_metric: str = "io_bytes") -> Roofline:
    """Per-op roofline bounds of a Report on a Device (ops that neither compute nor move bytes are left out)."""
    for m in (flops_metric, bytes_metric):
        if m not in report.totals:
            raise SymcostError(f"unknown metric '{m}'", None, suggest(m, report.totals))
    dtype = dtype or report.env.roles.compute.name
    peak, bw = device.peak(dtype), device.memory_bandwidth
    rows = []
    for r in report.ops:
        f, b = r.metrics[flops_metric], r.metrics[bytes_metric]
        if f == 0 and b == 0:
            continue
        ct, mt = compute_time(f, peak), memory_time(b, bw)
        rows.append(OpBound(r.node.path, r.node.op, r.node.mult, f, b, intensity(f, b), ct, mt, sp.Max(ct, mt), bound(f, b, peak, bw)))
    return Roofline(device.name, dtype, peak, bw, rows, flops_metric, bytes_metric)


@dataclass(frozen=True)
class PhaseSummary:
    """Lower bounds for one phase: time ≥ max(FLOPs/peak, bytes/bandwidth[, comm bytes/link bandwidth]);
    throughput ≤ tokens / time. Communication may overlap compute, so it joins the max, not a sum."""

    phase: str
    device: str
    dtype: str
    flops: Expr
    bytes: Expr
    tokens: Expr  # tokens one step produces or processes
    peak: Expr
    bandwidth: Expr
    notes: tuple = ()
    comm_bytes: Expr = ZERO  # bytes each device sends (tensor-parallel all-reduces: report comm_bytes)
    link_bandwidth: Expr | None = None  # bytes/s one way on the device's interconnect

    @property
    def compute_time(self) -> Expr:
        return compute_time(self.flops, self.peak)

    @property
    def memory_time(self) -> Expr:
        return memory_time(self.bytes, self.bandwidth)

    @property
    def comm_time(self) -> Expr:
        if self.comm_bytes == 0 or self.link_bandwidth is None:
            return ZERO
        return self.comm_bytes / self.link_bandwidth

    @property
    def time(self) -> Expr:
        return sp.Max(self.compute_time, self.memory_time, self.comm_time)

    @property
    def tokens_per_s(self) -> Expr:
        return self.tokens / self.time

    def values(self, evaluator) -> dict:
        ct, mt = _value(evaluator, self.compute_time), _value(evaluator, self.memory_time)
        cm, tok = _value(evaluator, self.comm_time), _value(evaluator, self.tokens)
        if None in (ct, mt, cm):
            return {"compute_time": ct, "memory_time": mt, "comm_time": cm, "time": None, "tokens_per_s": None, "bound": None}
        t = max(ct, mt, cm)
        kinds = [k for k, x in (("compute", ct), ("memory", mt), ("communication", cm)) if x == t]
        return {
            "compute_time": ct, "memory_time": mt, "comm_time": cm, "time": t,
            "tokens_per_s": tok / t if tok is not None and t else None,
            "bound": kinds[0] if len(kinds) == 1 else "balanced",
        }

    def mfu(self, step_time, evaluator=None, devices=1):
        """MFU of a measured step time against this phase's FLOPs (a number with an evaluator, else a form)."""
        e = mfu(self.flops, step_time, self.peak, devices)
        return _value(evaluator, e) if evaluator is not None else e


PHASES = ("prefill", "decode", "train")


def phase_summary(
    report, device, phase: str | None = None, dtype: str | None = None, recompute_flops: Expr | None = None,
    tokens: Expr | None = None,
) -> PhaseSummary:
    """Lower bounds for a phase from a Report's totals (phase: the report's own `--phase` by default).

    prefill: forward FLOPs; bytes = weights + KV cache written; tokens b·s; time is the latency bound.
    decode:  the forward FLOPs of one step (s = 1 new token per sequence against c cached ones); bytes =
             weights + KV cache read once; tokens b per step, so tokens/s ≤ b / max(F/peak, B/bandwidth).
    train:   FLOPs = forward + backward + recomputation (`recompute_flops`, default the report's
             `flops_recompute`); compute-only (bytes 0); tokens b·s per step.
    In every phase a nonzero `comm_bytes` total (tensor parallelism: per device) adds
    comm_bytes / the interconnect's one-way bandwidth to the max. All costs are per device.
    `tokens` overrides the default (b and s are the report's dims of those names, 1 if absent).
    """
    built = getattr(report.graph, "phase", None)
    phase = phase or built or "train"
    if phase not in PHASES:
        raise SymcostError(f"unknown phase '{phase}'; use one of {', '.join(PHASES)}", None, suggest(phase, PHASES))
    t = report.totals
    dtype = dtype or report.env.roles.compute.name
    peak, bw = device.peak(dtype), device.memory_bandwidth
    b, s = _dim(report, "b"), _dim(report, "s")
    kv = t.get("kv_cache_bytes", ZERO)
    comm = t.get("comm_bytes", ZERO)
    notes = []
    if built is not None and built != phase:
        notes.append(f"the report was derived for --phase {built}, summarised here as {phase}")
    if phase == "train":
        rec = recompute_flops if recompute_flops is not None else t.get("flops_recompute", ZERO)
        flops, nbytes, ntok = t["flops_fwd"] + t["flops_bwd"] + rec, ZERO, b * s
        notes.append("compute bound: forward + backward" + (" + recomputed" if rec != 0 else "") + " FLOPs at peak")
    else:
        streamed = getattr(report, "streamed_weights", None)
        flops, nbytes = t["flops_fwd"], (t["weight_bytes"] if streamed is None else streamed) + kv
        ntok = b * s if phase == "prefill" else b
        notes.append("bytes: every weight read once (a lookup reads its rows; a mixture, the experts its tokens "
                     "reach)" + (" plus the KV cache" if kv != 0 else " (the report has no KV cache bytes)"))
    if comm != 0:
        notes.append(f"communication: comm_bytes over one direction of {device.interconnect.kind}")
    pp = getattr(getattr(report, "settings", None), "pp", None)
    if pp is not None and pp != 1:
        notes.append(f"pipeline: these bounds are one stage's work of {pp}; a token crosses the {pp} stages in turn, "
                     f"so one micro-batch's latency is at least {pp} stages' time, and tokens/s holds only with "
                     f"{pp} micro-batches in flight")
    roles = report.env.roles
    if roles.weights_given and roles.weights.name != dtype:
        notes.append(f"peak: weight-only quantization dequantizes the {roles.weights.name} weights and computes in "
                     f"{dtype}")
    return PhaseSummary(phase, device.name, dtype, sp.expand(flops), sp.expand(nbytes), tokens if tokens is not None else ntok,
                        peak, bw, tuple(notes), sp.expand(comm), device.interconnect.per_direction)


def model_flops(report, matmul_only: bool = True) -> Expr:
    """FLOPs of one training step for MFU: forward + backward, matmuls only by default (the PaLM convention,
    against a tensor-core peak); recomputation is never included."""
    t = report.totals
    if matmul_only:
        return t["matmul_flops_fwd"] + t["matmul_flops_bwd"]
    return t["flops_fwd"] + t["flops_bwd"]


def mfu_for(report, device, step_time, evaluator=None, devices=1, dtype: str | None = None, matmul_only: bool = True):
    """MFU of a measured training step (seconds) over `devices` devices; a number with an evaluator."""
    e = mfu(model_flops(report, matmul_only), step_time, peak_for(report, device, dtype), devices)
    return _value(evaluator, e) if evaluator is not None else e


def _dim(report, name: str) -> Expr:
    d = report.env.dims.get(name)
    if d is None:
        return sp.Integer(1)
    return d.definition if d.definition is not None else d.symbol


# ---- values ----------------------------------------------------------------------------------------------
def _value(evaluator, expr):
    """An exact Fraction from an evaluator (never a float that could overflow), or None when dims are missing."""
    if expr is None:
        return None
    v = evaluator(expr) if evaluator is not None else expr
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Fraction(v)
    if isinstance(v, float):
        return Fraction(repr(v)) if math.isfinite(v) else None
    if isinstance(v, sp.Expr) and v.is_number:
        if v.is_Rational:
            return Fraction(int(v.p), int(v.q))
        return Fraction(repr(float(v))) if v.is_finite else None
    return None
