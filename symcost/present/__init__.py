"""Presentation: closed forms and analyses as text, JSON, LaTeX and Markdown, through one unit formatter."""
from __future__ import annotations

FORMATS = ("text", "json", "latex", "markdown")


def render(analysis, fmt: str = "text", *, explain: bool = False, values: dict | None = None,
           width: int | None = None, document: bool = False) -> str:
    """An Analysis in a format, evaluated at its given dims plus `values`."""
    from symcost.errors import SymcostError, suggest

    if fmt not in FORMATS:
        raise SymcostError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}", None, suggest(fmt, FORMATS))
    if explain and fmt != "text":
        raise SymcostError("--explain walks the derivation in text; use it without --format")
    if document and fmt != "latex":
        raise SymcostError("--document writes a complete LaTeX document; use it with --format latex")
    at = analysis.at(**(values or {}))
    if fmt == "text":
        from symcost.present import text

        return text.render(analysis, at, explain=explain, width=width)
    if fmt == "json":
        from symcost.present import json

        return json.render(analysis, at)
    if fmt == "latex":
        from symcost.present import latex

        return latex.document(analysis, at) if document else latex.render(analysis, at)
    from symcost.present import markdown

    return markdown.render(analysis, at)
