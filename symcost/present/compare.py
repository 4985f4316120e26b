"""A comparison as text (Unicode closed forms, factored differences and ratios, values) or JSON."""
from __future__ import annotations

import json

import sympy as sp

from symcost.cost.record import METRIC_UNITS
from symcost.errors import SymcostError, suggest
from symcost.present import units
from symcost.present.forms import Forms

Expr = sp.Expr


_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def pretty(expr: Expr, forms: Forms) -> str:
    """A factored expression in the Unicode style of the printers: `−2·L·h²·(a − 1)/a`."""
    num, den = sp.fraction(sp.together(expr))
    top = _product(num, forms)
    if den == 1:
        return top
    bottom = _product(den, forms)
    if not (den.is_Symbol or den.is_Integer or (den.is_Pow and den.base.is_Symbol)):
        bottom = f"({bottom})"
    if num.is_Add:
        top = f"({top})"
    return f"{top}/{bottom}"


def _product(e: Expr, forms: Forms) -> str:
    if e.is_Add:
        return forms.text(sp.expand(e))
    mono, groups = sp.Integer(1), []
    for f in sp.Mul.make_args(e):
        base, exp = f.as_base_exp()
        if base.is_Add:
            sup = "" if exp == 1 else str(exp).translate(_SUP)
            groups.append(f"({forms.text(sp.expand(base))}){sup}")
        else:
            mono *= f
    head = forms.text(mono)
    if groups and head in ("1", "-1"):
        return ("-" if head == "-1" else "") + "·".join(groups)
    return "·".join([head, *groups])


def _forms(rows) -> Forms:
    order = rows[0].order if rows else ()
    return Forms(list(order))


def _val(values, expr):
    """An exact value (int or Fraction) from a side's Values, or None where a dim is unset."""
    if expr is None or values is None or not values.evaluator.active:
        return None
    x = units.exact(values(expr))
    if x is None:
        return None
    return int(x) if x.denominator == 1 else x


def row_values(row, values_a=None, values_b=None) -> dict:
    """Numbers for A and B (each at its own dims), B − A and B / A; None where a dim is unset."""
    va, vb = _val(values_a, row.a), _val(values_b, row.b)
    both = va is not None and vb is not None
    return {
        "a": va, "b": vb,
        "diff": (vb - va) if both else None,
        "ratio": (units.exact(vb) / units.exact(va)) if both and va != 0 else None,
    }


def labels(va, vb) -> tuple[str, str]:
    a, b = va.analysis, vb.analysis
    if a.graph.file == b.graph.file:
        return va.label, vb.label
    return f"{a.graph.file} {va.label}".strip(), f"{b.graph.file} {vb.label}".strip()


def render(rows: list, va, vb, fmt: str = "text") -> str:
    """The comparison as text (Unicode closed forms, values where the dims are set) or JSON."""
    from symcost.present.json import number

    la, lb = labels(va, vb)
    if fmt == "json":
        out = {"schema": "symcost.compare/1", "labels": [la, lb], "rows": []}
        for r in rows:
            v = row_values(r, va.values, vb.values)
            out["rows"].append({
                "metric": r.metric, "path": r.path,
                "a": {"expr": str(r.a), "value": number(v["a"])},
                "b": {"expr": str(r.b), "value": number(v["b"])},
                "diff": {"expr": str(r.diff), "factored": str(r.diff_factored), "value": number(v["diff"])},
                "ratio": {"expr": None if r.ratio is None else str(r.ratio), "value": number(v["ratio"])},
            })
        return json.dumps(out, indent=2) + "\n"
    if fmt != "text":
        raise SymcostError(f"unknown format '{fmt}'; use text or json", None, suggest(fmt, ("text", "json")))
    forms = _forms(rows)
    width = max(len(la), len(lb), 5) + 2
    lines = [f"A: {la}", f"B: {lb}", ""]
    for r in rows:
        unit = METRIC_UNITS.get(r.metric, "")
        v = row_values(r, va.values, vb.values)
        lines.append(r.metric if r.path is None else f"{r.path}  {r.metric}")

        def line(tag: str, text: str, value) -> str:
            shown = f"   = {value}" if value is not None else ""
            return f"  {tag.ljust(width)}{text}{shown}"

        lines.append(line("A", forms.text(r.a), _shown(v["a"], unit)))
        lines.append(line("B", forms.text(r.b), _shown(v["b"], unit)))
        lines.append(line("B − A", pretty(r.diff_factored, forms) if r.diff != 0 else "0",
                          _shown(v["diff"], unit, signed=True)))
        ratio = "—" if r.ratio is None else pretty(r.ratio, forms)
        lines.append(line("B / A", ratio, None if v["ratio"] is None else units.plain(v["ratio"])))
    return "\n".join(lines) + "\n"


def _shown(v, unit: str, signed: bool = False):
    if v is None:
        return None
    text = units.quantity(v, unit)
    if unit == "" and isinstance(v, int) and abs(v) >= 1000:
        text = f"{text} ({units.integer(v)})"
    if signed and v > 0:
        text = "+" + text
    return text
