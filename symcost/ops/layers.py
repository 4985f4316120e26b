"""Parameterised layers, matrix products and losses: embedding, linear, norms, matmul, cross-entropy."""
# Annotations are evaluated: the graph builder reads them to convert arguments (T, Dim, bool, ...).

import sympy as sp

from symcost.cost.record import Cost, batched_matmul, elementwise, matmul as matmul_cost
from symcost.errors import SymcostError
from symcost.model.dims import dims_equal, fmt_shape, is_bad_size
from symcost.ops.registry import (
    ADD, BATCHNORM, CROSS_ENTROPY, EMBEDDING_BWD, FP32, LAYERNORM, PARALLEL, RMSNORM, Dim, Grad, Internal, NewParam, Out, Rule, T,
    broadcast, need_rank, numel, op,
)


# ---- parameterised layers -----------------------------------------------------------------------
@op
def embedding(ids: T, rows: Dim = None, width: Dim = None, *, weight: T = None, parallel: PARALLEL = "none") -> Rule:
    """Table lookup: ids [..] with a [rows, width] table -> [.., width]; no forward FLOPs. `parallel=vocab` marks a
    token table: split by rows (the vocabulary) under vocabulary parallelism, as Megatron-LM does; tables of
    positions, token types or buckets stay whole on every device (the default)."""
    if parallel not in ("none", "vocab"):
        raise SymcostError(f"embedding: parallel={parallel} does not apply; a token table takes parallel=vocab "
                           "(split by rows under tensor parallelism), any other table stays whole")
    if weight is not None:
        if weight.rank != 2:
            raise SymcostError(f"embedding: the table must be 2-D, got {fmt_shape(weight.shape)}")
        rows, width = weight.shape
        params = ()
        table = weight
    elif rows is None or width is None:
        raise SymcostError("embedding: give the table size (embedding(ids, V, h)) or a table (weight=W)")
    else:
        params = (NewParam("weight", (rows, width)),)
        table = params[0]
    y = Out((*ids.shape, width))
    cost = elementwise(numel(y.shape), 0, EMBEDDING_BWD)  # the backward is the table's gradient, a scatter-add
    return Rule((y,), params, cost, grads=(Grad(table, cost, saves=(ids,)),),
                reads=((ids, ids.numel * ids.dtype.nbytes), (weight, None)),  # only the looked-up rows
                parallel="table" if parallel == "vocab" else "none", as_product=matmul_cost(ids.numel, rows, width))


@op
def linear(x: T, out: Dim = None, *, bias: bool = True, weight: T = None, parallel: PARALLEL = "none") -> Rule:
    """y = x·Wᵀ (+ b): [.., k] @ [k, n] -> [.., n], W stored [n, k] as in PyTorch.

    `parallel=column|row` marks Megatron tensor parallelism: a column-parallel layer shards its output
    features, a row-parallel one its input features and all-reduces its output. `parallel=vocab` marks a head
    over the vocabulary: column-parallel under vocabulary parallelism (the default), whole otherwise.
    """
    need_rank(x, 1, "linear", "the input")
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
        w = weight
    elif out is None:
        raise SymcostError("linear: give the output size (linear(x, h)) or a weight (weight=W)")
    else:
        n = out
        params = (NewParam("weight", (n, k)),)
        w = params[0]
    m = numel(x.shape[:-1])
    cost = matmul_cost(m, k, n)
    # backward: dx = g·W ([m,n] @ [n,k]) needs W; dW = gᵀ·x ([n,m] @ [m,k]) needs x
    grads = (Grad(x, Cost(macs_bwd=m * k * n, mm_outputs_bwd=m * k)),
             Grad(w, Cost(macs_bwd=m * k * n, mm_outputs_bwd=k * n), saves=(x,)))
    if bias:
        params = (*params, NewParam("bias", (n,)))
        cost = cost + elementwise(m * n, *ADD)
    return Rule((Out((*x.shape[:-1], n)),), params, cost, grads=grads, parallel=parallel, quantizable=True,
                on_split="contracts")


@op
def layernorm(x: T, *, bias: bool = True) -> Rule:
    """LayerNorm over the last axis, with a gain (and a bias); saves its input."""
    need_rank(x, 1, "layernorm", "the input")
    h = x.shape[-1]
    params = (NewParam("weight", (h,)),) + ((NewParam("bias", (h,)),) if bias else ())
    return Rule((Out(x.shape),), params, elementwise(x.numel, *LAYERNORM), saves=(x,))


@op
def batchnorm(x: T, *, affine: bool = True) -> Rule:
    """BatchNorm over channels-first [b, c, ..]: statistics per channel c; a gain and a bias per channel
    (`affine=false`: none). The running mean and variance are buffers, not parameters (as in PyTorch's
    parameters()); saves its input (its per-channel statistics, O(c), are not counted, as for the other norms)."""
    need_rank(x, 2, "batchnorm", "the input ([batch, channels, ..])")
    c = x.shape[1]
    params = (NewParam("weight", (c,)), NewParam("bias", (c,))) if affine else ()
    return Rule((Out(x.shape),), params, elementwise(x.numel, *BATCHNORM), saves=(x,))


@op
def rmsnorm(x: T) -> Rule:
    """RMSNorm over the last axis, gain only; saves its input."""
    need_rank(x, 1, "rmsnorm", "the input")
    return Rule((Out(x.shape),), (NewParam("weight", (x.shape[-1],)),), elementwise(x.numel, *RMSNORM), saves=(x,))


# ---- matrix products ----------------------------------------------------------------------------
@op
def matmul(x: T, y: T, *, transpose_a: bool = False, transpose_b: bool = False, causal: bool = False) -> Rule:
    """Batched product [.., m, k] @ [.., k, n] -> [.., m, n] of two activations; saves both.

    `causal=true` marks an attention product of which a causal mask keeps half: `--causal half` counts half
    (over a sliding window of min(s, w) keys, what the mask keeps: s·min(s, w) − min(s, w)²/2 entries).
    """
    need_rank(x, 2, "matmul", "the left operand")
    need_rank(y, 2, "matmul", "the right operand")
    m, k = (x.shape[-1], x.shape[-2]) if transpose_a else (x.shape[-2], x.shape[-1])
    k2, n = (y.shape[-1], y.shape[-2]) if transpose_b else (y.shape[-2], y.shape[-1])
    if not dims_equal(k, k2):
        ta = "ᵀ" if transpose_a else ""
        tb = "ᵀ" if transpose_b else ""
        raise SymcostError(
            f"matmul: inner dimensions differ: {fmt_shape(x.shape)}{ta} @ {fmt_shape(y.shape)}{tb} ({k} vs {k2})"
        )
    batch = broadcast(x.shape[:-2], y.shape[:-2], "matmul")
    macs = numel(batch) * m * k * n
    if y.rank == 2:  # a shared right operand: the batch folds into the rows
        cost = matmul_cost(numel(batch) * m, k, n)
        y_grad_outputs = k * n
    else:
        cost = batched_matmul(numel(batch), m, k, n)
        y_grad_outputs = numel(batch) * k * n
    # backward: dx = g·yᵀ needs y, dy = xᵀ·g needs x
    grads = (Grad(x, Cost(macs_bwd=macs, mm_outputs_bwd=numel(batch) * m * k), saves=(y,)),
             Grad(y, Cost(macs_bwd=macs, mm_outputs_bwd=y_grad_outputs), saves=(x,)))
    return Rule((Out((*batch, m, n)),), cost=cost, grads=grads, causal=_kept(m, k, n) if causal else False)


def _kept(queries, k, n) -> sp.Expr:
    """The share of a causal product's grid the mask keeps, at the half convention: m queries over keys that
    are all m (k or n), half; over a band of min(m, w) keys (sliding windows), each query's keys end at itself,
    so the mask drops a triangle of keys²/2: 1 − keys/(2m)."""
    for keys in (n, k):
        if dims_equal(keys, queries) or (isinstance(keys, sp.Min) and any(dims_equal(a, queries) for a in keys.args)):
            return 1 - keys / (2 * queries)
    return sp.Rational(1, 2)




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
