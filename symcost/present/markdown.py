"""Markdown tables with LaTeX math, for READMEs and docs."""
from __future__ import annotations

from symcost.cost.record import METRIC_TITLES, METRIC_UNITS, shown
from symcost.cost.accounting import Report
from symcost.analysis.evaluate import Evaluator
from symcost.present.forms import human
from symcost.present.text import conventions_line, forms_for


def render(report: Report, ev: Evaluator) -> str:
    forms = forms_for(report)
    g = report.graph
    out = [f"## {g.title or g.name}", "", f"`{g.file}` — {conventions_line(report)}", ""]

    def table(title: str, metrics: dict, collect=()):
        out.append(f"### {title}")
        out.append("")
        head = "| quantity | closed form |" + (" value |" if ev.active else "")
        out.append(head)
        out.append("|---|---|" + ("---:|" if ev.active else ""))
        for m in shown(metrics):
            row = f"| {METRIC_TITLES[m].strip()} | ${forms.latex(metrics[m], collect)}$ |"
            if ev.active:
                row += f" {human(ev(metrics[m]), METRIC_UNITS[m])} |"
            out.append(row)
        out.append("")

    for b in report.blocks:
        rep = f" (× ${forms.latex(b.repeat)}$)" if b.repeat != 1 else ""
        table(f"`{b.path}` per instance{rep}", b.metrics)
    table("Whole model", report.totals, report.repeat_symbols)
    return "\n".join(out)
