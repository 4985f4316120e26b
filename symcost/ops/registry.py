"""Op rules, the registry core: one small pure function per op, registered by name with `@op`, returns a Rule.

A rule gives shapes, parameters, FLOPs, saves and traits; the rules live by family in ops/layers.py,
ops/elementwise.py, ops/layout.py, ops/conv.py and ops/ssm.py, imported at the end of this module so that
importing the registry registers every op.

A rule sees its tensor arguments as `T` (shape and dtype) and returns a `Rule`. It never sees the graph:
parameter bytes, memory traffic, the bookkeeping of saved tensors and which gradients are needed are done by
the graph builder. Per-element FLOP counts of non-matmul ops are the named constants below (docs/semantics.md).
"""
# Annotations are evaluated: the graph builder reads them to convert arguments (T, Dim, bool, ...).

import inspect
import re
from dataclasses import dataclass, field

import sympy as sp

from symcost.cost.record import Cost
from symcost.model.dims import dims_equal, fmt_shape
from symcost.model.dtypes import DType
from symcost.errors import SymcostError

# ---- per-element FLOPs of the non-matmul ops (forward, backward) ---------------------------------
ADD = (1, 0)  # y = a + b; the gradient passes through unchanged
SUB = (1, 1)  # the gradient of b is negated
MUL = (1, 2)  # dy/da = b, dy/db = a
DIV = (1, 3)
SCALE = (1, 1)  # multiply by a constant, e.g. 1/sqrt(d)
MASK = (1, 1)  # masked fill of attention scores
SOFTMAX = (5, 4)  # max, subtract, exp, sum, divide; backward y·(g − Σg·y)
LAYERNORM = (8, 16)  # mean, centre, square, variance, normalise, gain, bias (+1 rounding); backward ≈ 2×
RMSNORM = (4, 8)  # square, mean, normalise, gain; backward ≈ 2×
GELU = (8, 16)  # tanh approximation
SILU = (4, 8)  # x·sigmoid(x)
RELU = (1, 1)
TANH = (4, 2)  # backward g·(1 − y²)
SIGMOID = (4, 3)  # backward g·y·(1 − y)
TOPK = (1, 0)  # one comparison per element; the gradient is scattered back
DROPOUT = (2, 2)  # multiply by the mask, rescale by 1/(1−p)
ROPE = (3, 3)  # x·cos + rotate(x)·sin
CROSS_ENTROPY = (5, 2)  # log-softmax per logit; backward softmax − one-hot, scaled
EMBEDDING_BWD = 1  # one add per output element (scatter-add into the table)

BATCHNORM = (8, 16)  # as LayerNorm, statistics over the batch and spatial axes of each channel
MAX_POOL = (1, 1)  # one comparison per window element; backward: each output's gradient routed to its maximum
AVG_POOL = (1, 1)  # one add per window element (the divide folded in); backward: spread back over the window

# ---- what a rule sees and returns ---------------------------------------------------------------
class Dim:
    """Annotation: a dimension expression argument (`out=4*h`)."""


class Dims:
    """Annotation: a list of dimension expressions (`[b, s, h]`)."""


class Axis:
    """Annotation: an integer axis, negative counts from the end."""


class DTypeName:
    """Annotation: a dtype name (`fp32`)."""


class Word:
    """Annotation: one bare word from a fixed set (`parallel=column`)."""

    def __init__(self, *choices: str):
        self.choices = choices


PARALLEL = Word("none", "column", "row", "vocab")
PHASES = ("train", "prefill", "decode")


@dataclass(frozen=True)
class Build:
    """What the graph builder tells a rule that declares a keyword-only `build` parameter."""

    phase: str = "train"
    cache_len: sp.Expr | None = None  # c, the tokens held in the cache, when decoding
    cache_dtype: DType | None = None  # the KV cache's dtype (--kv); None: the cached tensor's own


@dataclass(frozen=True, eq=False)
class T:
    """A tensor argument as a rule sees it."""

    shape: tuple
    dtype: DType

    @property
    def numel(self):
        return numel(self.shape)

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, eq=False)
class Out:
    """An output tensor. `view_of` shares that input's storage (no copy, no traffic);
    `expand` marks a broadcast view whose reads cost only the base's bytes."""

    shape: tuple
    dtype: DType | None = None  # None: the dtype of the first floating-point input, else the default
    view_of: T | None = None
    expand: bool = False


@dataclass(frozen=True, eq=False)
class Internal:
    """A tensor the op keeps for backward that is not one of its outputs (a dropout mask)."""

    shape: tuple
    dtype: str  # a dtype name, e.g. "bool"
    label: str


@dataclass(frozen=True)
class NewParam:
    name: str
    shape: tuple


@dataclass(frozen=True, eq=False)
class Grad:
    """The backward work that computes one gradient — of a tensor input (`T`) or of a parameter the op creates
    (`NewParam`) — and the tensors kept only for it. The builder leaves it out when that gradient is not needed:
    an input that needs no gradient (pixels, token ids, what is computed only from them) or a frozen parameter.
    A rule's `cost` includes every Grad's cost; its `saves` are kept whenever any gradient flows through it."""

    wrt: object  # a T argument or a NewParam
    cost: Cost
    saves: tuple = ()


@dataclass(frozen=True)
class Rule:
    outputs: tuple
    params: tuple = ()
    cost: Cost = field(default_factory=Cost)
    saves: tuple = ()  # inputs (T), outputs (Out) or Internal tensors kept for the backward pass
    grads: tuple = ()  # Grad parts of the backward pass that only some gradients need (see Grad)
    requires: tuple = ()  # (size, what, "a positive integer"): sizes that must come out whole once dims have values
    reads: tuple | None = None  # (tensor, bytes) pairs when an op reads less than its whole inputs (a lookup)
    # traits the graph and the accounting read, so no other module tests an op's name:
    splits: tuple = ()  # sizes tensor parallelism divides when the input is sharded (the heads of split_heads)
    parallel: str = "none"  # how tensor parallelism splits it: none | column | row | vocab (a head over the
    #                         vocabulary) | table (an embedding table by rows); see model/calls.py
    reduce_if_sharded: sp.Expr = sp.Integer(0)  # bytes all-reduced when its input is split (a loss over a
    #                                            vocabulary-parallel head: max, sum and target logit per token)
    causal: bool | sp.Expr = False  # a causal attention product: the share of it the mask keeps (--causal half)
    caches: bool | str = False  # keeps keys or values for later tokens (--phase decode needs one); "once": written
    #                            at prefill only (cross-attention over an encoder's output)
    from_cache: bool = False  # decode: its output is read from a cache filled at prefill, its input not computed
    as_product: Cost | None = None  # a lookup's cost counted as a one-hot product (--embedding-flops matmul)
    quantizable: bool = False  # its weight matrices are what weight-only quantization stores in --weights
    on_split: str = "follows"  # what it does with an input split by tensor parallelism: "follows" (works on its
    #                            shard; its parameters whole), "per_channel" (its parameters index the split
    #                            channels: split with them) or "contracts" (sums over the split features with a
    #                            weight: the spec must mark it parallel=row)


@dataclass(frozen=True)
class OpDef:
    name: str
    fn: object
    signature: inspect.Signature
    doc: str


OPS: dict[str, OpDef] = {}


def op(fn):
    """Register a rule under its function name (a trailing underscore is dropped). Twice is an error."""
    name = fn.__name__.rstrip("_")
    if name in OPS:
        raise RuntimeError(f"op '{name}' is registered twice")
    OPS[name] = OpDef(name, fn, inspect.signature(fn), first_sentence(fn.__doc__ or ""))
    return fn


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, its wrapped lines joined: what `symcost ops` lists."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s+(?=[A-Z`])", paragraph, maxsplit=1)[0]


# ---- helpers ------------------------------------------------------------------------------------
def numel(shape) -> sp.Expr:
    n = sp.Integer(1)
    for x in shape:
        n = n * x
    return n


def axis_of(x: T, axis: int, op_name: str) -> int:
    if not -x.rank <= axis < x.rank:
        raise SymcostError(f"{op_name}: axis {axis} is out of range for a tensor of shape {fmt_shape(x.shape)}")
    return axis % x.rank


MAX_PARTS = 4096


def check_fits(size, axis_size, op_name: str, what: str) -> None:
    """A slice of an axis cannot be longer than the axis."""
    over = sp.expand(size - axis_size)
    if over.is_positive:
        raise SymcostError(f"{op_name}: {what} {size} is larger than the axis it takes from ({axis_size})")


def need_rank(x: T, rank: int, op_name: str, what: str) -> None:
    if x.rank < rank:
        raise SymcostError(
            f"{op_name}: {what} needs at least {rank} dimension{'s' if rank != 1 else ''}, got {fmt_shape(x.shape)}"
        )


def broadcast(a: tuple, b: tuple, op_name: str) -> tuple:
    """NumPy broadcasting with symbolic sizes: aligned from the right, equal or 1."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else sp.Integer(1)
        y = b[-i] if i <= len(b) else sp.Integer(1)
        if dims_equal(x, y) or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise SymcostError(
                f"{op_name}: shapes {fmt_shape(a)} and {fmt_shape(b)} do not broadcast ({x} vs {y})"
            )
    return tuple(reversed(out))



INT64 = DType("int64", sp.Integer(8), False)
FP32 = DType("fp32", sp.Integer(4), True)


def usage(op_name: str) -> str:
    """How an op is called, with its defaults: `linear(x, out=None, bias=true, weight=None, parallel=none)`."""
    sig = OPS[op_name].signature
    parts = []
    for p in sig.parameters.values():
        if p.annotation is Build:
            continue  # supplied by the builder, not written in specs
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
        elif p.default is inspect.Parameter.empty:
            parts.append(p.name)
        else:
            default = str(p.default).lower() if isinstance(p.default, bool) or p.default is None else p.default
            parts.append(f"{p.name}={default}")
    return f"{op_name}({', '.join(parts)})"


# every family of ops registers itself on import (they import this module's names, all defined above)
from symcost.ops import conv, elementwise, layers, layout, ssm  # noqa: E402,F401
