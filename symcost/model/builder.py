"""Syntax to graph: blocks, repeats and options elaborated into shape-checked op nodes with multiplicities.

A `repeat L { … }` body is built once with multiplicity L (never unrolled), unless `unroll=True`
asks for the concrete walk used to cross-check the symbolic totals.
"""
from __future__ import annotations

from collections import ChainMap

from dataclasses import replace

import sympy as sp

from symcost.errors import Loc, SymcostError, suggest
from symcost.lang import syntax as S
from symcost.lang.syntax import Module
from symcost.model.calls import Calls, kind_phrase
from symcost.model.dims import Env, dims_equal, fmt_shape, is_bad_size, reset_derived, set_derived
from symcost.model.dtypes import DType, quantized
from symcost.model.expansion import check_size
from symcost.model.graph import Family, Graph, Kind, Param, Region, Storage, Tensor
from symcost.model.journal import Journal
from symcost.model.prune import prune_for_decode
from symcost.model.scope import Ctx, Scope, assigned
from symcost.ops.registry import OPS, PHASES, Build, numel

ONE = sp.Integer(1)


class Builder(Calls, Journal):
    """Elaborates a module: declarations first (declare), then the statements (build)."""

    def __init__(
        self,
        module: Module,
        *,
        options: dict[str, bool] | None = None,
        dtype: str | None = None,
        values: dict[str, int] | None = None,
        unroll: bool = False,
        phase: str = "train",
        vocab_parallel: bool = True,
        dtypes: dict | None = None,
        released=(),
    ):
        if phase not in PHASES:
            raise SymcostError(f"unknown phase '{phase}'; use one of {', '.join(PHASES)}", None, suggest(phase, PHASES))
        self.phase = phase
        self.vocab_parallel = vocab_parallel  # heads and tables over the vocabulary split under tensor parallelism
        self.split_tables: set = set()  # storages of declared tables a vocabulary-parallel head or lookup splits
        self.build_info = Build(phase)
        self._next_region = 0
        self._allreduced: set[int] = set()  # inputs of column-parallel layers whose gradient is already all-reduced
        self.module = module
        self.option_overrides = dict(options or {})
        self.dtype_override = dtype
        # dtypes by role: activations, weights (with quantize, group, scale, zero_point) and kv, as names
        self.dtype_roles = {k: v for k, v in (dtypes or {}).items() if v is not None}
        self.value_overrides = dict(values or {})
        self.unroll = unroll
        self.env = Env()
        self.env.released = set(released) | set(values or {})  # dims declared `dim f = default …` given values: free
        self.blocks: dict[str, S.BlockDef] = {}
        self.global_tensors: dict[str, Tensor] = {}
        self.kinds: dict[str, str] = {}
        self.input_names: set[str] = set()
        self.graph: Graph | None = None
        self._next_storage = 0
        self._used_paths: set[str] = set()
        self._suffixes: dict[str, int] = {}  # path -> the next suffix to try (see _unique)
        self._checking = 0  # branches not taken being checked (nested), whose changes are undone
        self._undo: list = []  # (function, arguments) that undo those changes, newest last

    # ---- names --------------------------------------------------------------------------------
    def _claim(self, kind: str):
        def claim(name: str, loc: Loc) -> None:
            if name in self.kinds:
                raise SymcostError(f"'{name}' is already declared as {kind_phrase(self.kinds[name])}", loc)
            if name in self.input_names:
                raise SymcostError(f"'{name}' is already declared as an input", loc)
            if name in OPS and kind == "block":
                raise SymcostError(f"block '{name}' has the name of a built-in op", loc)
            if name in ("training", "decoding"):
                raise SymcostError(f"'{name}' is a built-in option (true when --phase is "
                                   f"{'train' if name == 'training' else 'decode'}); use another name", loc)
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
                    raise SymcostError(f"'{item.name}' is already declared as {kind_phrase(self.kinds[item.name])}", item.loc)
                if item.name in self.input_names:
                    raise SymcostError(f"input '{item.name}' is declared twice", item.loc)
                self.input_names.add(item.name)
        self._apply_overrides()
        self._statements = stmts
        check_size(self.module.items, stmts, self.blocks)
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
        if self.phase == "decode" and not any(op.caches for op in self.graph.ops):
            raise SymcostError(f"--phase decode: {self.module.path} keeps nothing for later tokens; mark the keys and "
                               "values that generation caches with cache(...)")
        if self.phase == "decode":
            prune_for_decode(self.graph)
        return self.graph

    def _phase_setup(self) -> None:
        """The built-in option `training`, and for decoding: one new token (the decode dim, s unless a dim is
        marked `decode`, = 1) against c cached ones."""
        self.env.options["training"] = self.phase == "train"
        self.env.option_docs["training"] = "built in: true in the train phase, false in prefill and decode"
        self.env.options["decoding"] = self.phase == "decode"
        self.env.option_docs["decoding"] = "built in: true in the decode phase (one new token against a cache)"
        if self.phase != "decode":
            return
        name = self.env.decode_dim
        if name not in self.env.dims:
            raise SymcostError("--phase decode fixes the sequence dimension to 1: name it s, or mark the one a decode "
                               "step fixes with `dim t decode`")
        if "c" in self.env.dims:
            raise SymcostError("--phase decode adds the dimension c (cached tokens); the spec already has a c",
                               self.env.dims["c"].loc)
        self.env.fixed[name] = sp.Integer(1)
        s_sym = self.env.dims[name].symbol
        for other, dim in list(self.env.dims.items()):  # derived dims made from s follow it (n = b*s)
            if dim.definition is not None and s_sym in dim.definition.free_symbols:
                self.env.dims[other] = replace(dim, definition=dim.definition.xreplace({s_sym: sp.Integer(1)}))
        self.env.add_dim(S.DimDecl("c", None, "tokens in the KV cache", None, None), lambda *_: None)
        self.build_info = Build("decode", self.env.dims["c"].symbol)

    def set_options(self, options: dict[str, bool]) -> None:
        """Flip declared options after declare() and before build()."""
        self.option_overrides.update(options)
        self._apply_options()

    def _apply_options(self) -> None:
        for key, value in self.option_overrides.items():
            if key in ("training", "decoding"):
                raise SymcostError(f"'{key}' follows --phase (train, prefill or decode); it cannot be set")
            if key not in self.env.options:
                raise SymcostError(f"unknown option '{key}'", None, suggest(key, self.env.options))
            self.env.options[key] = value

    def _apply_overrides(self) -> None:
        self._apply_options()
        if self.dtype_override:
            self.env.default_dtype = self.env.dtype(self.dtype_override, None)
        self._apply_dtype_roles()
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

    def _apply_dtype_roles(self) -> None:
        """The activations', quantized weights' and KV cache's dtypes (names checked against the spec's)."""
        env, roles = self.env, self.dtype_roles
        unknown = set(roles) - {"activations", "weights", "kv", "quantize", "group", "scale", "zero_point"}
        if unknown:
            raise SymcostError(f"unknown dtype role '{sorted(unknown)[0]}'")

        def named(key: str) -> DType:
            try:
                return env.dtype(roles[key], None)
            except SymcostError as e:
                raise SymcostError(f"--{key.replace('_', '-')}: {e.message}", None, e.hint) from None

        if "activations" in roles:
            env.activation_dtype = named("activations")
        if "weights" in roles:
            base = named("weights")
            group = roles.get("group")
            scale = named("scale") if "scale" in roles else env.default_dtype
            zero = roles.get("zero_point")
            zero = None if zero is None else base if zero is True else named("zero_point")
            env.weight_dtype = quantized(base, group, scale if group else None, zero if group else None)
            env.quantize = roles.get("quantize", "layers")
        if "kv" in roles:
            env.kv_dtype = named("kv")
            self.build_info = replace(self.build_info, cache_dtype=env.kv_dtype)

    def _tensor_type(self, tt: S.TensorType, local: dict) -> tuple[tuple, DType]:
        shape = tuple(self.env.dim_expr(e, local) for e in tt.shape)
        for e, size in zip(tt.shape, shape):
            if is_bad_size(size):
                raise SymcostError(f"a tensor size must be a positive integer, not {size}", e.loc)
        dtype = self.env.dtype(tt.dtype, tt.loc) if tt.dtype else self.env.default_dtype
        return shape, dtype

    def _declare_param(self, item: S.ParamDecl, top: Scope) -> None:
        shape, dtype = self._tensor_type(item.type, {})
        if self.env.weight_dtype is not None and self.env.quantize == "matrices" and len(shape) >= 2:
            dtype = self.env.weight_dtype  # a declared table (an embedding, tied or not) is quantized too
        param = Param(item.name, shape, dtype, ONE, item.loc, frozen=item.frozen, name=item.name)
        self.graph.params.append(param)
        t = self._new_tensor(item.name, shape, dtype, ONE, item.name, "parameter", is_param=True)
        self.global_tensors[item.name] = replace(t, grad=not item.frozen)

    def _declare_input(self, item: S.InputDecl, top: Scope) -> None:
        shape, dtype = self._tensor_type(item.type, {})
        if item.type.dtype is None and self.env.activation_dtype is not None:
            dtype = self.env.activation_dtype
        t = self._new_tensor(item.name, shape, dtype, ONE, item.name, "input")
        t = replace(t, grad=not item.nograd and dtype.floating)  # integer ids never need a gradient
        self.graph.inputs.append(t)
        top.names[item.name] = t

    def _new_tensor(self, name, shape, dtype, mult, creator, label, is_param=False, sharded=False,
                    ctx: Ctx | None = None) -> Tensor:
        """A tensor on a new storage, made in `ctx`'s regions and blocks (none at the top level)."""
        sid = self._next_storage
        self._next_storage += 1
        nbytes = numel(shape) * dtype.nbytes
        tags, blocks = (ctx.tags, ctx.blocks) if ctx is not None else (frozenset(), ())
        self.graph.storages[sid] = Storage(sid, nbytes, mult, creator, label, tags, sharded, blocks)
        return Tensor(name, shape, dtype, sid, nbytes, is_param, sharded)

    def _unique(self, path: str) -> str:
        """The path, or the path with the first free suffix .2, .3, … (remembered, so a path used n times costs
        n lookups in all, not n²/2)."""
        if path not in self._used_paths:
            self._used_paths.add(path)
            self._undo_later(self._used_paths.discard, path)
            return path
        old = self._suffixes.get(path)
        i = old or 2
        while f"{path}.{i}" in self._used_paths:
            i += 1
        self._suffixes[path] = i + 1
        self._used_paths.add(f"{path}.{i}")
        self._undo_later(self._used_paths.discard, f"{path}.{i}")
        if old is None:
            self._undo_later(self._suffixes.pop, path)
        else:
            self._undo_later(self._suffixes.__setitem__, path, old)
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
            inner = replace(ctx, tags=ctx.tags | {self._region(Kind.FUSED)})
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

    def _if(self, st: S.If, scope: Scope, ctx: Ctx, bools: dict, in_block: bool) -> None:
        value = self.env.truth(st.cond, self._locals(scope), bools)
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

    def _repeat(self, st: S.Repeat, scope: Scope, ctx: Ctx, bools: dict) -> None:
        """`repeat n { … }`: the body once, × n. With `pattern [k1, …, km]` the layers cycle through m kinds:
        the body once per kind (its name true, the others false), each × n/m, in sequence."""
        count = self.env.dim_expr(st.count, self._locals(scope))
        from symcost.lang.unparse import unparse_expr

        written = unparse_expr(st.count)
        self.env.require_whole(count, st.count.loc, "the repeat count", "a whole number of layers", least=0,
                               text=written)
        kinds = [k.id for k in st.pattern]
        periods = count
        if kinds:
            periods = count / len(kinds)
            self.env.require_whole(periods, st.count.loc, "the repeat count",
                                   f"a multiple of {len(kinds)} (the pattern has {len(kinds)} kinds)", count, least=0,
                                   text=written)
        passes = [dict(bools, **{k: k == kind for k in kinds}) for kind in kinds] or [bools]
        found = []
        for pb in passes:
            found += assigned(st.body, lambda cond, pb=pb: self.env.truth(cond, self._locals(scope), pb))
        names = [n for n in dict.fromkeys(found) if isinstance(scope.lookup(n), Tensor)]
        if self.unroll:
            if not count.is_Integer:
                raise SymcostError(f"cannot unroll a repeat whose count {count} is not a number", st.count.loc)
            current = {n: scope.lookup(n) for n in names}
            for _ in range(int(periods)):
                current = self._passes(st, passes, scope, ctx, names, current)
            for n in names:
                scope.rebind(n, current[n])
            return
        mult = ctx.mult * periods
        body_ctx = replace(ctx, mult=mult, param_mult=None if ctx.param_mult is None else ctx.param_mult * periods,
                           tags=ctx.tags | {self._region(Kind.REPEAT)})
        inits = {n: scope.lookup(n) for n in names}
        saved = self._snapshot()
        carried = self._carried(inits, body_ctx, set())
        out = self._passes(st, passes, scope, body_ctx, names, carried)
        late = {n for n in names if out[n].grad and not carried[n].grad}
        if late:  # a later layer makes it need a gradient (a parameter inside): build again with it needing one
            self._restore(saved)
            carried = self._carried(inits, body_ctx, late)
            out = self._passes(st, passes, scope, body_ctx, names, carried)
        else:
            self._release()
        for n in names:
            self._close_loop(st, n, carried[n], out[n], inits[n], periods, ctx, scope)

    def _carried(self, inits: dict, ctx: Ctx, grad: set) -> dict:
        """The loop-carried tensors of a repeat body (`ctx`), those in `grad` needing a gradient from the start."""
        out = {}
        for n, init in inits.items():
            t = self._new_tensor(n, init.shape, init.dtype, ctx.mult, ctx.prefix + n, "loop-carried",
                                 sharded=init.sharded, ctx=ctx)
            out[n] = replace(t, grad=init.grad or n in grad)
        return out

    def _passes(self, st: S.Repeat, passes: list, scope: Scope, ctx: Ctx, names: list, current: dict) -> dict:
        """One period of a repeat: the body once per pattern kind, each taking the carried tensors from the last."""
        for pb in passes:
            body = Scope(scope, frozenset(names))
            body.names.update(current)
            body.names.update({k: v for k, v in pb.items() if isinstance(v, bool) and k not in scope.names})
            for s in st.body:
                self._stmt(s, body, ctx, pb, in_block=False)
            current = {n: body.names[n] for n in names}
        return current

    def _close_loop(self, st: S.Repeat, n: str, cin: Tensor, out: Tensor, init: Tensor, count, ctx: Ctx,
                    scope: Scope) -> None:
        if out is cin:
            return  # not actually rebound on this path
        if len(out.shape) != len(cin.shape) or not all(dims_equal(p, q) for p, q in zip(out.shape, cin.shape)):
            raise SymcostError(
                f"the repeated body changes the shape of '{n}' from {fmt_shape(cin.shape)} to "
                f"{fmt_shape(out.shape)}; a carried tensor must keep its shape",
                st.loc,
            )
        final = self._new_tensor(n, out.shape, out.dtype, ctx.mult, ctx.prefix + n, "loop output",
                                 sharded=out.sharded, ctx=ctx)
        self.graph.families.append(Family(cin.storage, init.storage, out.storage, final.storage, count, ctx.mult))
        scope.rebind(n, replace(final, grad=out.grad))

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
        self.graph.expert_counts.append((count, st.count.loc))
        region = self._region(Kind.EXPERTS)
        self.graph.expert_regions[region] = (count, active)
        inner = replace(ctx, prefix=self._unique(ctx.prefix + "experts") + "/", mult=ctx.mult * active,
                        param_mult=ctx.params * count, tags=ctx.tags | {region})
        for s in st.body:
            self._stmt(s, scope, inner, bools, in_block)

    def _region(self, kind: Kind) -> Region:
        """A new region of the spec, numbered in the order regions are entered."""
        self._next_region += 1
        return Region(kind, self._next_region)

    def _locals(self, scope: Scope):
        """The names a scope sees, innermost first, as a read-only chain of the scopes' own maps (copying them
        for every size an op is given made a long spec quadratic)."""
        chain = []
        s = scope
        while s is not None:
            chain.append(s.names)
            s = s.parent
        return ChainMap(*chain)


def build(module: Module, **kwargs) -> Graph:
    """Elaborate a loaded module into a graph (see Builder for the options)."""
    return Builder(module, **kwargs).build()


def environment(module: Module, **kwargs):
    """The names a module declares (its Env), without building its graph."""
    return Builder(module, **kwargs).declare().env
