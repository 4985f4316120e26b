"""Compare two Reports — two specs, or one spec under two settings — metric by metric, symbolically.

For each metric: A, B, the difference B − A (expanded, and factored for display) and the ratio B / A
(cancelled and factored). Simplification uses `sympy.cancel`/`factor`: this is off the hot path.

Variants of one spec (`variants`) take `--set`-style items. A dimension set to a number in only one
variant (or to different numbers) is substituted into that variant's closed forms, so the difference shows its
effect (`kv=8` vs `kv=32`); a dimension set to the same number in both is only evaluated. A value naming another
dimension (`kv=a`: multi-head attention; `kv=1`: multi-query) substitutes that dimension's symbol — never text
parsed as an expression: the name is looked up among the spec's dims and the symbol made by `make_symbol`.
Options (`tied=true`) are build options of their variant.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp

from symcost.cost.accounting import Report
from symcost.errors import SymcostError, suggest

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
    ratio = None if a == 0 else _factored(sp.cancel(b / a) if _small(a, b) else b / a)
    return Row(metric, path, a, b, diff, _factored(diff) if diff != 0 else diff, ratio, order)


FACTOR_TERMS = 8  # beyond this many terms a form is shown with its common factors only (full factoring is slow)


def _small(*exprs) -> bool:
    return sum(len(sp.Add.make_args(sp.expand(e))) for e in exprs) <= FACTOR_TERMS


def _factored(e: Expr) -> Expr:
    """A form for display: fully factored when small, else with its common factors pulled out."""
    num, den = sp.fraction(sp.together(e))
    if _small(num, den):
        return sp.factor(e)
    return sp.factor_terms(num) / sp.factor_terms(den)


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
    analysis: object  # symcost.api.Analysis of this side, with its own settings
    report: Report  # its closed forms with the dims this side sets differently substituted
    values: object  # symcost.api.Values at this side's dims (the common ones and its own)
    substitutions: dict  # dim name -> what replaced it in the closed forms (an Integer or a dim's expression)


def variants(req, spec_b, items_a, items_b) -> tuple[Variant, Variant]:
    """Derive one spec (or req's spec against `spec_b`) under two sets of items, each `NAME=VALUE`: a dim, an
    option, a dim set to another dim (kv=a), or a setting of symcost.settings.TABLE for that side (tp=8).

    A dim set to a number on one side only, or to different numbers, is substituted into that side's closed
    forms, so the difference shows its effect (kv=8 vs kv=32); a dim set alike on both is only evaluated."""
    from symcost.api import run
    from symcost.settings import setting_from_text, with_values

    sides = []
    for spec, items in ((req.spec, items_a), (spec_b or req.spec, items_b)):
        own, rest = {}, []
        for item in items:
            name, eq, raw = item.partition("=")
            key = name.strip().replace("-", "_")
            if eq and key in _SIDE_SETTINGS:
                own[key] = setting_from_text(key, raw.strip())
            else:
                rest.append(item)
        sides.append((spec, own, rest, [*items]))
    parsed = []
    for spec, own, rest, items in sides:
        side_req = with_values(req, spec=spec, **own)
        numeric, symbolic = _split_items(rest)
        analysis = run(with_values(side_req, values=(*req.values, *numeric)))
        parsed.append((analysis, dict(numeric), symbolic, items))
    set_a = {n: v for n, v in parsed[0][1].items()} | {n: ("dim", v) for n, v in parsed[0][2].items()}
    set_b = {n: v for n, v in parsed[1][1].items()} | {n: ("dim", v) for n, v in parsed[1][2].items()}
    differ = {n for n in set(set_a) | set(set_b) if set_a.get(n) != set_b.get(n)}
    return tuple(_variant(a, numeric, symbolic, items, differ) for a, numeric, symbolic, items in parsed)


def _variant(analysis, numeric: dict, symbolic: dict, items, differ) -> Variant:
    env = analysis.env
    subs = {}
    for name, other in symbolic.items():
        subs[name] = _target(env, name, other, analysis.request.keep)
    for name, raw in numeric.items():
        if name in differ and name in env.dims:
            subs[name] = sp.Integer(int(raw))
    mapping = {env.dims[n].symbol: v for n, v in subs.items()}
    return Variant(" ".join(items) if items else "as written", analysis, substitute(analysis.report, mapping),
                   analysis.at(), subs)


_SIDE_SETTINGS = ("phase", "dtype", "flops", "causal", "other_flops", "embedding_flops", "recompute",
                  "flash_attention", "tp", "sp", "vocab_parallel", "pp", "stage", "ep", "keep", "activations", "weights",
                  "quantize", "group", "scale", "zero_point")  # not kv: a dimension of most specs


def _split_items(items) -> tuple[list, dict]:
    """NAME=VALUE items into (name, value) pairs for numbers and options, and dim-to-dim ones (kv=a)."""
    numeric, symbolic = [], {}
    for item in items:
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or not name or not raw:
            raise SymcostError(f"compare expects NAME=VALUE, got '{item[:80]}'")
        if raw.isascii() and raw.isidentifier() and raw.lower() not in ("true", "false"):
            symbolic[name] = raw
            numeric = [(n, v) for n, v in numeric if n != name]
        else:
            numeric.append((name, raw))
            symbolic.pop(name, None)
    return numeric, symbolic


def _target(env, name: str, other: str, keep) -> Expr:
    """The expression a dim set to another dim (kv=a) stands for; never circular."""
    if name not in env.dims:
        raise SymcostError(f"'{name}' is neither a dimension nor an option of this spec", None, suggest(name, env.dims))
    dim = env.dims[name]
    if dim.definition is not None:
        raise SymcostError(f"'{name}' is derived ({name} = {dim.definition}); set the dimensions it is made of")
    if other not in env.dims:
        raise SymcostError(f"dimension '{name}' takes a positive integer or the name of another dimension, not "
                           f"'{other}'", None, suggest(other, env.dims))
    target = env.dims[other]
    value = target.symbol if target.definition is None or other in keep else target.definition
    if dim.symbol in value.free_symbols:
        raise SymcostError(f"{name}={other} is circular: {other} = {target.definition} is made of {name}")
    return value


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

    blocks = [replace(b, repeat=b.repeat.xreplace(mapping), metrics=sub(b.metrics)) for b in report.blocks]
    ops = [_SubstitutedOp(o, sub(o.metrics)) for o in report.ops]
    return replace(report, totals=sub(report.totals), blocks=blocks, ops=ops)
