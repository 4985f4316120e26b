"""The graph: storages, tensors, parameters and op nodes with their multiplicities (built by model.builder)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import sympy as sp

from symcost.cost.record import Cost
from symcost.errors import Loc
from symcost.model.dims import Env
from symcost.model.dtypes import DType
from symcost.ops.registry import numel


class Kind(Enum):
    """What a region of the spec is: a repeat body, a fused kernel, or the experts of a mixture."""

    REPEAT = "repeat"
    FUSED = "fused"
    EXPERTS = "experts"


@dataclass(frozen=True)
class Region:
    """A repeat, fused or experts region as written in the spec; what is made inside carries it in its tags."""

    kind: Kind
    index: int  # in the order regions are entered: an enclosing region has a smaller index than those inside it


def regions(tags, kind: Kind) -> list:
    """The regions of one kind among some tags, outermost first."""
    return sorted((t for t in tags if t.kind is kind), key=lambda t: t.index)


def inside(tags, kind: Kind) -> bool:
    """Do the tags put it inside a region of this kind?"""
    return any(t.kind is kind for t in tags)


@dataclass(frozen=True)
class Storage:
    """Memory that one or more tensors view; the unit in which saved activations are counted."""

    id: int
    nbytes: sp.Expr
    mult: sp.Expr  # how many instances exist (the product of enclosing repeat counts)
    creator: str  # path of the op (or repeat) that made it
    label: str
    tags: frozenset = frozenset()  # the Regions it was made in
    sharded: bool = False  # split over tensor-parallel devices
    blocks: tuple = ()  # the paths of the block instances it was made in, outermost first


@dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple
    dtype: DType
    storage: int
    read_bytes: sp.Expr  # what a reader touches (a broadcast view reads only its base)
    is_param: bool = False
    sharded: bool = False  # split over tensor-parallel devices (a column-parallel output and what follows)
    grad: bool = True  # needs a gradient: derived from a trainable parameter or an input that needs one

    def renamed(self, name: str) -> "Tensor":
        return Tensor(name, self.shape, self.dtype, self.storage, self.read_bytes, self.is_param, self.sharded,
                      self.grad)

    @property
    def nbytes(self) -> sp.Expr:
        return numel(self.shape) * self.dtype.nbytes


@dataclass(frozen=True)
class Param:
    path: str
    shape: tuple
    dtype: DType
    mult: sp.Expr  # instances that exist (E per layer for an expert's weight)
    loc: Loc | None
    active_mult: sp.Expr | None = None  # instances one token uses (k of the E); None: all of them
    sharded: bool = False  # split over tensor-parallel devices
    shard_axis: int | None = None  # the axis tensor parallelism splits (0: output features, 1: input features)
    frozen: bool = False  # counted, but gets no gradient and no optimizer state (`param w: [..] frozen`)
    name: str = ""  # its name where it is made: "q.weight" for layer/attn/q.weight, the declared name for a `param`

    @property
    def numel(self) -> sp.Expr:
        return numel(self.shape)


@dataclass(frozen=True)
class OpNode:
    path: str
    op: str
    loc: Loc
    statement: str
    inputs: tuple  # Tensors (parameters included)
    outputs: tuple
    params: tuple  # Params this op creates
    cost: Cost  # per instance
    saves: tuple  # storage ids kept for the backward pass
    mult: sp.Expr
    tags: frozenset = frozenset()  # the enclosing Regions
    sharded: bool = False  # its work is split over tensor-parallel devices
    comm_fwd: sp.Expr = sp.Integer(0)  # bytes all-reduced after the forward (row-parallel output)
    comm_bwd: sp.Expr = sp.Integer(0)  # bytes all-reduced in the backward (column-parallel input gradient)
    causal: bool | sp.Expr = False  # a causal attention product: the share of it the mask keeps (--causal half)
    caches: bool | str = False  # keeps keys or values for later tokens ("once": written at prefill only)
    as_product: Cost | None = None  # a lookup's cost counted as the equivalent one-hot product
    from_cache: bool = False  # decode: reads a cache filled at prefill; its input is not computed (model/prune.py)
    blocks: tuple = ()  # the paths of the enclosing block instances, outermost first
    scope: str = ""  # the path it is written under ("layer/attn", "moe/experts"; "" at the top level)


@dataclass(frozen=True)
class BlockNode:
    path: str
    block: str
    mult: sp.Expr
    loc: Loc
    args: tuple  # storage ids of the tensor arguments
    name: str = ""  # the instance's own name, the last part of its path ("attn", "attn.2")
    scope: str = ""  # the path it is called under ("" at the top level)


@dataclass(frozen=True)
class Family:
    """A loop-carried tensor of `repeat count`: instances x_0 (init) … x_count (final)."""

    carried: int  # storage standing for x_0 … x_{count-1} inside the body
    init: int
    body_out: int  # storage standing for x_1 … x_count inside the body
    final: int  # x_count as seen after the loop
    count: sp.Expr
    mult: sp.Expr  # multiplicity of the loop itself


@dataclass
class Graph:
    name: str
    title: str | None
    file: str
    env: Env
    ops: list = field(default_factory=list)
    blocks: list = field(default_factory=list)
    storages: dict = field(default_factory=dict)
    families: list = field(default_factory=list)
    params: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    phase: str = "train"
    expert_counts: list = field(default_factory=list)  # (E, location) of every `experts E top k` region
    expert_regions: dict = field(default_factory=dict)  # Region -> (E, k) of every `experts E top k` region
    splits: list = field(default_factory=list)  # (size, location): what tensor parallelism divides (heads)
