"""The public API: one request → one derivation → an Analysis of closed forms, values and analyses (data only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symcost.errors import SymcostError
from symcost.settings import Request, request


def derive(spec=None, *, preset: str | None = None, hf_config=None, set=None, path=None, **settings) -> "Analysis":
    """Derive a spec's closed forms and the analyses its settings ask for.

    spec: a .arch file or a shipped spec's name ("llama"); optional with `preset` or `hf_config`, which choose
    the spec by model_type. set: dims and options, as a dict ({"b": 1, "tied": False}) or NAME=VALUE texts.
    path: directories searched before the shipped ones. Every other keyword is a setting of symcost.settings.TABLE:
    phase, dtype, activations, weights, quantize, group, scale, zero_point, kv, flops, causal, other_flops,
    embedding_flops, recompute, flash_attention, tp, sp, vocab_parallel, pp, stage, ep, keep, dp, zero, optimizer,
    precision, micro_batches, device, step_time, flops_efficiency, bandwidth_efficiency, reserve, reserve_bytes, generate.

    >>> a = derive("gpt2", preset="gpt2-small")
    >>> a.at().params
    124439808
    """
    if path is not None:
        from symcost.paths import use_path

        use_path([path] if isinstance(path, str) else path)
    return run(request(spec, preset=preset, hf_config=hf_config, values=set, **settings))


def solve(spec=None, unknown: str | None = None, *constraints, want: str = "max", preset: str | None = None,
          hf_config=None, set=None, path=None, **settings):
    """Derive, then answer an inverse question (see Analysis.solve): `want` max | min | crossover.

    >>> a = solve("llama", "c", "kv_cache_bytes <= 24GB", preset="llama-2-7b", phase="decode", set={"b": 1})
    >>> a.value
    45776
    """
    if unknown is None:
        raise SymcostError("name the dim to solve for: solve(spec, 'b', 'memory_bytes <= device', ...)")
    return derive(spec, preset=preset, hf_config=hf_config, set=set, path=path, **settings).solve(
        unknown, *constraints, want=want)


def run(req: Request) -> "Analysis":
    """Carry out a checked Request: read the config, build the graph once, account, evaluate, analyse."""
    from symcost.analysis.evaluate import assigned_names, parse_assignments
    from symcost.cost.accounting import derive as account
    from symcost.lang.parse import load
    from symcost.model.builder import Builder

    resolved = _resolve_config(req)
    spec = req.spec or (str(resolved.spec) if resolved else None)
    if spec is None:
        raise SymcostError("give a spec (a file or a shipped name such as llama), or a preset or HF config that "
                           "chooses one by model_type")
    released = assigned_names(req.values) | set(resolved.values if resolved else ())
    builder = Builder(load(spec), dtype=req.dtype, phase=req.phase, vocab_parallel=req.vocab_parallel,
                      dtypes=dtype_roles(req), released=released)
    env = builder.declare().env
    degrees = {name: _degree(getattr(req, name), env, name) for name in ("tp", "pp", "ep")}
    dp = _degree(req.dp if req.dp is not None else "N_d", env, "dp") if req.training else None
    values, options = parse_assignments(list(req.values), env)
    if req.phase == "decode" and env.decode_dim in values:
        raise SymcostError(f"--phase decode computes one new token per sequence ({env.decode_dim} = 1); set c, the "
                           "cached tokens")
    if resolved:
        _check_names(resolved, env)
        values, options = {**resolved.values, **values}, {**resolved.options, **options}
    builder.set_options(options)
    graph = builder.build()
    if degrees["ep"] is not None and not graph.expert_counts:
        raise SymcostError(f"--ep {req.ep}: expert parallelism splits a mixture's experts, and "
                           f"{graph.file} has no `experts` region")
    if degrees["tp"] is not None and degrees["tp"] != 1 and not any(node.sharded for node in graph.ops):
        raise SymcostError(f"--tp {req.tp}: tensor parallelism splits the layers a spec marks parallel=column, "
                           f"row or vocab, and {graph.file} marks none (every device would hold the whole model)")
    report = account(graph, req.flops, tuple(req.keep), recompute=req.recompute, flash=req.flash_attention,
                     tp=degrees["tp"], sp=req.sp, causal=req.causal, pp=degrees["pp"], ep=degrees["ep"],
                     other=req.other_flops, embedding=req.embedding_flops, stage=req.stage)
    if resolved:
        _check_unset(resolved, env, report)
    analysis = Analysis(req, report, dict(values), resolved, dp)
    analysis.at()  # check the given values now: derived dims whole, degrees that divide what they split
    return analysis


@dataclass
class Analysis:
    """A derivation's result: closed forms (SymPy expressions over the spec's dims) and the analyses asked for.

    Metrics are attributes and items (`a.params`, `a["flops_fwd"]`); dims by name (`a.dims["h"]`, `a.symbol("h")`);
    `a.at(b=1, s=2048)` gives exact values; `a.explain()` the derivation op by op."""

    request: Request
    report: object  # symcost.cost.accounting.Report
    values: dict  # dims given so far (--set, a preset, a config)
    config: object = None  # symcost.analysis.hf.Resolved, when a preset or config was read
    dp: sp.Expr | None = None  # the data-parallel degree of the training state
    _analyses: dict = field(default_factory=dict, repr=False)

    # ---- closed forms
    @property
    def graph(self):
        return self.report.graph

    @property
    def env(self):
        return self.report.graph.env

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def title(self) -> str:
        return self.graph.title or self.graph.name

    @property
    def totals(self) -> dict:
        """Whole-model closed forms, metric name → SymPy expression."""
        return self.report.totals

    @property
    def frozen_params(self) -> sp.Expr:
        """Parameters counted in `params` that get no gradient or optimizer state (`param w: [..] frozen`)."""
        return self.report.frozen_params

    @property
    def blocks(self) -> dict:
        """Per instance of each block, path → (repeat count, metrics)."""
        return {b.path: b for b in self.report.blocks}

    @property
    def ops(self) -> list:
        return self.report.ops

    @property
    def dims(self) -> dict:
        """Dimension name → symcost.model.dims.Dim (its symbol, doc and definition)."""
        return dict(self.env.dims)

    def symbol(self, name: str) -> sp.Symbol:
        """The SymPy symbol of a dimension (symbols carry assumptions: build substitutions with this, or use at())."""
        if name not in self.env.dims:
            from symcost.errors import suggest

            raise SymcostError(f"unknown dimension '{name}'", None, suggest(name, self.env.dims))
        return self.env.dims[name].symbol

    def __getitem__(self, metric: str) -> sp.Expr:
        if metric not in self.report.totals:
            from symcost.errors import suggest

            raise KeyError(f"unknown metric '{metric}'" + (f"; {suggest(metric, self.report.totals)}"
                                                           if suggest(metric, self.report.totals) else ""))
        return self.report.totals[metric]

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        totals = self.__dict__.get("report").totals if "report" in self.__dict__ else {}
        if name in totals:
            return totals[name]
        raise AttributeError(f"'Analysis' has no attribute '{name}'")

    # ---- analyses (data, computed once)
    def _once(self, key, make):
        if key not in self._analyses:
            self._analyses[key] = make()
        return self._analyses[key]

    @property
    def training(self):
        """Training-state memory (weights, gradients, optimizer) per device, or None outside training."""
        if self.dp is None:
            return None
        from symcost.analysis.training import training_state_for

        return self._once("training", lambda: training_state_for(
            self.report, precision=self.precision, optimizer=self.request.optimizer, zero=self.request.zero,
            dp=self.dp))

    @property
    def precision(self) -> str:
        return self.request.precision or PRECISION_OF.get(self.env.default_dtype.name, "mixed-bf16")

    @property
    def dp_comm_bytes(self):
        """Bytes each device sends per optimizer step for data parallelism, or None outside training: ring
        volume (N_d − 1)/N_d, over --micro-batches micro-batches (symcost.analysis.training.dp_communication_bytes)."""
        if self.dp is None:
            return None
        from symcost.analysis.training import dp_communication_bytes

        return self._once("dp_comm", lambda: sp.expand(dp_communication_bytes(
            self.report.totals["params"], self.precision, self.request.zero, self.dp, exact=True,
            frozen=self.report.frozen_params, micro_batches=self.request.micro_batches or 1)))

    @property
    def device(self):
        """The device of --device (symcost.analysis.hardware.Device), or None."""
        if self.request.device is None:
            return None
        from symcost.analysis.hardware import load_device

        return self._once("device", lambda: _achieved(load_device(self.request.device), self.request))

    @property
    def serving(self):
        """Serving bounds end to end (symcost.analysis.serving.Serving) with `generate` and a device, or None."""
        if self.request.generate is None or self.device is None:
            return None
        from symcost.analysis.serving import serving

        return self._once("serving", lambda: serving(self))

    @property
    def memory(self):
        """Memory per device (symcost.analysis.memory.Memory): its parts, reserve, total and the device's capacity."""
        from symcost.analysis.memory import memory

        return self._once("memory", lambda: memory(self))

    @property
    def summary(self):
        """Lower bounds for the phase on the device (symcost.analysis.roofline.PhaseSummary), or None."""
        if self.device is None:
            return None
        from symcost.analysis.roofline import phase_summary

        return self._once("summary", lambda: phase_summary(self.report, self.device))

    @property
    def roofline(self):
        """Per-op roofline bounds on the device (symcost.analysis.roofline.Roofline), or None."""
        if self.device is None:
            return None
        from symcost.analysis.roofline import roofline

        return self._once("roofline", lambda: roofline(self.report, self.device))

    @property
    def mfu(self):
        """Model FLOPs utilisation of a measured step (step_time), as a closed form, or None."""
        if self.request.step_time is None or self.device is None:
            return None
        from symcost.analysis.roofline import mfu_for

        return mfu_for(self.report, self.device, self.request.step_time)

    # ---- values
    def at(self, **values) -> "Values":
        """Exact values of every metric and analysis at these dims (added to those already given)."""
        from symcost.analysis.evaluate import Evaluator, parse_assignments
        from symcost.cost.parallel import check_divisible

        dims, options = parse_assignments(list(values.items()), self.env)
        if options:
            raise SymcostError(f"option '{next(iter(options))}' changes the graph: give it to derive(set=...)")
        merged = {**self.values, **dims}
        ev = Evaluator(self.env, merged)
        check_divisible(self.report, merged)
        if self.config is not None:
            from symcost.analysis.hf import check_derived

            check_derived(self.config, ev)
        return Values(self, ev)

    # ---- inverse questions (symcost.analysis.solve)
    def solve(self, unknown: str, *constraints, want: str = "max"):
        """The largest (want="max") or smallest ("min") whole value of a dim such that every constraint holds
        (texts such as 'memory_bytes <= device', or (name, op, value) tuples) → a BoundAnswer (`.value`,
        `.status`, the checks at the answer and the next integer, the boundary's closed form); want="crossover"
        with one equation 'A = B' → a Crossover (`.roots`: (closed form, value) pairs)."""
        from symcost.analysis import solve as S

        if want == "crossover":
            if len(constraints) != 1:
                raise SymcostError("a crossover takes one equation, such as 'attention.flops_fwd = mlp.flops_fwd'")
            return S.crossover(self, unknown, constraints[0])
        return S.solve_bound(self, unknown, list(constraints), want)

    def limit(self, unknown: str, term: str):
        """The leading term of a term (a name, or a sum/product such as 'train_flops / tokens / params') as the
        dim grows, the other dims kept as symbols, and its limit → a Leading (`.leading`, `.limit`)."""
        from symcost.analysis.solve import leading

        return leading(self, unknown, term)

    def explain(self, **values) -> str:
        """The derivation op by op: shapes in and out, parameters, FLOPs, bytes, what each op saves."""
        from symcost.present import render

        return render(self, "text", explain=True, values=values)

    # ---- display
    def __repr__(self) -> str:
        parts = [f"{self.name}", f"phase={self.request.phase}"]
        for key in ("tp", "pp", "ep"):
            if getattr(self.request, key) is not None:
                parts.append(f"{key}={getattr(self.request, key)}")
        if self.request.device:
            parts.append(f"device={self.request.device}")
        given = " ".join(f"{k}={v}" for k, v in self.values.items())
        return f"<symcost.Analysis {' '.join(parts)}{' at ' + given if given else ''}: {len(self.report.totals)} metrics>"

    def _repr_latex_(self) -> str:
        from symcost.present.latex import notebook

        return notebook(self)

    def _repr_html_(self) -> str:
        from symcost.present.markdown import html

        return html(self)


class Values:
    """Exact values of an Analysis at given dims: metrics as attributes or items (ints, or Rationals for
    fractional bytes; partly evaluated expressions where dims are still free)."""

    def __init__(self, analysis: Analysis, evaluator):
        self.analysis, self.evaluator = analysis, evaluator

    @property
    def given(self) -> dict:
        return dict(self.evaluator.given)

    def __call__(self, expr):
        return self.evaluator(expr)

    def __getitem__(self, metric: str):
        return self.evaluator(self.analysis[metric])

    def __getattr__(self, name: str):
        if name.startswith("_") or name in ("analysis", "evaluator"):
            raise AttributeError(name)
        if name in self.analysis.report.totals:
            return self.evaluator(self.analysis.report.totals[name])
        raise AttributeError(f"'Values' has no attribute '{name}'")

    @property
    def totals(self) -> dict:
        return {m: self.evaluator(e) for m, e in self.analysis.report.totals.items()}

    @property
    def summary(self) -> dict | None:
        """The device's phase bounds at these dims (exact Fractions: seconds, tokens/s), or None without a device."""
        s = self.analysis.summary
        return None if s is None else s.values(self.evaluator)

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v}" for k, v in self.given.items())
        return f"<symcost.Values of {self.analysis.name} at {given or 'no dims'}>"


def _achieved(device, req: Request):
    """The device at the achieved fractions of its peak FLOP/s and bandwidth (--flops-efficiency, ...)."""
    from dataclasses import replace

    if req.flops_efficiency is None and req.bandwidth_efficiency is None:
        return device
    f = sp.Rational(*(req.flops_efficiency or 1).as_integer_ratio())
    b = sp.Rational(*(req.bandwidth_efficiency or 1).as_integer_ratio())
    return replace(device, peak_flops={k: v * f for k, v in device.peak_flops.items()},
                   memory_bandwidth=device.memory_bandwidth * b)


def dtype_roles(req: Request) -> dict:
    """The dtype settings the graph builder takes (activations, weights and their quantization, KV cache)."""
    roles = {k: getattr(req, k) for k in ("activations", "weights", "group", "scale", "zero_point", "kv")}
    if req.weights is not None:
        roles["quantize"] = req.quantize
    return roles


PRECISION_OF = {"fp32": "fp32", "bf16": "mixed-bf16", "fp16": "mixed-fp16"}  # training precision by dtype


def _resolve_config(req: Request):
    if not (req.hf_config or req.preset):
        return None
    from symcost.analysis.hf import preset_config, read_config, resolve

    config, source = read_config(req.hf_config) if req.hf_config else preset_config(req.preset)
    return resolve(config, source)


def _check_names(resolved, env) -> None:
    for name in resolved.values:
        if name not in env.dims:
            raise SymcostError(f"the {resolved.model_type} mapping sets dim '{name}', which this spec does not declare")
    for name in resolved.options:
        if name not in env.options:
            raise SymcostError(f"the {resolved.model_type} mapping sets option '{name}', which this spec does not declare")


def _check_unset(resolved, env, report) -> None:
    """A dim whose rule gave null takes the spec's default definition; without one it must not matter."""
    used = set().union(*(e.free_symbols for e in report.totals.values() if hasattr(e, "free_symbols")))
    for name in resolved.unset:
        dim = env.dims.get(name)
        if dim is not None and dim.definition is None and dim.symbol in used:
            raise SymcostError(f"{resolved.source}: the {resolved.model_type} mapping's rule for {name} gives null, and "
                               f"{name} has no default in this spec (dim {name} = default …)")


DEGREE_DOCS = {"tp": "tensor-parallel degree", "pp": "pipeline-parallel degree", "ep": "expert-parallel degree",
               "dp": "data-parallel degree"}


def _degree(value, env, name: str):
    """A parallel degree: a positive integer, or a new dimension name that stays symbolic (and can be given a value)."""
    if value is None:
        return None
    from symcost.lang import syntax as S

    flag, doc = f"--{name}", DEGREE_DOCS[name]
    text = str(value)
    if isinstance(value, int) or (text.isascii() and text.isdigit()):
        if len(text) > 12 or int(text) < 1:
            raise SymcostError(f"{flag} must be a positive integer of at most 12 digits, or a name")
        return sp.Integer(int(text))
    if not (text.isascii() and text.isidentifier()):
        raise SymcostError(f"{flag} takes a positive integer or a name such as t, not '{text[:40]}'")
    if text in env.dims:
        if env.dims[text].doc == doc:  # the same degree named twice (--dp and --tp N_d …) is one symbol
            return env.dims[text].symbol
        raise SymcostError(f"{flag} {text}: the spec already uses the name '{text}'")
    if text in env.options:
        raise SymcostError(f"{flag} {text}: the spec already uses the name '{text}'")
    env.add_dim(S.DimDecl(text, None, doc, None, None), lambda *_: None)
    return env.dims[text].symbol
