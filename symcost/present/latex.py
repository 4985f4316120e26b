"""LaTeX: ready-to-paste align* environments with the spec's symbol names."""
from __future__ import annotations

from symcost.cost.record import shown
from symcost.cost.accounting import Report
from symcost.analysis.evaluate import Evaluator
from symcost.present.text import forms_for

LABELS = {
    "params": r"N_{\text{params}}",
    "active_params": r"N_{\text{active}}",
    "flops_fwd": r"C_{\text{fwd}}",
    "matmul_flops_fwd": r"C_{\text{fwd}}^{\text{matmul}}",
    "flops_bwd": r"C_{\text{bwd}}",
    "matmul_flops_bwd": r"C_{\text{bwd}}^{\text{matmul}}",
    "activation_bytes": r"M_{\text{act}}",
    "weight_bytes": r"M_{\text{weights}}",
    "io_bytes": r"Q_{\text{io}}",
    "kv_cache_bytes": r"M_{\text{KV}}",
    "flops_recompute": r"C_{\text{recompute}}",
    "comm_bytes": r"Q_{\text{comm}}",
}


def _escape(text: str) -> str:
    return text.replace("_", r"\_")


def render(report: Report, ev: Evaluator) -> str:
    forms = forms_for(report)
    g = report.graph
    out = [f"% {g.title or g.name}: closed forms derived by symcost from {g.file} (FLOPs: {report.convention})"]

    def env(title: str, metrics: dict, collect=()):
        out.append(f"% {title}")
        out.append(r"\begin{align*}")
        rows = [f"  {LABELS[m]} &= {forms.latex(metrics[m], collect)}" for m in shown(metrics)]
        out.append(" \\\\\n".join(rows))
        out.append(r"\end{align*}")

    for b in report.blocks:
        rep = f" (x {b.repeat})" if b.repeat != 1 else ""
        env(f"per instance of block {_escape(b.path)}{rep}", b.metrics)
    env("whole model", report.totals, report.repeat_symbols)
    return "\n".join(out) + "\n"
