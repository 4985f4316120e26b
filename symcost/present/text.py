"""The terminal report: closed forms per block instance and for the whole model, and the --explain walk."""
from __future__ import annotations

import shutil
import textwrap

from symcost.cost.record import METRIC_TITLES, METRIC_UNITS
from symcost.cost.record import shown as shown_metrics
from symcost.cost.accounting import Report
from symcost.model.dims import fmt_shape
from symcost.analysis.evaluate import Evaluator
from symcost.present.forms import Forms, human


def forms_for(report: Report) -> Forms:
    env = report.env
    return Forms([d.symbol for d in env.dims.values()], {d.symbol: d.tex for d in env.dims.values()})


def conventions_line(report: Report) -> str:
    conv = {
        "fma": "a multiply-add counts 2 FLOPs",
        "mac": "FLOPs are multiply-accumulates (MACs)",
        "exact": "an [M,K]@[K,N] product counts M·N·(2K−1) FLOPs",
    }[report.convention]
    dt = report.env.default_dtype
    parts = [f"phase {report.graph.phase}", conv, f"default dtype {dt.name} ({dt.nbytes} bytes)"]
    st = report.settings
    if st is not None:
        if st.causal == "half":
            parts.append("causal attention products counted half")
        if st.other == "exclude":
            parts.append("matrix products only (elementwise FLOPs excluded)")
        if st.embedding == "matmul":
            parts.append("embedding lookups counted as one-hot products")
        if st.recompute != "none":
            parts.append(f"{st.recompute} recomputation")
        if st.flash:
            parts.append("fused attention (FlashAttention)")
        if st.tp is not None:
            parts.append(f"per device of tensor-parallel degree {st.tp}" + (" with sequence parallelism" if st.sp else ""))
        if st.pp is not None:
            parts.append(f"per device of the {st.stage} of {st.pp} pipeline stages")
        if st.ep is not None:
            parts.append(f"experts over {st.ep} devices")
    if report.graph.phase == "train":
        parts.append("activations: tensors saved for backward, each once")
    return " · ".join(parts)


class _Writer:
    def __init__(self, width: int):
        self.width = width
        self.lines: list[str] = []

    def row(self, label: str, form: str, value: str = "", indent: int = 2, label_width: int = 24) -> None:
        head = " " * indent + label.ljust(label_width)
        tail = f"   = {value}" if value else ""
        body = textwrap.wrap(form + tail, max(30, self.width - len(head)), break_on_hyphens=False) or [""]
        self.lines.append(head + body[0])
        for more in body[1:]:
            self.lines.append(" " * len(head) + "  " + more)


def show(evaluator: Evaluator, forms: Forms, expr, unit: str, exact: bool = False) -> str:
    """The value of a closed form under --set: readable units, or the partly evaluated form."""
    if not evaluator.active:
        return ""
    value = evaluator(expr)
    if isinstance(value, int):
        text = human(value, unit)
        return f"{text} ({value:,})" if exact and value >= 1000 else text
    if getattr(value, "is_number", False):
        return human(value, unit)
    return forms.text(value)


def render(report: Report, evaluator: Evaluator, explain: bool = False, width: int | None = None,
           extras: list | None = None) -> str:
    width = width or max(80, min(shutil.get_terminal_size((100, 24)).columns, 160))
    forms = forms_for(report)
    g = report.graph
    w = _Writer(width)
    title = f"{g.title} ({g.name})" if g.title else g.name
    w.lines += [f"{title} — {g.file}", conventions_line(report)]
    if evaluator.active:
        shown = ", ".join(f"{k}={v}" for k, v in evaluator.given.items())
        w.lines.append(f"evaluated at {shown}")
    w.lines.append("")

    def metric_rows(metrics: dict, collect=(), indent=2):
        for m in shown_metrics(metrics):
            value = show(evaluator, forms, metrics[m], METRIC_UNITS[m], exact=m.endswith("params"))
            w.row(METRIC_TITLES[m], forms.text(metrics[m], collect), value, indent)

    if explain:
        _explain(report, evaluator, forms, w)
    w.lines.append("Per instance of each block")
    for b in report.blocks:
        rep = forms.text(b.repeat)
        w.lines.append(f"  {b.path}  (× {rep})" if b.repeat != 1 else f"  {b.path}")
        metric_rows(b.metrics, indent=4)
    w.lines.append("")
    w.lines.append("Whole model")
    metric_rows(report.totals, report.repeat_symbols)
    for block in extras or ():
        w.lines += ["", block.rstrip("\n")]
    return "\n".join(w.lines) + "\n"


def _explain(report: Report, evaluator: Evaluator, forms: Forms, w: _Writer) -> None:
    w.lines.append("Derivation, op by op (costs per instance)")
    current = None
    for r in report.ops:
        n = r.node
        block = n.path.rsplit("/", 1)[0] if "/" in n.path else ""
        if block != current:
            current = block
            mult = forms.text(n.mult)
            w.lines.append("")
            w.lines.append(f"  [{block or 'top level'}]" + (f"  × {mult}" if n.mult != 1 else ""))
        ins = ", ".join(f"{t.name} {fmt_shape(t.shape)}" for t in n.inputs if not t.is_param)
        outs = ", ".join(f"{fmt_shape(t.shape)} {t.dtype}" for t in n.outputs)
        w.lines.append(f"    {n.path}    ({n.loc})")
        w.lines.append(f"        {n.statement}")
        w.lines.append(f"        {ins or '—'} → {outs}")
        for p in n.params:
            w.row(f"param {p.path.rsplit('/', 1)[-1]}", f"{fmt_shape(p.shape)} = {forms.text(p.numel)}", indent=8, label_width=18)
        m = r.metrics
        other_fwd = m["flops_fwd"] - m["matmul_flops_fwd"]
        rows = [
            ("parameters", m["params"] if n.params else 0, ""),
            ("matmul FLOPs fwd", m["matmul_flops_fwd"], "FLOP"),
            ("other FLOPs fwd", other_fwd, "FLOP"),
            ("FLOPs bwd", m["flops_bwd"], "FLOP"),
            ("bytes moved", m["io_bytes"], "B"),
        ]
        for label, expr, unit in rows:
            if expr != 0:
                w.row(label, forms.text(expr), show(evaluator, forms, expr, unit), indent=8, label_width=18)
        for s in r.saved:
            note = "" if s.first else " (already counted)"
            share = "" if s.share == 1 else f" × {forms.text(s.share)}"
            w.row("saves", f"{s.label}: {forms.text(s.nbytes)} bytes{share}{note}", indent=8, label_width=18)
    w.lines.append("")
