"""Every setting of a derivation, defined once: its choices, default, help, header text and JSON name.

The table drives the command line's flags (derive and compare share them), the API's keyword arguments, the
text header, the JSON `conventions` object and `compare`'s per-side settings. A setting's `stage` says who
reads it: `build` (the graph), `account` (the closed forms), `train` (training-state memory), `memory` (memory
per device), `device` (roofline bounds) or `serving` (latency end to end).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction

from symcost.errors import SymcostError, suggest


@dataclass(frozen=True)
class Setting:
    name: str  # the API keyword and the JSON name
    kind: str  # choice | flag | degree | dtype | text | number | names | int-choice | count | fraction | size | zero-point
    help: str
    default: object = None
    choices: tuple = ()
    stage: str = "account"
    metavar: str | None = None
    header: str | None = None  # header text; {} is the value; None: not shown; shown only when not the default
    needs: str | None = None  # another setting without which this one has no effect (stage needs pp)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


TABLE: tuple[Setting, ...] = (
    Setting("phase", "choice", "train: forward and backward with training-state memory; prefill: a forward over s "
            "new tokens writing the KV cache; decode: one new token per sequence (s = 1) against c cached tokens",
            "train", ("train", "prefill", "decode"), "build", header="phase {}"),
    Setting("dtype", "dtype", "override the spec's default dtype (fp32, bf16, fp16, fp8, ...)", None, (), "build",
            "DTYPE"),
    Setting("activations", "dtype", "dtype of the activations and of the arithmetic (default: the spec's default "
            "dtype or --dtype); the roofline's peak FLOP/s is this dtype's", None, (), "build", "DTYPE"),
    Setting("weights", "dtype", "weight-only quantization: the dtype of the weights --quantize selects (int4, nf4, "
            "fp4, int8, fp8, ...; sub-byte types are sized in bits); other parameters keep the model's dtype and the "
            "arithmetic stays in the activations' dtype", None, (), "build", "DTYPE"),
    Setting("quantize", "choice", "which weights --weights sets: layers (default: the weight matrices of linear layers "
            "inside repeated blocks, as GPTQ, AWQ and bitsandbytes do; the LM head and embeddings keep the model's "
            "dtype), linear (every linear layer's weight matrix, the head too), matrices (every parameter of two or "
            "more axes, embedding tables too); vectors (norms, biases) are never quantized", "layers",
            ("layers", "linear", "matrices"), "build", needs="weights"),
    Setting("group", "count", "group quantization: weights per group sharing one scale (int4 with a 16-bit scale per "
            "128 weights is 4 + 16/128 = 4.125 bits per weight)", None, (), "build", "G", needs="weights"),
    Setting("scale", "dtype", "dtype of the group scales (default: the model's dtype)", None, (), "build", "DTYPE",
            needs="group"),
    Setting("zero_point", "zero-point", "asymmetric group quantization: one zero point per group, at the weights' own "
            "width (as GPTQ and AWQ pack them) or at a dtype given (--zero-point fp16)", None, (), "build",
            "DTYPE", needs="group"),
    Setting("kv", "dtype", "dtype of the KV cache (fp8, int8, int4, ...; default: the activations')", None, (),
            "build", "DTYPE"),
    Setting("flops", "choice", "FLOP convention: fma counts a multiply-add as 2 (2MKN, default); mac counts "
            "multiply-accumulates (MKN); exact counts MN(2K-1)", "fma", ("fma", "mac", "exact")),
    Setting("causal", "choice", "count causal attention products in full (as FlopCounterMode does, default) or only "
            "the half a causal mask keeps", "full", ("full", "half"), header="causal attention products counted half"),
    Setting("other_flops", "choice", "count the elementwise FLOPs of softmax, norms, activations … (default include); "
            "exclude leaves matrix products only, as FlopCounterMode counts", "include", ("include", "exclude"),
            header="matrix products only (elementwise FLOPs excluded)"),
    Setting("embedding_flops", "choice", "an embedding lookup is a gather with no FLOPs (default), or a one-hot "
            "product of 2·tokens·V·h FLOPs (as Chinchilla counts it)", "lookup", ("lookup", "matmul"),
            header="embedding lookups counted as one-hot products"),
    Setting("recompute", "choice", "activation recomputation: selective recomputes fused regions (attention's s×s "
            "tensors), full keeps only each repeated layer's input; recomputed work is reported as recomputed FLOPs",
            "none", ("none", "selective", "full"), header="{} recomputation"),
    Setting("flash_attention", "flag", "fused regions run as one kernel: their inner tensors are neither stored nor "
            "moved", False, header="fused attention (FlashAttention)"),
    Setting("tp", "degree", "tensor-parallel degree (a number, or a name such as t to keep it symbolic); costs become "
            "per device and all-reduce traffic is reported", None, metavar="T",
            header="per device of tensor-parallel degree {}"),
    Setting("sp", "flag", "sequence parallelism: also shard the activations outside tensor-parallel regions (needs "
            "--tp)", False, header="with sequence parallelism", needs="tp"),
    Setting("vocab_parallel", "flag", "under --tp, shard the embedding table and the LM head by vocabulary as "
            "Megatron-LM and vLLM do (default); --no-vocab-parallel keeps them whole on every device", True,
            stage="build", header="embedding and head replicated", needs="tp"),
    Setting("pp", "degree", "pipeline-parallel degree: each device holds L/P of every repeated layer; stage-boundary "
            "traffic is reported (a number or a name)", None, metavar="P",
            header="per device of a pipeline of {} stages"),
    Setting("stage", "choice", "with --pp, the pipeline stage reported: first (the embedding and L/P layers, default), "
            "middle (L/P layers), last (L/P layers, the final norm, the head and the loss)", "first",
            ("first", "middle", "last"), header="its {} stage", needs="pp"),
    Setting("ep", "degree", "expert-parallel degree: each device holds 1/E of every mixture's experts; the all-to-all "
            "of routed tokens is reported (a number or a name)", None, metavar="E",
            header="experts over {} devices"),
    Setting("keep", "names", "keep these derived dimensions as symbols in the closed forms (e.g. d instead of h/a)",
            (), metavar="DIM"),
    Setting("dp", "degree", "data-parallel degree N_d for ZeRO sharding (a number or a name; default the symbol N_d)",
            None, stage="train", metavar="N"),
    Setting("zero", "int-choice", "ZeRO stage (default 0)", 0, (0, 1, 2, 3), "train"),
    Setting("optimizer", "choice", "optimizer for training-state memory (default adamw)", "adamw",
            ("adam", "adamw", "adam-amsgrad", "adamw-amsgrad", "sgd-momentum", "sgd", "none"), "train"),
    Setting("precision", "choice", "training precision policy (default: from the dtype — mixed-bf16 for bf16: 16-bit "
            "weights and gradients, fp32 master weights; fp32 for fp32)", None,
            ("fp32", "mixed-bf16", "mixed-fp16", "bf16", "fp16"), "train"),
    Setting("micro_batches", "count", "micro-batches per optimizer step (gradient accumulation; default 1): ZeRO-2 "
            "and ZeRO-3 reduce-scatter their sharded gradients after every micro-batch, and ZeRO-3 gathers the "
            "weights for each, so their data-parallel traffic grows with it", None, (), "train", "M"),
    Setting("device", "text", "a shipped device (see `symcost devices`) or a device JSON: adds the roofline bounds "
            "of the phase (time, tokens/s) and each op's arithmetic intensity", None, (), "device", "NAME|FILE"),
    Setting("step_time", "number", "a measured training step time in seconds: report MFU (with --device)", None, (),
            "device", "SECONDS"),
    Setting("flops_efficiency", "fraction", "the achieved fraction of the device's peak FLOP/s (default 1): time "
            "bounds become estimates for a system measured at that efficiency (needs --device)", None,
            (0, 1, False, True), "device", "FRACTION"),
    Setting("bandwidth_efficiency", "fraction", "the achieved fraction of the device's memory bandwidth (default 1; "
            "needs --device)", None, (0, 1, False, True), "device", "FRACTION"),
    Setting("reserve", "fraction", "memory held back for allocator fragmentation: the tensors may fill only 1 − "
            "FRACTION of the memory they take (0.1: total = used / 0.9 + --reserve-bytes)", None, (0, 1, True, False),
            "memory", "FRACTION"),
    Setting("reserve_bytes", "size", "memory held back for the framework (CUDA context, workspaces), with a unit: 2GB, "
            "512MiB (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)", None, (), "memory", "SIZE"),
    Setting("generate", "count", "serving end to end: a prefill of s tokens, then N tokens generated (implies --phase "
            "prefill; needs --device): time to first token, time per output token as the cache grows, total latency "
            "and throughput bounds", None, (), "serving", "N"),
)
BY_NAME = {s.name: s for s in TABLE}


@dataclass(frozen=True)
class Request:
    """One derivation: a spec (or a config that names one) and every setting, validated."""

    spec: str | None = None
    preset: str | None = None
    hf_config: str | None = None
    values: tuple = ()  # (name, value) pairs for dims and options, in the order given
    phase: str = "train"
    dtype: str | None = None
    flops: str = "fma"
    causal: str = "full"
    other_flops: str = "include"
    embedding_flops: str = "lookup"
    recompute: str = "none"
    flash_attention: bool = False
    tp: str | int | None = None
    sp: bool = False
    vocab_parallel: bool = True
    pp: str | int | None = None
    stage: str = "first"
    ep: str | int | None = None
    keep: tuple = ()
    dp: str | int | None = None
    zero: int = 0
    optimizer: str = "adamw"
    precision: str | None = None
    micro_batches: int | None = None
    device: str | None = None
    step_time: float | None = None
    activations: str | None = None
    weights: str | None = None
    quantize: str = "layers"
    group: int | None = None
    scale: str | None = None
    zero_point: bool | str | None = None  # True: at the weights' own width
    kv: str | None = None
    flops_efficiency: Fraction | None = None
    bandwidth_efficiency: Fraction | None = None
    reserve: Fraction | None = None
    reserve_bytes: int | None = None
    generate: int | None = None
    training: bool = field(default=False)  # report training-state memory (phase train, or ZeRO/dp given)

    def settings(self) -> dict:
        """The table's settings by name."""
        return {s.name: getattr(self, s.name) for s in TABLE}


def request(spec=None, *, preset=None, hf_config=None, values=None, **settings) -> Request:
    """A checked Request from keyword arguments named as in TABLE (values: {name: int or bool} or NAME=VALUE items)."""
    for name in settings:
        if name not in BY_NAME:
            raise SymcostError(f"unknown setting '{name}'", None, suggest(name, BY_NAME))
    checked = {name: check(BY_NAME[name], value) for name, value in settings.items() if value is not None}
    if preset is not None and hf_config is not None:
        raise SymcostError("give a preset or an HF config, not both")
    pairs = tuple(_pairs(values))
    if checked.get("generate") is not None and "phase" not in checked:
        checked["phase"] = "prefill"  # serving: the prompt's prefill, then the generated tokens
    # training-state memory when the train phase is asked for by name, or ZeRO or a data-parallel degree is given
    training = (checked.get("phase") == "train" or bool(checked.get("zero")) or checked.get("dp") is not None
                or checked.get("micro_batches") is not None)
    req = Request(spec=None if spec is None else str(spec), preset=preset, hf_config=None if hf_config is None else
                  str(hf_config), values=pairs, training=training, **checked)
    return validate(req)


def check(setting: Setting, value):
    """One setting's value, checked against its kind and choices; a SymcostError names the setting."""
    name = setting.flag
    if setting.kind in ("choice", "int-choice"):
        if value is None and setting.default is None:
            return None
        if value not in setting.choices:
            shown = ", ".join(str(c) for c in setting.choices)
            raise SymcostError(f"{name} takes one of {shown}, not {value!r}", None,
                               suggest(str(value), [str(c) for c in setting.choices]))
        return value
    if setting.kind == "flag":
        if not isinstance(value, bool):
            raise SymcostError(f"{name} is true or false, not {value!r}")
        return value
    if setting.kind == "degree":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise SymcostError(f"{name} takes a positive integer or a name, not {value!r}")
        return value
    if setting.kind == "names":
        items = (value,) if isinstance(value, str) else tuple(value or ())
        if not all(isinstance(x, str) for x in items):
            raise SymcostError(f"{name} takes dimension names")
        return items
    if setting.kind == "number":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < float("inf"):
            raise SymcostError(f"{name} takes a positive number of seconds, not {value!r}")
        if float(value) < 1e-12:
            raise SymcostError(f"{name} {value} is shorter than a picosecond; give the step time in seconds")
        return float(value)
    if setting.kind in ("count", "fraction", "size", "zero-point"):
        return _check_amount(setting, value)
    if value is not None and not isinstance(value, str):
        raise SymcostError(f"{name} takes a name or a file, not {value!r}")
    return value


MAX_COUNT = 10**9


def _check_amount(setting: Setting, value):
    """A count (a positive integer), a fraction in the setting's interval, a size in bytes, or a zero point."""
    name = setting.flag
    if value is None:
        return None
    if setting.kind == "zero-point":
        if isinstance(value, bool):
            return True if value else None
        if not isinstance(value, str) or not value:
            raise SymcostError(f"{name} takes true or a dtype name, not {value!r}")
        return True if value.lower() == "true" else value
    if setting.kind == "count":
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            raise SymcostError(f"{name} takes a positive integer of at most {MAX_COUNT:,}, not {value!r}")
        return value
    if setting.kind == "size":
        return parse_size(value, name)
    return _fraction(setting, value)


def _fraction(setting: Setting, value) -> Fraction:
    lo, hi, lo_closed, hi_closed = setting.choices
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Fraction)):
            raise ValueError
        x = Fraction(repr(value)) if isinstance(value, float) else Fraction(value.strip() if isinstance(value, str)
                                                                            else value)
    except (ValueError, ZeroDivisionError):
        raise SymcostError(f"{setting.flag} takes a number, not {str(value)[:40]!r}") from None
    if not ((lo <= x if lo_closed else lo < x) and (x <= hi if hi_closed else x < hi)):
        interval = f"{'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}"
        raise SymcostError(f"{setting.flag} takes a fraction in {interval}, not {value}", None,
                           "a fraction, not a percentage: 0.9 for 90%" if x > 1 else None)
    return x


SIZE_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_size(value, name: str = "size") -> int:
    """Bytes from an integer or a text with a unit (2GB = 2·10⁹, 512MiB = 512·2²⁰), exactly; whole bytes only."""
    if isinstance(value, bool):
        raise SymcostError(f"{name} takes a size such as 2GB, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SymcostError(f"{name} takes a size of at least 0 bytes, not {value}")
        return value
    if not isinstance(value, str):
        raise SymcostError(f"{name} takes a size such as 2GB or 512MiB, not {value!r}")
    m = _SIZE.fullmatch(value) if len(value) <= 40 else None
    if m is None:
        raise SymcostError(f"{name}: '{value[:40]}' is not a size; write one such as 2GB or 512MiB")
    unit = m.group(2) or "B"
    if unit not in SIZE_UNITS:
        hint = suggest(unit, SIZE_UNITS)
        if unit.upper() == "KB":
            hint = "kB is 10^3 bytes, KiB 2^10"
        raise SymcostError(f"{name}: unknown unit '{unit}'; use one of {', '.join(SIZE_UNITS)}", None, hint)
    size = Fraction(m.group(1)) * SIZE_UNITS[unit]
    if size.denominator != 1:
        raise SymcostError(f"{name} {value} is not a whole number of bytes")
    return int(size)


def setting_from_text(name: str, raw: str):
    """A setting's value written as text (`tp=8`, `flash-attention=true`, `keep=d`), checked."""
    setting = BY_NAME.get(name)
    if setting is None:
        raise SymcostError(f"unknown setting '{name}'", None, suggest(name, BY_NAME))
    if setting.kind == "flag":
        if raw.lower() not in ("true", "false"):
            raise SymcostError(f"{setting.flag} is true or false, not '{raw[:40]}'")
        return check(setting, raw.lower() == "true")
    if setting.kind == "int-choice":
        return check(setting, int(raw) if raw.isascii() and raw.isdigit() else raw)
    if setting.kind == "names":
        return check(setting, tuple(x for x in raw.split(",") if x))
    if setting.kind == "number":
        try:
            return check(setting, float(raw))
        except ValueError:
            raise SymcostError(f"{setting.flag} takes a number, not '{raw[:40]}'") from None
    return check(setting, raw)  # count, fraction, size and zero-point read their texts themselves


def validate(req: Request) -> Request:
    """Combinations that make no sense are errors, each naming the settings involved."""
    if req.sp and req.tp is None:
        raise SymcostError("sequence parallelism shards along the tensor-parallel group: give a degree with --tp")
    if req.sp and req.phase == "decode":
        raise SymcostError("--sp shards the sequence, and a decode step has one token per sequence: leave --sp out")
    if not req.vocab_parallel and req.tp is None:
        raise SymcostError("--no-vocab-parallel keeps the embedding and head whole under tensor parallelism: give "
                           "a degree with --tp")
    if req.phase != "train":
        for name in ("zero", "dp", "optimizer", "precision", "micro_batches"):
            if getattr(req, name) not in (BY_NAME[name].default, None):
                raise SymcostError(f"--{name.replace('_', '-')} describes the training state; --phase {req.phase} "
                                   "has none (weights are held whole, or split by --tp/--pp/--ep)")
    if req.generate is not None and req.pp is not None:
        raise SymcostError("--generate bounds one sequence's latency, which passes every pipeline stage in turn; "
                           "symcost reports one stage's work under --pp: leave --pp out (or use --tp)")
    if req.phase != "train":
        for name in ("recompute",):
            if getattr(req, name) != BY_NAME[name].default:
                raise SymcostError(f"--{name} {getattr(req, name)} applies to training; --phase {req.phase} keeps "
                                   "nothing for a backward pass")
    if req.step_time is not None and (req.phase != "train" or req.device is None):
        raise SymcostError("--step-time takes a measured training step time, with --phase train and --device")
    if req.stage != "first" and req.pp is None:
        raise SymcostError("--stage chooses a pipeline stage: give a degree with --pp")
    _validate_dtypes(req)
    if req.generate is not None:
        if req.phase != "prefill":
            raise SymcostError(f"--generate models a prompt's prefill then the tokens generated; it takes --phase "
                               f"prefill (the default with --generate), not --phase {req.phase}")
        if req.device is None:
            raise SymcostError("--generate gives latency bounds on a device: add --device (see `symcost devices`)")
    for name in ("flops_efficiency", "bandwidth_efficiency"):
        if getattr(req, name) is not None and req.device is None:
            raise SymcostError(f"{BY_NAME[name].flag} scales a device's figures: add --device")
    return req


def _validate_dtypes(req: Request) -> None:
    from symcost.model.dtypes import BUILTIN_DTYPES, FLOATING

    if req.phase == "train":
        for name in ("dtype", "activations"):
            value = getattr(req, name)
            if value in BUILTIN_DTYPES and value not in FLOATING:
                raise SymcostError(f"--{name} {value}: an integer type carries no gradient, so training cannot run "
                                   "in it; train in fp32, bf16 or fp16 (or fp8), and quantize weights for inference "
                                   "with --weights")
        for name, why in (("weights", "weight-only quantization is for inference (--phase prefill or decode); "
                                      "training precision is --precision"),
                          ("kv", "training keeps no KV cache")):
            if getattr(req, name) is not None:
                raise SymcostError(f"--{name} {getattr(req, name)}: {why}")
    for name in ("quantize", "group"):
        if getattr(req, name) != BY_NAME[name].default and req.weights is None:
            raise SymcostError(f"{BY_NAME[name].flag} describes quantized weights: give their dtype with --weights "
                               "(e.g. --weights int4)")
    for name in ("scale", "zero_point"):
        if getattr(req, name) is not None and req.group is None:
            raise SymcostError(f"{BY_NAME[name].flag} describes group quantization: give the group size with --group "
                               "(e.g. --group 128)")


def _pairs(values):
    if values is None:
        return []
    if isinstance(values, dict):
        return list(values.items())
    out = []
    for item in values:
        if isinstance(item, tuple) and len(item) == 2:
            out.append(item)
            continue
        if not isinstance(item, str):
            raise SymcostError(f"values are NAME=VALUE texts or (name, value) pairs, not {item!r}")
        name, eq, raw = item.partition("=")
        if not eq or not name.strip() or not raw.strip():
            raise SymcostError(f"--set expects NAME=VALUE, got '{item}'")
        out.append((name.strip(), raw.strip()))
    return out


def header_parts(req: Request) -> list[str]:
    """The header's description of the phase and of the non-default settings that change the closed forms."""
    parts = []
    for s in TABLE:
        if s.header is None or s.stage not in ("build", "account"):
            continue
        value = getattr(req, s.name)
        if s.needs is not None and getattr(req, s.needs) is None:
            continue
        if s.name == "phase" or (value != s.default and value is not None):
            parts.append(s.header.format(value))
    return parts


def with_values(req: Request, **changes) -> Request:
    """A copy of a request with some settings changed and checked again."""
    for name, value in changes.items():
        if name in BY_NAME:
            changes[name] = check(BY_NAME[name], value)
    known = {f.name for f in fields(Request)}
    bad = [n for n in changes if n not in known]
    if bad:
        raise SymcostError(f"unknown setting '{bad[0]}'", None, suggest(bad[0], known))
    return validate(replace(req, **changes))
