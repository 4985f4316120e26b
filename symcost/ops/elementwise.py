"""Elementwise ops: arithmetic with broadcasting, activations, softmax, dropout, rotary embeddings, top-k."""
# Annotations are evaluated: the graph builder reads them to convert arguments (T, Dim, bool, ...).

import sympy as sp

from symcost.cost.record import elementwise
from symcost.errors import SymcostError
from symcost.model.dims import dims_equal, fmt_shape, is_bad_size
from symcost.ops.registry import (
    ADD, DIV, DROPOUT, GELU, INT64, MASK, MUL, RELU, ROPE, SCALE, SIGMOID, SILU, SOFTMAX, SUB, TANH, TOPK,
    Build, Dim, Internal, Out, Rule, T, broadcast, check_fits, need_rank, numel, op,
)


def _unary(x: T, per: tuple, save_input: bool = True, save_output: bool = False) -> Rule:
    y = Out(x.shape)
    saves = (x,) if save_input else ()
    if save_output:
        saves = (*saves, y)
    return Rule((y,), cost=elementwise(x.numel, *per), saves=saves)


def _binary(x: T, y: T, per: tuple, name: str, save_inputs: bool) -> Rule:
    out = Out(broadcast(x.shape, y.shape, name))
    return Rule((out,), cost=elementwise(numel(out.shape), *per), saves=(x, y) if save_inputs else ())



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
    need_rank(x, 1, "softmax", "the input")
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
    need_rank(x, 1, "topk", "the input")
    check_fits(k, x.shape[-1], "topk", "k")
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
    need_rank(x, 2, "rope", "the input")
    return _unary(x, ROPE, save_input=False)
