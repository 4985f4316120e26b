"""`symcost validate`: compare what symcost derives with a real transformers model built from the same config.

Three measurements, each beside the derived value (see docs/validation.md):

* parameters of the full-size model, built on the ``meta`` device (no memory, no download) — exact;
* matmul FLOPs of a tiny model of the same structure (dims shrunk by the ``tiny`` rules in specs/hf/<model_type>.json,
  every option kept), counted by ``torch.utils.flop_counter.FlopCounterMode`` with eager attention in fp32:
  the forward pass (eval, no_grad) and forward + backward (train mode) for each (b, s) — exact;
* bytes saved for backward by that tiny model in train mode (``saved_tensors_hooks``, every storage once,
  parameters excluded) — reported beside the derived activation bytes, never a failure.

The mapping's ``validate`` entry says what to build and how to run it, so any model family is validated without
code here: ``class`` and ``config`` (transformers names), ``inputs`` (how the model is called and what the
backward starts from, one of INPUTS: ``causal_lm`` by default, ``seq2seq``, ``encoder``), ``kwargs`` (extra
config fields for every model validate builds, e.g. ``{"experts_implementation": "eager"}``) and ``lengths``
(the spec dims set to the tiny sequence length, ``["s"]`` by default; ``["s", "t"]`` for an encoder–decoder).

torch and transformers are imported lazily, inside the functions that need them: importing this module
(and the rest of symcost) stays cheap.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from symcost.errors import SymcostError

SCHEMA = "symcost.validate/1"
TORCH_HINT = "symcost validate needs the torch extra: pip install 'symcost[torch]'"
DEFAULT_SHAPES = ((2, 16), (3, 32), (1, 64))
PARTS = ("params", "flops", "saved", "kv")
DTYPE = "fp32"  # the tiny model's dtype, and the dtype the tiny numbers are derived with
SEED = 0

# How a model is called (inputs) and what backward starts from, per kind of model: the `inputs` of a mapping's
# `validate` entry. `flops` is the loss of the FLOP count, `saved` the loss of the saved-bytes count.
INPUTS = {
    "causal_lm": {
        "call": "model(ids)",
        "flops": "logits.sum()",
        "saved": "cross-entropy (labels=ids)",
    },
    "seq2seq": {
        "call": "model(input_ids=ids, decoder_input_ids=ids): encoder and decoder both read the b×s ids",
        "flops": "logits.sum()",
        "saved": "cross-entropy (labels=ids; the decoder reads them shifted right)",
    },
    "encoder": {
        "call": "model(ids)",
        "flops": "the sum of every floating-point output (e.g. last_hidden_state.sum() + pooler_output.sum())",
        "saved": "the same sum (an encoder has no loss of its own)",
    },
    "image": {
        "call": "model(pixel_values=x): b images of num_channels × side × side, side the tiny length (or the "
                "config's image_size when the mapping names no length); they need no gradient",
        "flops": "the sum of every floating-point output (logits, or last_hidden_state and pooler_output)",
        "saved": "the same sum",
    },
    "speech_seq2seq": {
        "call": "model(input_features=x, decoder_input_ids=ids): b × num_mel_bins × 2·max_source_positions "
                "audio features (they need no gradient) and b×s decoder ids",
        "flops": "logits.sum()",
        "saved": "cross-entropy (labels=ids)",
    },
}
SUMMED = ("encoder", "image")  # kinds whose backward starts from the sum of their outputs

LABELS = {
    "params": "params (full size, meta)",
    "tiny_params": "params (tiny)",
    "kv_cache_bytes": "KV cache bytes after prefill",
    "matmul_flops_fwd": "matmul FLOPs forward",
    "matmul_flops_fwd_bwd": "matmul FLOPs fwd+bwd",
    "activation_bytes": "activation bytes",
}


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    """One row of the report: a derived and a measured value of one quantity."""

    quantity: str  # params | tiny_params | matmul_flops_fwd | matmul_flops_fwd_bwd | activation_bytes
    derived: int
    measured: int
    exact: bool  # must agree exactly (otherwise reported only)
    model: str  # "full" or "tiny"
    b: int | None = None
    s: int | None = None
    length: str = "s"  # the spec dim s stands for (t: a decoder's tokens; H: an image's side)

    @property
    def difference(self) -> int:
        return self.measured - self.derived

    @property
    def ok(self) -> bool:
        return self.derived == self.measured or not self.exact

    def label(self) -> str:
        base = LABELS.get(self.quantity, self.quantity)
        return base if self.b is None else f"{base}  b={self.b} {self.length}={self.s}"

    def as_json(self) -> dict:
        return {
            "quantity": self.quantity,
            "model": self.model,
            "b": self.b,
            "s": self.s,
            "derived": self.derived,
            "measured": self.measured,
            "difference": self.difference,
            "exact": self.exact,
            "ok": self.ok,
        }


@dataclass
class Result:
    model_type: str
    source: str
    spec: str
    model_class: str
    options: dict
    full_dims: dict
    tiny_dims: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    inputs: str = "causal_lm"
    fields: object = None  # symcost.analysis.fields.Account of the full config

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "model_type": self.model_type,
            "source": self.source,
            "spec": self.spec,
            "model_class": self.model_class,
            "options": self.options,
            "dims": {"full": self.full_dims, "tiny": self.tiny_dims},
            "config_fields": self.fields.as_json() if self.fields is not None else None,
            "conventions": {
                "flops": "fma (a multiply-add counts 2), matmul-like ops only, as FlopCounterMode counts",
                "tiny_dtype": DTYPE,
                "attention": "eager",
                "inputs": INPUTS[self.inputs]["call"],
                "flops_loss": INPUTS[self.inputs]["flops"],
                "saved_loss": INPUTS[self.inputs]["saved"],
                "saved_bytes": "storages saved for backward, each once, parameters excluded",
            },
            "versions": self.versions,
            "checks": [c.as_json() for c in self.checks],
            "ok": self.ok,
        }


# ----------------------------------------------------------------------------- config side (no torch)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'2x16,3x32' -> [(2, 16), (3, 32)]."""
    shapes = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        b, x, s = item.lower().partition("x")
        try:
            bs = (int(b), int(s))
        except ValueError:
            raise SymcostError(f"--shapes expects BxS items separated by commas (e.g. 2x16,1x64), got '{item}'") from None
        if not x or min(bs) <= 0:
            raise SymcostError(f"--shapes expects positive BxS items (e.g. 2x16), got '{item}'")
        shapes.append(bs)
    if not shapes:
        raise SymcostError("--shapes is empty; give at least one BxS (e.g. 2x16)")
    return shapes


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


class _Plan:
    """Everything symcost itself knows: the resolved configs, the derived report, and evaluators."""

    def __init__(self, config: dict, source: str, spec: str | None, need_tiny: bool):
        from symcost.cost.accounting import derive
        from symcost.model.builder import build
        from symcost.analysis.hf import check_derived, resolve
        from symcost.lang.parse import display_path, load

        self.config = config
        self.full = resolve(config, source)
        self.mapping = self.full.mapping
        self.model_type = self.full.model_type
        validate = self.mapping.get("validate")
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
        spec_path = Path(spec) if spec else self.full.spec
        self.spec = display_path(spec_path)
        self.tiny = None
        if need_tiny:
            self.tiny_config = tiny_config(config, self.mapping, source)
            self.tiny = resolve(self.tiny_config, f"{source} (tiny)")
        # dims with a default definition (dim f = default 4 * h) that either config sets are free in the graph
        self.released = tuple(sorted(set(self.full.values) | set(self.tiny.values if self.tiny else ())))
        key = (str(spec_path.resolve()), tuple(sorted(self.full.options.items())), self.released)
        if key not in _DERIVED:
            graph = build(load(spec_path), options=self.full.options, dtype=DTYPE, released=self.released)
            _DERIVED[key] = (graph, derive(graph, "fma"))
        self.graph, self.report = _DERIVED[key]
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
        self.full_eval = self._evaluator(self.full.values, 1, 1)
        check_derived(self.full, self.full_eval)
        if self.tiny:
            check_derived(self.tiny, self._evaluator(self.tiny.values, 1, 1))

    def _evaluator(self, values: dict, b: int, s: int):
        from symcost.analysis.evaluate import Evaluator

        values = {**values, "b": b, **{name: s for name in self.lengths}}
        env = self.graph.env
        for dim in env.dims.values():  # freed by the other config but not set by this one: its default
            if dim.default is not None and dim.definition is None and dim.name not in values:
                v = dim.default.xreplace({env.dims[k].symbol: v for k, v in values.items() if k in env.dims})
                if v.is_Integer and v > 0:
                    values[dim.name] = int(v)
        return Evaluator(env, values)

    def prefill_report(self):
        """The same spec derived for --phase prefill (for the KV cache it writes), once per process."""
        from symcost.cost.accounting import derive
        from symcost.model.builder import build
        from symcost.lang.parse import load

        key = (self.spec, tuple(sorted(self.full.options.items())), self.released, "prefill")
        if key not in _DERIVED:
            graph = build(load(self.spec), options=self.full.options, dtype=DTYPE, phase="prefill",
                          released=self.released)
            _DERIVED[key] = (graph, derive(graph, "fma"))
        return _DERIVED[key][1]

    def derived(self, metric: str, values: dict, b: int = 1, s: int = 1, report=None) -> int:
        v = self._evaluator(values, b, s)((report or self.report).totals[metric])
        if not isinstance(v, int):
            raise SymcostError(f"{self.spec}: {metric} does not evaluate to a whole number ({v})")
        return v


_DERIVED: dict = {}  # (spec path, options) -> (graph, report): derived once per process


# ----------------------------------------------------------------------------- torch side


def _stderr(msg: str) -> None:
    print(f"symcost validate: {msg}", file=sys.stderr, flush=True)


def _import_torch():
    """torch and transformers, quietly and offline; a SymcostError when the extra is not installed."""
    user_verbosity = "TRANSFORMERS_VERBOSITY" in os.environ
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import torch
        import transformers
    except ImportError:
        raise SymcostError(TORCH_HINT) from None
    if not user_verbosity:
        transformers.logging.set_verbosity_error()
    return torch, transformers


def _hf_class(transformers, name: str):
    try:
        obj = getattr(transformers, name)
    except (AttributeError, ImportError, RuntimeError):
        obj = None
    if obj is None:
        raise SymcostError(
            f"transformers {transformers.__version__} has no {name}; symcost validate is checked with transformers==5.23.0"
        )
    return obj


def _hf_config(config_cls, data: dict, source: str, **extra):
    try:
        return config_cls.from_dict({**{k: v for k, v in data.items() if not k.startswith("_")}, **extra})
    except Exception as e:  # huggingface_hub's strict-dataclass validation errors, TypeError, ValueError, ...
        raise SymcostError(f"{source}: transformers rejects this config ({config_cls.__name__}): {_one_line(e)}") from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _build(what: str, source: str, fn, *args):
    """Build a model; transformers' own errors (a config it cannot realise) become a SymcostError."""
    try:
        return fn(*args)
    except SymcostError:
        raise
    except Exception as e:
        raise SymcostError(f"{source}: transformers could not build the {what}: {type(e).__name__}: {_one_line(e)}") from None


def count_params_meta(model_cls, hf_config) -> int:
    """Parameters of the full-size model built on the meta device (tied weights counted once)."""
    import torch

    with torch.device("meta"):
        model = model_cls(hf_config)
    return sum(p.numel() for p in model.parameters())


def build_tiny(model_cls, hf_config, inputs: str = "causal_lm"):
    """The tiny model: random weights (seeded, without disturbing the caller's RNG), fp32, on the CPU."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_cls(hf_config).to(dtype=torch.float32)
    if inputs == "causal_lm":
        model.loss_type = "ForCausalLM"  # GPT2LMHeadModel otherwise logs that loss_type=None is unrecognized
    return model


def _ids(model, b: int, s: int, inputs: str = "causal_lm", sized: bool = True):
    """What the model is called with (INPUTS): token ids [b, s], or images, or audio features and decoder ids."""
    import torch

    gen = torch.Generator().manual_seed(SEED + 1000 * b + s)
    config = model.config
    if inputs == "image":
        side = s if sized else config.image_size
        return torch.randn(b, config.num_channels, side, side, generator=gen)
    if inputs == "speech_seq2seq":
        frames = 2 * config.max_source_positions  # Whisper accepts exactly this many
        features = torch.randn(b, config.num_mel_bins, frames, generator=gen)
        return {"input_features": features,
                "decoder_input_ids": torch.randint(0, config.vocab_size, (b, s), generator=gen)}
    return torch.randint(0, config.vocab_size, (b, s), generator=gen)


def _forward(model, ids, inputs: str = "causal_lm", labels: bool = False):
    """One forward pass as INPUTS[inputs] describes it; with `labels`, a language model computes its loss too."""
    if inputs == "image":
        return model(pixel_values=ids)
    if inputs == "speech_seq2seq":
        extra = {"labels": ids["decoder_input_ids"]} if labels else {}
        return model(**ids, **extra, use_cache=False)
    if inputs == "causal_lm":
        return model(ids, labels=ids, use_cache=False) if labels else model(ids, use_cache=False)
    if inputs == "seq2seq":
        if labels and getattr(model.config, "decoder_start_token_id", None) is not None:
            return model(input_ids=ids, labels=ids, use_cache=False)  # decoder inputs: the labels shifted right
        return model(input_ids=ids, decoder_input_ids=ids, labels=ids if labels else None, use_cache=False)
    return model(ids)


def _loss(out, inputs: str = "causal_lm", labels: bool = False):
    """What backward starts from: the loss (labels), the logits' sum, or an encoder's outputs summed."""
    import torch

    if inputs not in SUMMED:
        return out.loss if labels else out.logits.sum()
    total = None
    for value in out.values():  # a ModelOutput: its non-None fields in order
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            total = value.sum() if total is None else total + value.sum()
    if total is None:
        raise SymcostError(f"{type(out).__name__} has no floating-point output to sum")
    return total


def matmul_flops(model, ids, train: bool, inputs: str = "causal_lm") -> int:
    """FlopCounterMode's total for one forward (eval, no_grad) or one forward + backward (train, loss per INPUTS)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if train:
        model.train()
        with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as fc:
            _loss(_forward(model, ids, inputs), inputs).backward()
        model.zero_grad(set_to_none=True)
    else:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            _forward(model, ids, inputs)
    return int(fc.get_total_flops())


def saved_bytes(model, ids, inputs: str = "causal_lm") -> int:
    """Bytes saved for backward in train mode (a language model's cross-entropy loss, labels=ids), each storage once,
    no parameters."""
    import torch

    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()  # views share their storage: count it once
        seen.setdefault(st.data_ptr(), st.nbytes())
        return t  # the graph keeps t alive, so no data_ptr is reused while we record

    model.train()
    with torch.random.fork_rng(devices=[]):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = _loss(_forward(model, ids, inputs, labels=True), inputs, labels=True)
        total = sum(n for ptr, n in seen.items() if ptr not in param_storages)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return total


def _positions(tiny: dict) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "max_target_positions"):
        if isinstance(tiny.get(key), int):
            return tiny[key]
    return None


def validate(config: dict, source: str, spec: str | None = None, shapes=None, parts=PARTS,
             progress=_stderr) -> Result:
    """Run the checks in `parts` (params, flops, saved) for one transformers config (a dict)."""
    parts = tuple(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SymcostError(f"unknown validate part(s): {', '.join(unknown)}; use {', '.join(PARTS)}")
    need_tiny = "flops" in parts or "saved" in parts or "kv" in parts
    plan = _Plan(config, source, spec, need_tiny)
    shapes = [tuple(x) for x in (shapes or plan.shapes or DEFAULT_SHAPES)]
    if need_tiny and plan.inputs in ("causal_lm", "seq2seq", "encoder", "speech_seq2seq"):
        limit = _positions(plan.tiny_config)
        too_long = [s for _, s in shapes if limit is not None and s > limit]
        if too_long:
            raise SymcostError(f"--shapes: s={max(too_long)} is longer than the tiny model's {limit} positions")
    progress_fn = progress or (lambda _msg: None)
    if "torch" not in sys.modules:
        progress_fn("importing torch and transformers…")
    torch, transformers = _import_torch()
    model_cls = _hf_class(transformers, plan.class_name)
    config_cls = _hf_class(transformers, plan.config_name)
    result = Result(
        plan.model_type, source, plan.spec, plan.class_name, dict(plan.full.options), dict(plan.full.values),
        versions={"torch": torch.__version__, "transformers": transformers.__version__}, inputs=plan.inputs,
        fields=plan.full.fields,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "params" in parts:
            progress_fn(f"building {plan.class_name} for {source} on meta…")
            measured = _build(f"full-size {plan.class_name}", source, count_params_meta, model_cls,
                              _hf_config(config_cls, config, source, **plan.kwargs))
            result.checks.append(Check("params", plan.derived("params", plan.full.values), measured, True, "full"))
        if need_tiny:
            values = plan.tiny.values
            result.tiny_dims = dict(values)
            dims = " ".join(f"{k}={v}" for k, v in values.items())
            progress_fn(f"measuring a tiny {plan.class_name} ({dims}, fp32, eager) at "
                        f"{', '.join(f'{b}x{s}' for b, s in shapes)}…")
            tiny_hf = _hf_config(config_cls, plan.tiny_config, f"{source} (tiny)",
                                 **{**plan.kwargs, "attn_implementation": "eager"})
            model = _build(f"tiny {plan.class_name}", source, build_tiny, model_cls, tiny_hf, plan.inputs)
            n = sum(p.numel() for p in model.parameters())
            result.checks.append(Check("tiny_params", plan.derived("params", values), n, True, "tiny"))
            sized = bool(plan.lengths)
            try:
                _measure(plan, result, model, values, shapes, parts, sized, progress_fn)
            except SymcostError:
                raise
            except Exception as e:  # the model cannot be called as the mapping says (wrong kind of inputs)
                raise SymcostError(
                    f"{source}: transformers could not run the tiny {plan.class_name} as the mapping's inputs "
                    f"'{plan.inputs}' call it ({INPUTS[plan.inputs]['call']}): {type(e).__name__}: {_one_line(e)}"[:600],
                    None, f"the mapping's validate entry names the inputs: one of {', '.join(INPUTS)}") from None
    return result


def _measure(plan, result, model, values, shapes, parts, sized, progress_fn) -> None:
    """The tiny model's FLOPs, saved bytes and KV cache at each shape (b, s)."""
    import torch

    for b, s in shapes:
        ids = _ids(model, b, s, plan.inputs, sized)
        if "flops" in parts:
            fwd = plan.derived("matmul_flops_fwd", values, b, s)
            bwd = plan.derived("matmul_flops_bwd", values, b, s)
            measured = matmul_flops(model, ids, False, plan.inputs)
            result.checks.append(Check("matmul_flops_fwd", fwd, measured, True, "tiny", b, s, plan.length))
            measured = matmul_flops(model, ids, True, plan.inputs)
            result.checks.append(Check("matmul_flops_fwd_bwd", fwd + bwd, measured, True, "tiny", b, s, plan.length))
        if "saved" in parts:
            act = plan.derived("activation_bytes", values, b, s)
            measured = saved_bytes(model, ids, plan.inputs)
            result.checks.append(Check("activation_bytes", act, measured, False, "tiny", b, s, plan.length))
        if "kv" in parts and plan.inputs == "causal_lm":
            _kv_check(plan, result, model, values, b, s)
    window = values.get(plan.window) if plan.window else None
    if "kv" in parts and plan.inputs == "causal_lm" and window:
        b, s = 1, window + 3  # a prefill longer than the window: the cache keeps only the last w − 1
        progress_fn(f"prefilling {s} tokens, past the window of {window}…")
        _kv_check(plan, result, model, values, b, s, torch.randint(0, model.config.vocab_size, (b, s)))


def _kv_check(plan, result, model, values, b, s, ids=None) -> None:
    derived = plan.derived("kv_cache_bytes", values, b, s, plan.prefill_report())
    if derived:  # a spec that marks its keys and values with cache()
        ids = _ids(model, b, s) if ids is None else ids
        result.checks.append(Check("kv_cache_bytes", derived, kv_cache_bytes(model, ids), True, "tiny", b, s,
                                   plan.length))


def kv_cache_bytes(model, ids) -> int:
    """Bytes of the keys and values a transformers cache holds after one prefill (eval, no_grad)."""
    import torch

    model.eval()
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


# ----------------------------------------------------------------------------- output


def _num(n: int) -> str:
    return f"{n:,}"


def _diff(c: Check) -> str:
    d = c.difference
    if d == 0:
        return "0"
    text = f"{d:+,}"
    if not c.exact and c.derived:
        text += f" ({d / c.derived:+.1%})"
    return text


def _mark(c: Check) -> str:
    if c.exact:
        return "✓" if c.ok else "✗"
    return "= (reported)" if c.derived == c.measured else "≠ (reported)"


def render_text(r: Result) -> str:
    out = [f"{r.model_type} ({r.source}) — {r.spec} vs transformers {r.model_class}"]
    full = " ".join(f"{k}={v}" for k, v in r.full_dims.items())
    opts = " ".join(f"{k}={str(v).lower()}" for k, v in r.options.items())
    out.append(f"full size: {full}{'  ' + opts if opts else ''}  (meta device)")
    if r.tiny_dims:
        tiny = " ".join(f"{k}={v}" for k, v in r.tiny_dims.items())
        how = INPUTS[r.inputs]
        saved = "a cross-entropy loss" if r.inputs != "encoder" else "the same loss"
        out.append(f"tiny:      {tiny}  (fp32, eager attention, random weights; FLOPs with loss = "
                   f"{'logits.sum()' if r.inputs != 'encoder' else 'the sum of the outputs'}, saved bytes with {saved})")
        if r.inputs != "causal_lm":
            out.append(f"           called as {how['call']}")
    out.append("")
    head = ("quantity", "derived", "measured", "difference", "")
    rows = [(c.label(), _num(c.derived), _num(c.measured), _diff(c), _mark(c)) for c in r.checks]
    w = [max(len(x[i]) for x in (head, *rows)) for i in range(4)]
    for row in (head, *rows):
        out.append(f"{row[0].ljust(w[0])}  {row[1].rjust(w[1])}  {row[2].rjust(w[2])}  {row[3].rjust(w[3])}  {row[4]}".rstrip())
    out.append("")
    if r.fields is not None:
        out.append("config fields:")
        out += [f"  {line}" for line in r.fields.lines()]
        out.append("")
    bad = [c for c in r.checks if not c.ok]
    if bad:
        out.append(f"FAILED: {len(bad)} exact quantit{'y' if len(bad) == 1 else 'ies'} disagree: "
                   + ", ".join(c.label().replace("  ", " ") for c in bad))
    else:
        exact = sum(c.exact for c in r.checks)
        note = "; activation bytes are reported, not checked (see docs/validation.md)" if any(
            not c.exact for c in r.checks) else ""
        out.append(f"ok: {exact} exact quantit{'y' if exact == 1 else 'ies'} agree{note}")
    return "\n".join(out) + "\n"


def render_json(r: Result) -> str:
    return json.dumps(r.as_json(), indent=2, ensure_ascii=False) + "\n"


def run(args) -> tuple[str, int]:
    """The `symcost validate` subcommand: (output text, exit status)."""
    from symcost.analysis.hf import preset_config, read_config

    if getattr(args, "hf_config", None):
        config, source = read_config(args.hf_config)
    elif getattr(args, "preset", None):
        config, source = preset_config(args.preset)
    else:
        raise SymcostError("symcost validate needs --hf-config FILE or --preset NAME")
    shapes = parse_shapes(args.shapes) if getattr(args, "shapes", None) else None  # None: the family's own
    result = validate(config, source, getattr(args, "spec", None), shapes)
    text = render_json(result) if getattr(args, "format", "text") == "json" else render_text(result)
    return text, 0 if result.ok else 1
