"""Answers of `symcost solve` as text and as JSON (schema symcost.solve/1, docs/json.md)."""
from __future__ import annotations

import json

import sympy as sp

from symcost.analysis.quantity import QUANTITIES, ALIASES
from symcost.present import units

SCHEMA = "symcost.solve/1"
UNIT_OF_KIND = {"bytes": "B", "seconds": "s", "flops": "FLOP", "rate": "", "count": ""}
DIRECTION = {1: "nondecreasing", -1: "nonincreasing", 0: "constant", None: "not proven monotone"}


# ---- shared ----------------------------------------------------------------------------------------------------
def form_text(forms, expr) -> str:
    """A closed form as `(numerator)/(denominator)` with each part in the report's term order."""
    num, den = sp.fraction(sp.together(expr))
    if sp.expand(den).could_extract_minus_sign():
        num, den = -num, -den
    try:
        top, bottom = forms.text(sp.expand(num)), forms.text(sp.expand(den))
    except (TypeError, ValueError):
        return str(expr).replace("**", "^").replace("*", "·")
    top = _positive_first(forms, sp.expand(num))
    if den == 1:
        return top
    top = f"({top})" if sp.expand(num).is_Add else top
    bottom = f"({bottom})" if sp.expand(den).is_Add or "·" in bottom or "/" in bottom else bottom
    return f"{top}/{bottom}"


def _positive_first(forms, expr) -> str:
    terms = forms.terms(expr)
    ordered = [t for t in terms if not t.could_extract_minus_sign()] + [t for t in terms if t.could_extract_minus_sign()]
    return forms._join([forms._term_text(t) for t in ordered])


def real(value) -> str:
    """A real boundary: two decimals from 1000 up, else six significant digits."""
    return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:.6g}"


def _side(term, value, unit: str) -> str:
    shown = amount(value, unit)
    return shown if term.kind and term.text.replace(" ", "")[:1].isdigit() and " " not in term.text.strip() \
        else f"{term.text} = {shown}"


def _unit(term, other) -> str:
    kind = term.kind or other.kind
    return UNIT_OF_KIND.get(kind, "")


def amount(value, unit: str) -> str:
    """A number in its unit, with the exact integer beside it when it is a large whole number of bytes or FLOPs."""
    x = units.exact(value)
    if x is None:
        return str(value)
    if unit == "s":
        return units.seconds(x)
    text = units.quantity(x, unit) if unit else units.plain(x)
    if unit and x.denominator == 1 and abs(x) >= 1000:
        text += f" ({units.integer(int(x))})"
    return text


def _header(analysis) -> list[str]:
    from symcost.present.text import conventions_line

    g = analysis.graph
    title = f"{g.title} ({g.name})" if g.title else g.name
    lines = [f"{title} — {g.file}", conventions_line(analysis)]
    given = ", ".join(f"{k}={units.integer(v) if v >= 10**6 else v}" for k, v in analysis.values.items())
    device = analysis.device
    tail = f" · device {device.name} ({units.quantity(device.memory_bytes, 'B', binary=True)})" if device is not None else ""
    if given or tail:
        lines.append(("given " + given if given else "no dims given") + tail)
    return lines


def _described(constraints_text: list[str]) -> list[str]:
    """What each analysis quantity named in the constraints counts."""
    out = []
    for name in QUANTITIES:
        if name == "device_memory":
            continue
        aliases = [a for a, n in ALIASES.items() if n == name]
        if any(w in t.replace("(", " ").replace(")", " ").split() for t in constraints_text for w in [name, *aliases]):
            out.append(f"{name}: {QUANTITIES[name][0]}")
    return out


# ---- bounds ----------------------------------------------------------------------------------------------------
def bound_text(analysis, answer) -> str:
    from symcost.present.text import forms_for

    forms = forms_for(analysis.report)
    x = answer.unknown
    what = "largest" if answer.want == "max" else "smallest"
    lines = _header(analysis) + [""]
    lines.append(f"{what} {x} such that " + " and ".join(c.text for c in answer.constraints))
    if answer.status == "found":
        lines.append(f"  {x} = {units.integer(answer.value)}")
    elif answer.status == "none":
        lines.append(f"  no value of {x} satisfies " + ("it" if len(answer.constraints) == 1 else "them all"))
    else:
        lines.append(f"  no upper bound: every {x} up to {answer.limit:.0e} satisfies "
                     + ("it" if len(answer.constraints) == 1 else "them all"))
    rows = [answer.at_value] + ([answer.at_next] if answer.at_next else [])
    for i, checks in enumerate(rows):
        for j, ch in enumerate(checks):
            c = ch.constraint
            label = f"  {'check' if i == 0 and j == 0 else '':5}  {x} = {units.integer(ch.value)}:" if j == 0 else \
                " " * (11 + len(x) + len(units.integer(ch.value)))
            lhs, rhs = _side(c.lhs, ch.lhs, _unit(c.lhs, c.rhs)), _side(c.rhs, ch.rhs, _unit(c.rhs, c.lhs))
            verdict = "holds" if ch.holds else "fails"
            if ch.invalid and j == len(checks) - 1:
                verdict += f"; but {x} = {units.integer(ch.value)} is not a valid value ({ch.invalid})"
            lines.append(f"{label}  {lhs} {c.op} {rhs}   {verdict}")
    for b in answer.boundaries:
        lines.append(f"  {b.constraint.text}: " + _range_text(b, x))
        if b.form is not None:
            lines.append(f"    boundary {x}* = {form_text(forms, b.form)} = {real(b.real)}")
        if b.note:
            lines.append(f"    note: {b.note}")
    for sym, (meaning, value) in answer.symbols.items():
        lines.append(f"  {sym} = {meaning} = {amount(value, 'B')}")
    for note in _described([c.text for c in answer.constraints]) + answer.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines) + "\n"


def _range_text(b, x: str) -> str:
    why = f"(lhs − rhs {DIRECTION[b.direction]} in {x}" + (", proven from the closed form)" if b.direction is not None
                                                             else ")")
    if b.kind == "all":
        return f"holds for every {x} searched {why}"
    if b.kind == "none":
        return f"holds for no {x} {why}"
    if b.kind == "prefix":
        return (f"holds for {x} ≤ {units.integer(b.end)} " if b.end >= 1 else f"fails already at {x} = 1 ") + why
    return f"holds for {x} ≥ {units.integer(b.end)} {why}"


def bound_json(analysis, answer) -> dict:
    from symcost.present.json import number

    def checks(rows):
        return [{"constraint": ch.constraint.text, "lhs": number(ch.lhs), "rhs": number(ch.rhs), "holds": ch.holds,
                 "invalid": ch.invalid} for ch in rows]

    doc = _doc(analysis, {"kind": answer.want, "unknown": answer.unknown,
                          "constraints": [c.text for c in answer.constraints]})
    doc.update({
        "status": answer.status,
        "value": answer.value,
        "checks": [{"value": answer.at_value[0].value if answer.at_value else None, "constraints": checks(answer.at_value)}]
        + ([{"value": answer.next_value, "constraints": checks(answer.at_next)}] if answer.at_next else []),
        "boundaries": [{
            "constraint": b.constraint.text, "direction": DIRECTION[b.direction], "holds_for": b.kind,
            "end": b.end, "closed_form": None if b.form is None else str(b.form), "value": b.real, "note": b.note,
        } for b in answer.boundaries],
        "symbols": {s: {"meaning": m, "value": number(v)} for s, (m, v) in answer.symbols.items()},
        "limit": answer.limit,
        "notes": _described([c.text for c in answer.constraints]) + answer.notes,
    })
    return doc


def _doc(analysis, question: dict) -> dict:
    from symcost.present.json import conventions

    g = analysis.graph
    return {
        "schema": SCHEMA,
        "model": {"name": g.name, "title": g.title, "file": g.file},
        "phase": analysis.request.phase,
        "conventions": conventions(analysis),
        "given": dict(analysis.values),
        "device": None if analysis.device is None else analysis.device.name,
        "question": question,
    }


# ---- crossovers ------------------------------------------------------------------------------------------------
def crossover_text(analysis, answer) -> str:
    from symcost.present.text import forms_for

    forms = forms_for(analysis.report)
    c, x = answer.constraint, answer.unknown
    lines = _header(analysis) + ["", f"{x} where {c.text}"]
    if not answer.roots:
        lines.append(f"  the sides never meet for {x} > 0: {c.lhs.text} is always "
                     f"{'smaller' if answer.below == '<' else 'larger'}")
    for form, value in answer.roots:
        shown = f"{form_text(forms, form)} = " if form is not None else ""
        lines.append(f"  {x}* = {shown}{real(value)}" + ("" if form is not None else "  (no closed form found)"))
    unit = _unit(c.lhs, c.rhs)
    for n, lhs, rhs in answer.checks:
        rel = "<" if lhs < rhs else ">" if lhs > rhs else "="
        lines.append(f"  at {x} = {units.integer(n)}: {c.lhs.text} = {amount(lhs, unit)} {rel} "
                     f"{c.rhs.text} = {amount(rhs, unit)}")
    for note in answer.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines) + "\n"


def crossover_json(analysis, answer) -> dict:
    from symcost.present.json import number

    doc = _doc(analysis, {"kind": "crossover", "unknown": answer.unknown, "equation": answer.constraint.text})
    doc.update({
        "roots": [{"closed_form": None if f is None else str(f), "value": v} for f, v in answer.roots],
        "checks": [{"value": n, "lhs": number(lhs), "rhs": number(rhs)} for n, lhs, rhs in answer.checks],
        "notes": answer.notes,
    })
    return doc


# ---- limits ----------------------------------------------------------------------------------------------------
def leading_text(analysis, answer) -> str:
    from symcost.present.text import forms_for

    forms = forms_for(analysis.report)
    x = answer.unknown
    lines = _header(analysis) + ["", f"{answer.term.text} as {x} → ∞"]
    lead = form_text(forms, answer.leading) if answer.degree is not None else str(answer.leading)
    lines.append(f"  leading term   {lead}" + (f"   (degree {answer.degree} in {x})" if answer.degree is not None
                                                 else ""))
    lines.append(f"  limit          {_limit_text(forms, answer.limit)}")
    if answer.value is not None:
        v, lv = units.exact(answer.value), units.exact(answer.leading_value)
        share = f" ({units.percent(lv / v)} of the value)" if v and lv is not None else ""
        lines.append(f"  at {x} = {analysis.values[x]}: {units.plain(v)}; the leading term gives "
                     f"{units.plain(lv)}{share}")
    lines += [f"  note: {n}" for n in answer.notes]
    return "\n".join(lines) + "\n"


def _limit_text(forms, e) -> str:
    if e in (sp.oo, -sp.oo):
        return "∞" if e == sp.oo else "−∞"
    if e.is_number:
        return units.plain(units.exact(e)) if e.is_Rational else str(e)
    return form_text(forms, e)


def leading_json(analysis, answer) -> dict:
    from symcost.present.json import number

    doc = _doc(analysis, {"kind": "limit", "unknown": answer.unknown, "term": answer.term.text})
    lim = answer.limit
    doc.update({
        "leading_term": str(answer.leading),
        "degree": answer.degree,
        "limit": "oo" if lim == sp.oo else "-oo" if lim == -sp.oo else str(lim),
        "limit_value": number(lim) if lim.is_number and lim.is_finite else None,
        "value": number(answer.value), "leading_value": number(answer.leading_value),
        "notes": list(answer.notes),
    })
    return doc


def render(analysis, answer, fmt: str = "text") -> str:
    from symcost.analysis.solve import BoundAnswer, Crossover

    kind = "bound" if isinstance(answer, BoundAnswer) else "crossover" if isinstance(answer, Crossover) else "leading"
    if fmt == "json":
        make = {"bound": bound_json, "crossover": crossover_json, "leading": leading_json}[kind]
        return json.dumps(make(analysis, answer), indent=2) + "\n"
    return {"bound": bound_text, "crossover": crossover_text, "leading": leading_text}[kind](analysis, answer)
