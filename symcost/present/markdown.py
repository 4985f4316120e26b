"""Markdown tables with LaTeX math, for READMEs and docs; and a small HTML table for notebooks."""
from __future__ import annotations

import html as _html

import sympy as sp

from symcost.cost.record import METRIC_TITLES, METRIC_UNITS, shown
from symcost.present import units
from symcost.present.text import conventions_line, device_section, forms_for, training_section


def _value(values, expr, unit: str, forms) -> str:
    v = values(expr)
    if isinstance(v, int):
        text = units.quantity(v, unit)
        return f"{text} ({units.integer(v)})" if unit == "" and abs(v) >= 1000 else text
    if getattr(v, "is_number", False):
        return units.quantity(v, unit)
    return f"${forms.latex(sp.expand(v))}$"


def _cell(text: str) -> str:
    """User text inside a table cell: pipes and HTML escaped, control characters dropped."""
    clean = "".join(c for c in text if c.isprintable())
    return _html.escape(clean, quote=False).replace("|", "\\|")


def render(analysis, values) -> str:
    report = analysis.report
    forms = forms_for(report)
    g = report.graph
    active = values.evaluator.active
    out = [f"## {_cell(g.title or g.name)}", "", f"`{_cell(g.file)}` — {_cell(conventions_line(analysis))}", ""]
    if active:
        out += ["Evaluated at " + ", ".join(f"${k} = {v}$" for k, v in values.given.items()) + ".", ""]

    def table(title: str, metrics: dict, collect=()):
        out.append(f"### {title}")
        out.append("")
        out.append("| quantity | closed form |" + (" value |" if active else ""))
        out.append("|---|---|" + ("---:|" if active else ""))
        for m in shown(metrics):
            row = f"| {METRIC_TITLES[m].strip()} | ${forms.latex(metrics[m], collect)}$ |"
            if active:
                row += f" {_value(values, metrics[m], METRIC_UNITS[m], forms)} |"
            out.append(row)
        out.append("")

    for b in report.blocks:
        rep = f" (× ${forms.latex(b.repeat)}$)" if b.repeat != 1 else ""
        table(f"`{_cell(b.path)}` per instance{rep}", b.metrics)
    table("Whole model", report.totals, report.repeat_symbols)
    for section in (training_section(analysis, values, forms), device_section(analysis, values, forms)):
        if section:
            out += ["```text", section.rstrip("\n"), "```", ""]
    return "\n".join(out)


def html(analysis) -> str:
    """The whole-model closed forms (and values where dims are given) as an HTML table, for notebooks."""
    values = analysis.at()
    forms = forms_for(analysis.report)
    t = analysis.report.totals
    rows = []
    for m in shown(t):
        value = _value(values, t[m], METRIC_UNITS[m], forms).strip("$") if values.evaluator.active else ""
        rows.append(f"<tr><td>{_html.escape(METRIC_TITLES[m].strip())}</td>"
                    f"<td><code>{_html.escape(forms.text(t[m], analysis.report.repeat_symbols))}</code></td>"
                    f"<td>{_html.escape(value)}</td></tr>")
    head = _html.escape(f"{analysis.title} — {conventions_line(analysis)}")
    return f"<p><b>{head}</b></p><table>{''.join(rows)}</table>"
