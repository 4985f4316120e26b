"""`symcost plot`: three presets on one device in one command, the roofline and memory charts, their files and errors."""
from __future__ import annotations

import struct
import sys
import xml.etree.ElementTree as ET
from fractions import Fraction

import pytest
from helpers import LLAMA_SIZES

import symcost
from symcost.cli import main
from symcost.present import charts, plot
from symcost.present.plot import human

PRESETS = ("llama-2-7b", "llama-2-13b", "llama-3-8b")



def svg_texts(path) -> list[str]:
    root = ET.parse(path).getroot()
    return ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


PREFILL = ("plot", "llama", "--preset", *PRESETS, "--phase", "prefill", "--device", "h100-sxm",
           "--x", "s=512..32768:x2", "--y", "time", "--set", "b=1")


def test_three_presets_one_command(tmp_path, capsys, matplotlib_present, monkeypatch):
    drawn = {}
    real = plot.metric_vs_dim
    monkeypatch.setattr(plot, "metric_vs_dim", lambda series, **kw: drawn.update(series=series, **kw) or real(series, **kw))
    status, out, err = cli(capsys, *PREFILL, "-o", tmp_path / "prefill.svg")
    assert status == 0, err
    texts = svg_texts(tmp_path / "prefill.svg")
    assert set(PRESETS) <= set(texts)
    assert "sequence length s" in texts and "prefill time, lower bound (s)" in texts
    assert {"512", "32.8k", "1 s", "100 ms", "10 ms"} <= set(texts)  # log axes with units on the ticks
    peak, bandwidth = 989.4e12, 3.35e12
    for one, name in zip(drawn["series"], PRESETS):
        d = LLAMA_SIZES[name]
        quadratic = 7 * d["a"] * d["L"] + 4 * d["h"] * d["L"]  # 7·a·s²·L + 4·s²·h·L: scores, softmax, products
        assert f"F = {human(quadratic, '')}·s²" in one["legend_formula"]
        assert one["legend_formula"] in texts
        at = symcost.derive("llama", preset=name, phase="prefill", device="h100-sxm", set={"b": 1})
        for s, y in zip(one["x"], one["y"]):
            values = at.at(s=s)
            want = max(values["flops_fwd"] / peak, values(at.summary.bytes) / bandwidth)
            assert y == pytest.approx(want, rel=1e-12)
    assert drawn["series"][1]["y"][-1] > drawn["series"][0]["y"][-1]  # 13B is slower than 7B
    status, out, err = cli(capsys, *PREFILL, "-o", tmp_path / "prefill.png")
    assert status == 0 and out.startswith("wrote ")
    width, height = png_size(tmp_path / "prefill.png")
    assert width >= 600 and height >= 350 and (tmp_path / "prefill.png").stat().st_size > 20_000


def test_several_specs_and_a_count_metric(tmp_path, capsys, matplotlib_present):
    out = tmp_path / "params.svg"
    status, _, err = cli(capsys, "plot", "gpt2", "llama", "--x", "h=256..4096:x2", "--y", "params", "--set", "L=2",
                         "a=4", "V=1000", "P=128", "kv=4", "f=1024", "-o", out)
    assert status == 0, err
    texts = svg_texts(out)
    assert {"gpt2", "llama"} <= set(texts)
    # GPT-2 with L=2, V=1000, P=128 and f=1024 (its MLP width: 4h unless set, and --set sets it for every spec):
    # 2·(4h² + 2hf + 9h + f) + h·V + h·P + 2h = 8h² + 5244h + 2048
    assert "8·h² + 5.24k·h + 2.05k" in texts


def test_roofline_of_each_op(tmp_path, capsys, matplotlib_present):
    out = tmp_path / "roof.svg"
    status, _, err = cli(capsys, "plot", "llama", "--preset", "llama-2-7b", "--kind", "roofline", "--phase", "decode",
                         "--device", "h100-sxm", "--set", "b=1", "c=4096", "-o", out)
    assert status == 0, err
    texts = svg_texts(out)
    assert "ridge 295 FLOP/B" in texts and "arithmetic intensity (FLOP/B)" in texts
    a = symcost.derive("llama", preset="llama-2-7b", phase="decode", device="h100-sxm", set={"b": 1, "c": 4096})
    labels = [o.path for o in a.roofline.ops if a.at()(o.flops) and a.at()(o.bytes)]
    shown = " ".join(texts)
    assert sum(label in texts for label in labels) >= 8 and "layer/swiglu_mlp/up" in shown
    status, _, err = cli(capsys, "plot", "llama", "--preset", "llama-2-7b", "--kind", "roofline", "--by", "block",
                         "--phase", "prefill", "--device", "h100-sxm", "--set", "b=1", "s=2048", "-o", out)
    assert status == 0, err
    assert {"layer", "whole model"} <= set(svg_texts(out))


def test_memory_stacks_against_the_device(tmp_path, capsys, matplotlib_present):
    out = tmp_path / "mem.svg"
    status, _, err = cli(capsys, "plot", "llama", "--preset", "llama-2-7b", "--kind", "memory", "--device",
                         "a100-80gb", "--x", "b=1,8", "--set", "s=2048", "--zero", "1", "--dp", "8", "-o", out)
    assert status == 0, err
    texts = svg_texts(out)
    assert {"weights", "gradients", "optimizer", "activations", "b=1", "b=8"} <= set(texts)
    a = symcost.derive("llama", preset="llama-2-7b", device="a100-80gb", zero=1, dp=8, set={"s": 2048})
    psi = a.at(b=8).params
    total = 2 * psi + 2 * psi + Fraction(12 * psi, 8) + a.at(b=8)["activation_bytes"]  # ZeRO-1: 2Ψ + 2Ψ + 12Ψ/N_d
    over = float(total) - float(a.device.memory_bytes)
    assert over > 0 and f"over by {human(over, 'B')}" in texts
    status, _, err = cli(capsys, "plot", "llama", "--preset", "llama-2-7b", "--kind", "memory", "--phase", "decode",
                         "--device", "h100-sxm", "--set", "b=1", "c=4096", "-o", tmp_path / "kv.png")
    assert status == 0, err and png_size(tmp_path / "kv.png")[0] > 300


@pytest.mark.parametrize("argv, message", [
    (("gpt2", "llama", "--preset", "gpt2-small", "--x", "s=1,2", "--y", "params"), "not both"),
    (("llama", "--preset", "llama-2-7b", "--y", "params"), "give both"),
    (("llama", "--preset", "llama-2-7b", "llama-2-13b", "--kind", "roofline", "--device", "h100-sxm"), "one spec"),
    (("llama", "--preset", "llama-2-7b", "--kind", "roofline", "--set", "b=1", "s=2"), "needs a device"),
    (("llama", "--preset", "llama-2-7b", "--kind", "memory", "--set", "b=1", "s=2"), "give --device"),
    (("llama", "--preset", "llama-2-7b", "--kind", "roofline", "--device", "h100-sxm"), "give every dim a value"),
    (("llama", "--preset", "llama-2-7b", "--x", "s=1..9", "--y", "params"), "a range needs a step"),
    (("llama", "--preset", "llama-2-7b", "--x", "s=1,2", "--y", "time"), "roofline bounds need a device"),
    (("llama", "--preset", "llama-2-7b", "--x", "s=1,2", "--y", "params", "--set", "s=3"), "both on the x axis"),
])
def test_errors(tmp_path, capsys, matplotlib_present, argv, message):
    status, _, err = cli(capsys, "plot", *argv, "-o", tmp_path / "x.svg")
    assert status == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.svg").exists()


def test_unknown_image_format_and_unwritable_file(tmp_path, capsys, matplotlib_present):
    status, _, err = cli(capsys, "plot", "gpt2", "--x", "h=64,128", "--y", "params", "--set", "L=1", "V=10", "P=8",
                         "a=1", "-o", tmp_path / "x.jpg")
    assert status == 2 and ".png or .svg" in err
    status, _, err = cli(capsys, "plot", "gpt2", "--x", "h=64,128", "--y", "params", "--set", "L=1", "V=10", "P=8",
                         "a=1", "-o", tmp_path / "missing" / "x.svg")
    assert status == 2 and "cannot write" in err


def test_without_matplotlib_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, _, err = cli(capsys, *PREFILL, "-o", tmp_path / "p.svg")
    assert status == 2 and "pip install 'symcost[plot]'" in err
    with pytest.raises(symcost.SymcostError, match=r"symcost\[plot\]"):
        charts.metric_chart([], "s", [1], "params", tmp_path / "p.svg")


def readme_command(name: str) -> list[str]:
    """The arguments of the `$ symcost NAME …` line the README shows."""
    import shlex

    from helpers import ROOT

    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith(f"$ symcost {name} "))
    return shlex.split(line)[2:]


def test_readme_plot_is_what_its_command_draws(tmp_path, capsys, matplotlib_present):
    from helpers import ROOT

    argv = readme_command("plot")
    i = argv.index("-o")
    committed = ROOT / argv[i + 1]
    argv[i + 1] = str(tmp_path / "again.svg")
    status, _, err = cli(capsys, *argv)
    assert status == 0, err
    assert committed.is_file() and svg_texts(tmp_path / "again.svg") == svg_texts(committed)
