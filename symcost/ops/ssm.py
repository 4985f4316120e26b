"""State-space ops: Mamba's selective scan (Gu & Dao, 2023), with the FLOPs it is counted at stated exactly.

For b sequences of s tokens, d channels and a state of N per channel, the scan computes, for every token t:

    Δ = softplus(dt + bias)                      per channel element (b·s·d)   [the bias is dt_proj's]
    Ā = exp(A·Δ),  B̄x = Δ·B·x                    per state element (b·s·d·N)    A = −exp(A_log), [d, N]
    h_t = Ā·h_{t−1} + B̄x                          per state element
    y_t = C_t·h_t + D·x                           a contraction over N per channel, then the skip

Counted: the contraction y_t = C_t·h_t as a matrix product, b·s·d·N multiply-adds forward (2 FLOPs each under
fma) and twice that backward (the gradients of C and of the state) — the per-step `ssm_state @ C_t` that
FlopCounterMode counts as `bmm` in transformers' loop. Elementwise ("other", which FlopCounterMode does not
count at all): per state element SSM_STATE = 6 forward (A·Δ and its exp, Δ·B, ·x, the multiply and add of the
recurrence) and 12 backward; per channel element SSM_CHANNEL = 6 forward (the bias add, softplus as 4, the D skip
as one fused multiply-add) and 12 backward; A = −exp(A_log), 2 per entry of A once per call, both ways.

The state: prefill leaves the last h, [b, d, N], in the cache (kv_cache_bytes: the cache generation keeps); a
decode step (s = 1) reads it and writes it back. It is independent of the sequence length.
"""
# Annotations are evaluated: the graph builder reads them to convert arguments (T, Dim, bool, ...).

from symcost.cost.record import Cost, elementwise
from symcost.errors import SymcostError
from symcost.model.dims import dims_equal, fmt_shape
from symcost.ops.registry import Build, Internal, NewParam, Out, Rule, T, op

SSM_STATE = (6, 12)  # per b·s·d·N: exp(A·Δ) (2), Δ·B (1), ·x (1), h = Ā·h + B̄x (2); backward ≈ 2×
SSM_CHANNEL = (6, 12)  # per b·s·d: Δ + bias (1), softplus (4), y + D·x (1 multiply-add, 1); backward ≈ 2×
SSM_A = 2  # per entry of A, once per call: A = −exp(A_log)


@op
def selective_scan(x: T, dt: T, B: T, C: T, *, build: Build = Build()) -> Rule:
    """Mamba's selective scan: x, dt [b, s, d], B, C [b, s, N] -> y [b, s, d]; creates A_log [d, N] and D [d].

    Matmul FLOPs: the contraction C_t·h_t, b·s·d·N multiply-adds (FlopCounterMode's bmm); elementwise per state
    and per channel element as the module says. Prefill keeps the final state [b, d, N] (kv_cache_bytes); decode
    reads and writes it. Saves its inputs and the s states and decay factors (the sequential loop's)."""
    for name, t in (("x", x), ("dt", dt), ("B", B), ("C", C)):
        if t.rank != 3:
            raise SymcostError(f"selective_scan: {name} must be [b, s, channels], got {fmt_shape(t.shape)}")
    b, s, d = x.shape
    n = B.shape[2]
    if not all(dims_equal(p, q) for p, q in zip(dt.shape, x.shape)):
        raise SymcostError(f"selective_scan: dt {fmt_shape(dt.shape)} must match x {fmt_shape(x.shape)}")
    if not (dims_equal(B.shape[0], b) and dims_equal(B.shape[1], s)):
        raise SymcostError(f"selective_scan: B {fmt_shape(B.shape)} must be [{b}, {s}, N]")
    if not all(dims_equal(p, q) for p, q in zip(C.shape, B.shape)):
        raise SymcostError(f"selective_scan: C {fmt_shape(C.shape)} must match B {fmt_shape(B.shape)}")
    states = b * s * d * n
    cost = Cost(macs_fwd=states, mm_outputs_fwd=b * s * d, macs_bwd=2 * states, mm_outputs_bwd=b * s * n + states)
    cost = cost + elementwise(states, *SSM_STATE) + elementwise(b * s * d, *SSM_CHANNEL) + elementwise(d * n, SSM_A, SSM_A)
    state_bytes = b * d * n * (build.cache_dtype or x.dtype).nbytes
    if build.phase == "prefill":
        cost = cost + Cost(cache_bytes=state_bytes, io_bytes=state_bytes)
    elif build.phase == "decode":
        cost = cost + Cost(cache_bytes=state_bytes, io_bytes=2 * state_bytes)  # read h_{t-1}, write h_t
    saves = (x, dt, B, C, Internal((b, s, d, n), x.dtype.name, "states"),
             Internal((b, s, d, n), x.dtype.name, "decay"))
    return Rule((Out((b, s, d)),), (NewParam("A_log", (d, n)), NewParam("D", (d,))), cost, saves=saves,
                caches=True, on_split="per_channel")
