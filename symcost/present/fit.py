"""The text report's memory-per-device and serving sections: the closed forms, their parts and their values."""
from __future__ import annotations

import sympy as sp

from symcost.present import units


def memory_shown(analysis) -> bool:
    """The memory section is printed with a device, a training state, a reserve, a dtype role or --generate."""
    req = analysis.request
    return (req.device is not None or analysis.training is not None or req.reserve is not None
            or req.reserve_bytes is not None or any(getattr(req, k) is not None for k in
                                                     ("weights", "kv", "activations", "generate")))


def _value(values, expr, forms) -> str:
    if not values.evaluator.active:
        return ""
    v = values(expr)
    if isinstance(v, sp.Expr) and not v.is_number:
        return forms.text(v)
    return units.quantity(v, "B")


def memory_section(analysis, values, forms, width: int = 100) -> str:
    if not memory_shown(analysis):
        return ""
    from symcost.analysis.memory import TITLES
    from symcost.present.text import _Writer

    m = analysis.memory
    w = _Writer(width)
    w.lines.append(f"Memory per device ({analysis.report.graph.phase}; 1 GB = 10^9 bytes)")

    def row(label: str, form: str, expr) -> None:
        w.row(label, form, _value(values, expr, forms), label_width=16)

    for name, expr in m.parts.items():
        row(TITLES[name], forms.text(expr), expr)
    if m.reserve_fraction != 0 or m.reserve_bytes != 0:
        row("used", forms.text(m.used), m.used)
        terms = (["used" if m.reserve_fraction == 0 else f"used / {units.plain(1 - m.reserve_fraction)}"]
                 + ([units.quantity(m.reserve_bytes, "B")] if m.reserve_bytes != 0 else []))
        held = ([f"{units.percent(m.reserve_fraction)} for fragmentation"] if m.reserve_fraction != 0 else []) + (
            [f"{units.quantity(m.reserve_bytes, 'B')} for the framework"] if m.reserve_bytes != 0 else [])
        w.lines.append(f"  {'reserve':<16}{', '.join(held)}")
        row("total", " + ".join(terms), m.total)
    else:
        row("total", forms.text(m.total), m.total)
    w.lines.extend(f"  note: {n}" for n in m.notes)
    if m.capacity is not None:
        w.lines += _fit_lines(analysis, m, values)
    return "\n".join(w.lines) + "\n"


def _fit_lines(analysis, m, values) -> list[str]:
    device = analysis.device
    cap = units.quantity(m.capacity, "B", binary=True)  # the device memory as the card has it (GiB)
    fits = m.fits(values.evaluator) if values.evaluator.active else None
    if fits is None:
        return [f"  {'capacity':<16}{cap} on {device.name}: set every dimension to compare (--set)"]
    total = units.exact(values(m.total))
    room = units.exact(values(m.headroom))
    if fits:
        return [f"  {'capacity':<16}{cap} on {device.name}: fits, headroom {units.quantity(room, 'B')} "
                f"({units.percent(total / units.exact(m.capacity))} of the device's memory used)"]
    return [f"  {'capacity':<16}{cap} on {device.name}",
            f"  DOES NOT FIT: {units.quantity(total, 'B')} needed per device, {cap} on {device.name} "
            f"({units.quantity(-room, 'B')} over)"]


TERM = {"compute": ("F", "FLOPs", "FLOP"), "memory": ("B", "bytes", "B"), "communication": ("C", "bytes sent", "B")}
RATE = {"compute": "FLOP/s", "memory": "B/s", "communication": "B/s"}


def serving_section(analysis, values, forms, width: int = 100) -> str:
    """Serving end to end: TTFT, the decode step as a closed form in c, its sums, TPOT, latency, throughput."""
    from symcost.present.text import _Writer

    sv = analysis.serving
    if sv is None:
        return ""
    w = _Writer(width)
    n = sv.generate
    w.lines.append(f"Serving on {analysis.device.name}: a prompt of s tokens, then n = {units.integer(n)} tokens "
                   "generated per sequence (lower bounds on time, upper bounds on throughput)")
    active = values.evaluator.active
    v = sv.values(values.evaluator) if active else None
    pv = analysis.summary.values(values.evaluator) if active else None
    ttft = f"≥ {units.seconds(v['ttft'])}  (the prefill's bound, {pv['bound']}-bound)" if v else \
        "the prefill's bound (set every dim for numbers)"
    w.row("time to first token", ttft, label_width=22)
    rates = ", ".join(f"{TERM[k][0]}(c) / {units.rate(rate, RATE[k])}" for k, (_, rate) in sv.work.items())
    c_range = f"c = s + 1 … s + {n - 1}" + (f" = {v['first_c']} … {v['last_c']}" if v else "")
    w.row("decode step", f"max({rates}), {c_range}" if sv.steps else "none (n = 1)", label_width=22)
    if sv.steps:
        for name, (amount, _) in sv.work.items():
            w.row(f"  {TERM[name][0]}(c)", forms.text(amount), label_width=22)
        for name, total in (sv.work_sums or {}).items():
            shown = values(total) if active else None
            w.row(f"  Σ {TERM[name][1]}", forms.text(total),
                  units.quantity(shown, TERM[name][2]) if shown is not None and not isinstance(shown, sp.Expr)
                  else "", label_width=22)
    if v is None:
        w.lines.append("  set every dimension (--set) for the times")
        w.lines.extend(f"  note: {x}" for x in sv.notes)
        return "\n".join(w.lines) + "\n"
    if sv.steps:
        w.row("decode time", f"≥ {units.seconds(v['decode_time'])}  ({_regimes(v['segments'])})", label_width=22)
        w.row("time per output token", f"≥ {units.seconds(v['tpot'])}  (the mean of {units.integer(sv.steps)} "
              "steps)", label_width=22)
    w.row("total latency", f"≥ {units.seconds(v['latency'])}", label_width=22)
    per_device = ""
    if sv.devices != 1 and v["tokens_per_s_per_device"] is not None:
        per_device = f"; {units.plain(v['tokens_per_s_per_device'])} per device"
    decoding = f", {units.plain(v['decode_tokens_per_s'])} while decoding" if v["decode_tokens_per_s"] else ""
    w.row("tokens/s", f"≤ {units.plain(v['tokens_per_s'])} end to end{decoding}{per_device}", label_width=22)
    w.row("KV cache at the end", forms.text(sv.kv_end), units.quantity(v["kv_end"], "B"), label_width=22)
    if v["memory_end"] is not None:
        cap = analysis.memory.capacity
        verdict = "" if cap is None else (" — fits" if v["memory_end"] <= units.exact(cap) else
                                          f" — DOES NOT FIT in {units.quantity(cap, 'B', binary=True)}")
        w.row("memory at the end", f"{units.quantity(v['memory_end'], 'B')} per device{verdict}", label_width=22)
    w.lines.extend(f"  note: {x}" for x in sv.notes)
    return "\n".join(w.lines) + "\n"


def _regimes(segments) -> str:
    if len(segments) == 1:
        return f"{segments[0][2]}-bound throughout"
    return ", then ".join(f"{name}-bound for c = {a} … {b}" for a, b, name in segments)
