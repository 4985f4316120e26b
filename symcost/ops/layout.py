"""Layout ops (views with zero FLOPs: heads, reshapes, splits, broadcasts), concatenation, positions, the KV cache."""
# Annotations are evaluated: the graph builder reads them to convert arguments (T, Dim, bool, ...).

import sympy as sp

from symcost.cost.record import Cost
from symcost.errors import SymcostError
from symcost.model.dims import dims_equal, fmt_shape, is_bad_size
from symcost.ops.registry import (
    INT64, MAX_PARTS, Axis, Build, Dim, Dims, Out, Rule, T, axis_of, check_fits, need_rank, numel, op,
)


# ---- layout: views with zero FLOPs ----------------------------------------------------------------
@op
def split_heads(x: T, heads: Dim, head_size: Dim = None) -> Rule:
    """[.., s, n·d] -> [.., n, s, d]: reshape and transpose, a view."""
    need_rank(x, 2, "split_heads", "the input")
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
    need_rank(x, 3, "merge_heads", "the input")
    *lead, n, s, d = x.shape
    return Rule((Out((*lead, s, n * d), view_of=x),))


@op
def expand_heads(x: T, heads: Dim) -> Rule:
    """[.., kv, s, d] -> [.., heads, s, d]: each key/value head shared by heads/kv query heads, a broadcast view."""
    need_rank(x, 3, "expand_heads", "the input")
    return Rule((Out((*x.shape[:-3], heads, *x.shape[-2:]), view_of=x, expand=True),))


@op
def expand(x: T, shape: Dims) -> Rule:
    """Broadcast to a larger shape, a view that reads only its base: `expand(x, [b, s, h])`. Sizes align from the
    right; each of x's sizes equals the target's or is 1 (NumPy broadcasting); new leading axes may be added."""
    if len(shape) < x.rank:
        raise SymcostError(f"expand: {fmt_shape(x.shape)} has more axes than the target {fmt_shape(shape)}")
    for i in range(1, x.rank + 1):
        have, want = x.shape[-i], shape[-i]
        if not (dims_equal(have, want) or have == 1):
            raise SymcostError(f"expand: {fmt_shape(x.shape)} does not broadcast to {fmt_shape(shape)} ({have} vs "
                               f"{want}: a size must match or be 1)")
    return Rule((Out(tuple(shape), view_of=x, expand=True),))


@op
def identity(x: T) -> Rule:
    """The same tensor under a new name (one branch of an option that does nothing), a view."""
    return Rule((Out(x.shape, view_of=x),))


@op
def transpose(x: T, i: Axis = -2, j: Axis = -1) -> Rule:
    """Swap two axes, a view."""
    shape = list(x.shape)
    a, b = axis_of(x, i, "transpose"), axis_of(x, j, "transpose")
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
    ax = axis_of(x, axis, "split")
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
    ax = axis_of(x, axis, "slice")
    check_fits(size, x.shape[ax], "slice", "size")
    return Rule((Out((*x.shape[:ax], size, *x.shape[ax + 1 :]), view_of=x),))


@op
def concat(*xs: T, axis: Axis = -1) -> Rule:
    """Concatenate along an axis into a new tensor."""
    if len(xs) < 2:
        raise SymcostError("concat: needs at least two tensors")
    first = xs[0]
    ax = axis_of(first, axis, "concat")
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
def cache(x: T, *, axis: Axis = -2, window: Dim = None, once: bool = False, keep: Dim = None,
          build: Build = Build()) -> Rule:
    """Keys or values kept for later tokens, [.., s, d] along `axis`. Train: the identity. Prefill: the s new
    entries are written to the cache. Decode (s = 1): the new entry is appended and all c cached entries are
    read, so the result is [.., c, d]. A sliding `window` w keeps the last w − 1 entries (the next token attends
    to them and itself: w in all), as transformers' sliding-window cache does; decode reads min(c, w). `once`:
    entries written at prefill and only read afterwards (cross-attention keys and values over an encoder's
    output): decode reads them all, x keeps its length, and what only computes x is not run. `keep` k: a buffer of
    the last k entries, zero-filled before the first (a causal convolution's state, Mamba's conv_states): k
    entries whatever s, decode reads [.., k]. The cache holds its entries in the build's cache dtype (--kv), else
    in x's own."""
    ax = axis_of(x, axis, "cache")
    if window is not None and is_bad_size(window):
        raise SymcostError(f"cache: a window must be a positive integer, not {window}")
    if sum(v is not None and v is not False for v in (window, once, keep)) > 1:
        raise SymcostError("cache: a cache written once (once=true) does not slide: give once or window, not both"
                           if keep is None else "cache: give one of window, once and keep")
    if keep is not None and is_bad_size(keep):
        raise SymcostError(f"cache: keep must be a positive integer, not {keep}")
    dtype = build.cache_dtype or x.dtype
    per_entry = numel(x.shape) / x.shape[ax] * dtype.nbytes
    kind = "once" if once else True
    if build.phase == "train":
        return Rule((Out(x.shape, view_of=x),), caches=kind)
    if build.phase == "prefill":
        kept = keep if keep is not None else x.shape[ax] if window is None else sp.Min(x.shape[ax], window - 1)
        stored = kept * per_entry
        return Rule((Out(x.shape, view_of=x),), cost=Cost(cache_bytes=stored, io_bytes=stored), caches=kind)
    if once:  # filled at prefill: read as it is, nothing written, x not computed
        return Rule((Out(x.shape, dtype=dtype),), cost=Cost(cache_bytes=x.shape[ax] * per_entry), caches=kind,
                    from_cache=True)
    seen = build.cache_len if window is None else sp.Min(build.cache_len, window)
    kept = build.cache_len if window is None else sp.Min(build.cache_len, window - 1)
    if keep is not None:
        seen = kept = keep
    shape = (*x.shape[:ax], seen, *x.shape[ax + 1 :])
    # write the new entry; the consumers of the result read all the cached ones, in the cache's dtype
    return Rule((Out(shape, dtype=build.cache_dtype, view_of=x),),
                cost=Cost(cache_bytes=kept * per_entry, io_bytes=x.numel * dtype.nbytes), caches=True)
