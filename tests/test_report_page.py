"""The HTML report page: expression trees, escaping and the contract, and the page itself in headless Chromium."""
from __future__ import annotations

import json
import random
import re
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import watched_page
import sympy as sp

from browser import keep, unavailable
from helpers import sym

from symcost.cost.accounting import derive_file
from symcost.analysis.hardware import load_device
from symcost.present.html.contract import PageDataError, clean_text, normalize
from symcost.present.html.data import page_data
from symcost.present.html.page import render
from symcost.present.html.tree import TreeError, to_tree

ROOT = Path(__file__).resolve().parents[1]
LLAMA_7B = {"a": 32, "b": 1, "s": 4096, "h": 4096, "kv": 32, "f": 11008, "L": 32, "V": 32000}
DEVICES = ("h100-sxm", "a100-80gb", "rtx-4090")
HOSTILE = "</script><img src=x onerror=alert(1)> & \"quotes\" 'single' <!-- \x00\x07\x1b\x7f\x85 \u2028 \ud800 end"


# ---- a reference evaluator of trees, in Python -----------------------------------------------------------
def ref_eval(tree: dict, env: dict):
    """Fraction when exact (as the page's BigInt rationals), float after a non-integer exponent."""
    if "n" in tree:
        return Fraction(tree["n"])
    if "s" in tree:
        return env[tree["s"]]
    args = [ref_eval(a, env) for a in tree["a"]]
    f = tree["f"]
    if f == "add":
        return sum(args[1:], args[0])
    if f == "mul":
        out = args[0]
        for a in args[1:]:
            out *= a
        return out
    if f == "pow":
        base, exp = args
        if isinstance(exp, Fraction) and exp.denominator == 1 and isinstance(base, Fraction):
            return base ** exp.numerator
        return float(base) ** float(exp)
    if f in ("max", "min"):
        return (max if f == "max" else min)(args)
    import math
    return Fraction((math.floor if f == "floor" else math.ceil)(args[0]))


def exact_string(v) -> str:
    assert isinstance(v, Fraction), v
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def device_env(device: dict) -> dict:
    return {"peak": Fraction(device["peak"]), "bandwidth": Fraction(device["bandwidth"]),
            "memory": Fraction(device["memory"]), "link": Fraction(device["link"])}


# ---- to_tree -----------------------------------------------------------------------------------------------
SYMS = [sym(n) for n in ("b", "s", "h", "a", "L", "V")]


def random_expr(rng: random.Random, depth: int = 0) -> sp.Expr:
    if depth > 3 or rng.random() < 0.3:
        return rng.choice([rng.choice(SYMS), sp.Integer(rng.randint(-9, 99)),
                           sp.Rational(rng.randint(-9, 9), rng.randint(1, 9))])
    kind = rng.choice(["add", "mul", "pow", "max", "min", "floor", "ceiling", "div"])
    kids = [random_expr(rng, depth + 1) for _ in range(rng.randint(2, 3))]
    if kind == "add":
        return sp.Add(*kids)
    if kind == "mul":
        return sp.Mul(*kids)
    if kind == "div":
        return kids[0] / rng.choice(SYMS) ** rng.randint(1, 3)
    if kind == "pow":
        return rng.choice(SYMS + [kids[0] + 1 + SYMS[0] ** 2]) ** rng.randint(-3, 5)
    if kind in ("max", "min"):       # unevaluated: SymPy's simplification of Max/Min is slow and beside the point
        return (sp.Max if kind == "max" else sp.Min)(*kids, evaluate=False)
    return (sp.floor if kind == "floor" else sp.ceiling)(kids[0], evaluate=False)


def test_to_tree_round_trip_random_expressions():
    rng = random.Random(20261202)
    checked = 0
    for _ in range(200):
        e = random_expr(rng)
        env = {s: rng.randint(1, 5000) for s in SYMS}
        exact = e.xreplace({s: sp.Integer(v) for s, v in env.items()})
        if not exact.is_Rational:     # e.g. a power of zero to a negative exponent (zoo)
            continue
        got = ref_eval(to_tree(e), {s.name: Fraction(v) for s, v in env.items()})
        assert got == Fraction(int(exact.p), int(exact.q)), (e, env)
        checked += 1
    assert checked > 120


def test_to_tree_shapes():
    h, a, kv = (sym(n) for n in ("h", "a", "kv"))
    assert to_tree(sp.Integer(12)) == {"n": "12"}
    assert to_tree(sp.Rational(-3, 4)) == {"n": "-3/4"}
    assert to_tree(7) == {"n": "7"}
    assert to_tree(h) == {"s": "h"}
    t = to_tree(2 * h**2 * kv / a)
    assert t["f"] == "mul" and {"f": "pow", "a": [{"s": "a"}, {"n": "-1"}]} in t["a"]
    assert to_tree(sp.Max(h, a)) ["f"] == "max" and to_tree(sp.ceiling(h / a))["f"] == "ceiling"
    big = 3 * h**9 + 1
    assert ref_eval(to_tree(big), {"h": Fraction(2**40)}) == 3 * 2**360 + 1


@pytest.mark.parametrize("bad", [sp.Float(1.5) * SYMS[0], sp.sin(SYMS[0]), sp.oo, sp.nan, sp.I * SYMS[0],
                                 sp.log(SYMS[1]), sp.Piecewise((1, SYMS[0] > 2), (0, True)), "h + 1", 1.5, True])
def test_to_tree_rejects_what_the_page_cannot_evaluate(bad):
    with pytest.raises(TreeError):
        to_tree(bad)


# ---- page data from the engine -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report_data() -> dict:
    from symcost import derive

    data = page_data(derive(str(ROOT / "specs" / "llama.arch")), LLAMA_7B, [load_device(n) for n in DEVICES],
                     device="h100-sxm")
    data["subtitle"] = "subtitle " + HOSTILE
    data["dims"][1]["doc"] = "batch " + HOSTILE
    data["conventions"].append("convention " + HOSTILE)
    kv = next(d for d in data["dims"] if d["name"] == "kv")
    kv.update(scale="linear", max=128)                          # one linear slider as well
    return data


def engine_trees_match_sympy():
    r = derive_file(str(ROOT / "specs" / "llama.arch"))
    values = {sym(k): v for k, v in LLAMA_7B.items()}
    for key, expr in r.totals.items():
        exact = sp.Rational(expr.xreplace(values))
        assert ref_eval(to_tree(expr), {k: Fraction(v) for k, v in LLAMA_7B.items()}) == \
            Fraction(int(exact.p), int(exact.q)), key


def test_engine_closed_forms_round_trip():
    engine_trees_match_sympy()


def test_render_escapes_hostile_text(report_data):
    data = dict(report_data, title="T " + HOSTILE)
    page = render(data)
    page.encode("utf-8")                                    # no lone surrogate survived
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", page)
    cleaned = clean_text("T " + HOSTILE)
    assert "\u2400" in cleaned and "\u2407" in cleaned and "\u2421" in cleaned and "\ufffd" in cleaned

    class Grab(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.stack, self.text, self.data, self.tags = [], {}, None, []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag not in ("meta", "br", "wbr", "img", "input", "link"):
                self.stack.append((tag, dict(attrs)))

        def handle_endtag(self, tag):
            self.stack.pop()

        def handle_data(self, d):
            if self.stack:
                tag, attrs = self.stack[-1]
                if attrs.get("id") == "report-data":
                    self.data = (self.data or "") + d
                self.text[tag] = self.text.get(tag, "") + d

    g = Grab()
    g.feed(page)
    assert "img" not in g.tags and g.tags.count("script") == 3 and page.lower().count("</script") == 3
    assert g.text["h1"] == cleaned and g.text["title"] == cleaned
    assert json.loads(g.data) == json.loads(json.dumps(normalize(data)))
    assert json.loads(g.data)["dims"][1]["doc"] == clean_text("batch " + HOSTILE)


def test_csp_allows_only_the_pages_own_scripts(report_data):
    page = render(report_data)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in policy and "unsafe-eval" not in policy
    script_src = re.search(r"script-src ([^;]+);", policy).group(1)
    assert "unsafe-inline" not in script_src and script_src.count("'sha256-") == 2
    assert "url(fonts/" not in page and "http://" not in page.split("<details")[0].replace("http://www.w3.org", "")


@pytest.mark.parametrize("patch, message", [
    (lambda d: d["metrics"].append(dict(d["metrics"][0], tree={"s": "q"})), "unknown symbol"),
    (lambda d: d["dims"].append(dict(d["dims"][0])), "two dimensions"),
    (lambda d: d["dims"][0].update(value=0), "min <= value"),
    (lambda d: d["devices"][0].update(peak=float("inf")), "positive finite"),
    (lambda d: d.update(device="nope"), "not among the devices"),
    (lambda d: d["ops"][0].update(flops={"f": "exp", "a": [{"n": "1"}]}), "bad tree node"),
    (lambda d: d.update(devices=[], device=None), "at least one device"),
    (lambda d: d["dims"][0].update(value=2**60, max=2**61), "below 2**53"),
])
def test_contract_errors(report_data, patch, message):
    data = json.loads(json.dumps(report_data))
    patch(data)
    with pytest.raises(PageDataError, match=re.escape(message)):
        render(data)


# ---- the page in a browser -------------------------------------------------------------------------------
def test_missing_browser_skips_but_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        unavailable("no chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        unavailable("no chromium")


@pytest.fixture
def opened(browser, report_data, tmp_path):
    """The report page opened from file://, with console errors, page errors and requests logged."""
    path = tmp_path / "report.html"
    path.write_text(render(report_data), encoding="utf-8")
    ctx, page, log = watched_page(browser)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    page.evaluate("document.fonts.ready.then(() => true)")
    try:
        yield page, log, path
    finally:
        ctx.close()
    assert log["errors"] == []
    assert [u for u in log["requests"] if u != path.as_uri()] == []


def dom_value(page, selector: str) -> str:
    loc = page.locator(selector)
    assert loc.count() == 1, selector
    return loc.get_attribute("data-exact")


SLOT_FIELDS = ("scope", "metric", "total", "op", "col", "part", "repeat")


def slot(**fields) -> str:
    """The key check_numbers gives a value element: its data-* fields joined by '|'."""
    return "|".join(fields.get(f, "") for f in SLOT_FIELDS)


def check_numbers(page, data: dict, dims: dict, device: str) -> int:
    """Every number on the page equals the reference evaluation of its tree; returns the largest integer seen."""
    dev = next(d for d in data["devices"] if d["name"] == device)
    env = {k: Fraction(v) for k, v in dims.items()} | device_env(dev)
    shown = page.evaluate("""fields => Object.fromEntries([...document.querySelectorAll('.val[data-exact]')]
        .map(e => [fields.map(f => e.dataset[f] || '').join('|'), e.dataset.exact]))""", list(SLOT_FIELDS))
    want = {}
    for m in data["metrics"]:
        want[slot(scope="model", metric=m["key"])] = ref_eval(m["tree"], env)
    for i, b in enumerate(data["blocks"]):
        rep = ref_eval(b["repeat_tree"], env)
        want[slot(repeat=b["path"])] = rep
        for m in b["metrics"]:
            want[slot(scope=f"block:{i}", metric=m["key"])] = ref_eval(m["tree"], env)
            want[slot(scope=f"block:{i}", metric=m["key"], total="1")] = rep * ref_eval(m["tree"], env)
    for i, op in enumerate(data["ops"]):
        for col in ("flops", "bytes", "params"):
            want[slot(op=str(i), col=col)] = ref_eval(op[col], env)
    for p in data["memory"]["parts"]:
        want[slot(part=p["key"])] = ref_eval(p["tree"], env)
    assert shown == {k: exact_string(v) for k, v in want.items()}
    return max(int(v) for v in want.values() if v.denominator == 1)


def test_page_offline_exact_and_interactive(opened, report_data, tmp_path):
    page, log, path = opened
    n_tex = page.locator(".tex").count()
    assert n_tex > 40 and page.locator(".tex .katex").count() == n_tex
    assert page.locator(".katex-error").count() == 0
    fonts = page.evaluate("[...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)")
    assert "KaTeX_Main" in fonts and "KaTeX_Math" in fonts
    # user text is shown literally, never as markup
    assert page.locator("img").count() == 0
    assert page.locator(".subtitle").text_content() == clean_text("subtitle " + HOSTILE)
    dims = dict(LLAMA_7B)
    check_numbers(page, report_data, dims, "h100-sxm")
    bar = page.locator('#memory-svg rect.part[data-part="weights"]')
    width0, roof0 = float(bar.get_attribute("width")), page.locator("#roofline-svg circle").first.get_attribute("cx")

    page.fill('input[type=number][data-dim="h"]', "8192")      # typed value: exact re-evaluation
    dims["h"] = 8192
    check_numbers(page, report_data, dims, "h100-sxm")
    assert float(bar.get_attribute("width")) != width0
    assert_bar_proportions(page, report_data, dims)
    assert page.locator('input[type=range][data-dim="h"]').get_attribute("aria-valuetext") == "h = 8192"

    num_b = page.locator('input[type=number][data-dim="b"]')
    num_b.fill("")
    num_b.press_sequentially("64")                               # keystroke by keystroke
    num_b.press("Tab")
    dims["b"] = 64
    top = check_numbers(page, report_data, dims, "h100-sxm")
    assert top > 2**53                                           # exact beyond a double's integers

    rng = page.locator('input[type=range][data-dim="L"]')
    rng.focus()
    num_L = page.locator('input[type=number][data-dim="L"]')
    rng.press("ArrowRight")                                      # a log slider's arrow moves the value by >= 1
    assert num_L.input_value() == "33"
    rng.press("PageUp")                                          # ... and Page Up doubles it
    assert num_L.input_value() == "66" and rng.get_attribute("aria-valuetext") == "L = 66"
    dims["L"] = 66
    check_numbers(page, report_data, dims, "h100-sxm")
    rng.press("End")
    dims["L"] = int(num_L.input_value())
    assert dims["L"] == next(d["max"] for d in report_data["dims"] if d["name"] == "L")
    kv = page.locator('input[type=range][data-dim="kv"]')
    kv.focus()
    kv.press("ArrowRight")                                       # a linear slider's native step
    dims["kv"] = 33
    assert page.locator('input[type=number][data-dim="kv"]').input_value() == "33"
    page.select_option("#device", "a100-80gb")
    check_numbers(page, report_data, dims, "a100-80gb")
    assert page.locator("#roofline-svg circle").first.get_attribute("cx") != roof0
    assert "does not fit" in page.locator("#memory-status").inner_text()

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    keep(shot, "report-desktop.png")


def test_page_accessible_and_responsive(opened, report_data, tmp_path):
    page, log, path = opened
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, button')]
        .filter(e => e.tagName !== 'BUTTON' && !e.labels.length && !e.getAttribute('aria-label')).map(e => e.id)""")
    assert unlabelled == []
    page.keyboard.press("Tab")
    focus = page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
        return [e.tagName, s.outlineStyle, parseFloat(s.outlineWidth)]; }""")
    assert focus[0] in ("SELECT", "INPUT") and focus[1] != "none" and focus[2] >= 2
    page.set_viewport_size({"width": 390, "height": 844})       # a phone
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    big = page.evaluate("window.symcostReport.evaluate({f: 'add', a: [{f: 'pow', a: [{s: 'x'}, {n: '5'}]}, {n: '1'}]},"
                        " {x: '1099511627777'})")
    assert big == str(1099511627777**5 + 1)
    assert page.evaluate("window.symcostReport.evaluate({f: 'mul', a: [{s: 'x'}, {n: '1/3'}]}, {x: '10'})") == "10/3"
    shot = tmp_path / "phone.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "report-phone.png")


def assert_bar_proportions(page, data: dict, dims: dict) -> None:
    """Each part's share of the drawn stack is its share of the exact total."""
    env = {k: Fraction(v) for k, v in dims.items()}
    values = {p["key"]: ref_eval(p["tree"], env) for p in data["memory"]["parts"]}
    widths = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#memory-svg rect.part')]
        .map(r => [r.dataset.part, parseFloat(r.getAttribute('width'))]))""")
    assert set(widths) == set(values)
    for k in values:
        assert widths[k] / sum(widths.values()) == pytest.approx(float(values[k] / sum(values.values())), abs=2e-3)
