"""What symcost derives for `symcost validate`: the mapping's validate entry, the tiny config, the derived values."""
from __future__ import annotations

from pathlib import Path

from symcost.analysis.measure import INPUTS
from symcost.errors import SymcostError

DTYPE = "fp32"  # the tiny model's dtype, and the dtype the tiny numbers are derived with


def tiny_config(config: dict, mapping: dict, source: str) -> dict:
    """The config of the tiny model: the full config with the mapping's `tiny` rules applied.

    A rule is a value (null clears the field), {"if_set": x}: x when the full config sets the field (not null),
    or {"relative_to": F, "equal": x, "one": y, "fewer": z}: x when the full config's field equals field F (missing
    means equal), y when it is 1, z otherwise — this keeps multi-head, multi-query and grouped-query attention
    what they are.
    """
    model_type = config.get("model_type")
    rules = mapping.get("tiny")
    if not isinstance(rules, dict):
        raise SymcostError(f"the {model_type} mapping in specs/hf/ has no 'tiny' rules, so no tiny model can be built")
    tiny = {k: v for k, v in config.items() if not k.startswith("_")}
    for key, rule in rules.items():
        if key.startswith("_"):
            continue
        if isinstance(rule, dict) and "if_set" in rule:  # a size that only matters when the field is set
            if config.get(key) is not None:
                tiny[key] = rule["if_set"]
            continue
        if isinstance(rule, dict):
            ref = rule.get("relative_to")
            if ref not in config:
                raise SymcostError(f"{source}: missing field '{ref}' (needed for the tiny model's {key})")
            full = config.get(key)
            full = config[ref] if full is None else full
            if full == config[ref]:
                tiny[key] = rule["equal"]
            elif full == 1:
                tiny[key] = rule["one"]
            elif isinstance(full, int) and 1 < full < config[ref]:
                tiny[key] = rule["fewer"]
            else:
                raise SymcostError(f"{source}: {key}={full!r} does not fit {ref}={config[ref]!r}")
        else:
            tiny[key] = rule
    return tiny


class Plan:
    """Everything symcost itself knows: the resolved configs, the derived report, and evaluators."""

    def __init__(self, config: dict, source: str, spec: str | None, need_tiny: bool):
        from symcost.analysis.hf import check_derived, resolve
        from symcost.lang.parse import display_path

        self.config = config
        self.full = resolve(config, source)
        self.mapping = self.full.mapping
        self.model_type = self.full.model_type
        self._read_entry(self.mapping.get("validate"))
        spec_path = Path(spec) if spec else self.full.spec
        self.spec = display_path(spec_path)
        self.tiny = None
        if need_tiny:
            self.tiny_config = tiny_config(config, self.mapping, source)
            self.tiny = resolve(self.tiny_config, f"{source} (tiny)")
        # dims with a default definition (dim f = default 4 * h) that either config sets are free in the graph
        self.released = tuple(sorted(set(self.full.values) | set(self.tiny.values if self.tiny else ())))
        self.graph, self.report = _derived(spec_path, self.full.options, self.released)
        self._check_dims()
        self.full_eval = self._evaluator(self.full.values, 1, 1)
        check_derived(self.full, self.full_eval)
        if self.tiny:
            check_derived(self.tiny, self._evaluator(self.tiny.values, 1, 1))

    def _read_entry(self, validate) -> None:
        """The mapping's `validate` entry: the transformers classes, how the model is called, its extra config
        fields, the window, the dims set to the tiny length and the family's own default shapes."""
        if not isinstance(validate, dict) or "class" not in validate or "config" not in validate:
            raise SymcostError(f"the {self.model_type} mapping in specs/hf/ has no 'validate' entry naming a transformers class")
        self.class_name, self.config_name = validate["class"], validate["config"]
        where = f"the {self.model_type} mapping's 'validate' entry"
        self.inputs = validate.get("inputs", "causal_lm")
        if self.inputs not in INPUTS:
            raise SymcostError(f"{where}: inputs '{self.inputs}' is not one of {', '.join(INPUTS)}")
        self.kwargs = validate.get("kwargs", {})
        if not isinstance(self.kwargs, dict) or not all(isinstance(k, str) for k in self.kwargs):
            raise SymcostError(f"{where}: kwargs must be an object of config fields")
        self.window = validate.get("window")  # a spec dim: the KV cache is also checked past the window
        if self.window is not None and not isinstance(self.window, str):
            raise SymcostError(f"{where}: window must name a dim of the spec")
        self.lengths = validate.get("lengths", [] if self.inputs == "image" else ["s"])
        if not isinstance(self.lengths, list) or not all(isinstance(n, str) for n in self.lengths) or (
                not self.lengths and self.inputs != "image"):
            raise SymcostError(f"{where}: lengths must be a list of dim names")
        self.length = self.lengths[0] if self.lengths else "s"  # how the tiny length is labelled
        self.shapes = validate.get("shapes")  # the family's own default shapes (b, length)
        if self.shapes is not None and not (isinstance(self.shapes, list) and all(
                isinstance(x, list) and len(x) == 2 and all(isinstance(v, int) and v > 0 for v in x)
                for x in self.shapes)):
            raise SymcostError(f"{where}: shapes must be a list of [b, length] pairs")

    def _check_dims(self) -> None:
        """The mapping sets only dims and options the spec declares, and every dim the totals use but b and
        the lengths validate sets."""
        env = self.graph.env
        for name in self.full.values:
            if name not in env.dims:
                raise SymcostError(f"the {self.model_type} mapping sets dim '{name}', which {self.spec} does not declare")
        for name in self.full.options:
            if name not in env.options:
                raise SymcostError(f"the {self.model_type} mapping sets option '{name}', which {self.spec} does not declare")
        for name in ("b", *self.lengths):
            if name not in env.dims:
                raise SymcostError(f"{self.spec} does not declare the dim '{name}' that validate sets (batch or a sequence length)")
        runtime = ("b", *self.lengths)
        used = set().union(*(e.free_symbols for e in self.report.totals.values() if hasattr(e, "free_symbols")))
        missing = [d.name for d in env.free_dims()
                   if d.name not in self.full.values and d.name not in runtime and d.symbol in used]
        if missing:
            raise SymcostError(f"{self.spec} has dims the {self.model_type} mapping does not set: {', '.join(missing)}")

    def _evaluator(self, values: dict, b: int, s: int, env=None, extra=None):
        from symcost.analysis.evaluate import Evaluator

        env = env or self.graph.env
        values = {**values, "b": b, **{name: s for name in self.lengths if name in env.dims}, **(extra or {})}
        for dim in env.dims.values():  # freed by the other config but not set by this one: its default
            if dim.default is not None and dim.definition is None and dim.name not in values:
                v = dim.default.xreplace({env.dims[k].symbol: v for k, v in values.items() if k in env.dims})
                if v.is_Integer and v > 0:
                    values[dim.name] = int(v)
        return Evaluator(env, values)

    def phase_report(self, phase: str):
        """The same spec derived for --phase prefill or decode: (graph, report), once per process."""
        from symcost.cost.accounting import derive
        from symcost.model.builder import build
        from symcost.lang.parse import load

        key = (self.spec, tuple(sorted(self.full.options.items())), self.released, phase)
        if key not in _DERIVED:
            graph = build(load(self.spec), options=self.full.options, dtype=DTYPE, phase=phase,
                          released=self.released)
            _DERIVED[key] = (graph, derive(graph, "fma"))
        return _DERIVED[key]

    def prefill_report(self):
        """The report of --phase prefill (for the KV cache it writes)."""
        return self.phase_report("prefill")[1]

    def derived(self, metric: str, values: dict, b: int = 1, s: int = 1, report=None) -> int:
        return self._whole(metric, self._evaluator(values, b, s)((report or self.report).totals[metric]))

    def _whole(self, what: str, v) -> int:
        if not isinstance(v, int):
            raise SymcostError(f"{self.spec}: {what} does not evaluate to a whole number ({v})")
        return v

    def derived_caches(self, values: dict, b: int, s: int) -> tuple[int, int]:
        """KV cache bytes after a prefill of s tokens: (the caches that grow by a token per step, the caches
        written once: an encoder–decoder's self-attention and cross-attention caches)."""
        graph, report = self.phase_report("prefill")
        ev = self._evaluator(values, b, s, graph.env)
        once = sum((op.metrics["kv_cache_bytes"] * op.node.mult for op in report.ops if op.node.caches == "once"),
                   0)
        total = report.totals["kv_cache_bytes"]
        return self._whole("the growing KV cache", ev(total - once)), self._whole("the KV cache written once", ev(once))

    def derived_step(self, metric: str, values: dict, b: int, c: int) -> int:
        """A metric of one decode step against c cached tokens (--phase decode)."""
        graph, report = self.phase_report("decode")
        # every length but the decode dim (now 1) keeps its value: an encoder's s is what the cross cache holds
        return self._whole(metric, self._evaluator(values, b, c - 1, graph.env, {"c": c})(report.totals[metric]))


_DERIVED: dict = {}  # (spec path, options) -> (graph, report): derived once per process


def _derived(spec_path: Path, options: dict, released: tuple) -> tuple:
    """The spec built with the config's options, in the tiny model's dtype, and derived: (graph, report)."""
    from symcost.cost.accounting import derive
    from symcost.model.builder import build
    from symcost.lang.parse import load

    key = (str(spec_path.resolve()), tuple(sorted(options.items())), released)
    if key not in _DERIVED:
        graph = build(load(spec_path), options=options, dtype=DTYPE, released=released)
        _DERIVED[key] = (graph, derive(graph, "fma"))
    return _DERIVED[key]
