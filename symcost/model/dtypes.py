"""Element types: the built-in dtypes, group-quantized weights, and the dtypes of a derivation by role."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from symcost.errors import SymcostError

Expr = sp.Expr

# Bytes per element of the dtypes every spec knows; a spec may declare more with `dtype name = bytes`.
# Sub-byte types are sized in bits (int4: 4/8 byte per element), exact Rationals.
BUILTIN_DTYPES: dict[str, int | Fraction] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int64": 8,
    "int32": 4,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "fp6": Fraction(6, 8),
    "fp4": Fraction(4, 8),
    "nf4": Fraction(4, 8),  # 4-bit NormalFloat (QLoRA, bitsandbytes)
    "int4": Fraction(4, 8),
    "uint4": Fraction(4, 8),
    "int3": Fraction(3, 8),
    "int2": Fraction(2, 8),
}
FLOATING = {"fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "fp4", "nf4"}
DEFAULT_DTYPE = "fp32"


@dataclass(frozen=True)
class DType:
    """An element type: its name and bytes per element (a Rational for sub-byte types and for group-quantized
    weights, whose per-group scales and zero points are spread over the group's elements)."""

    name: str
    nbytes: Expr
    floating: bool = True
    group: int | None = None  # group quantization: elements sharing one scale (and zero point)
    scale: str | None = None  # the scales' dtype
    zero_point: str | None = None  # the zero points' dtype (None: symmetric, no zero points)

    def __str__(self) -> str:
        return self.name

    @property
    def bits(self) -> Expr:
        """Bits per element, scales and zero points included (4.125 for int4 with a bf16 scale per 128)."""
        return self.nbytes * 8


def quantized(base: DType, group: int | None = None, scale: DType | None = None,
              zero_point: DType | None = None) -> DType:
    """Weights stored as `base` in groups of `group` elements, each group with one `scale` (and one
    `zero_point`): base bits + (scale bits + zero-point bits) / group per element. Without a group, `base`."""
    if group is None:
        return base
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise SymcostError(f"a quantization group holds a positive number of weights, not {group!r}")
    if scale is None:
        raise SymcostError("group quantization needs the dtype of its scales")
    extra = scale.nbytes + (zero_point.nbytes if zero_point is not None else 0)
    return DType(base.name, base.nbytes + extra / group, base.floating, group, scale.name,
                 None if zero_point is None else zero_point.name)


QUANTIZE = ("layers", "linear", "matrices")  # which parameters --weights sets (see Roles)


@dataclass(frozen=True)
class Roles:
    """The dtypes of a derivation by role.

    model: the spec's default dtype (or --dtype): parameters not quantized (norms, biases, and the embedding
    and LM head unless `quantize` takes them); activations: op outputs and inputs without a dtype of their own,
    and the dtype the arithmetic runs in (weight-only quantization dequantizes to it, so the roofline's peak is
    this dtype's); weights: the parameters `quantize` selects — `layers` the weight matrices of linear layers
    inside repeated blocks (what GPTQ, AWQ and bitsandbytes quantize; the LM head stays), `linear` every linear
    layer's weight matrix (the head too), `matrices` every parameter of two or more axes (embedding tables too);
    kv: the KV cache."""

    model: DType
    activations: DType
    weights: DType
    kv: DType
    quantize: str = "layers"
    weights_given: bool = False
    kv_given: bool = False
    activations_given: bool = False

    @property
    def compute(self) -> DType:
        return self.activations
