"""Quantities by name (metrics, block metrics, analyses) and the small language of terms and constraints.

A constraint is `TERM OP TERM` with OP one of `<=  <  >=  >  =`; a term is a sum of products of factors:

    factor  := NAME | BLOCK.METRIC | NUMBER [UNIT] | device | ( term ) | factor ^ INTEGER
    product := factor ( (* | /) factor )*
    term    := product ( (+ | -) product )*

NAME is a quantity of QUANTITIES, a metric of the report (`kv_cache_bytes`, `flops_fwd`, …) or a dimension
(`h`, `s`). BLOCK.METRIC is a metric of one instance of a block, by its path (`layer/attention.flops_fwd`), the
last part of its path or its block name (`attention.flops_fwd`, `mlp.flops_fwd`). NUMBER is decimal, with an
optional exponent (`80e9`), read exactly; UNIT is one of UNITS (`24GB`, `24 GiB`, `50ms`). `device` is the
device's memory in bytes (with --device). Division between names needs spaces or a product form where a block
path could be read (`flops_fwd / tokens`). Nothing is evaluated as code: the text is tokenised and the
expression built node by node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from symcost.errors import SymcostError, suggest

MAX_TEXT = 500  # characters of one constraint or term
MAX_DEPTH = 20  # nested parentheses

UNITS: dict[str, tuple[int | Fraction, str]] = {
    "B": (1, "bytes"), "kB": (10**3, "bytes"), "KB": (10**3, "bytes"), "MB": (10**6, "bytes"),
    "GB": (10**9, "bytes"), "TB": (10**12, "bytes"), "PB": (10**15, "bytes"),
    "KiB": (2**10, "bytes"), "MiB": (2**20, "bytes"), "GiB": (2**30, "bytes"), "TiB": (2**40, "bytes"),
    "s": (1, "seconds"), "ms": (Fraction(1, 10**3), "seconds"), "us": (Fraction(1, 10**6), "seconds"),
    "µs": (Fraction(1, 10**6), "seconds"), "ns": (Fraction(1, 10**9), "seconds"),
    "k": (10**3, "count"), "M": (10**6, "count"), "G": (10**9, "count"), "T": (10**12, "count"),
}

# name → (what it is, its unit kind); the expressions come from `quantity`
QUANTITIES = {
    "memory_bytes": ("memory per device (docs/analysis.md): training state + activations (train), or weights "
                     "+ KV cache + a step's live activations (prefill, decode), plus any reserve", "bytes"),
    "device_memory": ("the device's memory (with --device); `device` for short", "bytes"),
    "training_state_bytes": ("weights + gradients + optimizer state per device (train)", "bytes"),
    "gradient_bytes": ("gradients per device (train)", "bytes"),
    "optimizer_bytes": ("optimizer state per device, master weights included (train)", "bytes"),
    "dp_comm_bytes": ("bytes each device sends per step for data parallelism (train)", "bytes"),
    "train_flops": ("forward + backward FLOPs of one step, recomputation excluded (model FLOPs)", "flops"),
    "tokens": ("tokens one step processes: b·s (train, prefill) or b (decode)", "count"),
    "time_lower_bound_s": ("the phase's time lower bound on the device (with --device); `time` for short",
                           "seconds"),
    "compute_time_s": ("FLOPs / peak (with --device)", "seconds"),
    "memory_time_s": ("bytes that must move / memory bandwidth (with --device)", "seconds"),
    "comm_time_s": ("communication bytes / interconnect bandwidth (with --device)", "seconds"),
    "tokens_per_s": ("the phase's throughput upper bound, tokens / time (with --device)", "rate"),
}
ALIASES = {"time": "time_lower_bound_s", "device": "device_memory"}
METRIC_KINDS = {"B": "bytes", "FLOP": "flops", "": "count"}

OPS = ("<=", ">=", "==", "<", ">", "=")
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:\s*(?P<unit>[A-Za-zµ]+))? |
    (?P<block>(?:[A-Za-z_]\w*/)*[A-Za-z_]\w*\.[A-Za-z_]\w*) |
    (?P<name>[A-Za-z_]\w*) |
    (?P<op><=|>=|==|[<>=*/+\-()^]))""", re.VERBOSE)


def memory_bytes(analysis) -> sp.Expr:
    """Memory per device (symcost.analysis.memory): weights, gradients, optimizer state and activations in
    training; weights, KV cache and the live activations of a step when generating; plus any reserve."""
    return analysis.memory.total


def quantity(analysis, name: str, symbols: dict | None = None) -> sp.Expr:
    """The closed form of a quantity of QUANTITIES, a metric, `BLOCK.METRIC` or a dimension (`symbols`: quantities
    to stand as given expressions instead, such as the device's memory as a symbol M)."""
    name = ALIASES.get(name, name)
    if symbols and name in symbols:
        return symbols[name]
    if "." in name:
        return block_metric(analysis, name)
    t = analysis.totals
    if name in t:
        return t[name]
    if name in QUANTITIES:
        return _analysis_quantity(analysis, name)
    if name in analysis.dims:
        dim = analysis.dims[name]
        return dim.definition if dim.definition is not None else dim.symbol
    raise SymcostError(f"unknown quantity '{name}'", None,
                       suggest(name, [*QUANTITIES, *ALIASES, *t, *analysis.dims]) or
                       "see `symcost solve --help` for the quantities")


def _analysis_quantity(analysis, name: str) -> sp.Expr:
    t = analysis.totals
    if name == "memory_bytes":
        return memory_bytes(analysis)
    if name == "train_flops":
        return t["flops_fwd"] + t["flops_bwd"]
    if name == "tokens":
        b, s = (_dim(analysis, n) for n in ("b", "s"))
        return b if analysis.request.phase == "decode" else b * s
    if name in ("training_state_bytes", "gradient_bytes", "optimizer_bytes", "dp_comm_bytes"):
        state = analysis.training
        if state is None:
            raise SymcostError(f"{name} is a training quantity: use --phase train (or give --zero or --dp)")
        if name == "dp_comm_bytes":
            return analysis.dp_comm_bytes
        return state.total if name == "training_state_bytes" else getattr(state, name)
    if analysis.device is None:
        raise SymcostError(f"{name} needs a device: give one with --device (see `symcost devices`)")
    if name == "device_memory":
        return analysis.device.memory_bytes
    summary = analysis.summary
    return {"time_lower_bound_s": summary.time, "compute_time_s": summary.compute_time,
            "memory_time_s": summary.memory_time, "comm_time_s": summary.comm_time,
            "tokens_per_s": summary.tokens_per_s}[name]


def _dim(analysis, name: str) -> sp.Expr:
    dim = analysis.dims.get(name)
    if dim is None:
        return sp.Integer(1)
    return dim.definition if dim.definition is not None else dim.symbol


def block_metric(analysis, ref: str) -> sp.Expr:
    """A metric of one instance of a block: `PATH.METRIC`, PATH a block's path, the last part of it, or its
    block name (unique among the blocks)."""
    path, _, metric = ref.rpartition(".")
    blocks = analysis.report.blocks
    found = [b for b in blocks if b.path == path]
    if not found:
        found = [b for b in blocks if b.name == path or b.block == path]
    if not found:
        found = [b for b in blocks if path in b.name]
    if not found:
        raise SymcostError(f"no block '{path}' in {analysis.name}", None,
                           "blocks: " + ", ".join(b.path for b in blocks) if blocks else "the spec has no blocks")
    if len(found) > 1:
        raise SymcostError(f"'{path}' names {len(found)} blocks: {', '.join(b.path for b in found)}; give the path")
    block = found[0]
    if metric not in block.metrics:
        raise SymcostError(f"unknown metric '{metric}' of block {block.path}", None, suggest(metric, block.metrics))
    return block.metrics[metric]


def kind_of(analysis, name: str) -> str | None:
    """The unit kind of a quantity (bytes, seconds, flops, count, rate), None when unknown."""
    from symcost.cost.record import METRIC_UNITS

    name = ALIASES.get(name, name)
    metric = name.rpartition(".")[2]
    if metric in METRIC_UNITS:
        return METRIC_KINDS.get(METRIC_UNITS[metric])
    return QUANTITIES[name][1] if name in QUANTITIES else None


# ---- the term language --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    text: str
    expr: sp.Expr
    kind: str | None  # unit kind when the term is one name or one number with a unit


@dataclass(frozen=True)
class Constraint:
    text: str
    lhs: Term
    op: str  # <=, <, >=, >, =
    rhs: Term

    def holds(self, left, right) -> bool:
        """The comparison on two exact numbers."""
        return {"<=": left <= right, "<": left < right, ">=": left >= right, ">": left > right,
                "=": left == right}[self.op]


def _tokens(text: str) -> list[tuple[str, str, str | None]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SymcostError(f"cannot read '{text[pos:pos + 20].strip()}' in '{text}'", None,
                               "a constraint is NAME OP VALUE, such as 'memory_bytes <= 24GB'")
        pos = m.end()
        for kind in ("num", "block", "name", "op"):
            if m.group(kind) is not None:
                out.append((kind, m.group(kind), m.group("unit") if kind == "num" else None))
                break
    return out


class _Parser:
    """Recursive descent over the tokens; builds SymPy nodes directly."""

    def __init__(self, analysis, text: str, tokens: list, symbols: dict | None = None):
        self.analysis, self.text, self.tokens, self.i, self.depth = analysis, text, tokens, 0, 0
        self.symbols = symbols

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def fail(self, what: str):
        raise SymcostError(f"{what} in '{self.text}'", None,
                           "a term is a sum of products of names and numbers, such as 'weight_bytes + kv_cache_bytes'")

    def term(self) -> sp.Expr:
        out = self.product()
        while self.peek()[1] in ("+", "-"):
            sign = self.take()[1]
            right = self.product()
            out = sp.Add(out, right if sign == "+" else sp.Mul(sp.Integer(-1), right))
        return out

    def product(self) -> sp.Expr:
        out = self.power()
        while self.peek()[1] in ("*", "/"):
            sign = self.take()[1]
            right = self.power()
            if sign == "/":
                if right == 0:
                    self.fail("division by zero")
                right = sp.Pow(right, -1)
            out = sp.Mul(out, right)
        return out

    def power(self) -> sp.Expr:
        base = self.factor()
        if self.peek()[1] == "^":
            self.take()
            kind, text, unit = self.take()
            if kind != "num" or unit or not text.isdigit() or len(text) > 2:
                self.fail("an exponent must be a whole number below 100")
            return sp.Pow(base, sp.Integer(int(text)))
        return base

    def factor(self) -> sp.Expr:
        kind, text, unit = self.take()
        if kind == "num":
            return number(text, unit)
        if kind in ("name", "block"):
            return quantity(self.analysis, text, self.symbols)
        if text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.fail("parentheses nest too deeply")
            inner = self.term()
            if self.take()[1] != ")":
                self.fail("a '(' is not closed")
            self.depth -= 1
            return inner
        if text == "-":
            return sp.Mul(sp.Integer(-1), self.factor())
        self.fail("expected a name or a number" + (f", not '{text}'" if text else " at the end"))


def number(text: str, unit: str | None) -> sp.Rational:
    """A decimal number (optionally with an exponent and a unit) as an exact Rational."""
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise SymcostError(f"not a number: '{text}'") from None
    if abs(value.numerator) > 10**60 or value.denominator > 10**60:
        raise SymcostError(f"the number '{text}' is out of range")
    if unit is not None:
        if unit not in UNITS:
            raise SymcostError(f"unknown unit '{unit}'", None, suggest(unit, UNITS) or
                               "units: " + ", ".join(UNITS))
        value *= UNITS[unit][0]
    return sp.Rational(value.numerator, value.denominator)


def parse_term(analysis, text: str) -> Term:
    """A term (see the module docstring) as a closed form of the analysis."""
    text = _checked_text(text)
    tokens = _tokens(text)
    parser = _Parser(analysis, text, tokens)
    expr = parser.term()
    if parser.i != len(tokens):
        parser.fail(f"unexpected '{tokens[parser.i][1]}'")
    return Term(text, expr, _kind(analysis, tokens))


def parse_constraint(analysis, text: str, symbols: dict | None = None) -> Constraint:
    """`TERM OP TERM` (see the module docstring); the sides' units must agree when each is one name or number."""
    text = _checked_text(text)
    tokens = _tokens(text)
    at = [i for i, tok in enumerate(tokens) if tok[0] == "op" and tok[1] in OPS]
    if len(at) != 1:
        raise SymcostError(f"a constraint compares two sides with one of <=, <, >=, >, =: '{text}'", None,
                           "for example 'memory_bytes <= device' or 'tokens_per_s >= 2000'")
    op = "=" if tokens[at[0]][1] == "==" else tokens[at[0]][1]
    sides = []
    for part in (tokens[:at[0]], tokens[at[0] + 1:]):
        if not part:
            raise SymcostError(f"a side of '{text}' is empty")
        parser = _Parser(analysis, text, part, symbols)
        expr = parser.term()
        if parser.i != len(part):
            parser.fail(f"unexpected '{part[parser.i][1]}'")
        shown = " ".join(t[1] + (t[2] or "") for t in part)
        sides.append(Term(shown, expr, _kind(analysis, part)))
    lhs, rhs = sides
    if lhs.kind and rhs.kind and lhs.kind != rhs.kind and "count" not in (lhs.kind, rhs.kind):
        raise SymcostError(f"'{text}' compares {lhs.kind} with {rhs.kind}")
    return Constraint(text, lhs, op, rhs)


def _kind(analysis, tokens) -> str | None:
    if len(tokens) != 1:
        return None
    kind, text, unit = tokens[0]
    if kind == "num":
        return UNITS[unit][1] if unit else "count"
    return kind_of(analysis, text)


def _checked_text(text) -> str:
    if not isinstance(text, str):
        raise SymcostError(f"a constraint or term is text, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise SymcostError(f"a constraint or term of {len(text)} characters is too long (at most {MAX_TEXT})")
    if not text.strip():
        raise SymcostError("an empty constraint or term")
    return text.strip()
