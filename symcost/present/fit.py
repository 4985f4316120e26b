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
    from symcost.analysis.memory import TITLES
    from symcost.present.text import _Writer

    if not memory_shown(analysis):
        return ""
    m = analysis.memory
    w = _Writer(width)
    w.lines.append(f"Memory per device ({analysis.report.graph.phase}; 1 GB = 10^9 bytes)")

    def row(label: str, form: str, expr) -> None:
        w.row(label, form, _value(values, expr, forms), label_width=14)

    for name, expr in m.parts.items():
        row(TITLES[name], forms.text(expr), expr)
    if m.reserve_fraction != 0 or m.reserve_bytes != 0:
        row("used", forms.text(m.used), m.used)
        terms = (["used" if m.reserve_fraction == 0 else f"used / {units.plain(1 - m.reserve_fraction)}"]
                 + ([units.quantity(m.reserve_bytes, "B")] if m.reserve_bytes != 0 else []))
        w.lines.append(f"  {'reserve':<14}{units.percent(m.reserve_fraction)} for fragmentation, "
                       f"{units.quantity(m.reserve_bytes, 'B')} for the framework")
        row("total", " + ".join(terms), m.total)
    else:
        row("total", forms.text(m.total), m.total)
    w.lines.extend(f"  note: {n}" for n in m.notes)
    if m.capacity is not None:
        w.lines += _fit_lines(analysis, m, values)
    return "\n".join(w.lines) + "\n"


def _fit_lines(analysis, m, values) -> list[str]:
    device = analysis.device
    cap = units.quantity(m.capacity, "B")
    fits = m.fits(values.evaluator) if values.evaluator.active else None
    if fits is None:
        return [f"  {'capacity':<14}{cap} on {device.name}: set every dimension to compare (--set)"]
    total = units.exact(values(m.total))
    room = units.exact(values(m.headroom))
    if fits:
        return [f"  {'capacity':<14}{cap} on {device.name}: fits, headroom {units.quantity(room, 'B')} "
                f"({units.percent(total / units.exact(m.capacity))} of the device's memory used)"]
    return [f"  {'capacity':<14}{cap} on {device.name}",
            f"  DOES NOT FIT: {units.quantity(total, 'B')} needed per device, {cap} on {device.name} "
            f"({units.quantity(-room, 'B')} over)"]
