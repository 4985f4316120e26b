"""Every metric over a grid of dims in one process: closed forms compiled once to numpy, exact values on demand."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from symcost.cost.record import METRIC_TITLES, METRIC_UNITS, METRICS
from symcost.cost.record import shown as shown_metrics
from symcost.errors import SymcostError, suggest

ALIASES = {"time": "time_lower_bound_s", "memory": "memory_bytes", "tokens": "tokens_per_s"}
DEVICE_METRICS = ("compute_time_s", "memory_time_s", "comm_time_s", "time_lower_bound_s", "tokens_per_s")


@dataclass(frozen=True)
class Metric:
    """One column of a sweep: a closed form (`expr`), or a roofline bound over other columns with the device's
    figures as exact numbers: max over `over` of column / divisor, then `tokens` / that when `tokens` is set."""

    name: str
    title: str
    unit: str
    expr: sp.Expr | None = None
    over: tuple = ()  # ((column, divisor Fraction), ...)
    tokens: str | None = None


def catalogue(analysis) -> dict[str, Metric]:
    """Every metric a sweep of this Analysis can give, by name (see docs/analysis.md, "Sweeps")."""
    out: dict[str, Metric] = {}
    totals = analysis.totals
    for m in METRICS:
        out[m] = Metric(m, METRIC_TITLES[m].strip(), METRIC_UNITS[m], totals[m])
    for path, block in analysis.blocks.items():
        for m in METRICS:
            out[f"{path}.{m}"] = Metric(f"{path}.{m}", f"{METRIC_TITLES[m].strip()} per {path}", METRIC_UNITS[m],
                                        block.metrics[m])
    from symcost.analysis.parts import memory_parts

    parts = memory_parts(analysis)
    for p in parts:
        out[f"memory_{p.key}_bytes"] = Metric(f"memory_{p.key}_bytes", p.title, "B", p.expr)
    out["memory_bytes"] = Metric("memory_bytes", "memory per device", "B", analysis.memory.total)
    summary = analysis.summary
    if summary is not None:
        out.update(_device_metrics(summary))
    return out


def _device_metrics(s) -> dict[str, Metric]:
    frac = _fraction
    out = {"phase_flops": Metric("phase_flops", f"{s.phase} FLOPs", "FLOP", s.flops),
           "phase_bytes": Metric("phase_bytes", f"{s.phase} bytes that must move", "B", s.bytes),
           "phase_tokens": Metric("phase_tokens", f"tokens per {s.phase} step", "", as_expr(s.tokens)),
           "compute_time_s": Metric("compute_time_s", "compute time, lower bound", "s",
                                    over=(("phase_flops", frac(s.peak)),)),
           "memory_time_s": Metric("memory_time_s", "memory time, lower bound", "s",
                                   over=(("phase_bytes", frac(s.bandwidth)),))}
    bounds = [("phase_flops", frac(s.peak)), ("phase_bytes", frac(s.bandwidth))]
    if s.comm_bytes != 0 and s.link_bandwidth is not None:
        out["phase_comm_bytes"] = Metric("phase_comm_bytes", "bytes sent per device", "B", s.comm_bytes)
        out["comm_time_s"] = Metric("comm_time_s", "communication time, lower bound", "s",
                                    over=(("phase_comm_bytes", frac(s.link_bandwidth)),))
        bounds.append(("phase_comm_bytes", frac(s.link_bandwidth)))
    out["time_lower_bound_s"] = Metric("time_lower_bound_s", f"{s.phase} time, lower bound", "s", over=tuple(bounds))
    out["tokens_per_s"] = Metric("tokens_per_s", "tokens/s, upper bound", "tokens/s", over=tuple(bounds),
                                 tokens="phase_tokens")
    return out


def as_expr(x) -> sp.Expr:
    """A closed form or a plain int (a count such as tokens per step) as a SymPy expression; never from text."""
    if isinstance(x, bool) or not isinstance(x, (int, sp.Expr)):
        raise SymcostError(f"expected an expression or an integer, not {type(x).__name__}")
    return sp.Integer(x) if isinstance(x, int) else x


def _fraction(x) -> Fraction:
    x = sp.Rational(x)  # device figures are exact rationals (symcost.analysis.hardware)
    return Fraction(int(x.p), int(x.q))


def default_metrics(analysis, cat: dict) -> list[str]:
    names = shown_metrics(analysis.totals)
    if analysis.summary is not None:
        names += [m for m in DEVICE_METRICS if m in cat]
    return names


def choose(analysis, cat: dict, metrics) -> list[str]:
    """The metric names asked for (None: the defaults; "all": every one), each checked."""
    if metrics is None:
        return default_metrics(analysis, cat)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if list(metrics) == ["all"]:
        return list(cat)
    out = []
    for name in metrics:
        key = ALIASES.get(name, name)
        if key not in cat:
            hint = suggest(name, [*cat, *ALIASES])
            if key in DEVICE_METRICS or key.startswith("phase_"):
                hint = "roofline bounds need a device: --device NAME (see `symcost devices`)"
            raise SymcostError(f"unknown metric '{name[:60]}'", None, hint or "list them with --metrics all")
        if key not in out:
            out.append(key)
    if not out:
        raise SymcostError("no metrics asked for")
    return out


def sweep(analysis_or_spec, over, metrics=None, **derive_options) -> "Table":
    """Metrics of an Analysis (or of a spec, derived with `derive_options`) at every point of a grid.

    over: dim name → values (a range, a list, or the text "512..32768:x2"), or NAME=VALUES texts; the first dim
    varies slowest. Dims not swept keep the Analysis's values (a preset, set=...). metrics: names (default: the
    whole-model metrics, and the roofline bounds with a device), "all", or a comma-separated text.

    >>> t = sweep("gpt2", over={"s": [512, 1024]}, metrics=["params"], preset="gpt2-small", set={"b": 1})
    >>> [row["params"] for row in t]
    [124439808, 124439808]
    """
    from symcost.api import Analysis, derive

    if isinstance(analysis_or_spec, Analysis):
        if derive_options:
            raise SymcostError(f"derive options ({', '.join(derive_options)}) apply to a spec, not to an Analysis "
                               "already derived")
        analysis = analysis_or_spec
    else:
        analysis = derive(analysis_or_spec, **derive_options)
    axes = _axes(analysis, over)
    cat = catalogue(analysis)
    names = choose(analysis, cat, metrics)
    return evaluate(analysis, axes, [cat[n] for n in names], cat)


def _axes(analysis, over) -> dict[str, list[int]]:
    from symcost.analysis.grid import check_size, check_values, parse_over

    if isinstance(over, dict):
        axes = {str(k): check_values(str(k), v) for k, v in over.items()}
    elif isinstance(over, (list, tuple)):
        axes = parse_over(over)
    else:
        raise SymcostError("over: a dict of dim name → values, or NAME=VALUES texts")
    if not axes:
        raise SymcostError("nothing to sweep: give at least one dim and its values (--over s=512..4096:x2)")
    env = analysis.env
    for name in axes:
        if name in env.options:
            raise SymcostError(f"'{name}' is an option: it changes the graph, so it cannot be swept; give it with --set")
        dim = env.dims.get(name)
        if dim is None:
            raise SymcostError(f"--over {name}: not a dimension of this spec", None, suggest(name, env.dims))
        if dim.definition is not None:
            raise SymcostError(f"--over {name}: '{name}' is derived ({name} = {dim.definition}); sweep the dims it "
                               "is made of")
    check_size(axes)
    return axes


def evaluate(analysis, axes: dict, chosen: list, cat: dict) -> "Table":
    """Compile the columns the chosen metrics need, once, and evaluate them over the open grid of `axes`."""
    from symcost.analysis.numeric import compile_exprs
    from symcost.analysis.sweep_checks import check_grid, grid_arrays, substitutions

    fixed = {k: v for k, v in analysis.values.items() if k not in axes}
    subs, symbols = substitutions(analysis, fixed, axes)
    needed = {m.name: m for m in chosen}
    for m in chosen:
        for column, _ in m.over:
            needed.setdefault(column, cat[column])
        if m.tokens:
            needed.setdefault(m.tokens, cat[m.tokens])
    forms = {n: _closed(m.expr, subs, symbols, n) for n, m in needed.items() if m.expr is not None}
    arrays = grid_arrays(axes)
    check_grid(analysis, fixed, axes, subs, symbols, arrays)
    result = compile_exprs(forms, symbols)(**arrays) if forms else None
    from symcost.analysis.table import Table

    return Table(analysis, axes, fixed, chosen, result, needed)


def _closed(expr: sp.Expr, subs: dict, symbols: list, name: str) -> sp.Expr:
    """A metric with derived dims replaced by their definitions and every dim not swept by its value."""
    out = as_expr(expr).xreplace(subs)
    missing = sorted(s.name for s in out.free_symbols if s not in set(symbols))
    if missing:
        raise SymcostError(f"metric '{name}' needs a value for {', '.join(missing)}: give it with --set "
                           f"{missing[0]}=… (or a preset), or sweep it with --over {missing[0]}=…")
    return out
