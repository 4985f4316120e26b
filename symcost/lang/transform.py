"""Lark parse tree to syntax: frozen dataclasses with source positions, built node by node."""
from __future__ import annotations

from lark import Token, Transformer, v_args

from symcost.lang import syntax as S
from symcost.errors import Loc, SymcostError

FUNCS = ("min", "max", "floor", "ceil")  # the functions an expression may call
MAX_DIGITS = 40


def _loc(file: str, meta) -> Loc:
    return Loc(file, meta.line, meta.column, meta.end_column if meta.end_line == meta.line else None)


def _tok_loc(file: str, tok: Token) -> Loc:
    return Loc(file, tok.line, tok.column, tok.end_column if tok.end_line == tok.line else None)


def _string(tok: Token | None) -> str | None:
    return None if tok is None else str(tok)[1:-1]


@v_args(meta=True)
class ToSyntax(Transformer):
    """Builds frozen dataclasses from the parse tree, node by node; no text is ever evaluated."""

    def __init__(self, file: str, funcs: tuple = FUNCS):
        super().__init__()
        self.file = file
        self.funcs = funcs  # the functions an expression may call (a mapping rule has a few more)

    def _l(self, meta) -> Loc:
        return _loc(self.file, meta)

    # expressions
    def number(self, meta, c):
        if len(c[0]) > MAX_DIGITS:
            raise SymcostError(f"a number with {len(c[0])} digits is too long (at most {MAX_DIGITS})", self._l(meta))
        return S.Num(str(c[0]), self._l(meta))

    def name(self, meta, c):
        return S.Name(str(c[0]), self._l(meta))

    def boolean(self, meta, c):
        return S.Bool(str(c[0]) == "true", self._l(meta))

    def _bin(op):  # noqa: N805 - helper building one method per operator
        def method(self, meta, c):
            return S.BinOp(op, c[0], c[1], self._l(meta))

        return method

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("^")

    def neg(self, meta, c):
        return S.Neg(c[0], self._l(meta))

    def func(self, meta, c):
        name = str(c[0])
        if name not in self.funcs:
            raise SymcostError(
                f"unknown function '{name}' in an expression; only {', '.join(self.funcs)} are allowed",
                _tok_loc(self.file, c[0]),
            )
        if name in ("floor", "ceil") and len(c) != 2:
            raise SymcostError(f"{name} takes one argument, got {len(c) - 1}", self._l(meta))
        return S.Func(name, tuple(c[1:]), self._l(meta))

    def string(self, meta, c):
        return S.Str(str(c[0])[1:-1], self._l(meta))

    def null(self, meta, c):
        return S.Null(self._l(meta))

    def compare(self, meta, c):
        return S.Compare(str(c[1]), c[0], c[2], self._l(meta))

    def and_(self, meta, c):
        return S.BoolOp("and", c[0], c[1], self._l(meta))

    def or_(self, meta, c):
        return S.BoolOp("or", c[0], c[1], self._l(meta))

    def not_(self, meta, c):
        return S.Not(c[0], self._l(meta))

    def conditional(self, meta, c):
        return S.IfExpr(c[0], c[1], c[2], self._l(meta))

    def expression(self, meta, c):
        return c[0]

    def list(self, meta, c):
        return S.ListLit(tuple(x for x in c if x is not None), self._l(meta))

    def tensor_type(self, meta, c):
        dtype = None if c[0] is None else str(c[0])
        return S.TensorType(dtype, tuple(x for x in c[1:] if x is not None), self._l(meta))

    # declarations
    def model_decl(self, meta, c):
        return S.ModelDecl(str(c[0]), _string(c[1]), self._l(meta))

    def include(self, meta, c):
        return S.Include(_string(c[0]), self._l(meta))

    def tex(self, meta, c):
        return _string(c[0])

    def dim_decl(self, meta, c):
        return S.DimDecl(str(c[0]), c[1], _string(c[2]), c[3], self._l(meta))

    def dim_decode(self, meta, c):
        return S.DimDecl(str(c[0]), None, _string(c[2]), c[3], self._l(meta), decode=True)

    def dim_default(self, meta, c):
        return S.DimDecl(str(c[0]), c[1], _string(c[2]), c[3], self._l(meta), default=True)

    def dtype_decl(self, meta, c):
        return S.DtypeDecl(str(c[0]), c[1], _string(c[2]), self._l(meta))

    def default_dtype(self, meta, c):
        return S.DefaultDtype(str(c[0]), self._l(meta))

    def option_decl(self, meta, c):
        return S.OptionDecl(str(c[0]), str(c[1]) == "true", _string(c[2]), self._l(meta))

    def input_decl(self, meta, c):
        return S.InputDecl(str(c[0]), c[1], _string(c[3]), self._l(meta), c[2] is not None)

    def param_decl(self, meta, c):
        return S.ParamDecl(str(c[0]), c[1], _string(c[3]), self._l(meta), c[2] is not None)

    def param_tensor_any(self, meta, c):
        return S.BlockParam(str(c[0]), "tensor", None, self._l(meta))

    def param_tensor(self, meta, c):
        return S.BlockParam(str(c[0]), "tensor", c[1], self._l(meta))

    def param_dim(self, meta, c):
        return S.BlockParam(str(c[0]), "dim", None, self._l(meta))

    def param_bool_tensor(self, meta, c):  # `m: bool[b, s]`: a tensor of dtype bool, not a boolean
        shape = tuple(x for x in c[1:] if x is not None)
        return S.BlockParam(str(c[0]), "tensor", S.TensorType("bool", shape, self._l(meta)), self._l(meta))

    def param_bool(self, meta, c):
        return S.BlockParam(str(c[0]), "bool", None, self._l(meta))

    def block_def(self, meta, c):
        name, rest = str(c[0]), c[1:]
        params = tuple(x for x in rest if isinstance(x, S.BlockParam))
        body = tuple(x for x in rest if x is not None and not isinstance(x, S.BlockParam))
        seen = set()
        for p in params:
            if p.name in seen:
                raise SymcostError(f"block '{name}' has two parameters named '{p.name}'", p.loc)
            seen.add(p.name)
        return S.BlockDef(name, params, body, self._l(meta), _tok_loc(self.file, c[0]))

    # statements
    def kwarg(self, meta, c):
        return S.Kwarg(str(c[0]), c[1], self._l(meta))

    def call(self, meta, c):
        args = tuple(x for x in c[1:] if x is not None)
        pos = tuple(x for x in args if not isinstance(x, S.Kwarg))
        kws = tuple(x for x in args if isinstance(x, S.Kwarg))
        if any(isinstance(x, S.Kwarg) for x in args[: len(pos)]) and kws:
            first_kw = next(x for x in args if isinstance(x, S.Kwarg))
            raise SymcostError("a positional argument follows a keyword argument", first_kw.loc)
        return S.Call(str(c[0]), pos, kws, self._l(meta))

    def assign(self, meta, c):
        targets = tuple(S.Name(str(t), _tok_loc(self.file, t)) for t in c[:-1])
        return S.Assign(targets, c[-1], self._l(meta))

    def repeat(self, meta, c):
        kinds = c[1] or ()
        seen = set()
        for k in kinds:
            if k.id in seen:
                raise SymcostError(f"'{k.id}' appears twice in the pattern; a pattern names each kind once "
                                   "(write the layer sequence with the body's if)", k.loc)
            seen.add(k.id)
        return S.Repeat(c[0], tuple(x for x in c[2:] if x is not None), self._l(meta), tuple(kinds))

    def pattern(self, meta, c):
        return tuple(S.Name(str(t), _tok_loc(self.file, t)) for t in c)

    def fused(self, meta, c):
        return S.Fused(tuple(c), self._l(meta))

    def experts(self, meta, c):
        return S.Experts(c[0], c[1], tuple(c[2:]), self._l(meta))

    def else_branch(self, meta, c):
        return tuple(c)

    def if_stmt(self, meta, c):
        cond, rest = c[0], c[1:]
        orelse = rest[-1] if rest and isinstance(rest[-1], tuple) else ()
        then = tuple(x for x in rest if not isinstance(x, tuple) and x is not None)
        return S.If(cond, then, orelse or (), self._l(meta))

    def return_stmt(self, meta, c):
        return S.Return(tuple(S.Name(str(t), _tok_loc(self.file, t)) for t in c), self._l(meta))

    def start(self, meta, c):
        return tuple(c)
