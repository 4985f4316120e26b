"""Training-state memory and data-parallel traffic as closed forms (the ZeRO accounting).

What is counted, per device, in bytes (1 GB = 10⁹ bytes when printed):

  weight_bytes      the weights the forward and backward passes read: Ψ × weight bytes (2 in bf16/fp16)
  gradient_bytes    one gradient per weight, at the gradient dtype
  optimizer_bytes   everything only the optimizer step touches: the fp32 master copy of the weights
                    (mixed precision only) plus the optimizer's per-parameter states (Adam: momentum and
                    variance; AMSGrad adds the running maximum of the variance; SGD with momentum: one buffer)

Ψ is the parameter count (`report.totals["params"]`, every expert of a mixture included: all of them are
trained); gradients, master weights and optimizer states cover the trained ones, Ψ minus the frozen parameters
(`param w: [..] frozen`, `report.frozen_params`). Not counted: activations (`report.totals["activation_bytes"]`), the optimizer's step counter
(PyTorch keeps one scalar per parameter tensor), temporary buffers, communication buckets, allocator
fragmentation, and partition padding.

ZeRO (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models") over
N_d data-parallel devices divides by N_d: stage 1 the optimizer bytes (master weights included), stage 2 also
the gradients, stage 3 also the weights. Mixed-precision Adam is the paper's 2Ψ + 2Ψ + 12Ψ = 16Ψ; its
7.5B-parameter example at N_d = 64 gives 120 GB, 31.4 GB, 16.6 GB and 1.9 GB for stages 0 to 3.

Everything here is pure: SymPy expressions (or ints) in, SymPy expressions out. N_d is the symbol
`make_symbol("N_d")` unless a number is given.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symcost.model.dims import make_symbol
from symcost.errors import SymcostError, suggest

Expr = sp.Expr

DP_SYMBOL_NAME = "N_d"


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of each copy a precision policy keeps.

    weight: the working weights; grad: the gradients (and what a data-parallel all-reduce sends);
    master: a separate fp32 copy updated by the optimizer (0 when the working weights are updated
    directly); state: each optimizer state (Adam's momentum, variance, …).
    """

    name: str
    weight: int
    grad: int
    master: int
    state: int
    doc: str


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", 4, 4, 0, 4, "everything in fp32; the optimizer updates the weights in place"),
        Precision("mixed-bf16", 2, 2, 4, 4, "bf16 weights and gradients, fp32 master weights and optimizer states"),
        Precision("mixed-fp16", 2, 2, 4, 4, "fp16 weights and gradients, fp32 master weights and optimizer states (the ZeRO paper's setting)"),
        Precision("bf16", 2, 2, 0, 2, "pure bf16: weights, gradients and optimizer states in bf16, no master copy"),
        Precision("fp16", 2, 2, 0, 2, "pure fp16: weights, gradients and optimizer states in fp16, no master copy"),
    )
}

# Optimizer states kept per parameter (the step counter is a scalar per tensor and is not counted).
OPTIMIZERS: dict[str, tuple[int, str]] = {
    "adam": (2, "Adam: first moment (momentum) and second moment (variance)"),
    "adamw": (2, "AdamW: first moment (momentum) and second moment (variance)"),
    "adam-amsgrad": (3, "Adam with amsgrad=True: momentum, variance and the running maximum of the variance"),
    "adamw-amsgrad": (3, "AdamW with amsgrad=True: momentum, variance and the running maximum of the variance"),
    "sgd-momentum": (1, "SGD with momentum: one momentum buffer"),
    "sgd": (0, "plain SGD: no state"),
    "none": (0, "no optimizer state (frozen weights, or an optimizer not modelled here)"),
}

ZERO_STAGES = (0, 1, 2, 3)
STAGE_DOC = {
    0: "plain data parallelism: every device holds everything",
    1: "ZeRO-1 (P_os): optimizer state (master weights included) sharded over N_d",
    2: "ZeRO-2 (P_os+g): optimizer state and gradients sharded over N_d",
    3: "ZeRO-3 (P_os+g+p): optimizer state, gradients and weights sharded over N_d",
}


def precision_policy(precision: str | Precision) -> Precision:
    """A named precision policy (see PRECISIONS), or a custom `Precision` passed through."""
    if isinstance(precision, Precision):
        return precision
    if precision not in PRECISIONS:
        raise SymcostError(
            f"unknown precision policy '{precision}'; use one of {', '.join(PRECISIONS)}", None, suggest(precision, PRECISIONS)
        )
    return PRECISIONS[precision]


def optimizer_states(optimizer: str) -> int:
    """Optimizer states per parameter: adam/adamw 2, their amsgrad variants 3, sgd-momentum 1, sgd/none 0."""
    if optimizer not in OPTIMIZERS:
        raise SymcostError(
            f"unknown optimizer '{optimizer}'; use one of {', '.join(OPTIMIZERS)}", None, suggest(optimizer, OPTIMIZERS)
        )
    return OPTIMIZERS[optimizer][0]


def dp_degree(dp: Expr | int | None) -> Expr:
    """The data-parallel degree as an expression: the symbol N_d for None, else the given positive number/expr."""
    if dp is None:
        return make_symbol(DP_SYMBOL_NAME)
    if isinstance(dp, bool):
        raise SymcostError(f"the data-parallel degree must be a positive integer, not {dp!r}")
    if isinstance(dp, int):
        if dp <= 0:
            raise SymcostError(f"the data-parallel degree must be a positive integer, not {dp}")
        return sp.Integer(dp)
    if isinstance(dp, sp.Expr):
        if dp.is_number and not (dp.is_Integer and dp > 0):
            raise SymcostError(f"the data-parallel degree must be a positive integer, not {dp}")
        return dp
    raise SymcostError(f"the data-parallel degree must be an integer or a SymPy expression, not {type(dp).__name__}")


def _stage(zero) -> int:
    if isinstance(zero, bool) or zero not in ZERO_STAGES:
        raise SymcostError(f"ZeRO stage must be 0, 1, 2 or 3, not {zero!r}")
    return int(zero)


def _expr(x) -> Expr:
    if isinstance(x, bool):
        raise SymcostError(f"expected a parameter count, not {x!r}")
    if isinstance(x, int):
        return sp.Integer(x)
    if isinstance(x, sp.Expr):
        return x
    raise SymcostError(f"expected a parameter count (int or SymPy expression), not {type(x).__name__}")


@dataclass(frozen=True)
class TrainingState:
    """Per-device bytes of the model states one training step keeps (see the module docstring)."""

    params: Expr
    precision: Precision
    optimizer: str
    states: int  # optimizer states per parameter
    zero: int
    dp: Expr
    weight_bytes: Expr
    gradient_bytes: Expr
    master_bytes: Expr  # part of optimizer_bytes: the fp32 master weights
    state_bytes: Expr  # part of optimizer_bytes: the optimizer states
    optimizer_bytes: Expr  # master_bytes + state_bytes
    frozen: Expr = sp.Integer(0)  # parameters that get no gradient and no optimizer state (`param … frozen`)

    @property
    def total(self) -> Expr:
        return self.weight_bytes + self.gradient_bytes + self.optimizer_bytes

    @property
    def bytes_per_param(self) -> tuple[int, int, int]:
        """Unsharded bytes per parameter (weights, gradients, optimizer): (2, 2, 12) for mixed-precision Adam."""
        p = self.precision
        return p.weight, p.grad, p.master + self.states * p.state

    def fields(self) -> dict[str, Expr]:
        """The byte counts by name, in display order."""
        return {
            "weight_bytes": self.weight_bytes,
            "gradient_bytes": self.gradient_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "total": self.total,
        }

    def per_param(self) -> dict[str, Expr]:
        """Bytes per parameter on one device, sharding included: {weights: 2, gradients: 2/N_d, ...}."""
        n = self.dp
        w, g, o = self.bytes_per_param
        return {
            "weights": sp.Integer(w) / (n if self.zero >= 3 else 1),
            "gradients": sp.Integer(g) / (n if self.zero >= 2 else 1),
            "optimizer": sp.Integer(o) / (n if self.zero >= 1 else 1),
        }


def training_state(
    params: Expr | int,
    precision: str | Precision = "mixed-bf16",
    optimizer: str = "adamw",
    zero: int = 0,
    dp: Expr | int | None = None,
    frozen: Expr | int = 0,
) -> TrainingState:
    """Per-device weight, gradient and optimizer bytes for `params` parameters, `frozen` of which are not trained
    (they have weights but no gradients, master copy or optimizer states).

    precision: fp32 | mixed-bf16 | mixed-fp16 | bf16 | fp16 (or a `Precision`); optimizer: adam | adamw |
    adam-amsgrad | adamw-amsgrad | sgd-momentum | sgd | none; zero: ZeRO stage 0–3; dp: the data-parallel
    degree N_d (None: the symbol N_d; it only appears for stages ≥ 1).
    """
    psi = _expr(params)
    frozen = _expr(frozen)
    trained = psi - frozen
    prec = precision_policy(precision)
    k = optimizer_states(optimizer)
    stage = _stage(zero)
    n = dp_degree(dp)

    def shard(x: Expr, on: bool) -> Expr:
        return x / n if on else x

    master = shard(prec.master * trained, stage >= 1)
    states = shard(k * prec.state * trained, stage >= 1)
    return TrainingState(
        params=psi,
        precision=prec,
        optimizer=optimizer,
        states=k,
        zero=stage,
        dp=n,
        weight_bytes=shard(prec.weight * psi, stage >= 3),
        gradient_bytes=shard(prec.grad * trained, stage >= 2),
        master_bytes=master,
        state_bytes=states,
        optimizer_bytes=master + states,
        frozen=frozen,
    )


def training_state_for(report, **kwargs) -> TrainingState:
    """`training_state` of a derived Report's parameter count (every expert of a mixture included; frozen
    parameters get no gradients or optimizer states)."""
    return training_state(report.totals["params"], frozen=report.frozen_params, **kwargs)


def dp_communication_bytes(
    params: Expr | int,
    precision: str | Precision = "mixed-bf16",
    zero: int = 0,
    dp: Expr | int | None = None,
    exact: bool = False,
    frozen: Expr | int = 0,
    micro_batches: Expr | int = 1,
) -> Expr:
    """Bytes each device sends per optimizer step for data parallelism (and receives as many).

    Ψ counts every parameter, Ψ_t = Ψ − frozen the trained ones (frozen parameters have no gradient and never
    change). An all-reduce is a reduce-scatter plus an all-gather; with a ring, each device sends
    (N_d − 1)/N_d of the data in each. The ZeRO paper (Rajbhandari et al. 2020, §7) rounds that factor to 1:
    2Ψ elements for stages 0–2, 3Ψ for stage 3. Per step of m micro-batches (gradient accumulation):

      stage 0   2Ψ_t           all-reduce of the accumulated gradients, once per step
      stage 1   2Ψ_t           reduce-scatter of the accumulated gradients + all-gather of the updated weights
      stage 2   (m + 1)Ψ_t     the gradients are sharded, so each micro-batch's are reduce-scattered as its backward
                               pass produces them, + one all-gather of the updated weights
      stage 3   m(2Ψ + Ψ_t)    per micro-batch: the weights all-gathered for the forward and again for the
                               backward pass (every weight, frozen ones too), the gradients reduce-scattered

    m = 1 gives the paper's figures. Sharded gradients cannot be accumulated locally: DeepSpeed reduces them
    during every backward pass under stage ≥ 2 (its engine's `allreduce_gradients`, "ZeRO stage >= 2
    communicates during non gradient accumulation boundaries as well"; `no_sync` is refused there), as
    PyTorch FSDP does unless told to keep unsharded gradients. Gradients travel at the gradient dtype, weights
    at the weight dtype. exact=True multiplies by (N_d − 1)/N_d, the ring's volume (0 on one device).
    Time ≥ these bytes / per-direction link bandwidth.
    """
    psi = _expr(params)
    trained = psi - _expr(frozen)
    prec = precision_policy(precision)
    stage = _stage(zero)
    n = dp_degree(dp)
    m = _micro_batches(micro_batches)
    grads, updated = trained * prec.grad, trained * prec.weight
    volume = {0: 2 * grads, 1: grads + updated, 2: m * grads + updated,
              3: m * (2 * psi * prec.weight + grads)}[stage]
    return volume * (n - 1) / n if exact else volume


def dp_traffic_form(zero: int, micro_batches: Expr | int = 1, frozen: bool = False) -> tuple[str, str]:
    """The elements `dp_communication_bytes` counts, as text (Ψ_t: the trained parameters, written Ψ when none
    is frozen), and what they are: ("(m + 1)Ψ", "…") for ZeRO-2 over m micro-batches."""
    stage = _stage(zero)
    m = _micro_batches(micro_batches)
    pt = "Ψ_t" if frozen else "Ψ"

    def times(k, x) -> str:
        return x if k == 1 else f"{k}{x}" if isinstance(k, int) or k.is_Integer else f"{sp.sstr(k).replace('*', '·')}·{x}"

    if stage in (0, 1):
        form = times(2, pt)
    elif stage == 2:
        form = times(m + 1, pt) if not isinstance(m + 1, sp.Add) else f"({m} + 1){pt}"
    else:
        form = times(3 * m, "Ψ") if not frozen else f"{times(2 * m, 'Ψ')} + {times(m, 'Ψ_t')}"
    what = {0: "an all-reduce of the gradients once per step",
            1: "a reduce-scatter of the gradients and an all-gather of the updated weights, once per step",
            2: "a reduce-scatter of the gradients every micro-batch (they are sharded) and an all-gather of the "
               "updated weights",
            3: "every micro-batch, the weights all-gathered for the forward and the backward pass and the gradients "
               "reduce-scattered"}[stage]
    return form, what


def _micro_batches(m) -> Expr:
    if isinstance(m, bool):
        raise SymcostError(f"the micro-batch count must be a positive integer, not {m!r}")
    if isinstance(m, int):
        if m < 1:
            raise SymcostError(f"the micro-batch count must be a positive integer, not {m}")
        return sp.Integer(m)
    if isinstance(m, sp.Expr) and not (m.is_number and not (m.is_Integer and m > 0)):
        return m
    raise SymcostError(f"the micro-batch count must be a positive integer, not {m!r}")


# ---- small helpers -------------------------------------------------------------------------------------
def gigabytes(v, digits: int = 1) -> float:
    """Bytes → decimal GB rounded half-up to `digits` (the ZeRO paper's 1.875 GB prints as 1.9)."""
    from decimal import ROUND_HALF_UP, Decimal

    q = Decimal(1).scaleb(-digits)
    return float((Decimal(str(sp.Rational(v).p)) / Decimal(str(sp.Rational(v).q)) / Decimal(10**9)).quantize(q, ROUND_HALF_UP))
