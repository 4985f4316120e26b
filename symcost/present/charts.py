"""Charts of Analyses: a metric against a dim (one line per analysis), the roofline, memory stacks (via plot.py)."""
from __future__ import annotations

import sympy as sp

from symcost.errors import SymcostError
from symcost.present import units

UNIT_NAMES = {"FLOP": "FLOP", "B": "B", "s": "s", "": "", "tokens/s": "tokens/s"}


def metric_chart(series, x: str, values, metric: str, out, *, title: str | None = None, logx=None, logy=None):
    """One line per (label, Analysis): `metric` (a sweep metric name or alias) against the dim `x` over `values`,
    the other dims at each Analysis's values; each legend entry carries the closed form in `x`."""
    from symcost.analysis.sweep import sweep
    from symcost.present import plot

    plot._matplotlib()
    lines, first = [], None
    for label, analysis in series:
        table = sweep(analysis, over={x: values}, metrics=[metric])
        name = table.metrics[0]
        first = first or (table, analysis)
        lines.append({"label": label, "x": table.axes[x], "y": [float(v) for v in table.array(name)],
                      "legend_formula": legend_formula(analysis, name, x)})
    table, analysis = first
    name = table.metrics[0]
    if logx is None and _geometric(table.axes[x]):
        logx = True  # 512, 1024, …: evenly spaced on a log axis
    dim = analysis.dims[x]
    dim_label = f"{dim.doc} {x}" if dim.doc else x
    return plot.metric_vs_dim(lines, dim=dim_label, metric_title=table.titles[name], unit=table.units[name], out=out,
                              logx=logx, logy=logy, title=title or default_title(table, analysis, series))


def _geometric(values) -> bool:
    return len(values) >= 3 and values[0] > 0 and len({b / a for a, b in zip(values, values[1:])}) == 1 \
        and values[1] >= 2 * values[0]


def default_title(table, analysis, series) -> str:
    name = table.metrics[0]
    words = [f"{table.titles[name]} vs {table.dims[0]}"]
    if analysis.device is not None and name in _device_names():
        words.append(f"on {analysis.device.title or analysis.device.name}")
    common = _common_values(series, table.dims[0])
    if common:
        words.append("at " + " ".join(f"{k}={v}" for k, v in common.items()))
    return " ".join(words)


def _device_names():
    from symcost.analysis.sweep import DEVICE_METRICS

    return set(DEVICE_METRICS) | {"phase_flops", "phase_bytes", "phase_tokens", "phase_comm_bytes"}


def _common_values(series, x: str) -> dict:
    """The dims given with --set (or set=...) and the same in every series (b=1), not the sizes presets give."""
    given = [dict(a.request.values) for _, a in series]
    return {k: v for k, v in series[0][1].values.items()
            if k != x and all(k in g for g in given) and all(a.values.get(k) == v for _, a in series)}


def legend_formula(analysis, metric: str, x: str) -> str:
    """The closed form of a metric in the dim `x`, every other dim at its value: `4.19M·s² + 13.2G·s + 134M`;
    a roofline bound as `max(F/peak, B/bandwidth)` with the phase's F in `x`."""
    from symcost.analysis.sweep import catalogue

    cat = catalogue(analysis)
    m = cat[metric]
    if m.expr is None:
        f = _in_x(analysis, cat["phase_flops"].expr, x)
        return f"≥ max(F/peak, B/bandwidth), F = {f}" if metric != "tokens_per_s" else \
            f"≤ tokens / max(F/peak, B/bandwidth), F = {f}"
    return _in_x(analysis, m.expr, x)


def _in_x(analysis, expr, x: str) -> str:
    from symcost.analysis.sweep import as_expr
    from symcost.analysis.sweep_checks import substitutions
    from symcost.present.plot import human, shorten

    fixed = {k: v for k, v in analysis.values.items() if k != x}
    subs, _ = substitutions(analysis, fixed, {x: [1]})
    e = sp.expand(as_expr(expr).xreplace(subs))
    sym = analysis.symbol(x)
    if not e.free_symbols <= {sym} or not e.is_polynomial(sym):
        return shorten(str(e).replace("**", "^").replace("*", "·"), 60)
    terms = sorted(sp.Poly(e, sym).terms(), key=lambda t: -t[0][0])
    parts = []
    for (k,), c in terms:
        coef = human(float(c), "") if c != 1 or k == 0 else ""
        power = "" if k == 0 else x if k == 1 else f"{x}{str(k).translate(_SUP)}"
        parts.append("·".join(p for p in (coef, power) if p))
    return shorten(" + ".join(parts).replace("+ -", "− "), 60) or "0"


_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def roofline_chart(analysis, out, *, by: str = "op", title: str | None = None):
    """Each op (or block, per instance) of an Analysis at its arithmetic intensity on its device's roofline."""
    from symcost.present import plot

    plot._matplotlib()
    if analysis.device is None:
        raise SymcostError("a roofline needs a device: --device NAME (see `symcost devices`)")
    at = _complete(analysis)
    if by == "op":
        points = [{"label": o.path, "flops": at(o.flops), "bytes": at(o.bytes)} for o in analysis.roofline.ops]
    elif by == "block":
        points = [{"label": path, "flops": at(b.metrics["flops_fwd"]), "bytes": at(b.metrics["io_bytes"])}
                  for path, b in analysis.blocks.items()]
        points.append({"label": "whole model", "flops": at(analysis.totals["flops_fwd"]),
                       "bytes": at(analysis.totals["io_bytes"])})
    else:
        raise SymcostError(f"--by takes op or block, not '{by}'")
    r = analysis.roofline
    device = {"name": f"{analysis.device.title or analysis.device.name} ({r.dtype})", "peak": float(r.peak),
              "bandwidth": float(r.bandwidth)}
    given = " ".join(f"{k}={v}" for k, v in analysis.values.items())
    return plot.roofline(device, points, out=out,
                         title=title or f"{analysis.title}: each {by} on the {device['name']} roofline\n{given}")


def memory_chart(series, out, *, x: str | None = None, values=None, title: str | None = None):
    """Stacked memory per device (weights, gradients, optimizer, activations, KV cache) of each (label, Analysis),
    at each value of the dim `x` when given, against the first Analysis's device memory."""
    from symcost.analysis.parts import memory_parts
    from symcost.analysis.sweep import sweep
    from symcost.present import plot

    plot._matplotlib()
    device = series[0][1].device
    if device is None:
        raise SymcostError("a memory chart draws the device's memory: give --device NAME (see `symcost devices`)")
    bars = []
    for label, analysis in series:
        keys = [p.key for p in memory_parts(analysis)]
        if x is None:
            at = _complete(analysis)
            bars.append({"label": label, "parts": {p.key: at(p.expr) for p in memory_parts(analysis)}})
            continue
        table = sweep(analysis, over={x: values}, metrics=[f"memory_{k}_bytes" for k in keys])
        for i, v in enumerate(table.axes[x]):
            bars.append({"label": f"{label}\n{x}={units.integer(v)}" if len(series) > 1 else f"{x}={units.integer(v)}",
                         "parts": {k: table.exact(f"memory_{k}_bytes")[i] for k in keys}})
    memory = device.memory_bytes
    cap = f"{device.title or device.name} memory {units.quantity(memory, 'B', binary=True)}"
    a = series[0][1]
    settings = _memory_settings(a)
    return plot.memory_stack(bars, capacity=float(memory), capacity_label=cap, out=out,
                             title=title or f"memory per device, {a.request.phase}{settings}")


def _memory_settings(a) -> str:
    r = a.request
    words = [f"{k} {getattr(r, k)}" for k in ("tp", "pp", "ep") if getattr(r, k) is not None]
    if a.training is not None:
        words.append(f"{a.precision}, {r.optimizer}, ZeRO {r.zero}" + (f", dp {r.dp}" if r.dp is not None else ""))
    return f" ({'; '.join(words)})" if words else ""


def _complete(analysis):
    """The Analysis's values as an evaluator that insists every dim has one."""
    at = analysis.at()

    def value(expr):
        v = at(expr)
        if isinstance(v, sp.Expr) and not v.is_number:
            missing = ", ".join(sorted(s.name for s in v.free_symbols))
            raise SymcostError(f"give every dim a value (--set or a preset): {missing} have none")
        return v

    return value
