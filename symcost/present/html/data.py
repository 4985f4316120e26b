"""Page data for the HTML report (contract.py) from an Analysis, its dims' values and devices."""
from __future__ import annotations

from types import SimpleNamespace

import sympy as sp

from symcost.analysis.sweep import as_expr
from symcost.cost.record import METRIC_TITLES, METRIC_UNITS
from symcost.cost.record import shown as shown_metrics
from symcost.model.dims import device_symbol
from symcost.paths import shareable
from symcost.present.html.tree import to_tree
from symcost.present.text import conventions_parts, forms_for

PEAK, BANDWIDTH, MEMORY, LINK = (device_symbol(n) for n in ("peak", "bandwidth", "memory", "link"))


def dim_entry(dim, value: int) -> dict:
    """A log-scale slider from 1 to a power of two well above the value (at least 65536)."""
    top = max(65536, 1 << (16 * value).bit_length())
    return {"name": dim.name, "tex": dim.tex, "doc": dim.doc or "", "value": int(value),
            "min": 1, "max": top, "scale": "log"}


def device_entry(device, dtype: str) -> dict:
    return {"name": device.name, "title": device.title or device.name,
            "peak": float(device.peak(dtype)), "bandwidth": float(device.memory_bandwidth),
            "memory": float(device.memory_bytes), "link": float(device.interconnect.per_direction)}


def metric_entries(metrics: dict, forms, collect: tuple = ()) -> list:
    return [{"key": m, "title": METRIC_TITLES[m].strip(), "unit": METRIC_UNITS[m],
             "latex": forms.latex(metrics[m], collect), "tree": to_tree(metrics[m])}
            for m in shown_metrics(metrics)]


class _Selected:
    """The device chosen on the page, as symbols: its figures are substituted in the browser."""

    name, memory_bandwidth = "the selected device", BANDWIDTH
    interconnect = SimpleNamespace(kind="its interconnect", per_direction=LINK)

    def peak(self, dtype: str):
        return PEAK


def phase_entries(analysis, forms) -> list:
    """The phase's roofline bounds on the selected device, as `symcost derive --device` prints them: the FLOPs F
    and the bytes B that must move, time ≥ max(F/peak, B/bandwidth[, C/link]) and tokens/s ≤ tokens / time."""
    from symcost.analysis.roofline import phase_summary

    s = phase_summary(analysis.report, _Selected())
    terms = [r"\frac{F}{\mathrm{peak}}"] + ([r"\frac{B}{\mathrm{bandwidth}}"] if s.bytes != 0 else []) \
        + ([r"\frac{C}{\mathrm{link}}"] if s.comm_time != 0 else [])
    time_tex = r"\max\left(" + r",\ ".join(terms) + r"\right)" if len(terms) > 1 else terms[0]
    out = [{"key": "phase_flops", "title": f"{s.phase} FLOPs F", "unit": "FLOP", "latex": forms.latex(s.flops),
            "tree": to_tree(s.flops)}]
    if s.bytes != 0:
        out.append({"key": "phase_bytes", "title": "bytes that must move B", "unit": "B", "latex": forms.latex(s.bytes),
                    "tree": to_tree(s.bytes)})
    if s.comm_time != 0:
        out.append({"key": "phase_comm_bytes", "title": "bytes sent per device C", "unit": "B",
                    "latex": forms.latex(s.comm_bytes), "tree": to_tree(s.comm_bytes)})
    tokens = forms.latex(as_expr(s.tokens))
    return out + [{"key": "time_lower_bound_s", "title": f"{s.phase} time, lower bound", "unit": "s",
                   "latex": time_tex, "tree": to_tree(s.time)},
                  {"key": "tokens_per_s", "title": "tokens/s, upper bound", "unit": "tokens/s",
                   "latex": r"\frac{" + tokens + r"}{\text{time}}", "tree": to_tree(s.tokens_per_s)}]


def memory_parts(analysis) -> list:
    from symcost.analysis.parts import memory_parts as parts

    return [{"key": p.key, "title": p.title, "tree": to_tree(p.expr)} for p in parts(analysis)]


def op_entry(r) -> dict:
    n, m = r.node, r.metrics
    return {"path": n.path, "op": n.op, "statement": n.statement or "",
            "flops": to_tree(m["flops_fwd"]), "bytes": to_tree(m["io_bytes"]), "params": to_tree(m["params"])}


def page_data(analysis, values: dict, devices=(), device: str | None = None, title: str | None = None) -> dict:
    """The page data for an Analysis. values: dim name -> default value (others start at 1); devices:
    hardware.Device objects, peaks taken for the report's default dtype."""
    report = analysis.report
    forms = forms_for(report)
    g = report.graph
    free = [d for d in report.env.dims.values() if d.definition is None and d.name not in report.env.fixed]
    dtype = report.env.roles.compute.name
    data = {
        "title": title or (f"{g.title} ({g.name})" if g.title else g.name),
        "subtitle": f"closed forms derived from {shareable(g.file)}",
        "conventions": conventions_parts(analysis),
        "dims": [dim_entry(d, int(values.get(d.name, 1))) for d in free],
        "devices": [device_entry(dv, dtype) for dv in devices],
        "metrics": metric_entries(report.totals, forms, report.repeat_symbols),
        "blocks": [{"path": b.path, "repeat_latex": forms.latex(b.repeat), "repeat_tree": to_tree(b.repeat),
                    "metrics": metric_entries(b.metrics, forms)} for b in report.blocks],
        "ops": [op_entry(r) for r in report.ops],
        "roofline": bool(devices),
    }
    if devices:
        data["device"] = device or data["devices"][0]["name"]
        data["metrics"] += phase_entries(analysis, forms)
        data["memory"] = {"parts": memory_parts(analysis)}
    return data

