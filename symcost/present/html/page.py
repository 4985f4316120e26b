"""One self-contained, offline HTML report page: KaTeX, fonts, data, evaluator and charts inline, under a strict CSP."""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import lru_cache
from importlib import resources

from .contract import normalize

KATEX_VERSION = "0.19.1"
_FONT_SRC = re.compile(r'src:url\(fonts/([A-Za-z0-9_-]+)\.woff2\) format\("woff2"\)[^;}]*')
_SCRIPTS = ("num.js", "charts.js", "app.js")


def _here():
    return resources.files(__package__)


def _read(*parts: str) -> str:
    node = _here()
    for p in parts:
        node = node / p
    return node.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def katex_css() -> str:
    """KaTeX's CSS with every @font-face pointing at its woff2 file as a data: URI (no other font format)."""
    fonts = _here() / "vendor" / "katex" / "fonts"

    def inline(m: re.Match) -> str:
        b64 = base64.b64encode((fonts / f"{m.group(1)}.woff2").read_bytes()).decode("ascii")
        return f'src:url(data:font/woff2;base64,{b64}) format("woff2")'

    css, n = _FONT_SRC.subn(inline, _read("vendor", "katex", "katex.min.css"))
    if n == 0 or "url(fonts/" in css:
        raise RuntimeError(f"unexpected KaTeX CSS layout: {n} font rules inlined, font URLs left over")
    return css


@lru_cache(maxsize=1)
def _scripts() -> tuple[str, str]:
    katex = script_safe(_read("vendor", "katex", "katex.min.js"))
    app = "\n".join(_read(name) for name in _SCRIPTS)
    return katex, script_safe('(function () {\n"use strict";\n' + app + "\n})();")


@lru_cache(maxsize=1)
def _licences() -> str:
    return (f"KaTeX {KATEX_VERSION} (the page's math typesetting code and styles), MIT licence:\n\n"
            + _read("vendor", "katex", "LICENSE")
            + "\n\nKaTeX fonts (embedded in this page as data: URIs):\n\n"
            + _read("vendor", "katex", "OFL-1.1.txt"))


def script_safe(js: str) -> str:
    """Script text that cannot end its <script> element early: no '</script' and no '<!--'."""
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.I).replace("<!--", "<\\!--")


def json_for_script(obj) -> str:
    """JSON for a <script type=application/json> element: nothing in it can close or comment the tag."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def csp(scripts) -> str:
    """No network of any kind, no eval or new Function, only this page's own two scripts (by hash)."""
    # base64 hashes and fixed words only: safe inside a double-quoted attribute as is
    return ("default-src 'none'; script-src " + " ".join(_hash(s) for s in scripts)
            + "; style-src 'unsafe-inline'; font-src data:; base-uri 'none'; form-action 'none'")


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def _header(d: dict) -> str:
    sub = f'<p class="subtitle">{esc(d["subtitle"])}</p>' if d["subtitle"] else ""
    conv = "".join(f"<li>{esc(c)}</li>" for c in d["conventions"])
    conv = f'<ul class="conventions" aria-label="conventions">{conv}</ul>' if conv else ""
    return f"<header><h1>{esc(d['title'])}</h1>{sub}{conv}</header>"


def _section(ident: str, title: str, body: str) -> str:
    return f'<section aria-labelledby="h-{ident}"><h2 id="h-{ident}">{title}</h2>{body}</section>'


_MEMORY = ('<svg id="memory-svg" class="chart" role="img" viewBox="0 0 600 110" '
           'aria-label="memory breakdown as a stacked bar against the device memory"></svg>'
           '<p id="memory-status" role="status"></p><div id="memory-legend"></div>')
_ROOFLINE = ('<svg id="roofline-svg" class="chart" role="img" viewBox="0 0 640 380" '
             'aria-label="roofline chart: each op at its arithmetic intensity against the device roofline"></svg>'
             '<p class="doc">Each op sits at intensity = FLOPs / bytes moved (log scale), on the roof '
             'min(peak, intensity \u00d7 bandwidth): left of the ridge point it is memory-bound (orange), '
             'right of it compute-bound (blue). Ops that do no FLOPs or move no bytes are not drawn.</p>')


def _content(d: dict) -> str:
    parts = [_section("totals", "Whole model", '<div id="totals"></div>')]
    if d["memory"] is not None:
        parts.append(_section("memory", "Memory", _MEMORY))
    if d["roofline"]:
        parts.append(_section("roofline", "Roofline", _ROOFLINE))
    if d["blocks"]:
        parts.append(_section("blocks", "Per block", '<div id="blocks"></div>'))
    if d["ops"]:
        parts.append(_section("ops", "Derivation, op by op", '<div id="ops"></div>'))
    return "".join(parts)


def render(data: dict) -> str:
    """The report page for `data` (see contract.py); every text from `data` is escaped or sanitised."""
    d = normalize(data)
    katex_js, app_js = _scripts()
    notice = ("KaTeX %s, MIT licence (c) 2013-2020 Khan Academy and other contributors; KaTeX fonts: "
              "SIL Open Font License 1.1, (c) 2009-2010 Design Science, Inc., (c) 2014-2018 Khan Academy" % KATEX_VERSION)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp([katex_js, app_js])}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="symcost">
<title>{esc(d["title"])}</title>
<!-- {notice} -->
<style>{katex_css()}</style>
<style>{_read("page.css")}</style>
</head><body>
{_header(d)}
<noscript><p>This report computes its numbers and charts in the browser: enable JavaScript to see them.</p></noscript>
<main class="layout"><aside id="controls" aria-label="inputs"></aside>
<div class="content">{_content(d)}</div></main>
<footer><p>Generated by symcost. Formulas typeset offline with KaTeX {KATEX_VERSION}.</p>
<details id="licences"><summary>Third-party licences</summary><pre>{esc(_licences())}</pre></details></footer>
<script type="application/json" id="report-data">{json_for_script(d)}</script>
<script>{katex_js}</script>
<script>{app_js}</script>
</body></html>
"""
