"""Page data for the HTML report (contract.py) from an Analysis, its dims' values and devices."""
from __future__ import annotations

import sympy as sp

from symcost.cost.record import METRIC_TITLES, METRIC_UNITS
from symcost.cost.record import shown as shown_metrics
from symcost.model.dims import device_symbol
from symcost.present.html.tree import to_tree
from symcost.present.text import conventions_line, forms_for

PEAK, BANDWIDTH, MEMORY = (device_symbol(n) for n in ("peak", "bandwidth", "memory"))
TIME_LATEX = (r"\max\left(\frac{F_{\mathrm{fwd}}}{\mathrm{peak}},\ "
              r"\frac{B_{\mathrm{io}}}{\mathrm{bandwidth}}\right)")


def dim_entry(dim, value: int) -> dict:
    """A log-scale slider from 1 to a power of two well above the value (at least 65536)."""
    top = max(65536, 1 << (16 * value).bit_length())
    return {"name": dim.name, "tex": dim.tex, "doc": dim.doc or "", "value": int(value),
            "min": 1, "max": top, "scale": "log"}


def device_entry(device, dtype: str) -> dict:
    return {"name": device.name, "title": device.title or device.name,
            "peak": float(device.peak(dtype)), "bandwidth": float(device.memory_bandwidth),
            "memory": float(device.memory_bytes)}


def metric_entries(metrics: dict, forms, collect: tuple = ()) -> list:
    return [{"key": m, "title": METRIC_TITLES[m].strip(), "unit": METRIC_UNITS[m],
             "latex": forms.latex(metrics[m], collect), "tree": to_tree(metrics[m])}
            for m in shown_metrics(metrics)]


def time_entry(totals: dict) -> dict:
    """The forward pass's roofline lower bound on the selected device: max(F / peak, B / bandwidth)."""
    expr = sp.Max(totals["flops_fwd"] / PEAK, totals["io_bytes"] / BANDWIDTH)
    return {"key": "time_fwd", "title": "forward time, lower bound", "unit": "s",
            "latex": TIME_LATEX, "tree": to_tree(expr)}


def memory_parts(analysis) -> list:
    report = analysis.report
    t = report.totals
    st = analysis.training
    if st is not None:
        parts = [("weights", "weights", st.weight_bytes), ("gradients", "gradients", st.gradient_bytes),
                 ("optimizer", "optimizer state (" + st.precision.name + ", " + st.optimizer + ")",
                  st.optimizer_bytes), ("activations", "activations saved for backward", t["activation_bytes"])]
    else:
        parts = [("weights", "weights", t["weight_bytes"]), ("kv_cache", "KV cache", t["kv_cache_bytes"]),
                 ("activations", "activations", t["activation_bytes"])]
    return [{"key": k, "title": title, "tree": to_tree(e)} for k, title, e in parts if e != 0]


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
    free = [d for d in report.env.dims.values() if d.definition is None]
    dtype = report.env.roles.compute.name
    data = {
        "title": title or (f"{g.title} ({g.name})" if g.title else g.name),
        "subtitle": f"closed forms derived from {g.file}",
        "conventions": conventions_line(analysis).split(" · "),
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
        data["metrics"].append(time_entry(report.totals))
        data["memory"] = {"parts": memory_parts(analysis)}
    return data

