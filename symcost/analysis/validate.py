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
import sys
from dataclasses import dataclass, field

from symcost.analysis.measure import (INPUTS, SUMMED, TORCH_HINT, _build, _forward, _hf_class,  # noqa: F401
                                      _hf_config, _ids, _import_torch, _loss, _one_line, build_tiny,
                                      count_params_meta, encoder_decoder_caches, kv_cache_bytes, matmul_flops,
                                      saved_bytes)
from symcost.analysis.validate_plan import DTYPE, Plan, tiny_config  # noqa: F401 (tiny_config: part of the API)
from symcost.errors import SymcostError

SCHEMA = "symcost.validate/1"
DEFAULT_SHAPES = ((2, 16), (3, 32), (1, 64))
PARTS = ("params", "flops", "saved", "kv")


ENCODER_DECODER = ("seq2seq", "speech_seq2seq")  # kinds whose generation keeps self- and cross-attention caches
LABELS = {
    "params": "params (full size, meta)",
    "tiny_params": "params (tiny)",
    "kv_cache_bytes": "KV cache bytes after prefill",
    "kv_cache_self": "self-attention cache bytes after prefill",
    "kv_cache_cross": "cross-attention cache bytes after prefill",
    "decode_step_flops": "matmul FLOPs of one decode step",
    "decode_step_kv": "KV cache bytes after the decode step",
    "matmul_flops_fwd": "matmul FLOPs forward",
    "matmul_flops_fwd_bwd": "matmul FLOPs fwd+bwd",
    "matmul_flops_fwd_bwd_raw": "  FlopCounterMode's own fwd+bwd",
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
        if self.b is None:
            return base
        step = f" c={self.s + 1}" if self.quantity.startswith("decode_step") else ""
        return f"{base}  b={self.b} {self.length}={self.s}{step}"

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


# ----------------------------------------------------------------------------- torch side


def _stderr(msg: str) -> None:
    print(f"symcost validate: {msg}", file=sys.stderr, flush=True)


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
    plan = Plan(config, source, spec, need_tiny)
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
            raw: list = []
            measured = matmul_flops(model, ids, True, plan.inputs, raw)
            result.checks.append(Check("matmul_flops_fwd_bwd", fwd + bwd, measured, True, "tiny", b, s, plan.length))
            if raw[0] != measured:  # a grouped convolution, whose weight gradient the counter overcounts
                result.checks.append(Check("matmul_flops_fwd_bwd_raw", fwd + bwd, raw[0], False, "tiny", b, s,
                                           plan.length))
        if "saved" in parts:
            act = plan.derived("activation_bytes", values, b, s)
            measured = saved_bytes(model, ids, plan.inputs)
            result.checks.append(Check("activation_bytes", act, measured, False, "tiny", b, s, plan.length))
        if "kv" in parts and plan.inputs == "causal_lm":
            _kv_check(plan, result, model, values, b, s)
        if "kv" in parts and plan.inputs in ENCODER_DECODER:
            _generation_check(plan, result, model, values, b, s, ids)
    window = values.get(plan.window) if plan.window else None
    if "kv" in parts and plan.inputs == "causal_lm" and window:
        b, s = 1, window + 3  # a prefill longer than the window: the cache keeps only the last w − 1
        progress_fn(f"prefilling {s} tokens, past the window of {window}…")
        _kv_check(plan, result, model, values, b, s, torch.randint(0, model.config.vocab_size, (b, s)))


def _generation_check(plan, result, model, values, b, s, batch) -> None:
    """An encoder–decoder's caches after a prefill of s decoder tokens (self-attention and cross-attention
    separately) and one decode step against c = s + 1 tokens: its matmul FLOPs and the caches after it."""
    grows, once = plan.derived_caches(values, b, s)
    if not grows and not once:
        return  # a spec that marks no cache
    got = encoder_decoder_caches(model, batch, plan.inputs)
    c = s + 1
    step = (plan.derived_step("matmul_flops_fwd", values, b, c), plan.derived_step("kv_cache_bytes", values, b, c))
    for quantity, derived, measured in (("kv_cache_self", grows, got["self"]), ("kv_cache_cross", once, got["cross"]),
                                        ("decode_step_flops", step[0], got["step_flops"]),
                                        ("decode_step_kv", step[1], got["step_self"] + got["step_cross"])):
        result.checks.append(Check(quantity, derived, measured, True, "tiny", b, s, plan.length))


def _kv_check(plan, result, model, values, b, s, ids=None) -> None:
    derived = plan.derived("kv_cache_bytes", values, b, s, plan.prefill_report())
    if derived:  # a spec that marks its keys and values with cache()
        ids = _ids(model, b, s) if ids is None else ids
        result.checks.append(Check("kv_cache_bytes", derived, kv_cache_bytes(model, ids), True, "tiny", b, s,
                                   plan.length))


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
    if any(c.quantity == "matmul_flops_fwd_bwd_raw" for c in r.checks):
        out += ["conv weight gradients: the fwd+bwd rows count a grouped convolution's weight gradient with its",
                "groups, as the convolution computes it (2·b·C_out·(C_in/groups)·∏kernel·∏out); FlopCounterMode's",
                "own figure (torch.utils.flop_counter.conv_backward_flop ignores groups: × groups too many) is",
                "reported beneath each, not checked", ""]
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
        reported = sorted({"FlopCounterMode's own conv backward" if c.quantity.endswith("_raw") else
                           "activation bytes" for c in r.checks if not c.exact})
        note = f"; {' and '.join(reported)} {'is' if len(reported) == 1 and reported[0] != 'activation bytes' else 'are'}" \
               " reported, not checked (see docs/validation.md)" if reported else ""
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
