"""Calls in a spec: an op's arguments bound and converted, its rule run and its node recorded; a block elaborated."""
from __future__ import annotations

import inspect
from dataclasses import replace

import sympy as sp

from symcost.cost.record import Cost
from symcost.errors import SymcostError, source_line, suggest
from symcost.lang import syntax as S
from symcost.model.dims import dims_equal, fmt_shape, is_bad_size
from symcost.model.dtypes import DType
from symcost.model.graph import BlockNode, Kind, OpNode, Param, Tensor, inside
from symcost.model.scope import Ctx, Scope
from symcost.ops.registry import OPS, Axis, Build, Dim, Dims, DTypeName, Internal, T, Word, numel, usage


MAX_COST_TERMS = 20_000  # terms one op's cost may expand to


class Calls:
    """The part of the Builder that elaborates calls (mixed into model.builder.Builder)."""

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
            if target.id in self.kinds and not ctx.calls:  # a block's own names shadow the spec's
                raise SymcostError(f"'{target.id}' is already declared as {kind_phrase(self.kinds[target.id])}", target.loc)
            scope.bind(target.id, t.renamed(target.id), target.loc)

    def _tensor_arg(self, node, scope: Scope, what: str) -> Tensor:
        if not isinstance(node, S.Name):
            raise SymcostError(f"{what} must be a tensor name", node.loc)
        value = scope.lookup(node.id)
        if value is None:
            value = self.global_tensors.get(node.id)
        if isinstance(value, Tensor):
            return value
        if node.id in self.kinds:
            raise SymcostError(f"'{node.id}' is {kind_phrase(self.kinds[node.id])}, not a tensor", node.loc)
        if value is not None:
            raise SymcostError(f"'{node.id}' is a block argument that is not a tensor", node.loc)
        names = [n for n, v in self._locals(scope).items() if isinstance(v, Tensor)] + list(self.global_tensors)
        raise SymcostError(f"unknown tensor '{node.id}'", node.loc, suggest(node.id, names))

    def _bool_arg(self, node, scope: Scope, bools: dict) -> bool:
        return self.env.truth(node, self._locals(scope), bools)

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
        bound = self._bind_op_args(st, scope, bools)
        views: dict[int, Tensor] = {}
        rule = self._run_rule(call, bound, views)
        path = self._unique(ctx.prefix + st.targets[0].id)
        inputs = list(views.values())
        rule, out_grad = self._gradients(rule, views, inputs)
        activations = [t for t in inputs if not t.is_param]
        parallel = self._parallel(rule, activations, call)
        out_sharded = parallel == "column" or (parallel == "none" and any(t.sharded for t in activations)
                                               and rule.reduce_if_sharded == 0)
        if rule.splits and any(t.sharded for t in activations):
            self.graph.splits.extend((size, call.loc) for size in rule.splits)
        outputs, out_map = self._outputs(rule, st, views, inputs, ctx, path, out_sharded, out_grad)
        created = self._new_params(rule, ctx, path, call, parallel, inputs)
        # an op's own buffers live on the shard it works on: the log-probabilities of a vocabulary-parallel loss
        # are [.., V/t] on each device although the loss it returns is whole
        saves = self._saves(rule, views, out_map, ctx, path, out_sharded or any(t.sharded for t in activations))
        cost = self._op_cost(rule, inputs, outputs, created, ctx)
        comm_fwd, comm_bwd = self._allreduces(rule, parallel, activations, outputs)
        op_sharded = any(t.sharded for t in (*activations, *outputs)) or any(p.sharded for p in created)
        text = (source_line(st.loc) or "").split("#", 1)[0].strip()
        self.graph.ops.append(
            OpNode(path, call.name, st.loc, text, tuple(inputs), tuple(outputs), tuple(created), cost,
                   tuple(dict.fromkeys(saves)), ctx.mult, ctx.tags, op_sharded, comm_fwd, comm_bwd, rule.causal,
                   rule.caches, rule.as_product, rule.from_cache, ctx.blocks, ctx.prefix.removesuffix("/"))
        )
        return outputs

    def _run_rule(self, call, bound: dict, views: dict):
        """The op's rule applied to its arguments (tensors as T views); every output size checked."""
        opdef = OPS[call.name]
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
        for value, what, whole in rule.requires:
            self.env.require_whole(value, call.loc, what, whole)
        from dataclasses import fields as cost_fields

        from symcost.model.dims import expanded_terms

        if any(expanded_terms(getattr(rule.cost, f.name)) > MAX_COST_TERMS for f in cost_fields(rule.cost)):
            raise SymcostError(f"{call.name}: its cost expands to more than {MAX_COST_TERMS:,} terms (sizes made of "
                               "long sums); write such sizes as new dimensions", call.loc)
        for out in rule.outputs:
            bad = next((x for x in out.shape if is_bad_size(x)), None)
            if bad is not None:
                raise SymcostError(
                    f"{call.name} would make a tensor of shape {fmt_shape(out.shape)}: {bad} is not a positive size",
                    call.loc,
                )
        return rule

    def _parallel(self, rule, activations: list, call) -> str:
        """How tensor parallelism splits this op: a rule's column/row marks, and its vocabulary marks (a head
        over the vocabulary, an embedding table by rows) when vocabulary parallelism is on."""
        parallel = rule.parallel
        if parallel in ("vocab", "table"):
            parallel = ("column" if parallel == "vocab" else "table") if self.vocab_parallel else "none"
        if parallel == "none" and rule.on_split == "contracts" and activations and activations[0].sharded:
            raise SymcostError(f"{call.name}: its input is split by tensor parallelism (it comes from a "
                               "column-parallel layer) and it sums over those features", call.loc,
                               "mark it parallel=row (each device multiplies its shard, then an all-reduce), as "
                               "Megatron-LM does, or compute it from a whole tensor")
        if parallel == "row" and not (activations and activations[0].sharded):
            raise SymcostError(f"{call.name}: a row-parallel layer needs a sharded input (the output of a "
                               "column-parallel layer, or something computed from one)", call.loc)
        return parallel

    def _gradients(self, rule, views: dict, inputs: list):
        """What the backward pass computes here, as PyTorch does: nothing when no input needs a gradient and the
        op makes no parameters (its output then needs none either); otherwise everything but the Grad parts for
        inputs that need no gradient (pixels, ids, frozen parameters). Returns the rule so trimmed and whether
        its outputs need a gradient."""
        out_grad = bool(rule.params) or any(t.grad for t in inputs)
        if not out_grad:
            zero = sp.Integer(0)
            return replace(rule, cost=replace(rule.cost, macs_bwd=zero, mm_outputs_bwd=zero, other_bwd=zero),
                           saves=(), grads=()), False
        if not rule.grads:
            return rule, True
        order = list(views)
        needed, skipped = [], []
        for g in rule.grads:
            target = views.get(id(g.wrt))
            (needed if target is None or target.grad else skipped).append(g)  # a new parameter always trains
        kept = sorted({id(s): s for g in needed for s in g.saves}.values(),
                      key=lambda s: order.index(id(s)) if id(s) in views else len(order))
        cost = rule.cost
        for g in skipped:
            cost = cost + g.cost * -1
        return replace(rule, cost=cost, saves=(*rule.saves, *kept)), True

    def _outputs(self, rule, st, views: dict, inputs: list, ctx: Ctx, path: str, out_sharded: bool,
                 out_grad: bool = True):
        # the first floating-point activation's dtype (never a parameter's: quantized weights are dequantized)
        floating = next((t.dtype for t in inputs if t.dtype.floating and not t.is_param), None)
        outputs, out_map = [], {}
        for i, out in enumerate(rule.outputs):
            name = st.targets[i].id if i < len(st.targets) else f"{path}#{i}"
            if out.view_of is not None:
                base = views[id(out.view_of)]
                dtype = out.dtype or base.dtype  # a view has its base's element type
                read = base.read_bytes if out.expand else numel(out.shape) * dtype.nbytes
                t = Tensor(name, tuple(out.shape), dtype, base.storage, read, False, base.sharded,
                           out_grad and dtype.floating)
            else:
                dtype = out.dtype or floating or self.env.activation_dtype or self.env.default_dtype
                t = self._new_tensor(name, tuple(out.shape), dtype, ctx.mult, path,
                                     "cache" if rule.from_cache else "output", sharded=out_sharded, ctx=ctx)
                t = replace(t, grad=out_grad and dtype.floating)
            outputs.append(t)
            out_map[id(out)] = t
        return outputs, out_map

    def _new_params(self, rule, ctx: Ctx, path: str, call, parallel: str, inputs: list) -> list:
        """The parameters the op creates, with the axis tensor parallelism splits; a declared table it splits
        by rows (a vocabulary-parallel embedding or tied head) is marked too."""
        created = []
        for np_ in rule.params:
            active = None if ctx.param_mult is None else ctx.mult
            sharded = parallel in ("column", "table") or (parallel == "row" and np_.name != "bias") or (
                rule.on_split == "per_channel" and any(t.sharded for t in inputs if not t.is_param))
            axis = (1 if parallel == "row" else 0) if sharded else None
            dtype = self._param_dtype(np_.shape, rule.quantizable, ctx.tags)
            param = Param(f"{path}.{np_.name}", tuple(np_.shape), dtype, ctx.params, call.loc, active, sharded, axis,
                          name=f"{path[len(ctx.prefix):]}.{np_.name}")
            self.graph.params.append(param)
            created.append(param)
        if parallel in ("column", "table"):
            self._shard_declared(inputs)
        return created

    def _param_dtype(self, shape, of_linear: bool, tags) -> DType:
        """A parameter's dtype: --weights for the matrices --quantize selects, the model's otherwise."""
        env = self.env
        if env.weight_dtype is None or len(shape) < 2:
            return env.default_dtype
        chosen = env.quantize == "matrices" or (of_linear and (env.quantize == "linear" or inside(tags, Kind.REPEAT)))
        return env.weight_dtype if chosen else env.default_dtype

    def _shard_declared(self, inputs: list) -> None:
        for t in inputs:
            if not t.is_param:
                continue
            store = self.graph.storages[t.storage]
            for i, p in enumerate(self.graph.params):
                if p.path == store.creator and store.label == "parameter" and not p.sharded:
                    self.graph.params[i] = replace(p, sharded=True, shard_axis=0)
                    self._undo_later(self.graph.params.__setitem__, i, p)
                    if t.storage not in self.split_tables:
                        self.split_tables.add(t.storage)
                        self._undo_later(self.split_tables.discard, t.storage)

    def _saves(self, rule, views: dict, out_map: dict, ctx: Ctx, path: str, local_sharded: bool) -> list:
        saves = []
        for s in () if self.phase != "train" else rule.saves:  # nothing is kept for a backward pass when generating
            if isinstance(s, Internal):
                dtype = self.env.dtype(s.dtype, None)
                saves.append(self._new_tensor(s.label, tuple(s.shape), dtype, ctx.mult, path, s.label,
                                              sharded=local_sharded, ctx=ctx).storage)
            elif id(s) in out_map:
                saves.append(out_map[id(s)].storage)
            else:
                t = views[id(s)]
                if not t.is_param:
                    saves.append(t.storage)
        return saves

    def _op_cost(self, rule, inputs: list, outputs: list, created: list, ctx: Ctx) -> Cost:
        """The rule's cost plus what the graph knows: parameters, weight bytes, bytes moved and their shares."""
        # per instance of this op: parameters exist params/mult times as often as the op runs (E/k for an expert)
        share = ctx.params / ctx.mult
        numel_created = sp.Add(*(p.numel for p in created))
        param_bytes = sp.Add(*(p.numel * p.dtype.nbytes for p in created))
        weight_reads = sp.Integer(0)
        # a cache read at decode writes nothing: its entries are resident, its readers count their reads
        written = [] if rule.from_cache else [t for o, t in zip(rule.outputs, outputs) if o.view_of is None]
        if not written:
            io = sp.Integer(0)
        else:
            if rule.reads is None:
                weight_reads = sp.Add(*(t.read_bytes * share for t in inputs if t.is_param)) + param_bytes * share
                reads = sp.Add(*(t.read_bytes for t in inputs if not t.is_param)) + weight_reads
            else:  # the rule says what it reads; a None entry for the table means "the rows of the output"
                table = next((x for x in inputs if x.is_param), None)  # rows read in the table's own dtype
                rows = outputs[0].nbytes if table is None else numel(outputs[0].shape) * table.dtype.nbytes
                reads = sp.Add(*(rows if n is None else n for x, n in rule.reads if x is not None or n is None))
            io = reads + sp.Add(*(t.nbytes for t in written))
        # the traffic of sharded tensors and weights, which tensor parallelism divides among the devices
        io_sharded = sp.Integer(0)
        if io != 0:
            split_tables = self.split_tables  # declared tables tensor parallelism splits (see _shard_declared)
            io_sharded = sp.Add(*(t.read_bytes for t in inputs if t.sharded and not t.is_param)) + sp.Add(
                *(t.read_bytes * share for t in inputs if t.is_param and t.storage in split_tables
                  and rule.reads is None)) + sp.Add(
                *(t.nbytes for t in written if t.sharded)) + sp.Add(
                *(p.numel * p.dtype.nbytes * share for p in created if p.sharded))
        cost = rule.cost + Cost(
            params=numel_created * share, active_params=numel_created, weight_bytes=param_bytes * share, io_bytes=io,
            weight_reads=weight_reads, io_sharded=io_sharded,
        )
        if self.phase != "train":
            cost = replace(cost, macs_bwd=sp.Integer(0), mm_outputs_bwd=sp.Integer(0), other_bwd=sp.Integer(0))
        return cost

    def _allreduces(self, rule, parallel: str, activations: list, outputs: list) -> tuple:
        """Bytes all-reduced after the forward (a row-parallel output, a split table's lookups, a loss over a
        split vocabulary) and in the backward (a column-parallel input's gradient, once per shared input)."""
        comm_fwd = outputs[0].nbytes if parallel in ("row", "table") else sp.Integer(0)
        if rule.reduce_if_sharded != 0 and any(t.sharded for t in activations):
            comm_fwd += rule.reduce_if_sharded
        comm_bwd = sp.Integer(0)
        if parallel == "column" and self.phase == "train" and activations[0].storage not in self._allreduced:
            # the gradients of q, k and v (or gate and up) w.r.t. their shared input are summed, then all-reduced once
            self._allreduced.add(activations[0].storage)
            self._undo_later(self._allreduced.discard, activations[0].storage)
            comm_bwd = activations[0].nbytes
        return comm_fwd, comm_bwd

    @staticmethod
    def _as_t(t: Tensor, views: dict) -> T:
        view = T(t.shape, t.dtype)
        views[id(view)] = t
        return view

    def _block_args(self, bdef: S.BlockDef, call, scope: Scope, bools: dict) -> tuple:
        """A block call's arguments bound to the block's parameters: the body's scope (tensors checked against
        their declared shapes, dims, booleans), the booleans alone, and the storages of the tensor arguments."""
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
                inner.names[p.name] = t.renamed(p.name)
                arg_storages.append(t.storage)
            elif p.kind == "dim":
                inner.names[p.name] = self.env.dim_expr(node, self._locals(scope))
            else:
                inner_bools[p.name] = self._bool_arg(node, scope, bools)
                inner.names[p.name] = inner_bools[p.name]
        return inner, inner_bools, arg_storages

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
        inner, inner_bools, arg_storages = self._block_args(bdef, call, scope, bools)
        path = self._unique(ctx.prefix + bdef.name)
        self.graph.blocks.append(BlockNode(path, bdef.name, ctx.mult, call.loc, tuple(arg_storages),
                                           path[len(ctx.prefix):], ctx.prefix.removesuffix("/")))
        inner_ctx = replace(ctx, prefix=path + "/", calls=(*ctx.calls, bdef.name), blocks=(*ctx.blocks, path))
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



def kind_phrase(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


