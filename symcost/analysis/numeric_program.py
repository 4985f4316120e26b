"""Integer-form closed forms as one flat program of numpy ufunc calls over registers, shared terms computed once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import sympy as sp

from symcost.analysis.numeric_form import APPLIED, CHAINED, RELATIONS, Form, bound
from symcost.errors import SymcostError
from symcost.model.dims import placeholders

# Step 4 of the notes in symcost/analysis/numeric.py: no text is parsed or evaluated.


def _ufuncs() -> dict:
    import numpy as np

    return {
        "add": np.add, "sub": np.subtract, "mul": np.multiply, "neg": np.negative, "abs": np.absolute,
        "max": np.maximum, "min": np.minimum, "floordiv": np.floor_divide, "where": np.where,
        "and": np.logical_and, "or": np.logical_or, "not": np.logical_not,
        sp.StrictLessThan: np.less, sp.LessThan: np.less_equal, sp.StrictGreaterThan: np.greater,
        sp.GreaterThan: np.greater_equal, sp.Equality: np.equal, sp.Unequality: np.not_equal,
    }


class _Emitter:
    """Walks expression trees into steps (ufunc, argument registers, output register); equal nodes share a register."""

    def __init__(self, args: Sequence[sp.Symbol]):
        self.ops = _ufuncs()
        self.regs: dict = {a: i for i, a in enumerate(args)}
        self.consts: dict[int, int] = {}  # value → register
        self.steps: list[tuple] = []
        self.size = len(args)

    def fresh(self) -> int:
        self.size += 1
        return self.size - 1

    def const(self, value: int) -> int:
        if value not in self.consts:
            self.consts[value] = self.fresh()
        return self.consts[value]

    def emit(self, op, *args: int) -> int:
        out = self.fresh()
        self.steps.append((self.ops[op], args, out))
        return out

    def node(self, expr) -> int:
        if expr in (sp.true, sp.false):
            return self.const(int(expr is sp.true))
        if expr.is_Integer:
            return self.const(int(expr))
        if expr not in self.regs:
            self.regs[expr] = self._walk(expr)
        return self.regs[expr]

    def _walk(self, expr) -> int:
        if isinstance(expr, sp.Add):
            return self._sum(expr.args)
        if isinstance(expr, sp.Mul):
            coeff, rest = expr.as_coeff_Mul()
            if coeff == -1:
                return self.emit("neg", self.node(rest))
            return self._chain("mul", [self.node(f) for f in sp.Mul.make_args(rest)] + [self.const(int(coeff))] * (coeff != 1))
        if isinstance(expr, sp.Pow):
            return self._power(self.node(expr.base), int(expr.exp))
        if isinstance(expr, RELATIONS):
            return self.emit(type(expr), self.node(expr.lhs), self.node(expr.rhs))
        if type(expr) in CHAINED:
            return self._chain(CHAINED[type(expr)], [self.node(a) for a in expr.args])
        if type(expr) in APPLIED:
            return self.emit(APPLIED[type(expr)], *(self.node(a) for a in expr.args))
        raise SymcostError(f"cannot compile {type(expr).__name__} in {expr}")

    def _sum(self, terms) -> int:
        """Positive terms added, negative ones subtracted (so −1·x costs no multiplication)."""
        plus, minus = [], []
        for t in terms:
            coeff, rest = t.as_coeff_Mul()
            (minus if coeff < 0 else plus).append(-t if coeff < 0 else t)
        if not plus:
            return self.emit("neg", self._sum(minus))
        acc = self._chain("add", [self.node(t) for t in plus])
        for t in minus:
            acc = self.emit("sub", acc, self.node(t))
        return acc

    def _chain(self, op, regs: list[int]) -> int:
        acc = regs[0]
        for r in regs[1:]:
            acc = self.emit(op, acc, r)
        return acc

    def _power(self, base: int, k: int) -> int:
        """base**k by squaring (exact in float64 where pow() might not be)."""
        acc = None
        while k:
            if k & 1:
                acc = base if acc is None else self.emit("mul", acc, base)
            k >>= 1
            if k:
                base = self.emit("mul", base, base)
        return acc


@dataclass(frozen=True)
class Output:
    """Registers of one metric W + N / D: the bound covers W and N together; N and D are None without a fraction."""

    whole: int
    num: int | None
    den: int | None
    bound: int
    den_bound: int | None
    signed: bool = False  # W, N or D may be negative


@dataclass(frozen=True)
class Program:
    inputs: int  # registers 0..inputs-1 hold the arguments
    size: int
    consts: tuple[tuple[int, int], ...]  # (register, value)
    steps: tuple[tuple, ...]  # (ufunc, argument registers, output register, registers dead afterwards)
    outputs: tuple[Output, ...]

    def run(self, inputs: list, const) -> list:
        regs = [None] * self.size
        regs[: self.inputs] = inputs
        for r, v in self.consts:
            regs[r] = const(v)
        for fn, args, out, dead in self.steps:
            regs[out] = fn(*[regs[a] for a in args])
            for r in dead:
                regs[r] = None
        return regs


def program(forms: list[Form], args: Sequence[sp.Symbol]) -> Program:
    """One program computing, for every metric, its W (N and D) and the bounds the exactness rule checks."""
    exprs = []
    for f in forms:
        if f.den == 1:
            exprs += [f.whole + f.num, bound(f.whole + f.num)]
        else:
            exprs += [f.whole, f.num, f.den, bound(f.whole) + bound(f.num), bound(f.den)]
    replacements, reduced = sp.cse(exprs, symbols=placeholders("t"), order="none")
    em = _Emitter(args)
    for sym, expr in replacements:
        em.regs[sym] = em.node(expr)
    regs = iter(em.node(e) for e in reduced)
    outputs = []
    for f in forms:
        if f.den == 1:
            whole, majorant = next(regs), next(regs)
            outputs.append(Output(whole, None, None, majorant, None))
        else:
            signed = not all(e.is_nonnegative for e in (f.whole, f.num, f.den))
            outputs.append(Output(*(next(regs) for _ in range(5)), signed))
    return Program(len(args), em.size, tuple((r, v) for v, r in em.consts.items()), _liveness(em.steps, outputs), tuple(outputs))


def _liveness(steps: list[tuple], outputs: list[Output]) -> tuple:
    """Each step with the registers no later step (nor any output) reads."""
    keep = {r for o in outputs for r in (o.whole, o.num, o.den, o.bound, o.den_bound) if r is not None}
    last: dict[int, int] = {}
    for i, (_, args, _, ) in enumerate(steps):
        for a in args:
            last[a] = i
    dead: dict[int, list[int]] = {}
    for r, i in last.items():
        if r not in keep:
            dead.setdefault(i, []).append(r)
    return tuple((fn, args, out, tuple(dead.get(i, ()))) for i, (fn, args, out) in enumerate(steps))
