"""Compare two Reports — two specs, or one spec under two settings — metric by metric, symbolically.

For each metric: A, B, the difference B − A (expanded, and factored for display) and the ratio B / A
(cancelled and factored). Simplification uses `sympy.cancel`/`factor`: this is off the hot path.

Variants of one spec (`derive_variants`) take `--set`-style items. A dimension set to a number in only one
variant (or to different numbers) is substituted into that variant's closed forms, so the difference shows its
effect (`kv=8` vs `kv=32`); a dimension set to the same number in both is only evaluated. A value naming another
dimension (`kv=a`: multi-head attention; `kv=1`: multi-query) substitutes that dimension's symbol — never text
parsed as an expression: the name is looked up among the spec's dims and the symbol made by `make_symbol`.
Options (`tied=true`) are build options of their variant.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import sympy as sp

from symcost.cost.record import METRIC_UNITS
from symcost.cost.accounting import BlockReport, Report, derive
from symcost.model.dims import make_symbol
from symcost.errors import SymcostError, suggest
from symcost.analysis.evaluate import Evaluator, parse_assignments
from symcost.model.graph import build
from symcost.lang.parse import load
from symcost.present.forms import Forms, human

Expr = sp.Expr


@dataclass(frozen=True)
class Row:
    """One metric of the comparison (`path` None: model totals; else the op's path)."""

    metric: str
    path: str | None
    a: Expr
    b: Expr
    diff: Expr  # B − A, expanded
    diff_factored: Expr
    ratio: Expr | None  # B / A, cancelled and factored; None when A is 0
    order: tuple = field(default=(), compare=False)  # dim symbols in display order


def _order(*reports) -> tuple:
    out: list = []
    for r in reports:
        for d in r.env.dims.values():
            if d.symbol not in out:
                out.append(d.symbol)
    return tuple(out)


def compare_exprs(a: Expr, b: Expr, metric: str = "", path: str | None = None, order: tuple = ()) -> Row:
    """Difference and ratio of two closed forms."""
    a, b = _expr(a), _expr(b)
    diff = sp.expand(b - a)
    ratio = None if a == 0 else sp.factor(sp.cancel(b / a))
    return Row(metric, path, a, b, diff, sp.factor(diff) if diff != 0 else diff, ratio, order)


def _expr(x) -> Expr:
    if isinstance(x, bool) or not isinstance(x, (int, sp.Basic)):
        raise SymcostError(f"expected an integer or a SymPy expression, not {type(x).__name__}")
    return sp.Integer(x) if isinstance(x, int) else x


def compare(a: Report, b: Report, metrics=None, skip_zero: bool = True) -> list[Row]:
    """Model totals of two Reports, one Row per metric (default: every metric both carry; with skip_zero,
    not those that are 0 on both sides, such as kv_cache_bytes in training)."""
    names = _metrics(a, b, metrics)
    order = _order(a, b)
    return [
        compare_exprs(a.totals[m], b.totals[m], m, None, order)
        for m in names
        if not (skip_zero and metrics is None and a.totals[m] == 0 and b.totals[m] == 0)
    ]


def compare_ops(a: Report, b: Report, metrics=None, changed_only: bool = True) -> list[Row]:
    """Per-op rows, ops matched by path (an op missing on one side counts 0 there), in A's order then B's.

    The per-instance costs are compared; an op's repeat count is not folded in.
    """
    names = _metrics(a, b, metrics)
    order = _order(a, b)
    ops_a = {r.node.path: r for r in a.ops}
    ops_b = {r.node.path: r for r in b.ops}
    paths = list(ops_a) + [p for p in ops_b if p not in ops_a]
    rows = []
    zero = sp.Integer(0)
    for p in paths:
        for m in names:
            ea = ops_a[p].metrics.get(m, zero) if p in ops_a else zero
            eb = ops_b[p].metrics.get(m, zero) if p in ops_b else zero
            if changed_only and sp.expand(ea - eb) == 0:
                continue
            rows.append(compare_exprs(ea, eb, m, p, order))
    return rows


def _metrics(a: Report, b: Report, metrics) -> list[str]:
    common = [m for m in a.totals if m in b.totals]
    if metrics is None:
        return common
    for m in metrics:
        if m not in common:
            raise SymcostError(f"unknown metric '{m}'", None, suggest(m, common) or f"metrics: {', '.join(common)}")
    return list(metrics)


# ---- variants of one spec --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    label: str
    report: Report  # closed forms with this variant's differing dims substituted
    evaluator: Evaluator  # this variant's numeric dims (common and its own)
    values: dict  # dim name -> int
    options: dict  # option name -> bool
    substitutions: dict  # dim name -> what replaced it in the closed forms (an Integer or a dim's expression)


def derive_variants(
    spec_path,
    set_a: list[str],
    set_b: list[str],
    *,
    common: list[str] = (),
    spec_b=None,
    convention: str = "fma",
    dtype: str | None = None,
    keep: tuple = (),
    phase: str = "train",
    settings_a: dict | None = None,
    settings_b: dict | None = None,
    **settings,
) -> tuple[Variant, Variant]:
    """Derive one spec (or `spec_path` vs `spec_b`) under two sets of `--set` items, plus items common to both.

    `phase` goes to graph.build; `settings` (recompute, flash, tp, sp, causal) to derive.derive.
    """
    path_b = spec_b if spec_b is not None else spec_path
    mod_a = load(spec_path)
    mod_b = load(path_b) if spec_b is not None else mod_a
    env_a, env_b = build(mod_a, dtype=dtype, phase=phase).env, build(mod_b, dtype=dtype, phase=phase).env
    pa = _parse([*common, *set_a], env_a, keep)
    pb = _parse([*common, *set_b], env_b, keep)
    # a dim's setting differs when the two sides set it differently (or only one side sets it)
    names = set(pa["settings"]) | set(pb["settings"])
    differ = {n for n in names if pa["settings"].get(n) != pb["settings"].get(n)}

    def make(mod, env, parsed, items, own) -> Variant:
        graph = build(mod, options=parsed["options"], dtype=dtype, phase=phase)
        report = derive(graph, convention, tuple(keep), **{**settings, **(own or {})})
        subs = {}
        for name, setting in parsed["settings"].items():
            if setting[0] == "dim":
                subs[name] = parsed["targets"][name]
            elif name in differ:
                subs[name] = sp.Integer(setting[1])
        mapping = {make_symbol(n): v for n, v in subs.items()}
        ev = Evaluator(graph.env, parsed["values"])
        label = " ".join(items) if items else "as written"
        return Variant(label, substitute(report, mapping), ev, parsed["values"], parsed["options"], subs)

    label_a = [*set_a, *(f"{k}={v}" for k, v in (settings_a or {}).items())]
    label_b = [*set_b, *(f"{k}={v}" for k, v in (settings_b or {}).items())]
    return make(mod_a, env_a, pa, label_a, settings_a), make(mod_b, env_b, pb, label_b, settings_b)


def _parse(items: list[str], env, keep) -> dict:
    """Split --set items into numeric ones (parse_assignments) and dim-to-dim ones (kv=a); later items win."""
    numeric, symbolic = [], {}
    for item in items:
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if eq and name in env.dims and raw.isidentifier():
            symbolic[name] = raw
            numeric = [i for i in numeric if i.partition("=")[0].strip() != name]
        else:
            numeric.append(item)
            symbolic.pop(name, None)
    values, options = parse_assignments(numeric, env)
    targets = {}
    for name, other in symbolic.items():
        dim = env.dims[name]
        if dim.definition is not None:
            raise SymcostError(f"'{name}' is derived ({name} = {dim.definition}); set the dimensions it is made of")
        if other not in env.dims:
            raise SymcostError(
                f"dimension '{name}' takes a positive integer or the name of another dimension, not '{other}'",
                None, suggest(other, env.dims),
            )
        target = env.dims[other]
        targets[name] = target.symbol if target.definition is None or other in keep else target.definition
    settings = {n: ("int", v) for n, v in values.items()}
    settings.update({n: ("dim", symbolic[n]) for n in symbolic})
    return {"values": values, "options": options, "targets": targets, "settings": settings}


class _SubstitutedOp:
    """An op report whose per-instance metrics have had dims substituted (node and saved are the original's)."""

    __slots__ = ("node", "saved", "metrics")

    def __init__(self, op, metrics: dict):
        self.node, self.saved, self.metrics = op.node, op.saved, metrics


def substitute(report: Report, mapping: dict) -> Report:
    """A copy of a Report with symbols replaced (xreplace) in totals, block and op metrics, re-expanded.

    `mapping` is {symbol: expression}, symbols made with make_symbol. The graph (and so `op.node.cost`) is
    the original's: only the closed forms change.
    """
    if not mapping:
        return report

    def sub(metrics: dict) -> dict:
        return {m: sp.expand(e.xreplace(mapping)) for m, e in metrics.items()}

    blocks = [BlockReport(b.path, b.block, b.repeat.xreplace(mapping), sub(b.metrics)) for b in report.blocks]
    ops = [_SubstitutedOp(o, sub(o.metrics)) for o in report.ops]
    return replace(report, totals=sub(report.totals), blocks=blocks, ops=ops)


# ---- rendering -------------------------------------------------------------------------------------------
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


def _val(ev, expr):
    if expr is None:
        return None
    v = ev(expr) if ev is not None else expr
    if isinstance(v, int):
        return v
    if isinstance(v, sp.Expr) and v.is_number:
        return int(v) if v.is_Integer else float(v)
    return None


def row_values(row: Row, evaluator_a=None, evaluator_b=None) -> dict:
    """Numbers for A and B (each under its own evaluator), B − A and B / A; None where a dim is unset."""
    va, vb = _val(evaluator_a, row.a), _val(evaluator_b, row.b)
    both = va is not None and vb is not None
    return {
        "a": va, "b": vb,
        "diff": (vb - va) if both else None,
        "ratio": (vb / va) if both and va != 0 else None,
    }


def render(rows: list[Row], evaluator_a=None, evaluator_b=None, fmt: str = "text", labels=("A", "B")) -> str:
    """The comparison as text (Unicode closed forms, values where the dims are set) or JSON."""
    if fmt == "json":
        out = {"schema": "symcost.compare/1", "labels": list(labels), "rows": []}
        for r in rows:
            v = row_values(r, evaluator_a, evaluator_b)
            out["rows"].append({
                "metric": r.metric, "path": r.path,
                "a": {"expr": str(r.a), "value": v["a"]},
                "b": {"expr": str(r.b), "value": v["b"]},
                "diff": {"expr": str(r.diff), "factored": str(r.diff_factored), "value": v["diff"]},
                "ratio": {"expr": None if r.ratio is None else str(r.ratio), "value": v["ratio"]},
            })
        return json.dumps(out, indent=2) + "\n"
    if fmt != "text":
        raise SymcostError(f"unknown format '{fmt}'; use text or json", None, suggest(fmt, ("text", "json")))
    forms = _forms(rows)
    la, lb = labels
    width = max(len(la), len(lb), 5) + 2
    lines = [f"A: {la}", f"B: {lb}", ""]
    for r in rows:
        unit = METRIC_UNITS.get(r.metric, "")
        v = row_values(r, evaluator_a, evaluator_b)
        lines.append(r.metric if r.path is None else f"{r.path}  {r.metric}")

        def line(tag: str, text: str, value) -> str:
            shown = f"   = {value}" if value is not None else ""
            return f"  {tag.ljust(width)}{text}{shown}"

        lines.append(line("A", forms.text(r.a), _human(v["a"], unit)))
        lines.append(line("B", forms.text(r.b), _human(v["b"], unit)))
        lines.append(line("B − A", pretty(r.diff_factored, forms) if r.diff != 0 else "0", _human(v["diff"], unit, signed=True)))
        ratio = "—" if r.ratio is None else pretty(r.ratio, forms)
        lines.append(line("B / A", ratio, None if v["ratio"] is None else f"{v['ratio']:.4g}"))
    return "\n".join(lines) + "\n"


def _human(v, unit: str, signed: bool = False):
    if v is None:
        return None
    text = human(v, unit) if unit else f"{v:,}" if isinstance(v, int) else f"{v:g}"
    if unit == "" and isinstance(v, int):
        text = f"{human(v, '')} ({v:,})" if abs(v) >= 1000 else f"{v}"
    if signed and v > 0:
        text = "+" + text
    return text

