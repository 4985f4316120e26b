"""LaTeX: labelled align* environments that fit the page, values when dims are set, or a complete document."""
from __future__ import annotations

import sympy as sp

from symcost.cost.record import METRIC_TITLES, METRIC_UNITS, shown
from symcost.present import units
from symcost.present.text import conventions_line, conventions_parts, forms_for

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
LINE_BUDGET = 58  # visible characters of one line of a broken sum (fits a 16 cm text width in display style)
_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "_": r"\_",
            "%": r"\%", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """User text (titles, paths, names) as LaTeX text: every special character escaped, control characters dropped."""
    return "".join(_SPECIAL.get(c, c) for c in text if c.isprintable())


def _visible(tex: str) -> int:
    """A rough count of the characters a TeX fragment prints: commands and braces do not count."""
    import re

    return len(re.sub(r"\\[A-Za-z]+|[{}^_ ]", "", tex))


def broken(terms: list[str]) -> list[str]:
    """Terms joined with + / −, cut into lines of at most LINE_BUDGET visible characters."""
    lines, current = [], ""
    for i, term in enumerate(terms):
        piece = term if i == 0 else (f" - {term[1:]}" if term.startswith("-") else f" + {term}")
        if current and _visible(current + piece) > LINE_BUDGET:
            lines.append(current)
            current = piece.lstrip()
            if not current.startswith("-"):
                current = "+ " + current
            else:
                current = "- " + current[1:].lstrip()
        else:
            current += piece
    lines.append(current)
    return lines


def equation(label: str, form_terms: list[str], value: str | None) -> str:
    """One labelled row of an align*: the closed form over as many lines as it needs, and its value."""
    lines = broken(form_terms) if form_terms else ["0"]
    rows = [f"  {label} &= {lines[0]}"] + [f"  &\\quad {more}" for more in lines[1:]]
    if value:
        rows[-1] += f" \\\\\n  &= {value}" if len(lines) > 1 or _visible(lines[0]) > LINE_BUDGET // 2 \
            else f" = {value}"
    return " \\\\\n".join(rows)


def _value(values, expr, unit: str, forms) -> str | None:
    if not values.evaluator.active:
        return None
    v = values(expr)
    if isinstance(v, int):
        exact = units.integer(v).replace(",", "{,}")
        return exact if unit == "" else f"{exact}\\ \\text{{{unit}}}"
    if getattr(v, "is_number", False):
        return f"\\text{{{escape(units.quantity(v, unit))}}}"
    return forms.latex(sp.expand(v))


def block_env(title: str, metrics: dict, forms, values, collect=()) -> str:
    rows = [equation(LABELS[m], forms.latex_terms(metrics[m], collect), _value(values, metrics[m], METRIC_UNITS[m], forms))
            for m in shown(metrics)]
    return f"\\noindent {title}\n\\begin{{align*}}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"


def body(analysis, values) -> list[str]:
    report = analysis.report
    forms = forms_for(report)
    out = []
    for b in report.blocks:
        rep = f" ($\\times {forms.latex(b.repeat)}$)" if b.repeat != 1 else ""
        out.append(block_env(f"Per instance of block \\texttt{{{escape(b.path)}}}{rep}:", b.metrics, forms, values))
    out.append(block_env("Whole model:", report.totals, forms, values, report.repeat_symbols))
    return out


def render(analysis, values) -> str:
    """A snippet to paste into a document (amsmath): a comment naming the source, then the environments."""
    g = analysis.graph
    head = f"% {escape(g.title or g.name)}: closed forms derived by symcost from {escape(g.file)}"
    head += f"\n% {escape(conventions_line(analysis))}"
    if values.evaluator.active:
        head += "\n% evaluated at " + escape(", ".join(f"{k}={v}" for k, v in values.given.items()))
    return head + "\n" + "\n\n".join(body(analysis, values)) + "\n"


def document(analysis, values) -> str:
    """A complete article that compiles with pdflatex: conventions, the closed forms, the derivation table."""
    from symcost.present.text import device_section, training_section

    g, report = analysis.graph, analysis.report
    forms = forms_for(report)
    conv = [escape(p) for p in conventions_parts(analysis)]
    parts = [
        r"\documentclass[10pt]{article}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage{amsmath,amssymb}",
        r"\usepackage[a4paper,margin=2cm]{geometry}",
        r"\usepackage{longtable,array}",
        r"\allowdisplaybreaks",
        rf"\title{{{escape(g.title or g.name)}: closed-form costs}}",
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
        rf"\noindent Derived by symcost from \texttt{{{escape(g.file)}}}.",
        r"\section*{Conventions}",
        r"\begin{itemize}",
        *[rf"\item {c}" for c in conv],
        r"\end{itemize}",
    ]
    if values.evaluator.active:
        parts.append(r"\noindent Evaluated at " + ", ".join(f"${escape(k)} = {v}$" for k, v in values.given.items())
                     + ".")
    parts += [r"\section*{Symbols}", r"\begin{itemize}"]
    for d in analysis.env.dims.values():
        definition = f" $= {forms.latex(d.definition)}$" if d.definition is not None else ""
        parts.append(rf"\item ${forms.tex_names.get(d.symbol, escape(d.name))}${definition}: {escape(d.doc or '')}")
    parts += [r"\end{itemize}", r"\section*{Closed forms}", *body(analysis, values)]
    parts += [r"\section*{Derivation, op by op}", table(report, forms)]
    notes = [s for s in (training_section(analysis, values, forms), device_section(analysis, values, forms)) if s]
    if notes:
        parts += [r"\section*{Analyses}", r"{\small\begin{verbatim}",
                  *[_ascii(n.rstrip("\n")) for n in notes], r"\end{verbatim}}"]
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def table(report, forms) -> str:
    """Every op: its path, op, repeat, parameters and forward FLOPs per instance."""
    rows = [r"{\small", r"\begin{longtable}{>{\raggedright\arraybackslash}p{4.6cm} p{1.6cm} "
            r">{\raggedright\arraybackslash}p{10cm}}",
            r"\textbf{op} & \textbf{kind} & \textbf{per instance} \\ \hline \endhead"]
    for r in report.ops:
        n, m = r.node, r.metrics
        cells = []
        if n.mult != 1:
            cells.append(rf"$\times\ {forms.latex(n.mult)}$")
        for key in ("params", "flops_fwd", "activation_bytes"):
            if m[key] != 0:
                cells.append(rf"{escape(METRIC_TITLES[key].strip())}: ${forms.latex(m[key])}$")
        path = escape(n.path).replace("/", r"/\allowbreak ")
        rows.append(rf"\texttt{{{path}}} & {escape(n.op)} & {'; '.join(cells) or '—'} \\")
    rows += [r"\end{longtable}}"]
    return "\n".join(rows)


def notebook(analysis) -> str:
    """The whole-model closed forms as one aligned block, for a notebook's LaTeX display."""
    forms = forms_for(analysis.report)
    t = analysis.report.totals
    rows = [f"{LABELS[m]} &= {forms.latex(t[m], analysis.report.repeat_symbols)}" for m in shown(t)]
    return "$$\\begin{aligned}" + " \\\\ ".join(rows) + "\\end{aligned}$$"


def _ascii(text: str) -> str:
    """Plain text for a verbatim block under pdflatex: the few non-ASCII symbols the text report uses, spelled."""
    for a, b in (("≥", ">="), ("≤", "<="), ("·", "*"), ("×", "x"), ("Ψ", "Psi"), ("µ", "u"), ("—", "--"),
                 ("−", "-"), ("²", "^2"), ("³", "^3"), ("⁴", "^4"), ("→", "->")):
        text = text.replace(a, b)
    return "".join(c if ord(c) < 128 else "?" for c in text)

