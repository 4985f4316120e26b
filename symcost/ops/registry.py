"""Op rules: one small pure function per op, registered by name, giving shapes, parameters, FLOPs and saves.

A rule sees its tensor arguments as `T` (shape and dtype) and returns a `Rule`. It never sees the graph:
parameter bytes, memory traffic and the bookkeeping of saved tensors are done by the graph builder.
Per-element FLOP counts of non-matmul ops are the named constants below (docs/semantics.md).
"""
# Annotations are evaluated: the graph builder reads them to convert arguments (T, Dim, bool, ...).

import inspect
from dataclasses import dataclass, field

import sympy as sp

from symcost.cost.record import Cost, batched_matmul, elementwise, matmul as matmul_cost
from symcost.model.dims import DType, dims_equal, fmt_shape, is_bad_size
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


@dataclass(frozen=True)
class Rule:
    outputs: tuple
    params: tuple = ()
    cost: Cost = field(default_factory=Cost)
    saves: tuple = ()  # inputs (T), outputs (Out) or Internal tensors kept for the backward pass
    reads: tuple | None = None  # (tensor, bytes) pairs when an op reads less than its whole inputs (a lookup)
    # traits the graph and the accounting read, so no other module tests an op's name:
    splits: tuple = ()  # sizes tensor parallelism divides when the input is sharded (the heads of split_heads)
    parallel: str = "none"  # how tensor parallelism splits it: none | column | row | vocab (a head over the
    #                         vocabulary) | table (an embedding table by rows); see model/calls.py
    reduce_if_sharded: sp.Expr = sp.Integer(0)  # bytes all-reduced when its input is split (a loss over a
    #                                            vocabulary-parallel head: max, sum and target logit per token)
    causal: bool = False  # a product of which a causal mask keeps half (--causal half)
    caches: bool = False  # keeps keys or values for later tokens (--phase decode needs one)
    as_product: Cost | None = None  # a lookup's cost counted as a one-hot product (--embedding-flops matmul)
    quantizable: bool = False  # its weight matrices are what weight-only quantization stores in --weights


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
    doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    OPS[name] = OpDef(name, fn, inspect.signature(fn), doc)
    return fn


# ---- helpers ------------------------------------------------------------------------------------
def numel(shape) -> sp.Expr:
    n = sp.Integer(1)
    for x in shape:
        n = n * x
    return n


def _axis(x: T, axis: int, op_name: str) -> int:
    if not -x.rank <= axis < x.rank:
        raise SymcostError(f"{op_name}: axis {axis} is out of range for a tensor of shape {fmt_shape(x.shape)}")
    return axis % x.rank


MAX_PARTS = 4096


def _fits(size, axis_size, op_name: str, what: str) -> None:
    """A slice of an axis cannot be longer than the axis."""
    over = sp.expand(size - axis_size)
    if over.is_positive:
        raise SymcostError(f"{op_name}: {what} {size} is larger than the axis it takes from ({axis_size})")


def _need_rank(x: T, rank: int, op_name: str, what: str) -> None:
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


def _unary(x: T, per: tuple, save_input: bool = True, save_output: bool = False) -> Rule:
    y = Out(x.shape)
    saves = (x,) if save_input else ()
    if save_output:
        saves = (*saves, y)
    return Rule((y,), cost=elementwise(x.numel, *per), saves=saves)


def _binary(x: T, y: T, per: tuple, name: str, save_inputs: bool) -> Rule:
    out = Out(broadcast(x.shape, y.shape, name))
    return Rule((out,), cost=elementwise(numel(out.shape), *per), saves=(x, y) if save_inputs else ())


# ---- parameterised layers -----------------------------------------------------------------------
@op
def embedding(ids: T, rows: Dim = None, width: Dim = None, *, weight: T = None) -> Rule:
    """Table lookup: ids [..] with a [rows, width] table -> [.., width]; no forward FLOPs."""
    if weight is not None:
        if weight.rank != 2:
            raise SymcostError(f"embedding: the table must be 2-D, got {fmt_shape(weight.shape)}")
        rows, width = weight.shape
        params = ()
    elif rows is None or width is None:
        raise SymcostError("embedding: give the table size (embedding(ids, V, h)) or a table (weight=W)")
    else:
        params = (NewParam("weight", (rows, width)),)
    y = Out((*ids.shape, width))
    return Rule((y,), params, elementwise(numel(y.shape), 0, EMBEDDING_BWD), saves=(ids,),
                reads=((ids, ids.numel * ids.dtype.nbytes), (weight, None)),  # only the looked-up rows
                parallel="table", as_product=matmul_cost(ids.numel, rows, width))


@op
def linear(x: T, out: Dim = None, *, bias: bool = True, weight: T = None, parallel: PARALLEL = "none") -> Rule:
    """y = x·Wᵀ (+ b): [.., k] @ [k, n] -> [.., n], W stored [n, k] as in PyTorch.

    `parallel=column|row` marks Megatron tensor parallelism: a column-parallel layer shards its output
    features, a row-parallel one its input features and all-reduces its output. `parallel=vocab` marks a head
    over the vocabulary: column-parallel under vocabulary parallelism (the default), whole otherwise.
    """
    _need_rank(x, 1, "linear", "the input")
    k = x.shape[-1]
    if weight is not None:
        if weight.rank != 2:
            raise SymcostError(f"linear: the weight must be 2-D, got {fmt_shape(weight.shape)}")
        n, k_w = weight.shape
        if not dims_equal(k, k_w):
            raise SymcostError(
                f"linear: input {fmt_shape(x.shape)} has {k} features but the weight "
                f"{fmt_shape(weight.shape)} takes {k_w}"
            )
        if out is not None and not dims_equal(out, n):
            raise SymcostError(f"linear: out={out} but the weight {fmt_shape(weight.shape)} gives {n}")
        params = ()
    elif out is None:
        raise SymcostError("linear: give the output size (linear(x, h)) or a weight (weight=W)")
    else:
        n = out
        params = (NewParam("weight", (n, k)),)
    m = numel(x.shape[:-1])
    cost = matmul_cost(m, k, n)
    if bias:
        params = (*params, NewParam("bias", (n,)))
        cost = cost + elementwise(m * n, *ADD)
    return Rule((Out((*x.shape[:-1], n)),), params, cost, saves=(x,), parallel=parallel, quantizable=True)


@op
def layernorm(x: T, *, bias: bool = True) -> Rule:
    """LayerNorm over the last axis, with a gain (and a bias); saves its input."""
    _need_rank(x, 1, "layernorm", "the input")
    h = x.shape[-1]
    params = (NewParam("weight", (h,)),) + ((NewParam("bias", (h,)),) if bias else ())
    return Rule((Out(x.shape),), params, elementwise(x.numel, *LAYERNORM), saves=(x,))


@op
def rmsnorm(x: T) -> Rule:
    """RMSNorm over the last axis, gain only; saves its input."""
    _need_rank(x, 1, "rmsnorm", "the input")
    return Rule((Out(x.shape),), (NewParam("weight", (x.shape[-1],)),), elementwise(x.numel, *RMSNORM), saves=(x,))


# ---- matrix products ----------------------------------------------------------------------------
@op
def matmul(x: T, y: T, *, transpose_a: bool = False, transpose_b: bool = False, causal: bool = False) -> Rule:
    """Batched product [.., m, k] @ [.., k, n] -> [.., m, n] of two activations; saves both.

    `causal=true` marks an attention product of which a causal mask keeps half: `--causal half` counts half.
    """
    _need_rank(x, 2, "matmul", "the left operand")
    _need_rank(y, 2, "matmul", "the right operand")
    m, k = (x.shape[-1], x.shape[-2]) if transpose_a else (x.shape[-2], x.shape[-1])
    k2, n = (y.shape[-1], y.shape[-2]) if transpose_b else (y.shape[-2], y.shape[-1])
    if not dims_equal(k, k2):
        ta = "ᵀ" if transpose_a else ""
        tb = "ᵀ" if transpose_b else ""
        raise SymcostError(
            f"matmul: inner dimensions differ: {fmt_shape(x.shape)}{ta} @ {fmt_shape(y.shape)}{tb} ({k} vs {k2})"
        )
    batch = broadcast(x.shape[:-2], y.shape[:-2], "matmul")
    if y.rank == 2:  # a shared right operand: the batch folds into the rows
        cost = matmul_cost(numel(batch) * m, k, n)
    else:
        cost = batched_matmul(numel(batch), m, k, n)
    return Rule((Out((*batch, m, n)),), cost=cost, saves=(x, y), causal=causal)



# ---- elementwise --------------------------------------------------------------------------------
@op
def add(x: T, y: T) -> Rule:
    """Elementwise sum with broadcasting (a residual connection); saves nothing."""
    return _binary(x, y, ADD, "add", save_inputs=False)


@op
def sub(x: T, y: T) -> Rule:
    """Elementwise difference with broadcasting; saves nothing."""
    return _binary(x, y, SUB, "sub", save_inputs=False)


@op
def mul(x: T, y: T) -> Rule:
    """Elementwise product with broadcasting (a gate); saves both factors."""
    return _binary(x, y, MUL, "mul", save_inputs=True)


@op
def div(x: T, y: T) -> Rule:
    """Elementwise quotient with broadcasting; saves both operands."""
    return _binary(x, y, DIV, "div", save_inputs=True)


@op
def scale(x: T) -> Rule:
    """Multiply by a constant (1/sqrt(d)); saves nothing."""
    return _unary(x, SCALE, save_input=False)


@op
def mask(x: T) -> Rule:
    """Masked fill of attention scores (a causal or padding mask held as a buffer); saves nothing."""
    return _unary(x, MASK, save_input=False)


@op
def softmax(x: T) -> Rule:
    """Softmax over the last axis; saves its output."""
    _need_rank(x, 1, "softmax", "the input")
    return _unary(x, SOFTMAX, save_input=False, save_output=True)


@op
def gelu(x: T) -> Rule:
    """GELU (tanh approximation); saves its input."""
    return _unary(x, GELU)


@op
def silu(x: T) -> Rule:
    """SiLU / swish, x·sigmoid(x); saves its input."""
    return _unary(x, SILU)


@op
def relu(x: T) -> Rule:
    """ReLU; saves its output."""
    return _unary(x, RELU, save_input=False, save_output=True)


@op
def tanh(x: T) -> Rule:
    """tanh (a pooler's activation); saves its output."""
    return _unary(x, TANH, save_input=False, save_output=True)


@op
def sigmoid(x: T) -> Rule:
    """Logistic sigmoid; saves its output."""
    return _unary(x, SIGMOID, save_input=False, save_output=True)


@op
def topk(x: T, k: Dim) -> Rule:
    """The k largest entries along the last axis: values [.., k] and int64 indices [.., k]; saves the indices."""
    _need_rank(x, 1, "topk", "the input")
    _fits(k, x.shape[-1], "topk", "k")
    shape = (*x.shape[:-1], k)
    idx = Out(shape, dtype=INT64)
    return Rule((Out(shape), idx), cost=elementwise(x.numel, *TOPK), saves=(idx,))


@op
def dropout(x: T, *, enabled: bool = True, build: Build = Build()) -> Rule:
    """Dropout; saves a 1-byte mask the size of its input. `enabled=false`, and generation (prefill, decode),
    make it the identity (a view)."""
    if not enabled or build.phase != "train":
        return Rule((Out(x.shape, view_of=x),))
    return Rule((Out(x.shape),), cost=elementwise(x.numel, *DROPOUT), saves=(Internal(x.shape, "bool", "mask"),))


@op
def rope(x: T) -> Rule:
    """Rotary position embedding [.., s, d] -> [.., s, d]: x·cos + rotate(x)·sin, cos/sin are buffers."""
    _need_rank(x, 2, "rope", "the input")
    return _unary(x, ROPE, save_input=False)


# ---- layout: views with zero FLOPs ----------------------------------------------------------------
@op
def split_heads(x: T, heads: Dim, head_size: Dim = None) -> Rule:
    """[.., s, n·d] -> [.., n, s, d]: reshape and transpose, a view."""
    _need_rank(x, 2, "split_heads", "the input")
    d = x.shape[-1] / heads
    if head_size is not None:
        if not dims_equal(heads * head_size, x.shape[-1]):
            raise SymcostError(
                f"split_heads: {heads} heads of size {head_size} do not make the last dimension of "
                f"{fmt_shape(x.shape)} ({x.shape[-1]})"
            )
        d = head_size
    return Rule((Out((*x.shape[:-2], heads, x.shape[-2], d), view_of=x),), splits=(heads,))


@op
def merge_heads(x: T) -> Rule:
    """[.., n, s, d] -> [.., s, n·d]: transpose and reshape, a view."""
    _need_rank(x, 3, "merge_heads", "the input")
    *lead, n, s, d = x.shape
    return Rule((Out((*lead, s, n * d), view_of=x),))


@op
def expand_heads(x: T, heads: Dim) -> Rule:
    """[.., kv, s, d] -> [.., heads, s, d]: each key/value head shared by heads/kv query heads, a broadcast view."""
    _need_rank(x, 3, "expand_heads", "the input")
    return Rule((Out((*x.shape[:-3], heads, *x.shape[-2:]), view_of=x, expand=True),))


@op
def identity(x: T) -> Rule:
    """The same tensor under a new name (one branch of an option that does nothing), a view."""
    return Rule((Out(x.shape, view_of=x),))


@op
def transpose(x: T, i: Axis = -2, j: Axis = -1) -> Rule:
    """Swap two axes, a view."""
    shape = list(x.shape)
    a, b = _axis(x, i, "transpose"), _axis(x, j, "transpose")
    shape[a], shape[b] = shape[b], shape[a]
    return Rule((Out(tuple(shape), view_of=x),))


@op
def reshape(x: T, shape: Dims) -> Rule:
    """Reshape to a new shape with the same number of elements, a view."""
    if not dims_equal(numel(shape), x.numel):
        raise SymcostError(f"reshape: {fmt_shape(x.shape)} cannot be viewed as {fmt_shape(shape)}")
    return Rule((Out(tuple(shape), view_of=x),))


@op
def split(x: T, parts: Dims, *, axis: Axis = -1) -> Rule:
    """Split along an axis into n equal parts (`split(x, 3)`) or given sizes (`split(x, [h, kv*d, kv*d])`); views."""
    ax = _axis(x, axis, "split")
    total = x.shape[ax]
    if len(parts) == 1:
        if not parts[0].is_Integer or not 1 <= parts[0] <= MAX_PARTS:
            raise SymcostError(f"split: the number of parts must be an integer from 1 to {MAX_PARTS}, not {parts[0]}")
        sizes = [total / parts[0]] * int(parts[0])
    else:
        sizes = list(parts)
        if not dims_equal(sum(sizes), total):
            raise SymcostError(
                f"split: sizes {fmt_shape(sizes)} add up to {sum(sizes)}, not {total} (axis {axis} of {fmt_shape(x.shape)})"
            )
    outs = tuple(Out((*x.shape[:ax], size, *x.shape[ax + 1 :]), view_of=x) for size in sizes)
    return Rule(outs)


@op
def slice_(x: T, size: Dim, *, axis: Axis = -1) -> Rule:
    """The first `size` entries along an axis, a view."""
    ax = _axis(x, axis, "slice")
    _fits(size, x.shape[ax], "slice", "size")
    return Rule((Out((*x.shape[:ax], size, *x.shape[ax + 1 :]), view_of=x),))


@op
def concat(*xs: T, axis: Axis = -1) -> Rule:
    """Concatenate along an axis into a new tensor."""
    if len(xs) < 2:
        raise SymcostError("concat: needs at least two tensors")
    first = xs[0]
    ax = _axis(first, axis, "concat")
    for other in xs[1:]:
        if other.rank != first.rank or not all(
            dims_equal(p, q) for i, (p, q) in enumerate(zip(first.shape, other.shape)) if i != ax
        ):
            raise SymcostError(
                f"concat: {fmt_shape(first.shape)} and {fmt_shape(other.shape)} differ outside axis {axis}"
            )
    size = sum((x.shape[ax] for x in xs), sp.Integer(0))
    return Rule((Out((*first.shape[:ax], size, *first.shape[ax + 1 :])),))


@op
def arange(n: Dim) -> Rule:
    """Positions 0..n-1 as int64 [n]."""
    return Rule((Out((n,), dtype=INT64),))


# ---- generation -----------------------------------------------------------------------------------
@op
def cache(x: T, *, axis: Axis = -2, window: Dim = None, build: Build = Build()) -> Rule:
    """Keys or values kept for later tokens, [.., s, d] along `axis`. Train: the identity. Prefill: the s new
    entries are written to the cache. Decode (s = 1): the new entry is appended and all c cached entries are
    read, so the result is [.., c, d]. A sliding `window` w keeps the last w − 1 entries (the next token attends
    to them and itself: w in all), as transformers' sliding-window cache does; decode reads min(c, w). The cache
    holds its entries in the build's cache dtype (--kv), else in x's own."""
    ax = _axis(x, axis, "cache")
    if window is not None and is_bad_size(window):
        raise SymcostError(f"cache: a window must be a positive integer, not {window}")
    dtype = build.cache_dtype or x.dtype
    per_entry = numel(x.shape) / x.shape[ax] * dtype.nbytes
    if build.phase == "train":
        return Rule((Out(x.shape, view_of=x),), caches=True)
    if build.phase == "prefill":
        kept = x.shape[ax] if window is None else sp.Min(x.shape[ax], window - 1)
        stored = kept * per_entry
        return Rule((Out(x.shape, view_of=x),), cost=Cost(cache_bytes=stored, io_bytes=stored), caches=True)
    seen = build.cache_len if window is None else sp.Min(build.cache_len, window)
    kept = build.cache_len if window is None else sp.Min(build.cache_len, window - 1)
    shape = (*x.shape[:ax], seen, *x.shape[ax + 1 :])
    # write the new entry; the consumers of the result read all the cached ones, in the cache's dtype
    return Rule((Out(shape, dtype=build.cache_dtype, view_of=x),),
                cost=Cost(cache_bytes=kept * per_entry, io_bytes=x.numel * dtype.nbytes), caches=True)


# ---- losses -------------------------------------------------------------------------------------
@op
def cross_entropy(logits: T, targets: T) -> Rule:
    """Mean cross-entropy of logits [.., V] against int targets [..] -> a scalar; saves the log-probabilities."""
    if not (targets.rank == logits.rank - 1 and all(dims_equal(p, q) for p, q in zip(targets.shape, logits.shape))):
        raise SymcostError(
            f"cross_entropy: targets {fmt_shape(targets.shape)} must match the logits {fmt_shape(logits.shape)} "
            "without the class axis"
        )
    logp = Internal(logits.shape, logits.dtype.name, "log_probs")
    tokens = targets.numel
    # over a vocabulary split t ways (Megatron's parallel cross-entropy): each token's max, sum of exponentials
    # and target logit are all-reduced in fp32
    return Rule((Out((), dtype=FP32),), cost=elementwise(logits.numel, *CROSS_ENTROPY), saves=(logp, targets),
                reduce_if_sharded=3 * tokens * FP32.nbytes)


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
