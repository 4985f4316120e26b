"""Serving end to end: time to first token, time per output token as the cache grows, latency and throughput.

A request of b sequences, each a prompt of s tokens, then n tokens generated (the definitions vLLM and its
benchmarks measure):

  prefill    one forward over the s prompt tokens; it writes the KV cache and its last logits give output
             token 1. Time to first token TTFT ≥ the prefill bound max(F/peak, B/bandwidth[, comm/link]).
  decode     n − 1 steps: step k feeds output token k back, appends it to the cache and yields token k + 1.
             In symcost's decode phase c is the cache length a step attends to, its own token included, so
             the steps run at c = s + 1, s + 2, …, s + n − 1.
  TPOT       the mean time per output token after the first: Σ_c T(c) / (n − 1), where the step bound is
             T(c) = max(F(c)/peak, B(c)/bandwidth[, comm(c)/link]).
  latency    TTFT + Σ_c T(c);  throughput ≤ b·n / latency (and b·(n − 1) / Σ_c T(c) while decoding).

F(c) (forward FLOPs) and B(c) (every weight read once plus the KV cache read) are linear in c for full
attention, so each term of T is a line in c and the sum has a closed form per regime:

  Σ_{c=s+1}^{s+n−1} (α + β·c) = (n − 1)·(α + β·(s + n/2))     — the step time at the mean cache length

Where two lines cross inside the range (decode turns compute-bound as c grows only at large batches) the sum
splits exactly at the crossover c* = (α_j − α_i)/(β_i − β_j). With a sliding window (min(c, w)) each term
is piecewise linear; the range is split at every breakpoint. Numbers are exact (Fractions), never summed
step by step.

All costs are per device (tensor, pipeline and expert parallelism as in the report); with --pp the bounds are
one stage's work, not the pipeline's. Efficiency factors (--flops-efficiency, --bandwidth-efficiency) scale
the device before any of this.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from symcost.errors import SymcostError

ZERO = sp.Integer(0)


@dataclass(frozen=True)
class Serving:
    """Closed forms of a prefill of s tokens then n generated, on one device (module docstring)."""

    generate: int  # n, the output tokens
    prompt: sp.Expr  # s
    batch: sp.Expr  # b
    cache: sp.Symbol  # c, the decode phase's cache length
    ttft: sp.Expr  # the prefill bound
    work: dict  # term (compute, memory, communication) -> (what one decode step does, in c; the rate it runs at)
    devices: sp.Expr  # devices one replica spans (tp × pp)
    kv_end: sp.Expr  # KV cache bytes after the last step (c = s + n − 1)
    memory_end: sp.Expr | None  # memory per device then (the decode phase's, at c = s + n − 1)
    notes: tuple = ()

    @property
    def steps(self) -> int:
        return self.generate - 1

    @property
    def first(self) -> sp.Expr:
        return self.prompt + 1

    @property
    def last(self) -> sp.Expr:
        return self.prompt + self.generate - 1

    @property
    def step(self) -> dict:
        """Each term's time per decode step (FLOPs / peak, bytes / bandwidth, …), a closed form in c."""
        return {name: sp.expand(amount / rate) for name, (amount, rate) in self.work.items()}

    @property
    def step_time(self) -> sp.Expr:
        return sp.Max(*self.step.values())

    @property
    def work_sums(self) -> dict | None:
        """Σ over the decode steps of each amount (FLOPs, bytes, bytes sent), in closed form: (n − 1)·W(s + n/2)
        for W linear in c; None when some amount is not (a sliding window)."""
        out = {}
        mid = self.prompt + sp.Rational(self.generate, 2)
        for name, (amount, _) in self.work.items():
            if _line(amount, self.cache) is None:
                return None
            out[name] = sp.expand(self.steps * amount.xreplace({self.cache: mid}))
        return out

    @property
    def lines(self) -> dict | None:
        """Each step term as (α, β) with T = α + β·c, when every term is linear in c; else None."""
        out = {}
        for name, e in self.step.items():
            line = _line(e, self.cache)
            if line is None:
                return None
            out[name] = line
        return out

    @property
    def regime_sums(self) -> dict | None:
        """Σ over the decode steps of each term alone (the total when that term binds throughout)."""
        lines = self.lines
        if lines is None:
            return None
        mid = self.prompt + sp.Rational(self.generate, 2)
        return {name: sp.expand(self.steps * (a + b * mid)) for name, (a, b) in lines.items()}

    @property
    def crossovers(self) -> dict:
        """(i, j) -> the cache length c* where terms i and j are equal (lines that are not parallel)."""
        lines = self.lines or {}
        names = list(lines)
        out = {}
        for i, x in enumerate(names):
            for y in names[i + 1:]:
                (a1, b1), (a2, b2) = lines[x], lines[y]
                slope = sp.expand(b1 - b2)
                if slope != 0:
                    out[(x, y)] = sp.cancel((a2 - a1) / slope)
        return out

    def values(self, evaluator) -> dict | None:
        """Exact values (Fractions) at the evaluator's dims; None while a dim other than c is free."""
        ttft = _number(evaluator(self.ttft))
        s = _number(evaluator(self.prompt))
        terms = {name: _expr(evaluator(e)) for name, e in self.step.items()}
        if ttft is None or s is None or any(set(e.free_symbols) - {self.cache} for e in terms.values()
                                            if isinstance(e, sp.Expr)):
            return None
        lo, hi = int(s) + 1, int(s) + self.generate - 1
        total, segments = sum_of_max(terms, self.cache, lo, hi)
        b = _number(evaluator(self.batch))
        latency = ttft + total
        out = {"ttft": ttft, "decode_time": total, "latency": latency, "segments": segments,
               "tpot": total / self.steps if self.steps else None, "first_c": lo, "last_c": hi,
               "tokens_per_s": b * self.generate / latency if latency else None,
               "decode_tokens_per_s": b * self.steps / total if total else None}
        devices = _number(evaluator(self.devices))
        out["tokens_per_s_per_device"] = (out["tokens_per_s"] / devices if devices and out["tokens_per_s"]
                                          is not None else None)
        out["kv_end"] = _number(evaluator(self.kv_end))
        out["memory_end"] = None if self.memory_end is None else _number(evaluator(self.memory_end))
        return out


def serving(analysis) -> Serving:
    """The serving bounds of a prefill Analysis with `generate` set (its decode phase is derived alongside)."""
    from symcost.api import run
    from symcost.settings import with_values

    req = analysis.request
    if req.generate is None or analysis.summary is None:
        raise SymcostError("serving bounds need --generate N and --device")
    step = analysis.env.decode_dim  # the prompt's length: s, or a decoder's t (an encoder's length stays)
    values = tuple((k, v) for k, v in req.values if k != step)
    try:
        decode = run(with_values(req, phase="decode", generate=None, values=values))
    except SymcostError as e:
        raise SymcostError(f"--generate derives the decode steps too: {e.message}", e.loc, e.hint) from None
    prefill_s, decode_s = analysis.summary, decode.summary
    env = analysis.env
    c = decode.env.dims["c"].symbol
    work = {"compute": (decode_s.flops, decode_s.peak), "memory": (decode_s.bytes, decode_s.bandwidth)}
    if decode_s.comm_time != 0:
        work["communication"] = (decode_s.comm_bytes, decode_s.link_bandwidth)
    st = analysis.report.settings
    devices = sp.Integer(1)
    for degree in (st.tp, st.pp):
        devices = devices * (degree if degree is not None else 1)
    prompt = env.dims[step].symbol
    batch = env.dims["b"].symbol if "b" in env.dims else sp.Integer(1)
    last = prompt + req.generate - 1
    kv_end = decode.report.totals["kv_cache_bytes"].xreplace({c: last})
    memory_end = sp.expand(decode.memory.total.xreplace({c: last}))
    notes = ["TTFT: the prefill's bound, its last logits give the first token; TPOT: the mean over the n − 1 "
             f"decode steps at c = {step} + 1 … {step} + n − 1"]
    if st.pp is not None and st.pp != 1:
        notes.append(f"with --pp {st.pp}: the bounds are one pipeline stage's work")
    return Serving(req.generate, prompt, batch, c, prefill_s.time, work, devices, sp.expand(kv_end), memory_end,
                   tuple(notes))


# ---- exact sums -------------------------------------------------------------------------------------------
def sum_of_max(terms: dict, c: sp.Symbol, lo: int, hi: int) -> tuple[Fraction, list]:
    """Σ_{c=lo}^{hi} max_i T_i(c) exactly, for terms piecewise linear in c (lines, or min/max of lines), and
    the segments [(from, to, binding term)] of the range."""
    if hi < lo:
        return Fraction(0), []
    cuts = {lo, hi + 1}
    for e in terms.values():
        for node in _expr(e).atoms(sp.Min, sp.Max):
            if c not in node.free_symbols:
                continue
            args = list(node.args)
            for i, x in enumerate(args):
                for y in args[i + 1:]:
                    _cut(cuts, _root(x - y, c), lo, hi)
    total, segments = Fraction(0), []
    edges = sorted(cuts)
    for a, b in zip(edges, edges[1:]):
        mid = sp.Rational(a + b - 1, 2)
        lines = {name: _resolved_line(e, c, mid) for name, e in terms.items()}
        inner = {a, b}
        names = list(lines)
        for i, x in enumerate(names):
            for y in names[i + 1:]:
                (a1, b1), (a2, b2) = lines[x], lines[y]
                if b1 != b2:
                    _cut(inner, (a2 - a1) / (b1 - b2), a, b - 1)
        pieces = sorted(inner)
        for p, q in zip(pieces, pieces[1:]):
            centre = Fraction(p + q - 1, 2)
            name = max(names, key=lambda n: (lines[n][0] + lines[n][1] * centre, -names.index(n)))
            alpha, beta = lines[name]
            total += (q - p) * (2 * alpha + beta * (p + q - 1)) / 2
            if segments and segments[-1][2] == name and segments[-1][1] == p - 1:
                segments[-1] = (segments[-1][0], q - 1, name)
            else:
                segments.append((p, q - 1, name))
    return total, segments


def _cut(cuts: set, x, lo: int, hi: int) -> None:
    """Add the first integer after a crossing x as a cut, when it falls inside lo < cut ≤ hi."""
    if x is None:
        return
    point = Fraction(x.p, x.q) if isinstance(x, sp.Rational) else Fraction(x)
    cut = point.numerator // point.denominator + 1
    if lo < cut <= hi:
        cuts.add(cut)


def _root(e, c):
    """The root of a linear function of c (a Rational), or None (no root, or not linear)."""
    line = _line(sp.expand(e), c)
    if line is None or line[1] == 0:
        return None
    a, b = line
    x = -a / b
    return x if x.is_Rational else None


def _line(e, c) -> tuple | None:
    """(α, β) with e = α + β·c, or None when e is not linear in c."""
    if c not in e.free_symbols:
        return (e, ZERO)
    if e.has(sp.Min, sp.Max, sp.floor, sp.ceiling):
        return None
    poly = sp.Poly(sp.expand(e), c)
    if poly.degree() > 1:
        return None
    coeffs = dict(zip((m[0] for m in poly.monoms()), poly.coeffs()))
    return (coeffs.get(0, ZERO), coeffs.get(1, ZERO))


def _resolved_line(e, c, point) -> tuple:
    """A piecewise linear term as the line it follows around `point` (each min/max replaced by its active
    argument there), with exact Fraction coefficients."""
    def pick(node):
        vals = [a.xreplace({c: point}) for a in node.args]
        best = (min if isinstance(node, sp.Min) else max)(range(len(vals)), key=lambda i: vals[i])
        return node.args[best]

    resolved = _expr(e).replace(lambda x: isinstance(x, (sp.Min, sp.Max)) and c in x.free_symbols, pick)
    line = _line(sp.expand(resolved), c)
    if line is None or not all(x.is_Rational for x in line):
        raise SymcostError("the decode step time is not piecewise linear in the cache length c; serving sums "
                           "need it to be")
    return tuple(Fraction(int(x.p), int(x.q)) for x in line)


def _expr(v) -> sp.Expr:
    """An evaluator's result as a SymPy expression (an int becomes an Integer; nothing is parsed)."""
    if isinstance(v, bool):
        raise SymcostError(f"expected a number or an expression, not {v!r}")
    if isinstance(v, int):
        return sp.Integer(v)
    if isinstance(v, Fraction):
        return sp.Rational(v.numerator, v.denominator)
    return v


def _number(v) -> Fraction | None:
    """An exact Fraction of an int or a SymPy Rational; None for anything else (a form with free dims)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Fraction(v)
    if isinstance(v, sp.Rational):
        return Fraction(int(v.p), int(v.q))
    return None
