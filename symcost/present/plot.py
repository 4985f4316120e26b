"""Charts from plain data, PNG or SVG via matplotlib's Agg backend: metric vs dimension, roofline, memory stacks."""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import SymcostError

INSTALL_HINT = "plotting needs matplotlib: pip install 'symcost[plot]'"
FORMATS = ("png", "svg")
SI_NOTE = "decimal (SI) prefixes: k = 10³, M = 10⁶, G = 10⁹, T = 10¹²"
PART_ORDER = ("weights", "gradients", "optimizer", "activations", "kv_cache")
PART_COLOURS = {"weights": "#4c72b0", "gradients": "#dd8452", "optimizer": "#55a868",
                "activations": "#c44e52", "kv_cache": "#8172b3"}
EXTRA_COLOURS = ("#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_SECONDS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
DECADES = 2  # data spanning this many powers of ten gets a log axis


# ---- units ------------------------------------------------------------------------------------------------
def _digits(v: float) -> str:
    text = f"{v:.3g}"
    return text if "e" not in text else f"{v:.0f}"


def human(value: float, unit: str) -> str:
    """A tick label: counts as 1.5k / 32.8k / 7M, bytes as 13.5 GB (SI), seconds as 12 ms / 450 µs."""
    v = float(value)
    if v == 0:
        return "0"
    if unit == "s":
        scale, name = next(((sc, n) for sc, n in _SECONDS if abs(v) >= sc * 0.9995), _SECONDS[-1])
        return f"{_digits(v / scale)} {name}"
    scale, prefix = next(((sc, p) for sc, p in _PREFIXES if abs(v) >= sc * 0.9995), (1.0, ""))
    if unit == "":
        return f"{_digits(v / scale)}{prefix}"
    return f"{_digits(v / scale)} {prefix}{unit}"


def shorten(text: str, limit: int = 60) -> str:
    """A long closed form cut at a term boundary: `7·a·b·s²·L + 6·b·s·h·f·L + … (10 terms)`."""
    if len(text) <= limit or "$" in text:
        return text
    terms = text.replace(" − ", " + −").split(" + ")
    tail = f" + … ({len(terms)} terms)"
    kept = terms[0]
    for term in terms[1:]:
        if len(kept) + len(term) + 3 + len(tail) > limit:
            break
        kept += f" − {term[1:]}" if term.startswith("−") else f" + {term}"
    return kept + tail


def _spans_decades(values, decades: int = DECADES) -> bool:
    positive = [float(v) for v in values if float(v) > 0]
    return bool(positive) and len(positive) == len(values) and max(positive) >= min(positive) * 10**decades


# ---- matplotlib plumbing ----------------------------------------------------------------------------------
def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SymcostError(INSTALL_HINT) from None
    return matplotlib, Figure, FigureCanvasAgg


def _format(out, fmt: str | None) -> str:
    kind = (fmt or Path(out).suffix.lstrip(".")).lower()
    if kind not in FORMATS:
        raise SymcostError(f"cannot tell the chart format of '{out}': use a .png or .svg file name, or fmt='png'|'svg'")
    return kind


def _figure(size=(8.0, 5.0)):
    _, Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    return fig, fig.add_subplot()


def _rc() -> dict:
    """Settings that make output reproducible byte for byte and keep SVG text as searchable text."""
    return {"svg.hashsalt": "symcost", "svg.fonttype": "none", "axes.unicode_minus": True}


def _rendering():
    """The rc settings every chart is drawn and saved under (a context manager; global rcParams untouched)."""
    matplotlib, _, _ = _matplotlib()
    return matplotlib.rc_context(_rc())


def _save(fig, out, kind: str) -> Path:
    path = Path(out)
    meta = {"Date": None} if kind == "svg" else {"Software": None}
    fig.savefig(path, format=kind, metadata=meta, dpi=100, bbox_inches="tight", pad_inches=0.15)
    return path


def _unit_axis(axis, unit: str, log: bool, values) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: human(v, unit)))
    if log:
        axis.set_minor_formatter(NullFormatter())
        positive = [float(v) for v in values if float(v) > 0]
        if positive and max(positive) < min(positive) * 100:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))


def _label(title: str, unit: str) -> str:
    return f"{title} ({unit})" if unit else title


def _footnote(fig, text: str) -> None:
    fig.text(0.01, 0.005, text, fontsize=7, color="#555555", ha="left", va="bottom")


# ---- 1. a metric against a dimension ----------------------------------------------------------------------
def metric_vs_dim(series, *, dim, metric_title, unit, out, fmt=None, logx=None, logy=None, title=None) -> Path:
    """Several series of one metric over one dimension, overlaid; each legend entry carries its closed form.

    series: [{"label": str, "legend_formula": str, "x": [int], "y": [number]}], the formula plain text or
    mathtext ($...$); dim: the x-axis label (e.g. "sequence length s"); metric_title and unit: the y-axis
    label (e.g. "prefill time", "s"); unit "" counts, "B" bytes, "s" seconds, anything else gets SI prefixes.
    logx / logy: None chooses a log axis when the data span two decades or more.
    """
    kind = _format(out, fmt)
    _check_series(series)
    xs = [float(v) for one in series for v in one["x"]]
    ys = [float(v) for one in series for v in one["y"]]
    logx = _spans_decades(xs) if logx is None else logx
    logy = _spans_decades(ys) if logy is None else logy
    with _rendering():
        from matplotlib.ticker import MaxNLocator

        fig, ax = _figure()
        markers = "osD^vP*Xh"
        for i, one in enumerate(series):
            legend = one["label"] + (f"\n{one['legend_formula']}" if one.get("legend_formula") else "")
            ax.plot([float(v) for v in one["x"]], [float(v) for v in one["y"]], marker=markers[i % len(markers)],
                    markersize=4, linewidth=1.6, label=legend)
        ax.set_xscale("log" if logx else "linear")
        ax.set_yscale("log" if logy else "linear")
        _unit_axis(ax.xaxis, "", logx, xs)
        _unit_axis(ax.yaxis, unit, logy, ys)
        if logx and len(set(xs)) <= 12:
            ax.set_xticks(sorted(set(xs)))
        elif not logx:
            ax.xaxis.set_major_locator(MaxNLocator("auto", steps=[1, 2, 2.5, 5, 10], integer=True))
        ax.set_xlabel(dim)
        ax.set_ylabel(_label(metric_title, unit))
        ax.set_title(title or f"{metric_title} vs {dim}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        _footnote(fig, SI_NOTE)
        return _save(fig, out, kind)


def _check_series(series) -> None:
    if not series:
        raise SymcostError("nothing to plot: no series")
    for one in series:
        if len(one["x"]) != len(one["y"]) or not one["x"]:
            raise SymcostError(f"series '{one['label']}' needs as many y values as x values (and at least one)")


# ---- 2. roofline ------------------------------------------------------------------------------------------
ANNOTATE = 8  # the points with the largest time bound get a text label; the rest go to the legend
LEGEND_MAX = 12


def roofline(device, points, *, out, fmt=None, title=None) -> Path:
    """Attainable FLOP/s against arithmetic intensity (log-log): the roof, its ridge point, and the points.

    device: {"name": str, "peak": FLOP/s, "bandwidth": bytes/s}; points: [{"label": str, "flops": number,
    "bytes": number}] (ops or blocks). A point sits at (flops/bytes, min(peak, intensity·bandwidth)); points
    with no FLOPs or no bytes cannot sit on log axes and are listed under the chart instead.
    """
    kind = _format(out, fmt)
    peak, bandwidth = float(device["peak"]), float(device["bandwidth"])
    if peak <= 0 or bandwidth <= 0:
        raise SymcostError(f"device '{device['name']}' needs a positive peak and bandwidth")
    ridge = peak / bandwidth
    shown = [p for p in points if float(p["flops"]) > 0 and float(p["bytes"]) > 0]
    left_out = [p["label"] for p in points if p not in shown]
    ranked = sorted(shown, key=lambda p: -max(float(p["flops"]) / peak, float(p["bytes"]) / bandwidth))
    with _rendering():
        fig, ax = _figure((8.5, 5.5))
        lo, hi = _intensity_range(shown, ridge)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(min(lo * bandwidth, peak) / 2, peak * 3)
        xy = {id(p): _attainable(p, peak, bandwidth) for p in shown}
        notes = _draw_roof(ax, peak, bandwidth, ridge, lo, hi)
        placed = _annotate(fig, ax, ranked[:ANNOTATE], xy, notes)
        _legend_rest(ax, [p for p in ranked if id(p) not in placed], xy)
        _unit_axis(ax.xaxis, "", True, [lo, hi])
        _unit_axis(ax.yaxis, "FLOP/s", True, [lo * bandwidth, peak])
        ax.set_xlabel("arithmetic intensity (FLOP/B)")
        ax.set_ylabel("attainable performance (FLOP/s)")
        ax.set_title(title or f"roofline: {device['name']}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        note = SI_NOTE + ("" if not left_out else f"; not shown (no FLOPs or no bytes): {', '.join(left_out[:6])}"
                          + (f" and {len(left_out) - 6} more" if len(left_out) > 6 else ""))
        _footnote(fig, note)
        return _save(fig, out, kind)


def _attainable(point, peak: float, bandwidth: float) -> tuple[float, float]:
    intensity = float(point["flops"]) / float(point["bytes"])
    return intensity, min(peak, intensity * bandwidth)


def _intensity_range(points, ridge: float) -> tuple[float, float]:
    values = [float(p["flops"]) / float(p["bytes"]) for p in points] + [ridge]
    lo, hi = min(values) / 4, max(values) * 4
    return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))


def _draw_roof(ax, peak: float, bandwidth: float, ridge: float, lo: float, hi: float) -> list:
    """The roof, the ridge point and the two regions; returns the text drawn, for labels to keep clear of."""
    ax.plot([lo, ridge, hi], [lo * bandwidth, peak, peak], color="black", linewidth=2,
            label=f"roof: {human(bandwidth, 'B/s')} · I, capped at {human(peak, 'FLOP/s')}")
    ax.axvline(ridge, color="grey", linestyle=":", linewidth=1)
    ax.plot([ridge], [peak], marker="o", color="black", markersize=6, zorder=5)
    return [
        ax.annotate(f"ridge {_digits(ridge)} FLOP/B", (ridge, peak), xytext=(-6, 10), textcoords="offset points",
                    fontsize=8, ha="right"),
        ax.text(lo * 1.5, peak * 1.6, "← memory-bound", fontsize=8, color="grey", va="bottom"),
        ax.text(hi / 1.5, peak * 1.6, "compute-bound →", fontsize=8, color="grey", ha="right", va="bottom"),
    ]


_OFFSETS = ((8, 6, "left"), (8, -14, "left"), (-8, 6, "right"), (-8, -14, "right"),
            (10, 20, "left"), (-10, 20, "right"), (10, -28, "left"), (-10, -28, "right"))


def _annotate(fig, ax, points, xy, notes) -> set:
    """Label each point beside its marker where the label overlaps no other text; returns those labelled."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    boxes, placed = [note.get_window_extent(renderer) for note in notes], set()
    for p in points:
        for dx, dy, align in _OFFSETS:
            text = ax.annotate(p["label"], xy[id(p)], xytext=(dx, dy), textcoords="offset points", ha=align,
                               fontsize=7, zorder=6)
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in boxes):
                boxes.append(box)
                placed.add(id(p))
                ax.plot(*xy[id(p)], marker="o", color="#c44e52", markersize=5, zorder=4)
                break
            text.remove()
    return placed


def _legend_rest(ax, points, xy) -> None:
    """The points without a text label: one legend entry each (up to LEGEND_MAX), then one grey group."""
    colours = (*PART_COLOURS.values(), *EXTRA_COLOURS)  # 10 colours × 6 markers: no pair repeats
    markers = "sD^vP*"
    for i, p in enumerate(points[:LEGEND_MAX]):
        ax.plot(*xy[id(p)], linestyle="none", marker=markers[i % len(markers)], markersize=5,
                color=colours[i % len(colours)], label=p["label"], zorder=4)
    rest = points[LEGEND_MAX:]
    if rest:
        xs, ys = zip(*(xy[id(p)] for p in rest))
        ax.plot(xs, ys, linestyle="none", marker=".", color="#999999", label=f"{len(rest)} more", zorder=3)


# ---- 3. memory stacks -------------------------------------------------------------------------------------
def memory_stack(bars, *, capacity, capacity_label, out, fmt=None, title=None) -> Path:
    """Stacked memory per configuration against the device's memory; bars over it are outlined and marked.

    bars: [{"label": str (e.g. "b=8"), "parts": {name: bytes}}]; the usual names are weights, gradients,
    optimizer, activations and kv_cache (each keeps its colour in every chart), others follow in order seen.
    capacity: the device memory in bytes, drawn as a horizontal line labelled capacity_label.
    """
    kind = _format(out, fmt)
    if not bars:
        raise SymcostError("nothing to plot: no bars")
    parts = _part_names(bars)
    colours = _part_colours(parts)
    totals = [sum(float(v) for v in bar["parts"].values()) for bar in bars]
    with _rendering():
        fig, ax = _figure((max(6.0, 1.1 * len(bars) + 3), 5.0))
        positions = range(len(bars))
        bottoms = [0.0] * len(bars)
        for name in parts:
            heights = [float(bar["parts"].get(name, 0)) for bar in bars]
            ax.bar(positions, heights, bottom=bottoms, width=0.6, color=colours[name], label=name.replace("_", " "))
            bottoms = [b + h for b, h in zip(bottoms, heights)]
        ax.axhline(float(capacity), color="black", linestyle="--", linewidth=1.5, label=capacity_label)
        _mark_over(ax, totals, float(capacity))
        ax.set_xticks(list(positions), [bar["label"] for bar in bars])
        ax.set_ylim(0, max(max(totals), float(capacity)) * 1.18)
        _unit_axis(ax.yaxis, "B", False, totals)
        ax.set_ylabel("memory (bytes)")
        ax.set_title(title or "memory by part")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        _footnote(fig, SI_NOTE + " (1 GB = 10⁹ bytes)")
        return _save(fig, out, kind)


def _part_names(bars) -> list[str]:
    seen = [name for bar in bars for name in bar["parts"]]
    known = [name for name in PART_ORDER if name in seen]
    return known + [name for name in dict.fromkeys(seen) if name not in PART_ORDER]


def _part_colours(parts) -> dict:
    extra = [name for name in parts if name not in PART_COLOURS]
    return {**PART_COLOURS, **{name: EXTRA_COLOURS[i % len(EXTRA_COLOURS)] for i, name in enumerate(extra)}}


def _mark_over(ax, totals, capacity: float) -> None:
    """A red outline and an "over by …" note on every bar taller than the capacity."""
    for i, total in enumerate(totals):
        if total <= capacity:
            continue
        ax.bar([i], [total], width=0.6, fill=False, edgecolor="red", linewidth=2.5, zorder=5)
        ax.annotate(f"over by {human(total - capacity, 'B')}", (i, total), xytext=(0, 4),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8, color="red",
                    fontweight="bold", gid=f"over-capacity-{i}")
