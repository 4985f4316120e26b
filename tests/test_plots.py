"""Charts: files, PNG headers, SVG text (labels, legends, human ticks), log axes, capacity marks, same bytes twice."""
from __future__ import annotations

import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import LLAMA_SIZES

from symcost.errors import SymcostError
from symcost.present import plot
from symcost.present.plot import human, memory_stack, metric_vs_dim, roofline, shorten

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
H100 = {"name": "H100 SXM (bf16)", "peak": 989.4e12, "bandwidth": 3.35e12}
GB = 10**9



def svg_texts(path: Path) -> list[str]:
    """Every <text> element's content (matplotlib writes text as text with svg.fonttype 'none')."""
    root = ET.parse(path).getroot()
    return ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def doubling(start: int = 512, stop: int = 32768) -> list[int]:
    out = [start]
    while out[-1] < stop:
        out.append(out[-1] * 2)
    return out


def two_series() -> list[dict]:
    xs = doubling()
    return [
        {"label": "small", "legend_formula": "4·b·s·h² + 2·b·s²·h", "x": xs, "y": [3e-4 * x / 512 for x in xs]},
        {"label": "large", "legend_formula": "$2 b s h^2$", "x": xs, "y": [9e-4 * x / 512 for x in xs]},
    ]


def bars() -> list[dict]:
    out = []
    for b in (1, 4, 16):
        parts = {"weights": 14 * GB, "gradients": 14 * GB, "optimizer": 28 * GB,
                 "activations": b * 2 * GB, "kv_cache": b * GB // 2}
        out.append({"label": f"b={b}", "parts": parts})
    return out


# ---- pure helpers --------------------------------------------------------------------------------------------
def test_human_units():
    assert [human(v, "") for v in (0, 512, 1000, 2048, 32768, 7e6, 1.3e9)] == [
        "0", "512", "1k", "2.05k", "32.8k", "7M", "1.3G"]
    assert [human(v, "B") for v in (512, 1500, 13.5e9, 80e9, 2e12)] == ["512 B", "1.5 kB", "13.5 GB", "80 GB", "2 TB"]
    assert [human(v, "s") for v in (2.5, 0.012, 4.5e-4, 3e-8)] == ["2.5 s", "12 ms", "450 µs", "30 ns"]
    assert human(989.4e12, "FLOP/s") == "989 TFLOP/s"
    assert human(999.9e6, "B") == "1 GB"  # rounding carries into the next prefix


def test_shorten_cuts_at_term_boundaries():
    form = "7·a·b·s²·L + 6·b·s·h·f·L + 4·b·s²·h·L + 4·b·s·h²·L − 13·b·s·h·L + 2·b·s·h·V"
    short = shorten(form, 40)
    assert short == "7·a·b·s²·L + 6·b·s·h·f·L + … (6 terms)"
    assert shorten("2·b·s·h", 40) == "2·b·s·h"
    assert shorten("$" + "x + " * 30 + "y$", 20).startswith("$")  # mathtext is never cut


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SymcostError, match=r"pip install 'symcost\[plot\]'"):
        metric_vs_dim(two_series(), dim="sequence length s", metric_title="time", unit="s", out=tmp_path / "x.png")


def test_format_from_extension_or_argument(tmp_path, matplotlib_present):
    with pytest.raises(SymcostError, match="png or .svg"):
        memory_stack(bars(), capacity=80 * GB, capacity_label="80 GB", out=tmp_path / "chart.pdf")
    out = memory_stack(bars(), capacity=80 * GB, capacity_label="80 GB", out=tmp_path / "chart.img", fmt="svg")
    assert out.read_bytes().lstrip().startswith(b"<?xml")


# ---- metric against a dimension ------------------------------------------------------------------------------
def test_metric_vs_dim_png(tmp_path, matplotlib_present):
    out = metric_vs_dim(two_series(), dim="sequence length s", metric_title="prefill time", unit="s",
                        out=tmp_path / "time.png")
    assert out.stat().st_size > 10_000
    width, height = png_size(out)
    assert 400 <= width <= 2000 and 300 <= height <= 1500


def test_metric_vs_dim_svg_text(tmp_path, matplotlib_present):
    out = metric_vs_dim(two_series(), dim="sequence length s", metric_title="prefill time", unit="s",
                        out=tmp_path / "time.svg", title="prefill on one device")
    assert out.stat().st_size > 5_000
    texts = svg_texts(out)
    for expected in ("prefill time (s)", "sequence length s", "prefill on one device",
                     "small", "large", "4·b·s·h² + 2·b·s²·h"):
        assert expected in texts, expected
    assert "<!-- $2 b s h^2$ -->" in out.read_text(encoding="utf-8")  # mathtext keeps its source
    assert {"10k", "20k", "30k"} <= set(texts)  # counts in k
    assert any(t.endswith(" ms") for t in texts)  # seconds in ms
    assert any("SI" in t for t in texts)  # the prefixes are stated


def test_log_axes_when_data_span_decades(tmp_path, matplotlib_present):
    xs = [1, 10, 100, 1000, 10000]
    series = [{"label": "cubic", "legend_formula": "s³", "x": xs, "y": [x**3 for x in xs]}]
    texts = svg_texts(metric_vs_dim(series, dim="s", metric_title="work", unit="", out=tmp_path / "log.svg"))
    assert {"1", "10", "100", "1k", "10k"} <= set(texts)  # decade ticks on x
    assert {"1M", "1T"} <= set(texts)  # decade ticks on y
    assert "2k" not in texts
    texts = svg_texts(metric_vs_dim(series, dim="s", metric_title="work", unit="", logx=False, logy=False,
                                    out=tmp_path / "lin.svg"))
    assert {"0", "2k", "4k"} <= set(texts) and "1G" not in texts


def test_linear_axes_for_narrow_data(tmp_path, matplotlib_present):
    series = [{"label": "flat", "legend_formula": "h", "x": [1, 2, 3], "y": [1.0e9, 1.5e9, 2.0e9]}]
    texts = svg_texts(metric_vs_dim(series, dim="b", metric_title="weight bytes", unit="B", out=tmp_path / "w.svg"))
    assert "weight bytes (B)" in texts
    assert {"1 GB", "1.4 GB", "2 GB"} <= set(texts)
    assert {"1", "2", "3"} <= set(texts) and "1.5" not in texts  # a dimension takes whole values


def test_series_lengths_must_agree(tmp_path, matplotlib_present):
    with pytest.raises(SymcostError, match="as many y values"):
        metric_vs_dim([{"label": "x", "legend_formula": "", "x": [1, 2], "y": [1]}], dim="s",
                      metric_title="m", unit="", out=tmp_path / "bad.svg")


# ---- roofline ------------------------------------------------------------------------------------------------
def roof_points(n: int) -> list[dict]:
    return [{"label": f"op{i}", "flops": 10 ** (8 + i % 5) * (i + 1), "bytes": 10 ** (6 + i % 3) * (i + 2)}
            for i in range(n)]


def test_roofline_labels_every_point_once(tmp_path, matplotlib_present):
    points = roof_points(14) + [{"label": "reshape", "flops": 0, "bytes": 4096}]
    out = roofline(H100, points, out=tmp_path / "roof.svg")
    texts = svg_texts(out)
    assert "arithmetic intensity (FLOP/B)" in texts and "attainable performance (FLOP/s)" in texts
    assert "roofline: H100 SXM (bf16)" in texts
    assert "ridge 295 FLOP/B" in texts
    assert "roof: 3.35 TB/s · I, capped at 989 TFLOP/s" in texts
    for p in points[:-1]:  # text beside the point or a legend entry, never both
        assert texts.count(p["label"]) == 1, p["label"]
    assert any("not shown" in t and "reshape" in t for t in texts)
    assert {"1 PFLOP/s", "1k"} <= set(texts)


def test_roofline_groups_the_long_tail(tmp_path, matplotlib_present):
    texts = svg_texts(roofline(H100, roof_points(40), out=tmp_path / "many.svg"))
    labelled = [t for t in texts if t.startswith("op")]
    assert len(labelled) == plot.ANNOTATE + plot.LEGEND_MAX
    assert f"{40 - len(labelled)} more" in texts


def test_roofline_png(tmp_path, matplotlib_present):
    out = roofline(H100, roof_points(10), out=tmp_path / "roof.png", title="decode ops")
    width, height = png_size(out)
    assert out.stat().st_size > 10_000 and 400 <= width <= 2000 and 300 <= height <= 1500


# ---- memory stacks -------------------------------------------------------------------------------------------
def test_memory_stack_marks_bars_over_capacity(tmp_path, matplotlib_present):
    out = memory_stack(bars(), capacity=80 * GB, capacity_label="H100 80 GB", out=tmp_path / "mem.svg")
    texts = svg_texts(out)
    for expected in ("b=1", "b=4", "b=16", "H100 80 GB", "weights", "gradients", "optimizer", "activations",
                     "kv cache", "memory (bytes)", "80 GB"):
        assert expected in texts, expected
    # totals: 58, 66 and 96 GB; only b=16 is over 80 GB
    assert [t for t in texts if t.startswith("over by")] == ["over by 16 GB"]
    svg = out.read_text(encoding="utf-8")
    assert 'id="over-capacity-2"' in svg and 'id="over-capacity-0"' not in svg


def test_memory_stack_colours_follow_the_part(tmp_path, matplotlib_present):
    a = memory_stack([{"label": "x", "parts": {"kv_cache": 5 * GB, "weights": GB}}], capacity=8 * GB,
                     capacity_label="8 GB", out=tmp_path / "a.svg").read_text(encoding="utf-8")
    assert plot.PART_COLOURS["kv_cache"] in a and plot.PART_COLOURS["weights"] in a
    assert plot.PART_COLOURS["optimizer"] not in a


# ---- reproducibility -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["svg", "png"])
def test_same_data_same_bytes(tmp_path, ext, matplotlib_present):
    def render(tag: str) -> list[bytes]:
        return [
            metric_vs_dim(two_series(), dim="s", metric_title="t", unit="s", out=tmp_path / f"m{tag}.{ext}"),
            roofline(H100, roof_points(12), out=tmp_path / f"r{tag}.{ext}"),
            memory_stack(bars(), capacity=80 * GB, capacity_label="80 GB", out=tmp_path / f"s{tag}.{ext}"),
        ]

    first, second = render("1"), render("2")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


# ---- a realistic chart from the engine -----------------------------------------------------------------------
def test_llama_prefill_time_on_h100(tmp_path, matplotlib_present):
    from symcost.cost.accounting import derive_file
    from symcost.analysis.evaluate import Evaluator
    from symcost.present.text import forms_for

    r = derive_file(ROOT / "specs" / "llama.arch", phase="prefill")
    expr = r.totals["flops_fwd"]
    formula = shorten(forms_for(r).text(expr), 50)
    seqs = doubling()
    series = []
    for name, dims in LLAMA_SIZES.items():
        seconds = [Evaluator(r.env, {**dims, "b": 1, "s": s})(expr) / H100["peak"] for s in seqs]
        series.append({"label": name, "legend_formula": f"FLOPs = {formula}", "x": seqs, "y": seconds})
    assert series[0]["y"][0] == pytest.approx(2 * 6.74e9 * 512 / 989.4e12, rel=0.05)  # ≈ 2·params·tokens
    assert all(a < b for one in series for a, b in zip(one["y"], one["y"][1:]))
    out = metric_vs_dim(series, dim="sequence length s", metric_title="prefill time, compute bound", unit="s",
                        out=tmp_path / "llama.svg", title="Llama prefill on an H100 (bf16 peak), b=1")
    texts = svg_texts(out)
    assert formula.startswith("7·a·b·s²·L + ") and formula.endswith("terms)")
    assert texts.count(f"FLOPs = {formula}") == 3
    assert {"llama-2-7b", "llama-2-13b", "llama-3-8b", "prefill time, compute bound (s)"} <= set(texts)
    assert "ms" in " ".join(texts)
    png = metric_vs_dim(series, dim="sequence length s", metric_title="prefill time", unit="s",
                        out=tmp_path / "llama.png")
    assert png.stat().st_size > 10_000 and png_size(png)[0] >= 400
