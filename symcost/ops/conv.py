"""Convolutions and pooling over channels-first tensors ([b, c, l] and [b, c, h, w]), with exact output sizes.

A spatial axis of length L under kernel k, stride s, padding p and dilation d has
floor((L + 2p − d·(k − 1) − 1) / s) + 1 outputs, as in PyTorch (ceil_mode off). With symbolic sizes the floor
stays in the closed form unless it simplifies (a ViT patch grid: floor((g·P − P)/P) + 1 = g); a size that may
be zero or negative becomes a constraint checked when the dims get values.

FLOPs follow the matmul conventions: a convolution is Σ multiply-adds, b·C_out·(C_in/groups)·∏k·∏out of them
forward (the fma convention counts 2 FLOPs each, mac 1, exact 2·macs − outputs). Backward: the input gradient
(a transposed convolution) and the weight gradient, the same multiply-adds each; an input that needs no
gradient (pixels, audio features) skips the first. torch.utils.flop_counter counts the weight gradient of a
grouped convolution as if groups were 1 (×groups too many: ×d_inner for Mamba's depthwise conv); symcost
counts the true figure. Pooling and batch norm are elementwise ("other") FLOPs, which FlopCounterMode does not
count at all.
"""
# Annotations are evaluated: the graph builder reads them to convert arguments (T, Dim, bool, ...).

import sympy as sp

from symcost.cost.record import Cost, elementwise
from symcost.errors import SymcostError
from symcost.model.dims import dims_equal, fmt_shape, is_bad_size
from symcost.ops.registry import ADD, AVG_POOL, MAX_POOL, Dim, Dims, Grad, Internal, NewParam, Out, Rule, T, numel, op

ONE, ZERO = sp.Integer(1), sp.Integer(0)


def _per_axis(values, n: int, name: str, what: str, default=None) -> tuple:
    """A per-axis setting: one value for every spatial axis, or one per axis."""
    if values is None:
        return (default,) * n
    if not isinstance(values, tuple):  # a default written as one number
        values = (values,)
    values = tuple(sp.Integer(v) if isinstance(v, int) else v for v in values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise SymcostError(f"{name}: {what} takes 1 or {n} values, got {len(values)}")
    return values


def _check(values: tuple, name: str, what: str, least: int) -> None:
    for v in values:
        bad = (v.is_number and not (v.is_Integer and v >= least)) or (v - least).is_negative
        if bad:
            raise SymcostError(f"{name}: {what} must be {'a positive' if least else 'a non-negative'} integer, not {v}")


def out_size(length, kernel, stride, padding, dilation):
    """floor((L + 2p − d·(k − 1) − 1) / s) + 1, PyTorch's output length (ceil_mode off)."""
    return sp.floor(sp.expand((length + 2 * padding - dilation * (kernel - 1) - 1) / stride)) + 1


def _spatial(x: T, n: int, name: str, kernel, stride, padding, dilation) -> tuple:
    """The output sizes of the n spatial axes, each required to be a positive integer."""
    if x.rank != n + 2:
        raise SymcostError(f"{name}: the input must be [batch, channels, {'l' if n == 1 else 'h, w'}] "
                           f"(channels first), got {fmt_shape(x.shape)}")
    _check(kernel, name, "the kernel size", 1)
    _check(stride, name, "the stride", 1)
    _check(dilation, name, "the dilation", 1)
    _check(padding, name, "the padding", 0)
    return tuple(out_size(length, k, s, p, d) for length, k, s, p, d in zip(x.shape[2:], kernel, stride, padding,
                                                                          dilation))


def _requires(name: str, sizes: tuple) -> tuple:
    """Output sizes that are not positive integers for every size: checked once the dims have values."""
    for size in sizes:
        if is_bad_size(size):
            raise SymcostError(f"{name}: the kernel does not fit: an output size would be {size} (the input plus "
                               "padding is shorter than the dilated kernel)")
    return tuple((size, f"{name}: the output size", "a positive integer (the kernel must fit in the padded input)")
                 for size in sizes if not (size.is_integer and size.is_positive))


def _conv(n: int, name: str, x: T, out, kernel, stride, padding, dilation, groups, bias: bool, weight) -> Rule:
    c_in = x.shape[1] if x.rank >= 2 else None
    if weight is not None:
        if weight.rank != n + 2:
            raise SymcostError(f"{name}: the weight must be [out, in/groups, {', '.join(['k'] * n)}], "
                               f"got {fmt_shape(weight.shape)}")
        if out is not None and not dims_equal(out, weight.shape[0]):
            raise SymcostError(f"{name}: out={out} but the weight {fmt_shape(weight.shape)} gives {weight.shape[0]}")
        out, kernel = weight.shape[0], weight.shape[2:]
    elif out is None or kernel is None:
        raise SymcostError(f"{name}: give the output channels and the kernel ({name}(x, out, kernel)) or a weight "
                           "(weight=W)")
    kernel = _per_axis(kernel, n, name, "kernel")
    stride = _per_axis(stride, n, name, "stride", ONE)
    padding = _per_axis(padding, n, name, "padding", ZERO)
    dilation = _per_axis(dilation, n, name, "dilation", ONE)
    sizes = _spatial(x, n, name, kernel, stride, padding, dilation)
    groups = sp.Integer(groups) if isinstance(groups, int) else groups
    if is_bad_size(groups):
        raise SymcostError(f"{name}: groups must be a positive integer, not {groups}")
    per_group = c_in / groups
    requires = [*_requires(name, sizes)]
    for what, size in (("input channels", c_in), ("output channels", out)):
        q = size / groups
        if q.is_number and not q.is_Integer:
            raise SymcostError(f"{name}: {groups} groups do not divide the {size} {what}")
        if not q.is_integer:
            requires.append((q, f"{name}: {what} per group", "a positive integer (groups must divide them)"))
    if weight is not None and not dims_equal(weight.shape[1], per_group):
        raise SymcostError(f"{name}: the weight {fmt_shape(weight.shape)} takes {weight.shape[1]} channels per group, "
                           f"the input gives {per_group} ({c_in} channels, {groups} groups)")
    b = x.shape[0]
    k_all, o_all = numel(kernel), numel(sizes)
    macs = b * out * per_group * k_all * o_all
    params, w = (), weight
    if weight is None:
        params = (NewParam("weight", (out, per_group, *kernel)),)
        w = params[0]
    cost = Cost(macs_fwd=macs, mm_outputs_fwd=b * out * o_all, macs_bwd=2 * macs,
                mm_outputs_bwd=x.numel + out * per_group * k_all)
    grads = (Grad(x, Cost(macs_bwd=macs, mm_outputs_bwd=x.numel)),  # the input gradient: a transposed conv
             Grad(w, Cost(macs_bwd=macs, mm_outputs_bwd=out * per_group * k_all), saves=(x,)))
    if bias:
        params = (*params, NewParam("bias", (out,)))
        cost = cost + elementwise(b * out * o_all, *ADD)
    depthwise = dims_equal(groups, c_in) and dims_equal(out, c_in)  # one filter per channel: split with them
    return Rule((Out((b, out, *sizes)),), params, cost, grads=grads, requires=tuple(requires),
                on_split="per_channel" if depthwise else "contracts")


@op
def conv1d(x: T, out: Dim = None, kernel: Dims = None, *, stride: Dims = 1, padding: Dims = 0,
           dilation: Dims = 1, groups: Dim = 1, bias: bool = True, weight: T = None) -> Rule:
    """1-d convolution [b, c, l] -> [b, out, l'], l' = floor((l + 2p − d(k−1) − 1)/s) + 1; groups=c is depthwise.

    Parameters out·(c/groups)·k (+ out for the bias). Forward b·out·(c/groups)·k·l' multiply-adds; backward the
    input gradient (skipped when the input needs none) and the weight gradient, as many each; saves its input.
    """
    return _conv(1, "conv1d", x, out, kernel, stride, padding, dilation, groups, bias, weight)


@op
def conv2d(x: T, out: Dim = None, kernel: Dims = None, *, stride: Dims = 1, padding: Dims = 0,
           dilation: Dims = 1, groups: Dim = 1, bias: bool = True, weight: T = None) -> Rule:
    """2-d convolution [b, c, h, w] -> [b, out, h', w']; kernel, stride, padding, dilation: one value or [h, w].

    Sizes per axis as conv1d. Parameters out·(c/groups)·kh·kw (+ out); forward b·out·(c/groups)·kh·kw·h'·w'
    multiply-adds; backward the input gradient (skipped when the input needs none) and the weight gradient.
    """
    return _conv(2, "conv2d", x, out, kernel, stride, padding, dilation, groups, bias, weight)


def _pool(n: int, name: str, x: T, kernel, stride, padding, dilation, kind: str) -> Rule:
    kernel = _per_axis(kernel, n, name, "kernel")
    stride = kernel if stride is None else _per_axis(stride, n, name, "stride")
    padding = _per_axis(padding, n, name, "padding", ZERO)
    dilation = _per_axis(dilation, n, name, "dilation", ONE)
    sizes = _spatial(x, n, name, kernel, stride, padding, dilation)
    for k, p in zip(kernel, padding):
        if (2 * p - k).is_positive:
            raise SymcostError(f"{name}: padding {p} is more than half the kernel {k}")
    shape = (*x.shape[:2], *sizes)
    outputs = numel(shape)
    window = numel(kernel)
    if kind == "max":
        indices = Internal(shape, "int64", "indices")
        cost = elementwise(outputs * window, MAX_POOL[0], 0) + elementwise(outputs, 0, MAX_POOL[1])
        return Rule((Out(shape),), cost=cost, saves=(x, indices), requires=_requires(name, sizes))
    cost = elementwise(outputs * window, *AVG_POOL)
    return Rule((Out(shape),), cost=cost, saves=(x,), requires=_requires(name, sizes))


@op
def max_pool1d(x: T, kernel: Dims, *, stride: Dims = None, padding: Dims = 0, dilation: Dims = 1) -> Rule:
    """Max pooling [b, c, l] -> [b, c, l'] (stride defaults to the kernel); saves its input and int64 indices."""
    return _pool(1, "max_pool1d", x, kernel, stride, padding, dilation, "max")


@op
def max_pool2d(x: T, kernel: Dims, *, stride: Dims = None, padding: Dims = 0, dilation: Dims = 1) -> Rule:
    """Max pooling [b, c, h, w] -> [b, c, h', w'] (stride defaults to the kernel); saves its input and indices."""
    return _pool(2, "max_pool2d", x, kernel, stride, padding, dilation, "max")


@op
def avg_pool1d(x: T, kernel: Dims, *, stride: Dims = None, padding: Dims = 0) -> Rule:
    """Average pooling [b, c, l] -> [b, c, l'] (stride defaults to the kernel); saves its input."""
    return _pool(1, "avg_pool1d", x, kernel, stride, padding, None, "avg")


@op
def avg_pool2d(x: T, kernel: Dims, *, stride: Dims = None, padding: Dims = 0) -> Rule:
    """Average pooling [b, c, h, w] -> [b, c, h', w'] (stride defaults to the kernel); saves its input."""
    return _pool(2, "avg_pool2d", x, kernel, stride, padding, None, "avg")


def _adaptive(n: int, name: str, x: T, size) -> Rule:
    if x.rank != n + 2:
        raise SymcostError(f"{name}: the input must be [batch, channels, {n} spatial axes] (channels first), "
                           f"got {fmt_shape(x.shape)}")
    size = _per_axis(size, n, name, "the output size")
    _check(size, name, "the output size", 1)
    # each output averages a window of about input/output entries: every input element is added once
    return Rule((Out((*x.shape[:2], *size)),), cost=elementwise(x.numel, *AVG_POOL), saves=(x,))


@op
def adaptive_avg_pool1d(x: T, size: Dims) -> Rule:
    """Adaptive average pooling [b, c, l] -> [b, c, size]; size 1 is global average pooling; saves its input."""
    return _adaptive(1, "adaptive_avg_pool1d", x, size)


@op
def adaptive_avg_pool2d(x: T, size: Dims) -> Rule:
    """Adaptive average pooling [b, c, h, w] -> [b, c, oh, ow] (size: one value or [oh, ow]; 1 is global)."""
    return _adaptive(2, "adaptive_avg_pool2d", x, size)
