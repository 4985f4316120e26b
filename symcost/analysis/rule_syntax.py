"""A stand-in parser for mapping rules until the spec language's expression entry point exists (to be removed)."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from symcost.errors import Loc, SymcostError, register_source
from symcost.lang import syntax as S

GRAMMAR = r"""
?start: disj
?disj: conj
    | disj "or" conj                  -> or_
?conj: negation
    | conj "and" negation             -> and_
?negation: comparison
    | "not" negation                  -> not_
?comparison: sum
    | sum CMP sum                     -> compare
?sum: product
    | sum "+" product    -> add
    | sum "-" product    -> sub
?product: unary
    | product "*" unary  -> mul
    | product "/" unary  -> div
?unary: power
    | "-" unary          -> neg
?power: atom
    | atom "^" unary     -> pow
?atom: NUMBER            -> number
     | "null"            -> null
     | BOOL              -> boolean
     | STRING            -> string
     | NAME              -> name
     | "if" "(" disj "," disj "," disj ")"  -> ifelse
     | NAME "(" disj ("," disj)* ")"  -> func
     | "(" disj ")"
CMP: "==" | "!=" | "<=" | ">=" | "<" | ">"
BOOL.2: "true" | "false"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /[0-9]+(\.[0-9]+)?/
STRING: /"[^"\n]*"/
%import common.WS
%ignore WS
"""


@dataclass(frozen=True)
class Str:
    value: str
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Null:
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Compare:
    op: str
    left: object
    right: object
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    left: object
    right: object
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Not:
    operand: object
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class IfExpr:
    cond: object
    then: object
    orelse: object
    loc: Loc = field(compare=False)


@functools.cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True)


@v_args(meta=True)
class _Build(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _l(self, meta) -> Loc:
        return Loc(self.file, meta.line, meta.column, meta.end_column if meta.end_line == meta.line else None)

    def number(self, meta, c):
        return S.Num(str(c[0]), self._l(meta))

    def null(self, meta, c):
        return Null(self._l(meta))

    def boolean(self, meta, c):
        return S.Bool(str(c[0]) == "true", self._l(meta))

    def string(self, meta, c):
        return Str(str(c[0])[1:-1], self._l(meta))

    def name(self, meta, c):
        return S.Name(str(c[0]), self._l(meta))

    def func(self, meta, c):
        if str(c[0]) not in ("min", "max", "floor", "ceil"):
            raise SymcostError(f"unknown function '{c[0]}' in an expression; only min, max, floor, ceil are allowed",
                               self._l(meta))
        return S.Func(str(c[0]), tuple(c[1:]), self._l(meta))

    def _bin(op):  # noqa: N805
        def method(self, meta, c):
            return S.BinOp(op, c[0], c[1], self._l(meta))

        return method

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("^")

    def neg(self, meta, c):
        return S.Neg(c[0], self._l(meta))

    def compare(self, meta, c):
        return Compare(str(c[1]), c[0], c[2], self._l(meta))

    def or_(self, meta, c):
        return BoolOp("or", c[0], c[1], self._l(meta))

    def and_(self, meta, c):
        return BoolOp("and", c[0], c[1], self._l(meta))

    def not_(self, meta, c):
        return Not(c[0], self._l(meta))

    def ifelse(self, meta, c):
        return IfExpr(c[0], c[1], c[2], self._l(meta))


def parse_expression(text: str, file: str):
    register_source(file, text)
    try:
        tree = _parser().parse(text)
        return _Build(file).transform(tree)
    except UnexpectedInput as e:
        raise SymcostError("this rule cannot be parsed", Loc(file, max(e.line, 1), max(e.column, 1))) from None
    except RecursionError:
        raise SymcostError("this rule nests too deeply", Loc(file, 1, 1)) from None
    except VisitError as e:
        if isinstance(e.orig_exc, SymcostError):
            raise e.orig_exc from None
        raise SymcostError("this rule nests too deeply", Loc(file, 1, 1)) from None
