"""The abstract syntax of .arch files: frozen dataclasses, each carrying its source position."""
from __future__ import annotations

from dataclasses import dataclass, field

from symcost.errors import Loc

# --- expressions (dimension arithmetic, names, literals, conditions) -------------------------


@dataclass(frozen=True)
class Num:
    value: str  # the literal as written: "3", "0.5"
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Name:
    id: str
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Bool:
    value: bool
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / ^
    left: "Expr"
    right: "Expr"
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Func:
    name: str
    args: tuple["Expr", ...]
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class ListLit:
    items: tuple["Expr", ...]
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Str:
    """A string literal (mapping files compare a config's string fields); never a dimension."""

    value: str  # without the quotes
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Null:
    """`null`: a config field present but empty (mapping files); never a dimension."""

    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Compare:
    op: str  # one of == != < <= > >=
    left: "Expr"
    right: "Expr"
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" or "or"
    left: "Expr"
    right: "Expr"
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Not:
    operand: "Expr"
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class IfExpr:
    """`if(cond, then, orelse)`: `then` when the condition holds, else `orelse`."""

    cond: "Expr"
    then: "Expr"
    orelse: "Expr"
    loc: Loc = field(compare=False)


Expr = Num | Name | Bool | BinOp | Neg | Func | ListLit | Str | Null | Compare | BoolOp | Not | IfExpr
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")

# --- declarations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorType:
    dtype: str | None
    shape: tuple[Expr, ...]
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class ModelDecl:
    name: str
    title: str | None
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Include:
    path: str
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class DimDecl:
    name: str
    value: Expr | None  # None: a free symbol; otherwise derived
    doc: str | None
    tex: str | None
    loc: Loc = field(compare=False)
    default: bool = False  # `dim f = default 4 * h`: derived unless a value is given for it (then free)
    decode: bool = False  # `dim t decode`: the sequence length one decode step fixes to 1 (s unless a dim says so)


@dataclass(frozen=True)
class DtypeDecl:
    name: str
    nbytes: Expr
    doc: str | None
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class DefaultDtype:
    name: str
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class OptionDecl:
    name: str
    value: bool
    doc: str | None
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class InputDecl:
    """`input x: [..] [nograd] ["doc"]`: `nograd` marks data no gradient is computed for (pixels, audio)."""

    name: str
    type: TensorType
    doc: str | None
    loc: Loc = field(compare=False)
    nograd: bool = False


@dataclass(frozen=True)
class ParamDecl:
    """`param w: [..] [frozen] ["doc"]`: a frozen parameter is counted but gets no gradient."""

    name: str
    type: TensorType
    doc: str | None
    loc: Loc = field(compare=False)
    frozen: bool = False


@dataclass(frozen=True)
class BlockParam:
    name: str
    kind: str  # "tensor", "dim" or "bool"
    type: TensorType | None
    loc: Loc = field(compare=False)


# --- statements ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: Expr
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[Kwarg, ...]
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Assign:
    targets: tuple[Name, ...]
    call: Call
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Repeat:
    """`repeat count [pattern [k1, k2, …]] { … }`: with a pattern, layer i is of kind k_(i mod n), and the body
    sees each kind's name as a boolean (true in the layers of that kind)."""

    count: Expr
    body: tuple["Stmt", ...]
    loc: Loc = field(compare=False)
    pattern: tuple["Name", ...] = ()


@dataclass(frozen=True)
class Experts:
    """`experts E top k { … }`: E copies of the body's parameters, each token through k of them."""

    count: "Expr"
    active: "Expr"
    body: tuple["Stmt", ...]
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Fused:
    """`fused { … }`: a region a fused kernel can compute without keeping its inner tensors (FlashAttention);
    selective recomputation recomputes it in the backward pass."""

    body: tuple["Stmt", ...]
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class If:
    """`if cond { … } else { … }`: the condition is a boolean expression over options, block booleans, pattern
    kinds and decidable comparisons of sizes."""

    cond: Expr
    then: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...]
    loc: Loc = field(compare=False)


@dataclass(frozen=True)
class Return:
    names: tuple[Name, ...]
    loc: Loc = field(compare=False)


Stmt = Assign | Repeat | Experts | Fused | If | Return


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: tuple[BlockParam, ...]
    body: tuple[Stmt, ...]
    loc: Loc = field(compare=False)
    name_loc: Loc | None = field(default=None, compare=False)


Item = ModelDecl | Include | DimDecl | DtypeDecl | DefaultDtype | OptionDecl | InputDecl | ParamDecl | BlockDef | Stmt


@dataclass(frozen=True)
class Module:
    """A spec with its includes resolved: declarations in file order, top-level statements last."""

    path: str
    items: tuple[Item, ...]
