"""Syntax to graph: blocks, repeats and options elaborated into shape-checked op nodes with multiplicities.

A `repeat L { … }` body is built once with multiplicity L (never unrolled), unless `unroll=True`
asks for the concrete walk used to cross-check the symbolic totals.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace

import sympy as sp

from symcost.lang import syntax as S
from symcost.cost.record import Cost
from symcost.model.dims import DType, Env, dims_equal, fmt_shape, is_bad_size, reset_derived, set_derived
from symcost.errors import Loc, SymcostError, source_line, suggest
from symcost.ops.registry import OPS, PHASES, usage, Axis, Build, Dim, Dims, DTypeName, Internal, T, Word, numel
from symcost.lang.syntax import Module

ONE = sp.Integer(1)


@dataclass(frozen=True)
class Storage:
    """Memory that one or more tensors view; the unit in which saved activations are counted."""

    id: int
    nbytes: sp.Expr
    mult: sp.Expr  # how many instances exist (the product of enclosing repeat counts)
    creator: str  # path of the op (or repeat) that made it
    label: str
    tags: frozenset = frozenset()  # the repeat and fused regions it was made in ("repeat:3", "fused:1")
    sharded: bool = False  # split over tensor-parallel devices


@dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple
    dtype: DType
    storage: int
    read_bytes: sp.Expr  # what a reader touches (a broadcast view reads only its base)
    is_param: bool = False
    sharded: bool = False  # split over tensor-parallel devices (a column-parallel output and what follows)

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
    tags: frozenset = frozenset()  # enclosing repeat and fused regions
    attrs: tuple = ()  # (name, value) of the arguments later stages read: parallel, causal
    sharded: bool = False  # its work is split over tensor-parallel devices
    comm_fwd: sp.Expr = sp.Integer(0)  # bytes all-reduced after the forward (row-parallel output)
    comm_bwd: sp.Expr = sp.Integer(0)  # bytes all-reduced in the backward (column-parallel input gradient)

    def attr(self, name: str, default=None):
        return dict(self.attrs).get(name, default)


@dataclass(frozen=True)
class BlockNode:
    path: str
    block: str
    mult: sp.Expr
    loc: Loc
    args: tuple  # storage ids of the tensor arguments


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
    splits: list = field(default_factory=list)  # (size, location): what tensor parallelism divides (heads)


class Scope:
    """Names bound in a block body or at top level; a repeat body is a child scope."""

    def __init__(self, parent: "Scope | None" = None, carried: frozenset = frozenset()):
        self.parent = parent
        self.names: dict[str, object] = {}
        self.carried = set(carried)

    def lookup(self, name: str):
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def bind(self, name: str, value, loc: Loc) -> None:
        if name in self.carried:
            self.carried.discard(name)  # a carried name may be rebound once per body
            self.names[name] = value
            return
        if self.lookup(name) is not None:
            raise SymcostError(
                f"'{name}' is already defined in this scope; give the result a new name", loc
            )
        self.names[name] = value

    def rebind(self, name: str, value) -> None:
        scope = self
        while scope is not None:
            if name in scope.names:
                scope.names[name] = value
                return
            scope = scope.parent
        self.names[name] = value  # pragma: no cover - callers rebind only bound names


@dataclass(frozen=True)
class Ctx:
    prefix: str  # path prefix, "" or "layer/attn/"
    mult: sp.Expr  # how many times the ops here run (over all tokens)
    calls: tuple = ()  # blocks being elaborated (to catch recursion)
    param_mult: sp.Expr | None = None  # how many copies of the parameters here exist; None: mult
    tags: frozenset = frozenset()  # enclosing repeat and fused regions

    @property
    def params(self) -> sp.Expr:
        return self.mult if self.param_mult is None else self.param_mult



def _assigned(stmts, env_options: dict, local_bools: dict) -> list[str]:
    """Names a statement list assigns at its own level (through the taken branches of ifs)."""
    out: list[str] = []
    for st in stmts:
        if isinstance(st, S.Assign):
            out.extend(t.id for t in st.targets)
        elif isinstance(st, S.If):
            value = local_bools.get(st.option, env_options.get(st.option, False))
            taken = st.then if value != st.negated else st.orelse
            out.extend(_assigned(taken, env_options, local_bools))
        elif isinstance(st, (S.Repeat, S.Fused, S.Experts)):
            out.extend(_assigned(st.body, env_options, local_bools))
    return out


class Builder:
    def __init__(
        self,
        module: Module,
        *,
        options: dict[str, bool] | None = None,
        dtype: str | None = None,
        values: dict[str, int] | None = None,
        unroll: bool = False,
        phase: str = "train",
    ):
        if phase not in PHASES:
            raise SymcostError(f"unknown phase '{phase}'; use one of {', '.join(PHASES)}", None, suggest(phase, PHASES))
        self.phase = phase
        self.build_info = Build(phase)
        self._next_region = 0
        self._allreduced: set[int] = set()  # inputs of column-parallel layers whose gradient is already all-reduced
        self.module = module
        self.option_overrides = dict(options or {})
        self.dtype_override = dtype
        self.value_overrides = dict(values or {})
        self.unroll = unroll
        self.env = Env()
        self.blocks: dict[str, S.BlockDef] = {}
        self.global_tensors: dict[str, Tensor] = {}
        self.kinds: dict[str, str] = {}
        self.input_names: set[str] = set()
        self.graph: Graph | None = None
        self._next_storage = 0
        self._used_paths: set[str] = set()

    # ---- names --------------------------------------------------------------------------------
    def _claim(self, kind: str):
        def claim(name: str, loc: Loc) -> None:
            if name in self.kinds:
                raise SymcostError(f"'{name}' is already declared as {_a(self.kinds[name])}", loc)
            if name in self.input_names:
                raise SymcostError(f"'{name}' is already declared as an input", loc)
            if name in OPS and kind == "block":
                raise SymcostError(f"block '{name}' has the name of a built-in op", loc)
            self.kinds[name] = kind

        return claim

    # ---- declarations -------------------------------------------------------------------------
    def declare(self) -> Graph:
        """The declarations only (dims, dtypes, options, blocks): enough to read --set against, without building.
        Idempotent: build() after declare() elaborates the statements against the same environment."""
        if self.graph is not None:
            return self.graph
        model = next((i for i in self.module.items if isinstance(i, S.ModelDecl)), None)
        name = model.name if model else self.module.path.rsplit("/", 1)[-1].removesuffix(".arch")
        self.graph = Graph(name, model.title if model else None, self.module.path, self.env, phase=self.phase)
        stmts = []
        for item in self.module.items:
            if isinstance(item, S.DimDecl):
                self.env.add_dim(item, self._claim("dimension"))
            elif isinstance(item, S.DtypeDecl):
                self.env.add_dtype(item, self._claim("dtype"))
            elif isinstance(item, S.DefaultDtype):
                self.env.default_dtype = self.env.dtype(item.name, item.loc)
            elif isinstance(item, S.OptionDecl):
                self._claim("option")(item.name, item.loc)
                self.env.options[item.name] = item.value
                self.env.option_docs[item.name] = item.doc
            elif isinstance(item, S.BlockDef):
                self._claim("block")(item.name, item.name_loc or item.loc)
                if not item.body or not isinstance(item.body[-1], S.Return):
                    raise SymcostError(f"block '{item.name}' must end with a return statement", item.name_loc or item.loc)
                self.blocks[item.name] = item
            elif isinstance(item, (S.ParamDecl, S.InputDecl)):
                stmts.append(item)
            elif isinstance(item, S.ModelDecl):
                if item is not model:
                    raise SymcostError("a spec has one model declaration", item.loc)
            else:
                stmts.append(item)
        self._phase_setup()
        for item in stmts:  # inputs and params are claimed, in file order, before any statement runs
            if isinstance(item, S.ParamDecl):
                self._claim("parameter")(item.name, item.loc)
            elif isinstance(item, S.InputDecl):
                if item.name in self.kinds:
                    raise SymcostError(f"'{item.name}' is already declared as {_a(self.kinds[item.name])}", item.loc)
                if item.name in self.input_names:
                    raise SymcostError(f"input '{item.name}' is declared twice", item.loc)
                self.input_names.add(item.name)
        self._apply_overrides()
        self._statements = stmts
        return self.graph

    def build(self) -> Graph:
        """Declarations, then the statements: the whole graph."""
        self.declare()
        stmts = self._statements
        token = set_derived(self.env.derived_defs()) if not self.env.values else None
        try:
            top = Scope()
            ctx = Ctx("", ONE)
            for item in stmts:
                if isinstance(item, S.ParamDecl):
                    self._declare_param(item, top)
                elif isinstance(item, S.InputDecl):
                    self._declare_input(item, top)
                else:
                    self._stmt(item, top, ctx, {}, in_block=False)
        except RecursionError:
            raise SymcostError("the spec nests too deeply to build (blocks calling blocks, or nested repeats)") from None
        finally:
            if token is not None:
                reset_derived(token)
        if self.phase == "decode" and not any(op.op == "cache" for op in self.graph.ops):
            raise SymcostError(f"--phase decode: {self.module.path} keeps nothing for later tokens; mark the keys and "
                               "values that generation caches with cache(...)")
        return self.graph

    def _phase_setup(self) -> None:
        """The built-in option `training`, and for decoding: one new token (s = 1) against c cached ones."""
        if "training" in self.kinds:
            raise SymcostError("'training' is a built-in option (true when --phase is train); use another name",
                               self.env.dims["training"].loc if "training" in self.env.dims else None)
        self.env.options["training"] = self.phase == "train"
        self.env.option_docs["training"] = "built in: true in the train phase, false in prefill and decode"
        if self.phase != "decode":
            return
        if "s" not in self.env.dims:
            raise SymcostError("--phase decode needs the spec's sequence dimension to be named s")
        if "c" in self.env.dims:
            raise SymcostError("--phase decode adds the dimension c (cached tokens); the spec already has a c",
                               self.env.dims["c"].loc)
        self.env.fixed["s"] = sp.Integer(1)
        s_sym = self.env.dims["s"].symbol
        for name, dim in list(self.env.dims.items()):  # derived dims made from s follow it (n = b*s)
            if dim.definition is not None and s_sym in dim.definition.free_symbols:
                self.env.dims[name] = replace(dim, definition=dim.definition.xreplace({s_sym: sp.Integer(1)}))
        self.env.add_dim(S.DimDecl("c", None, "tokens in the KV cache", None, None), lambda *_: None)
        self.build_info = Build("decode", self.env.dims["c"].symbol)

    def set_options(self, options: dict[str, bool]) -> None:
        """Flip declared options after declare() and before build()."""
        self.option_overrides.update(options)
        self._apply_options()

    def _apply_options(self) -> None:
        for key, value in self.option_overrides.items():
            if key == "training":
                raise SymcostError("'training' follows --phase (train, prefill or decode); it cannot be set")
            if key not in self.env.options:
                raise SymcostError(f"unknown option '{key}'", None, suggest(key, self.env.options))
            self.env.options[key] = value

    def _apply_overrides(self) -> None:
        self._apply_options()
        if self.dtype_override:
            self.env.default_dtype = self.env.dtype(self.dtype_override, None)
        if self.value_overrides:
            for key, value in self.value_overrides.items():
                dim = self.env.dims.get(key)
                if dim is None:
                    raise SymcostError(f"unknown dimension '{key}'", None, suggest(key, self.env.dims))
                if dim.definition is not None:
                    raise SymcostError(f"'{key}' is derived ({key} = {dim.definition}); set the dims it is made of")
                self.env.values[dim.symbol] = sp.Integer(value)
            missing = [d.name for d in self.env.free_dims() if d.symbol not in self.env.values]
            if missing:
                raise SymcostError("a concrete walk needs every dimension; missing: " + ", ".join(missing))
            for dim in self.env.dims.values():
                if dim.definition is not None:
                    v = dim.definition.xreplace(self.env.values)
                    if not (v.is_Integer and v > 0):
                        raise SymcostError(
                            f"derived dimension {dim.name} = {dim.definition} is {v}, not a positive integer", dim.loc
                        )

    def _tensor_type(self, tt: S.TensorType, local: dict) -> tuple[tuple, DType]:
        shape = tuple(self.env.dim_expr(e, local) for e in tt.shape)
        for e, size in zip(tt.shape, shape):
            if is_bad_size(size):
                raise SymcostError(f"a tensor size must be a positive integer, not {size}", e.loc)
        dtype = self.env.dtype(tt.dtype, tt.loc) if tt.dtype else self.env.default_dtype
        return shape, dtype

    def _declare_param(self, item: S.ParamDecl, top: Scope) -> None:
        shape, dtype = self._tensor_type(item.type, {})
        param = Param(item.name, shape, dtype, ONE, item.loc)
        self.graph.params.append(param)
        t = self._new_tensor(item.name, shape, dtype, ONE, item.name, "parameter", is_param=True)
        self.global_tensors[item.name] = t

    def _declare_input(self, item: S.InputDecl, top: Scope) -> None:
        shape, dtype = self._tensor_type(item.type, {})
        t = self._new_tensor(item.name, shape, dtype, ONE, item.name, "input")
        self.graph.inputs.append(t)
        top.names[item.name] = t

    def _new_tensor(self, name, shape, dtype, mult, creator, label, is_param=False, sharded=False,
                    tags=frozenset()) -> Tensor:
        sid = self._next_storage
        self._next_storage += 1
        nbytes = numel(shape) * dtype.nbytes
        self.graph.storages[sid] = Storage(sid, nbytes, mult, creator, label, frozenset(tags), sharded)
        return Tensor(name, shape, dtype, sid, nbytes, is_param, sharded)

    def _unique(self, path: str) -> str:
        if path not in self._used_paths:
            self._used_paths.add(path)
            return path
        i = 2
        while f"{path}.{i}" in self._used_paths:
            i += 1
        self._used_paths.add(f"{path}.{i}")
        return f"{path}.{i}"

    # ---- statements ---------------------------------------------------------------------------
    def _stmt(self, st, scope: Scope, ctx: Ctx, bools: dict, in_block: bool):
        if isinstance(st, S.Assign):
            self._assign(st, scope, ctx, bools)
        elif isinstance(st, S.Repeat):
            self._repeat(st, scope, ctx, bools)
        elif isinstance(st, S.Experts):
            self._experts(st, scope, ctx, bools, in_block)
        elif isinstance(st, S.Fused):
            self._next_region += 1
            inner = Ctx(ctx.prefix, ctx.mult, ctx.calls, ctx.param_mult, ctx.tags | {f"fused:{self._next_region}"})
            for s in st.body:
                self._stmt(s, scope, inner, bools, in_block)
        elif isinstance(st, S.If):
            self._if(st, scope, ctx, bools, in_block)
        elif isinstance(st, S.Return):
            raise SymcostError("'return' is only allowed as the last statement of a block", st.loc)
        elif isinstance(st, S.ParamDecl):  # in an `if` branch: a parameter whose shape an option chooses
            if in_block or ctx.mult != 1 or ctx.prefix:
                raise SymcostError("a param is declared at the top level (or in a top-level if), not in a block or repeat",
                                   st.loc)
            self._claim("parameter")(st.name, st.loc)
            self._declare_param(st, scope)

    def _cond(self, name: str, loc: Loc, bools: dict) -> bool:
        if name in bools:
            return bools[name]
        if name in self.env.options:
            return self.env.options[name]
        raise SymcostError(f"unknown option '{name}'", loc, suggest(name, [*self.env.options, *bools]))

    def _if(self, st: S.If, scope: Scope, ctx: Ctx, bools: dict, in_block: bool) -> None:
        value = self._cond(st.option, st.option_loc or st.loc, bools) != st.negated
        taken, other = (st.then, st.orelse) if value else (st.orelse, st.then)
        if other:  # check the branch not taken too, then forget what it built
            saved = self._snapshot()
            shadow = Scope(scope)
            shadow.carried = set(scope.carried)
            try:
                for s in other:
                    self._stmt(s, shadow, ctx, bools, in_block)
            finally:
                self._restore(saved)
        for s in taken:
            self._stmt(s, scope, ctx, bools, in_block)

    def _snapshot(self):
        g = self.graph
        return (len(g.ops), len(g.blocks), len(g.params), len(g.families), self._next_storage, set(self._used_paths),
                dict(self.kinds), dict(self.global_tensors), len(g.expert_counts), len(g.splits))

    def _restore(self, snap) -> None:
        g = self.graph
        n_ops, n_blocks, n_params, n_fam, n_st, used, kinds, tensors, n_experts, n_splits = snap
        self.kinds, self.global_tensors = kinds, tensors
        del g.ops[n_ops:], g.blocks[n_blocks:], g.params[n_params:], g.families[n_fam:], g.expert_counts[n_experts:], g.splits[n_splits:]
        for sid in range(n_st, self._next_storage):
            g.storages.pop(sid, None)
        self._next_storage = n_st
        self._used_paths = used

    def _repeat(self, st: S.Repeat, scope: Scope, ctx: Ctx, bools: dict) -> None:
        count = self.env.dim_expr(st.count, self._locals(scope))
        if is_bad_size(count):
            raise SymcostError(f"a repeat count must be a positive integer, not {count}", st.count.loc)
        names = [n for n in dict.fromkeys(_assigned(st.body, self.env.options, bools)) if isinstance(scope.lookup(n), Tensor)]
        if self.unroll:
            if not count.is_Integer:
                raise SymcostError(f"cannot unroll a repeat whose count {count} is not a number", st.count.loc)
            for _ in range(int(count)):
                body = Scope(scope, frozenset(names))
                for s in st.body:
                    self._stmt(s, body, ctx, bools, in_block=False)
                for n in names:
                    scope.rebind(n, body.names.get(n, scope.lookup(n)))
            return
        mult = ctx.mult * count
        self._next_region += 1
        body_ctx = Ctx(ctx.prefix, mult, ctx.calls, None if ctx.param_mult is None else ctx.param_mult * count,
                       ctx.tags | {f"repeat:{self._next_region}"})
        body = Scope(scope, frozenset(names))
        inits = {n: scope.lookup(n) for n in names}
        for n, init in inits.items():
            body.names[n] = self._new_tensor(n, init.shape, init.dtype, mult, ctx.prefix + n, "loop-carried",
                                             sharded=init.sharded, tags=body_ctx.tags)
        carried = dict(body.names)
        for s in st.body:
            self._stmt(s, body, body_ctx, bools, in_block=False)
        for n in names:
            out = body.names[n]
            cin = carried[n]
            if out is cin:
                continue  # not actually rebound on this path
            if len(out.shape) != len(cin.shape) or not all(dims_equal(p, q) for p, q in zip(out.shape, cin.shape)):
                raise SymcostError(
                    f"the repeated body changes the shape of '{n}' from {fmt_shape(cin.shape)} to "
                    f"{fmt_shape(out.shape)}; a carried tensor must keep its shape",
                    st.loc,
                )
            final = self._new_tensor(n, out.shape, out.dtype, ctx.mult, ctx.prefix + n, "loop output",
                                     sharded=out.sharded, tags=ctx.tags)
            self.graph.families.append(Family(cin.storage, inits[n].storage, out.storage, final.storage, count, ctx.mult))
            scope.rebind(n, final)

    def _experts(self, st: S.Experts, scope: Scope, ctx: Ctx, bools: dict, in_block: bool) -> None:
        """The body once, with parameters × E and everything a token does × k (tokens are routed to k experts)."""
        local = self._locals(scope)
        count = self.env.dim_expr(st.count, local)
        active = self.env.dim_expr(st.active, local)
        for node, v in ((st.count, count), (st.active, active)):
            if is_bad_size(v):
                raise SymcostError(f"an expert count must be a positive integer, not {v}", node.loc)
        if count.is_number and active.is_number and active > count:
            raise SymcostError(f"top {active} of {count} experts: k cannot exceed E", st.active.loc)
        self._next_region += 1
        self.graph.expert_counts.append((count, st.count.loc))
        inner = Ctx(self._unique(ctx.prefix + "experts") + "/", ctx.mult * active, ctx.calls, ctx.params * count,
                    ctx.tags | {f"experts:{self._next_region}"})
        for s in st.body:
            self._stmt(s, scope, inner, bools, in_block)

    def _locals(self, scope: Scope) -> dict:
        out, chain = {}, []
        s = scope
        while s is not None:
            chain.append(s)
            s = s.parent
        for s in reversed(chain):
            out.update(s.names)
        return out

    # ---- calls --------------------------------------------------------------------------------
    def _assign(self, st: S.Assign, scope: Scope, ctx: Ctx, bools: dict) -> None:
        call = st.call
        if call.name in self.blocks:
            outputs = self._call_block(st, scope, ctx, bools)
        elif call.name in OPS:
            outputs = self._call_op(st, scope, ctx, bools)
        else:
            raise SymcostError(
                f"unknown op or block '{call.name}'", call.loc, suggest(call.name, [*OPS, *self.blocks])
            )
        if len(outputs) != len(st.targets):
            raise SymcostError(
                f"'{call.name}' returns {len(outputs)} tensor{'s' if len(outputs) != 1 else ''} "
                f"but {len(st.targets)} name{'s are' if len(st.targets) != 1 else ' is'} assigned",
                st.loc,
            )
        for target, t in zip(st.targets, outputs):
            if target.id in self.kinds:
                raise SymcostError(f"'{target.id}' is already declared as {_a(self.kinds[target.id])}", target.loc)
            scope.bind(target.id, Tensor(target.id, t.shape, t.dtype, t.storage, t.read_bytes, t.is_param, t.sharded),
                       target.loc)

    def _tensor_arg(self, node, scope: Scope, what: str) -> Tensor:
        if not isinstance(node, S.Name):
            raise SymcostError(f"{what} must be a tensor name", node.loc)
        value = scope.lookup(node.id)
        if value is None:
            value = self.global_tensors.get(node.id)
        if isinstance(value, Tensor):
            return value
        if node.id in self.kinds:
            raise SymcostError(f"'{node.id}' is {_a(self.kinds[node.id])}, not a tensor", node.loc)
        if value is not None:
            raise SymcostError(f"'{node.id}' is a block argument that is not a tensor", node.loc)
        names = [n for n, v in self._locals(scope).items() if isinstance(v, Tensor)] + list(self.global_tensors)
        raise SymcostError(f"unknown tensor '{node.id}'", node.loc, suggest(node.id, names))

    def _bool_arg(self, node, scope: Scope, bools: dict) -> bool:
        if isinstance(node, S.Bool):
            return node.value
        if isinstance(node, S.Name):
            return self._cond(node.id, node.loc, bools)
        raise SymcostError("expected true, false or an option name", node.loc)

    def _convert(self, kind, node, scope: Scope, bools: dict, what: str):
        if kind is T:
            return self._tensor_arg(node, scope, what)
        if kind is Dim:
            return self.env.dim_expr(node, self._locals(scope))
        if kind is Dims:
            items = node.items if isinstance(node, S.ListLit) else (node,)
            return tuple(self.env.dim_expr(e, self._locals(scope)) for e in items)
        if kind is Axis:
            value = self.env.dim_expr(node, {})
            if not value.is_Integer:
                raise SymcostError(f"{what} must be an integer axis, not {value}", node.loc)
            return int(value)
        if kind is bool:
            return self._bool_arg(node, scope, bools)
        if isinstance(kind, Word):
            if not isinstance(node, S.Name) or node.id not in kind.choices:
                shown = node.id if isinstance(node, S.Name) else "this"
                raise SymcostError(f"{what} must be one of {', '.join(kind.choices)}, not {shown}", node.loc,
                                   suggest(shown, kind.choices))
            return node.id
        if kind is DTypeName:
            if not isinstance(node, S.Name):
                raise SymcostError(f"{what} must be a dtype name", node.loc)
            return self.env.dtype(node.id, node.loc)
        raise TypeError(kind)  # pragma: no cover - an op declared an unknown annotation

    def _bind_op_args(self, st: S.Assign, scope: Scope, bools: dict) -> dict:
        call = st.call
        opdef = OPS[call.name]
        params = list(opdef.signature.parameters.values())
        positional = list(call.args)
        kwargs = {k.name: k for k in call.kwargs}
        bound: dict = {}
        star = None
        for p in params:
            kind = p.annotation
            if kind is Build:
                if p.name in kwargs:
                    raise SymcostError(f"{call.name} has no argument '{p.name}' ({usage(call.name)})", kwargs[p.name].loc)
                bound[p.name] = self.build_info
                continue
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                star = p.name
                bound[p.name] = tuple(self._convert(kind, a, scope, bools, f"{call.name}: argument") for a in positional)
                positional = []
                continue
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and positional:
                node = positional.pop(0)
                if p.name in kwargs:
                    raise SymcostError(f"{call.name}: '{p.name}' is given twice", kwargs[p.name].loc)
            elif p.name in kwargs:
                node = kwargs.pop(p.name).value
            elif p.default is not inspect.Parameter.empty:
                bound[p.name] = p.default
                continue
            else:
                raise SymcostError(f"{call.name}: missing argument '{p.name}' ({usage(call.name)})", call.loc)
            bound[p.name] = self._convert(kind, node, scope, bools, f"{call.name}: '{p.name}'")
        if positional:
            n = sum(1 for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
            raise SymcostError(
                f"{call.name} takes at most {n} positional argument{'s' if n != 1 else ''}, got {len(call.args)} "
                f"({usage(call.name)})",
                positional[0].loc,
            )
        if kwargs:
            name, kw = next(iter(kwargs.items()))
            names = [p.name for p in params if p.name != star and p.annotation is not Build]
            raise SymcostError(
                f"{call.name} has no argument '{name}' ({usage(call.name)})", kw.loc, suggest(name, names)
            )
        return bound

    def _call_op(self, st: S.Assign, scope: Scope, ctx: Ctx, bools: dict) -> list[Tensor]:
        call = st.call
        opdef = OPS[call.name]
        bound = self._bind_op_args(st, scope, bools)
        views: dict[int, Tensor] = {}
        args = {}
        for name, value in bound.items():
            if isinstance(value, Tensor):
                args[name] = self._as_t(value, views)
            elif isinstance(value, tuple) and value and isinstance(value[0], Tensor):
                args[name] = tuple(self._as_t(v, views) for v in value)
            else:
                args[name] = value
        positional, keywords = [], {}
        for p in opdef.signature.parameters.values():
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                positional.extend(args[p.name])
            elif p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                positional.append(args[p.name])
            else:
                keywords[p.name] = args[p.name]
        try:
            rule = opdef.fn(*positional, **keywords)
        except SymcostError as e:
            raise e.with_loc(call.loc) from None
        for out in rule.outputs:
            bad = next((x for x in out.shape if is_bad_size(x)), None)
            if bad is not None:
                raise SymcostError(
                    f"{call.name} would make a tensor of shape {fmt_shape(out.shape)}: {bad} is not a positive size",
                    call.loc,
                )
        path = self._unique(ctx.prefix + st.targets[0].id)
        inputs = list(views.values())
        floating = next((t.dtype for t in inputs if t.dtype.floating), None)
        # tensor parallelism: a column-parallel linear shards its output, a row-parallel one gathers it back
        parallel = bound.get("parallel", "none") if call.name == "linear" else "none"
        activations = [t for t in inputs if not t.is_param]
        if parallel == "row" and not (activations and activations[0].sharded):
            raise SymcostError("linear: a row-parallel layer needs a sharded input (the output of a column-parallel "
                               "layer, or something computed from one)", call.loc)
        out_sharded = parallel == "column" or (parallel == "none" and any(t.sharded for t in activations))
        if rule.splits and any(t.sharded for t in activations):
            self.graph.splits.extend((size, call.loc) for size in rule.splits)
        outputs, out_map = [], {}
        for i, out in enumerate(rule.outputs):
            name = st.targets[i].id if i < len(st.targets) else f"{path}#{i}"
            if out.view_of is not None:
                base = views[id(out.view_of)]
                dtype = out.dtype or base.dtype  # a view has its base's element type
                read = base.read_bytes if out.expand else numel(out.shape) * dtype.nbytes
                t = Tensor(name, tuple(out.shape), dtype, base.storage, read, False, base.sharded)
            else:
                dtype = out.dtype or floating or self.env.default_dtype
                t = self._new_tensor(name, tuple(out.shape), dtype, ctx.mult, path, "output", sharded=out_sharded,
                                     tags=ctx.tags)
            outputs.append(t)
            out_map[id(out)] = t
        created = []
        for np_ in rule.params:
            active = None if ctx.param_mult is None else ctx.mult
            sharded = parallel == "column" or (parallel == "row" and np_.name != "bias")
            axis = (0 if parallel == "column" else 1) if sharded else None
            param = Param(f"{path}.{np_.name}", tuple(np_.shape), self.env.default_dtype, ctx.params, call.loc, active,
                          sharded, axis)
            self.graph.params.append(param)
            created.append(param)
        saves = []
        inference = self.phase != "train"
        for s in () if inference else rule.saves:  # nothing is kept for a backward pass when generating
            if isinstance(s, Internal):
                dtype = self.env.dtype(s.dtype, None)
                saves.append(self._new_tensor(s.label, tuple(s.shape), dtype, ctx.mult, path, s.label,
                                              sharded=out_sharded, tags=ctx.tags).storage)
            elif id(s) in out_map:
                saves.append(out_map[id(s)].storage)
            else:
                t = views[id(s)]
                if not t.is_param:
                    saves.append(t.storage)
        # per instance of this op: parameters exist params/mult times as often as the op runs (E/k for an expert)
        share = ctx.params / ctx.mult
        numel_created = sp.Add(*(p.numel for p in created))
        param_bytes = sp.Add(*(p.numel * p.dtype.nbytes for p in created))
        weight_reads = sp.Integer(0)
        if all(o.view_of is not None for o in rule.outputs):
            io = sp.Integer(0)
        else:
            if rule.reads is None:
                weight_reads = sp.Add(*(t.read_bytes * share for t in inputs if t.is_param)) + param_bytes * share
                reads = sp.Add(*(t.read_bytes for t in inputs if not t.is_param)) + weight_reads
            else:  # the rule says what it reads; a None entry for the table means "the rows of the output"
                rows = outputs[0].nbytes
                reads = sp.Add(*(rows if n is None else n for x, n in rule.reads if x is not None or n is None))
            io = reads + sp.Add(*(t.nbytes for o, t in zip(rule.outputs, outputs) if o.view_of is None))
        # the traffic of sharded tensors and weights, which tensor parallelism divides among the devices
        io_sharded = sp.Integer(0)
        if io != 0:
            io_sharded = sp.Add(*(t.read_bytes for t in inputs if t.sharded and not t.is_param)) + sp.Add(
                *(t.nbytes for o, t in zip(rule.outputs, outputs) if o.view_of is None and t.sharded)
            ) + sp.Add(*(p.numel * p.dtype.nbytes * share for p in created if p.sharded))
        cost = rule.cost + Cost(
            params=numel_created * share, active_params=numel_created, weight_bytes=param_bytes * share, io_bytes=io,
            weight_reads=weight_reads, io_sharded=io_sharded,
        )
        if inference:
            cost = replace(cost, macs_bwd=sp.Integer(0), mm_outputs_bwd=sp.Integer(0), other_bwd=sp.Integer(0))
        text = (source_line(st.loc) or "").split("#", 1)[0].strip()
        attrs = tuple((k, bound[k]) for k in ("parallel", "causal") if k in bound)
        op_sharded = any(t.sharded for t in (*activations, *outputs)) or any(p.sharded for p in created)
        comm_fwd = outputs[0].nbytes if parallel == "row" else sp.Integer(0)
        comm_bwd = sp.Integer(0)
        if parallel == "column" and not inference and activations[0].storage not in self._allreduced:
            # the gradients of q, k and v (or gate and up) w.r.t. their shared input are summed, then all-reduced once
            self._allreduced.add(activations[0].storage)
            comm_bwd = activations[0].nbytes
        self.graph.ops.append(
            OpNode(path, call.name, st.loc, text, tuple(inputs), tuple(outputs), tuple(created), cost,
                   tuple(dict.fromkeys(saves)), ctx.mult, ctx.tags, attrs, op_sharded, comm_fwd, comm_bwd)
        )
        return outputs

    @staticmethod
    def _as_t(t: Tensor, views: dict) -> T:
        view = T(t.shape, t.dtype)
        views[id(view)] = t
        return view

    def _call_block(self, st: S.Assign, scope: Scope, ctx: Ctx, bools: dict) -> list[Tensor]:
        call = st.call
        bdef = self.blocks[call.name]
        if call.name in ctx.calls:
            raise SymcostError(f"block '{call.name}' calls itself (through {' -> '.join(ctx.calls)})", call.loc)
        if len(call.args) > len(bdef.params):
            raise SymcostError(
                f"block '{bdef.name}' takes {len(bdef.params)} argument{'s' if len(bdef.params) != 1 else ''}, "
                f"got {len(call.args) + len(call.kwargs)}",
                call.loc,
            )
        given = dict(zip((p.name for p in bdef.params), call.args))
        for kw in call.kwargs:
            if kw.name not in {p.name for p in bdef.params}:
                raise SymcostError(f"block '{bdef.name}' has no argument '{kw.name}'", kw.loc, suggest(kw.name, [p.name for p in bdef.params]))
            if kw.name in given:
                raise SymcostError(f"block '{bdef.name}': '{kw.name}' is given twice", kw.loc)
            given[kw.name] = kw.value
        inner = Scope()
        inner_bools: dict = {}
        arg_storages = []
        for p in bdef.params:
            if p.name not in given:
                raise SymcostError(f"block '{bdef.name}': missing argument '{p.name}'", call.loc)
            node = given[p.name]
            if p.kind == "tensor":
                t = self._tensor_arg(node, scope, f"argument '{p.name}' of block '{bdef.name}'")
                if p.type is not None:
                    want, _ = self._tensor_type(p.type, self._locals(inner))
                    if len(want) != len(t.shape) or not all(dims_equal(a, b) for a, b in zip(want, t.shape)):
                        raise SymcostError(
                            f"block '{bdef.name}' expects {p.name}: {fmt_shape(want)} but got "
                            f"'{node.id}' of shape {fmt_shape(t.shape)}",
                            node.loc,
                        )
                inner.names[p.name] = Tensor(p.name, t.shape, t.dtype, t.storage, t.read_bytes, t.is_param, t.sharded)
                arg_storages.append(t.storage)
            elif p.kind == "dim":
                inner.names[p.name] = self.env.dim_expr(node, self._locals(scope))
            else:
                inner_bools[p.name] = self._bool_arg(node, scope, bools)
                inner.names[p.name] = inner_bools[p.name]
        path = self._unique(ctx.prefix + bdef.name)
        self.graph.blocks.append(BlockNode(path, bdef.name, ctx.mult, call.loc, tuple(arg_storages)))
        inner_ctx = Ctx(path + "/", ctx.mult, (*ctx.calls, bdef.name), ctx.param_mult, ctx.tags)
        body = bdef.body
        if not body or not isinstance(body[-1], S.Return):
            raise SymcostError(f"block '{bdef.name}' must end with a return statement", bdef.loc)
        try:
            for s in body[:-1]:
                self._stmt(s, inner, inner_ctx, inner_bools, in_block=True)
        except SymcostError as e:
            if e.hint is None and e.loc is not None and e.loc.line != call.loc.line:
                e.hint = f"in block '{bdef.name}' called at {call.loc}"
            raise
        outs = []
        for name in body[-1].names:
            value = inner.lookup(name.id)
            if not isinstance(value, Tensor):
                raise SymcostError(f"block '{bdef.name}' returns '{name.id}', which is not a tensor of the block", name.loc)
            outs.append(value)
        return outs


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def build(module: Module, **kwargs) -> Graph:
    """Elaborate a loaded module into a graph (see Builder for the options)."""
    return Builder(module, **kwargs).build()


def environment(module: Module, **kwargs):
    """The names a module declares (its Env), without building its graph."""
    return Builder(module, **kwargs).declare().env
