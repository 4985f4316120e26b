"""`symcost report`: the page the command writes, and in headless Chromium the numbers the CLI prints, live."""
from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest
from browser import watched_page
from browser import keep

from symcost.cli import main
from helpers import ROOT

SPEC = str(ROOT / "specs" / "llama.arch")


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def page_json(path) -> dict:
    text = path.read_text(encoding="utf-8")
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S).group(1)
    return json.loads(raw)


def derived(capsys, *argv) -> dict:
    status, out, err = cli(capsys, "derive", SPEC, "--format", "json", *argv)
    assert status == 0, err
    return json.loads(out)


def test_page_data_from_the_preset(tmp_path, capsys):
    out = tmp_path / "r.html"
    status, _, err = cli(capsys, "report", SPEC, "--preset", "llama-2-7b", "-o", out)
    assert status == 0, err
    data = page_json(out)
    dims = {d["name"]: d["value"] for d in data["dims"]}
    assert dims == {"a": 32, "b": 1, "s": 2048, "h": 4096, "kv": 32, "f": 11008, "L": 32, "V": 32000}
    assert "not given, starting at b=1 s=2048" in data["conventions"]
    from symcost.analysis.hardware import list_devices

    assert {d["name"] for d in data["devices"]} == set(list_devices()) and data["device"] == "h100-sxm"
    assert data["subtitle"] == "closed forms derived from specs/llama.arch (shipped with symcost)"
    assert str(ROOT) not in out.read_text(encoding="utf-8")  # no local paths in a file made to be shared
    keys = [m["key"] for m in data["metrics"]]
    assert keys[-2:] == ["time_lower_bound_s", "tokens_per_s"] and "phase_flops" in keys
    # memory per device in training: the training state (plain data parallelism by default) and activations
    assert [p["key"] for p in data["memory"]["parts"]] == ["weights", "gradients", "optimizer", "activations"]
    status, _, err = cli(capsys, "report", SPEC, "--preset", "llama-2-7b", "--phase", "train", "-o", out)
    assert status == 0, err  # the training state, when the train phase is asked for by name (as derive shows it)
    assert [p["key"] for p in page_json(out)["memory"]["parts"]] == ["weights", "gradients", "optimizer",
                                                                     "activations"]


def test_decode_has_no_sequence_slider_and_errors(tmp_path, capsys):
    out = tmp_path / "d.html"
    status, _, err = cli(capsys, "report", "llama", "--preset", "llama-2-7b", "--phase", "decode", "-o", out)
    assert status == 0, err
    assert "s" not in {d["name"] for d in page_json(out)["dims"]}  # decode pins s = 1
    status, _, err = cli(capsys, "report", "llama", "--device", "nope", "-o", out)
    assert status == 2 and "nope" in err
    status, _, err = cli(capsys, "report", "llama", "--set", "h=0", "-o", out)
    assert status == 2 and "must be positive" in err


def exact_values(page) -> dict:
    """The whole-model numbers on the page, metric → exact value (Fraction), read from the DOM."""
    pairs = page.evaluate("""() => [...document.querySelectorAll('.val[data-exact][data-scope="model"]')]
        .map(e => [e.dataset.metric, e.dataset.exact])""")
    return {k: Fraction(v) for k, v in pairs}


def assert_same_as_cli(shown: dict, cli_json: dict) -> None:
    for key, entry in cli_json["totals"].items():
        if key in shown:
            assert shown[key] == entry["value"], key  # integers, exactly
    dev = cli_json["device"]
    assert shown["phase_flops"] == dev["flops"]["value"] and shown["phase_bytes"] == dev["bytes"]["value"]
    assert float(shown["time_lower_bound_s"]) == dev["time_lower_bound_s"]["value"]
    assert float(shown["tokens_per_s"]) == dev["tokens_per_s"]


def test_page_numbers_equal_the_cli_live(tmp_path, capsys, browser):
    out = tmp_path / "decode.html"
    settings = ("--preset", "llama-2-7b", "--phase", "decode", "--tp", "2", "--device", "h100-sxm")
    status, _, err = cli(capsys, "report", SPEC, *settings, "--set", "b=1", "c=4096", "-o", out)
    assert status == 0, err
    ctx, page, log = watched_page(browser)
    try:
        page.goto(out.as_uri(), wait_until="load")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        page.evaluate("document.fonts.ready.then(() => true)")
        n_tex = page.locator(".tex").count()
        assert n_tex > 40 and page.locator(".tex .katex").count() == n_tex and page.locator(".katex-error").count() == 0
        shown = exact_values(page)
        cli_json = derived(capsys, *settings, "--set", "b=1", "c=4096")
        assert "phase_comm_bytes" in shown  # tensor parallel: the interconnect bound is on the page too
        assert_same_as_cli(shown, cli_json)

        page.fill('input[type=number][data-dim="b"]', "8")
        page.fill('input[type=number][data-dim="c"]', "32768")
        assert_same_as_cli(exact_values(page), derived(capsys, *settings, "--set", "b=8", "c=32768"))

        page.select_option("#device", "a100-80gb")
        a100 = [a if a != "h100-sxm" else "a100-80gb" for a in settings]
        assert_same_as_cli(exact_values(page), derived(capsys, *a100, "--set", "b=8", "c=32768"))
    finally:
        ctx.close()
    assert log["errors"] == []
    assert [u for u in log["requests"] if u != out.as_uri()] == []


def test_keyboard_reaches_every_input(tmp_path, capsys, browser):
    out = tmp_path / "train.html"
    status, _, err = cli(capsys, "report", "gpt2", "--preset", "gpt2-small", "-o", out)
    assert status == 0, err
    page = browser.new_page()
    try:
        page.goto(out.as_uri(), wait_until="load")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        inputs = page.locator("#controls input, #controls select").count()
        seen = set()
        for _ in range(inputs + 2):
            page.keyboard.press("Tab")
            seen.add(page.evaluate("document.activeElement.id || document.activeElement.dataset.dim + ':' + "
                                   "document.activeElement.type"))
        assert len(seen) >= inputs
    finally:
        page.close()


@pytest.mark.parametrize("extra", [(), ("--phase", "prefill")])
def test_page_is_offline_and_self_contained(tmp_path, capsys, extra):
    out = tmp_path / "p.html"
    status, _, err = cli(capsys, "report", "gpt2", "--preset", "gpt2-small", *extra, "-o", out)
    assert status == 0, err
    text = out.read_text(encoding="utf-8")
    assert "default-src 'none'" in text and 'src="http' not in text and "url(http" not in text
    assert text.count("<script") == 3 and "KaTeX" in text


def test_readme_page(tmp_path, capsys, browser):
    """The page of the README's `symcost report` command: its parameters and bounds as derive prints them, and
    the screenshot the README shows (copied to $SYMCOST_SCREENSHOT_DIR when set)."""
    import shlex

    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("$ symcost report "))
    argv = shlex.split(line)[2:]
    argv[argv.index("-o") + 1] = str(tmp_path / "readme.html")
    assert argv[:2] == ["report", "specs/llama.arch"]
    argv[1] = SPEC
    status, _, err = cli(capsys, *argv)
    assert status == 0, err
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto((tmp_path / "readme.html").as_uri(), wait_until="load")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        page.evaluate("document.fonts.ready.then(() => true)")
        settings = argv[2:argv.index("-o")]
        assert_same_as_cli(exact_values(page), derived(capsys, *settings, "--set", "b=1", "s=2048"))
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 50_000
        keep(shot, "report-llama-2-7b.png")
    finally:
        page.close()
