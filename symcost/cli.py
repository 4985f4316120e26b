"""The command line: `symcost derive`, `symcost ops`."""
from __future__ import annotations

import argparse
import sys

from symcost import __version__
from symcost.errors import SymcostError

FORMATS = ("text", "json", "latex", "markdown")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="symcost",
        description="Derive closed-form costs (parameters, FLOPs, activation memory, traffic) of neural "
        "networks described in the .arch language.",
    )
    p.add_argument("--version", action="version", version=f"symcost {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--path", metavar="DIR", action="append", default=[],
                        help="look for specs, blocks, mappings (hf/), presets and devices (hardware/) in DIR before "
                        "the shipped ones; may be repeated (also: the SYMCOST_PATH environment variable)")

    d = sub.add_parser(
        "derive", parents=[common],
        help="print the closed forms of a spec",
        description="Print per-block and whole-model closed forms for a spec; with --set, also their values.",
        epilog="examples:\n"
        "  symcost derive specs/gpt2.arch\n"
        "  symcost derive specs/gpt2.arch --set a=12 b=1 s=1024 h=768 L=12 V=50257 P=1024\n"
        "  symcost derive specs/llama.arch --explain --flops mac\n"
        "  symcost derive specs/llama.arch --format latex > llama.tex",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("spec", nargs="?", help="a .arch file, or the name of a spec on the search path (llama); optional "
                   "with --hf-config/--preset: chosen by model_type")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--hf-config", metavar="FILE", help="take dims and options from a transformers config.json")
    src.add_argument("--preset", metavar="NAME", help="take dims and options from a shipped preset (see `symcost presets`)")
    d.add_argument(
        "--set", nargs="+", default=[], metavar="NAME=VALUE", action="extend",
        help="give dimensions values (h=768 L=12 ...) or flip options (tied=false)",
    )
    d.add_argument(
        "--flops", choices=("fma", "mac", "exact"), default="fma",
        help="FLOP convention: fma counts a multiply-add as 2 (2MKN, default); mac counts multiply-accumulates "
        "(MKN); exact counts MN(2K-1)",
    )
    d.add_argument("--dtype", metavar="DTYPE", help="override the spec's default dtype (fp32, bf16, fp16, fp8, ...)")
    d.add_argument(
        "--keep", nargs="+", default=[], metavar="DIM", action="extend",
        help="keep these derived dimensions as symbols in the closed forms (e.g. d instead of h/a)",
    )
    d.add_argument(
        "--phase", choices=("train", "prefill", "decode"),
        help="train: forward and backward with training-state memory; prefill: a forward over s new tokens, "
        "writing the KV cache; decode: one new token per sequence (s = 1) against c cached tokens. Without "
        "--phase: the forward/backward view",
    )
    d.add_argument(
        "--recompute", choices=("none", "selective", "full"), default="none",
        help="activation recomputation: selective recomputes fused regions (attention's s×s tensors), full keeps "
        "only each repeated layer's input; recomputed work is reported as recomputed FLOPs",
    )
    d.add_argument("--flash-attention", action="store_true",
                   help="fused regions run as one kernel: their inner tensors are neither stored nor moved")
    d.add_argument("--tp", metavar="T", help="tensor-parallel degree (a number, or a name such as t to keep it "
                   "symbolic); costs become per device and all-reduce traffic is reported")
    d.add_argument("--pp", metavar="P", help="pipeline-parallel degree: each device holds L/P of every repeated layer; "
                   "stage-boundary traffic is reported (a number or a name)")
    d.add_argument("--stage", choices=("first", "middle", "last"), default="first",
                   help="with --pp, the pipeline stage reported: first (the embedding and L/P layers, default), middle "
                   "(L/P layers), last (L/P layers, the final norm, the head and the loss)")
    d.add_argument("--ep", metavar="E", help="expert-parallel degree: each device holds 1/E of every mixture's experts; "
                   "the all-to-all of routed tokens is reported (a number or a name)")
    d.add_argument("--sp", action="store_true", help="sequence parallelism: also shard the activations outside "
                   "tensor-parallel regions (needs --tp)")
    d.add_argument("--causal", choices=("full", "half"), default="full",
                   help="count causal attention products in full (as FlopCounterMode does, default) or only the "
                   "half a causal mask keeps")
    d.add_argument("--device", metavar="NAME|FILE",
                   help="a shipped device (see `symcost devices`) or a device JSON: adds the roofline bounds of the "
                   "phase (time, tokens/s) and each op's arithmetic intensity")
    d.add_argument("--step-time", type=float, metavar="SECONDS", help="a measured training step time: report MFU (with --device)")
    d.add_argument("--optimizer", default="adamw",
                   choices=("adam", "adamw", "adam-amsgrad", "adamw-amsgrad", "sgd-momentum", "sgd", "none"),
                   help="optimizer for training-state memory (default adamw)")
    d.add_argument("--precision", choices=("fp32", "mixed-bf16", "mixed-fp16", "bf16", "fp16"),
                   help="training precision policy (default: from the dtype — mixed-bf16 for bf16: 16-bit weights and "
                   "gradients, fp32 master weights; fp32 for fp32)")
    d.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=0, help="ZeRO stage (default 0)")
    d.add_argument("--dp", metavar="N", help="data-parallel degree N_d for ZeRO sharding (a number or a name; default the symbol N_d)")
    d.add_argument("--other-flops", choices=("include", "exclude"), default="include",
                   help="count the elementwise FLOPs of softmax, norms, activations … (default include); exclude "
                   "leaves matrix products only, as FlopCounterMode counts")
    d.add_argument("--embedding-flops", choices=("lookup", "matmul"), default="lookup",
                   help="an embedding lookup is a gather with no FLOPs (default), or a one-hot product of "
                   "2·tokens·V·h FLOPs (as Chinchilla counts it)")
    d.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    d.add_argument("--explain", action="store_true", help="walk through the derivation op by op (text format)")
    d.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")

    v = sub.add_parser(
        "validate", parents=[common],
        help="compare derived costs with a real transformers model (needs symcost[torch])",
        description="Build the transformers model for a config and measure, beside what symcost derives: the "
        "parameter count of the full-size model on the meta device (exact), forward and forward+backward matmul "
        "FLOPs of a tiny model of the same structure with FlopCounterMode (exact), and bytes saved for backward "
        "(reported). Exit status 1 when an exact quantity disagrees.",
    )
    v.add_argument("spec", nargs="?", help="path to a .arch file (optional: chosen by model_type)")
    vsrc = v.add_mutually_exclusive_group(required=True)
    vsrc.add_argument("--hf-config", metavar="FILE", help="a transformers config.json")
    vsrc.add_argument("--preset", metavar="NAME", help="a shipped preset (see `symcost presets`)")
    v.add_argument(
        "--shapes", default="2x16,3x32,1x64", metavar="BxS,...",
        help="batch x sequence sizes for the tiny-model FLOP checks (default: 2x16,3x32,1x64)",
    )
    v.add_argument("--format", choices=("text", "json"), default="text")

    c = sub.add_parser(
        "compare", parents=[common],
        help="compare two specs, or one spec under two settings, metric by metric",
        description="Print, per metric, the symbolic difference B − A and ratio B / A, simplified, and their values "
        "with --set. Compare one spec under two settings (--a kv=a --b kv=1) or two specs (SPEC SPEC_B).",
        epilog="examples:\n"
        "  symcost compare specs/llama.arch --a kv=a --b kv=1                  # multi-head vs multi-query\n"
        "  symcost compare specs/llama.arch --a kv=a --b kv=8 --phase prefill --set a=64 h=8192 L=80 b=1 s=4096\n"
        "  symcost compare specs/gpt2.arch --a recompute=selective --b recompute=full\n"
        "  symcost compare specs/gpt2.arch specs/llama.arch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("spec", help="path to a .arch file")
    c.add_argument("spec_b", nargs="?", help="a second spec (default: the same spec)")
    c.add_argument("--a", nargs="+", default=[], action="extend", metavar="NAME=VALUE",
                   help="settings of side A: dims, options, a dim set to another dim (kv=a), or recompute=…, "
                   "flash-attention=true|false, causal=…, other-flops=…, embedding-flops=…")
    c.add_argument("--b", nargs="+", default=[], action="extend", metavar="NAME=VALUE", help="settings of side B")
    c.add_argument("--set", nargs="+", default=[], action="extend", metavar="NAME=VALUE", help="settings of both sides")
    c.add_argument("--phase", choices=("train", "prefill", "decode"), default="train")
    c.add_argument("--flops", choices=("fma", "mac", "exact"), default="fma")
    c.add_argument("--format", choices=("text", "json"), default="text")

    dv = sub.add_parser("devices", parents=[common], help="list the shipped hardware table", description="List the shipped devices.")
    dv.add_argument("--format", choices=("text", "markdown", "json"), default="text")

    pr = sub.add_parser("presets", parents=[common], help="list the shipped model presets", description="List the shipped presets (published configs).")
    pr.add_argument("--format", choices=("text", "json"), default="text")

    z = sub.add_parser("zoo", parents=[common], help="write the model zoo page (docs/zoo.md) from the shipped specs and presets",
                       description="Render every family's per-layer closed forms and each preset's numbers as Markdown.")
    z.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")

    o = sub.add_parser("ops", parents=[common], help="list the built-in ops", description="List the built-in ops and their arguments.")
    o.add_argument("name", nargs="?", help="show one op in full")
    return p


def _derive(args) -> str:
    from symcost.cost.accounting import check_divisible, derive
    from symcost.analysis.evaluate import Evaluator, parse_assignments
    from symcost.model.graph import build, environment
    from symcost.lang.parse import load

    resolved = _resolve_config(args)
    spec = args.spec or (str(resolved.spec) if resolved else None)
    if spec is None:
        raise SymcostError("give a spec file, or --hf-config / --preset to choose one by model_type")
    module = load(spec)
    # options from --set must be known before building, dims after (the env is the spec's)
    phase = args.phase or "train"
    if args.explain and args.format != "text":
        raise SymcostError("--explain walks the derivation in text; use it without --format")
    if args.step_time is not None and (args.step_time <= 0 or phase != "train"):
        raise SymcostError("--step-time takes a measured training step time in seconds (> 0), with --phase train")
    names = environment(module, dtype=args.dtype, phase=phase)
    tp = _degree(args.tp, names, "--tp", "tensor-parallel degree")
    pp = _degree(args.pp, names, "--pp", "pipeline-parallel degree")
    ep = _degree(args.ep, names, "--ep", "expert-parallel degree")
    training = args.phase == "train" or args.zero or args.dp
    args.dp_degree = _degree(args.dp or "N_d", names, "--dp", "data-parallel degree") if training else None
    values, options = parse_assignments(args.set, names)
    if phase == "decode" and "s" in values:
        raise SymcostError("--phase decode computes one new token per sequence (s = 1); set c, the cached tokens")
    if resolved:
        _check_names(resolved, names)
        values, options = {**resolved.values, **values}, {**resolved.options, **options}
    graph = build(module, options=options, dtype=args.dtype, phase=phase)
    for degree in (tp, pp, ep, args.dp_degree):
        if degree is not None and degree.is_Symbol:
            graph.env.dims[degree.name] = names.dims[degree.name]
    report = derive(graph, args.flops, tuple(args.keep), recompute=args.recompute, flash=args.flash_attention,
                    tp=tp, sp=args.sp, causal=args.causal, pp=pp, ep=ep, other=args.other_flops,
                    embedding=args.embedding_flops, stage=args.stage)
    ev = Evaluator(graph.env, values)
    check_divisible(report, values)
    if resolved:
        from symcost.analysis.hf import check_derived

        check_derived(resolved, ev)
    extras = _analyses(args, report, ev)
    if args.format in ("latex", "markdown") and extras:  # the analyses as they read in text, after the forms
        body = "\n".join(t.rstrip("\n") for t, _ in extras.values())
        tail = ("\n".join(f"% {line}" for line in body.splitlines()) if args.format == "latex"
                else f"\n```\n{body}\n```")
    else:
        tail = ""
    if args.format == "json":
        from symcost.present import json as printer
    elif args.format == "latex":
        from symcost.present import latex as printer
    elif args.format == "markdown":
        from symcost.present import markdown as printer
    else:
        from symcost.present import text

        return text.render(report, ev, explain=args.explain, extras=[t for t, _ in extras.values()])
    if args.format == "json":
        return printer.render(report, ev, extras={k: j for k, (_, j) in extras.items()})
    return printer.render(report, ev) + (tail + "\n" if tail else "")


def _analyses(args, report, ev) -> dict:
    """Training-state memory (--phase train) and roofline bounds (--device): name -> (text, json)."""
    import sympy as sp

    from symcost.present.forms import human
    from symcost.present.text import forms_for

    forms = forms_for(report)
    out = {}
    if args.dp_degree is not None:
        from symcost.analysis.training import dp_communication_bytes, training_state_for

        dp = args.dp_degree
        precision = args.precision or PRECISION_OF.get(report.env.default_dtype.name, "mixed-bf16")
        st = training_state_for(report, precision=precision, optimizer=args.optimizer, zero=args.zero, dp=dp)
        comm = dp_communication_bytes(report.totals["params"], precision, args.zero, dp)
        shown_ev = ev if ev.active else None
        text = st.describe(shown_ev, forms).rstrip("\n")
        value = ev(comm) if ev.active else None
        text += (f"\n  data-parallel traffic per step: {'3Ψ' if args.zero == 3 else '2Ψ'} elements sent per device"
                 f" = {forms.text(sp.expand(comm))} bytes" + (f" = {human(value, 'B')}" if value is not None else ""))
        doc = st.to_json(shown_ev)
        doc["dp_comm_bytes"] = {"expr": str(sp.expand(comm)), "value": ev.json_value(comm) if ev.active else None}
        out["training"] = (text, doc)
    if args.device:
        from symcost.analysis.hardware import load_device
        from symcost.analysis.roofline import mfu_for, phase_summary, roofline, roofline_json

        device = load_device(args.device)
        summary = phase_summary(report, device)
        text = summary.describe(ev if ev.active else None, forms)
        doc = None
        if args.format == "json":  # the per-op table only feeds the JSON document
            doc = _device_json(summary.to_json(ev), roofline_json(roofline(report, device), ev)["ops"])
        if doc is not None:
            doc["flops"]["value"] = ev.json_value(summary.flops) if ev.active else None
            doc["bytes"]["value"] = ev.json_value(summary.bytes) if ev.active else None
        if args.step_time:
            m = mfu_for(report, device, args.step_time, ev)
            number = float(m) if isinstance(m, (int, float)) or getattr(m, "is_number", False) else None
            text += (f"\n  MFU at a measured step of {args.step_time} s: {number:.1%}" if number is not None
                     else "\n  MFU: set every dimension (--set) to compute it")
            if doc is not None:
                doc["mfu"] = number
        out["device"] = (text, doc)
    elif args.step_time:
        raise SymcostError("--step-time needs --device (the peak FLOP/s that MFU divides by)")
    return out


def _device_json(summary: dict, ops: list) -> dict:
    """The device section under its documented names (docs/json.md)."""
    values = summary.get("values", {})
    return {
        "name": summary["device"],
        "dtype": summary["dtype"],
        "peak_flops_per_s": summary["peak"],
        "memory_bandwidth": summary["bandwidth"],
        "interconnect_bandwidth": summary["link_bandwidth"],
        "phase": summary["phase"],
        "flops": {"expr": summary["flops"], "value": values.get("flops")},
        "bytes": {"expr": summary["bytes"], "value": values.get("bytes")},
        "time_lower_bound_s": {"expr": summary["time"], "value": values.get("time")},
        "bound": values.get("bound"),
        "tokens_per_s": values.get("tokens_per_s"),
        "notes": summary.get("notes", []),
        "ops": [
            {
                "path": op["path"],
                "op": op["op"],
                "arithmetic_intensity": {"expr": op["intensity"], "value": op.get("values", {}).get("intensity")},
                "time_lower_bound_s": op.get("values", {}).get("total_time"),
                "bound": op.get("bound"),
            }
            for op in ops
        ],
    }


PRECISION_OF = {"fp32": "fp32", "bf16": "mixed-bf16", "fp16": "mixed-fp16"}  # training precision by --dtype


def _compare(args) -> str:
    from symcost.analysis.compare import compare, derive_variants, render

    (set_a, own_a), (set_b, own_b) = _split_settings(args.a), _split_settings(args.b)
    va, vb = derive_variants(args.spec, set_a, set_b, common=args.set, spec_b=args.spec_b, convention=args.flops,
                             phase=args.phase, settings_a=own_a, settings_b=own_b)
    rows = compare(va.report, vb.report)
    labels = (va.label if not args.spec_b else f"{args.spec} {va.label}", vb.label if not args.spec_b else f"{args.spec_b} {vb.label}")
    return render(rows, va.evaluator, vb.evaluator, args.format, labels=labels)


SETTINGS = {  # accounting settings a compare side may carry: name -> (derive keyword, allowed values or None)
    "recompute": ("recompute", ("none", "selective", "full")),
    "flash-attention": ("flash", ("true", "false")),
    "causal": ("causal", ("full", "half")),
    "other-flops": ("other", ("include", "exclude")),
    "embedding-flops": ("embedding", ("lookup", "matmul")),
}


def _split_settings(items: list[str]) -> tuple[list[str], dict]:
    """`recompute=full` and the like are accounting settings; everything else is a dim or an option."""
    rest, own = [], {}
    for item in items:
        name, _, value = item.partition("=")
        if name in SETTINGS:
            key, allowed = SETTINGS[name]
            if value not in allowed:
                raise SymcostError(f"compare: {name} takes {' or '.join(allowed)}, not '{value}'")
            own[key] = value == "true" if key == "flash" else value
        else:
            rest.append(item)
    return rest, own


def _devices(args) -> str:
    from symcost.analysis.hardware import render_devices

    return render_devices(fmt=args.format)


def _degree(text, env, flag: str = "--tp", doc: str = "tensor-parallel degree"):
    """A parallel degree: a positive integer, or a new dimension name that stays symbolic (and can be --set)."""
    if text is None:
        return None
    import sympy as sp

    from symcost.lang import syntax as S

    if text.isascii() and text.isdigit():
        if len(text) > 12 or int(text) < 1:
            raise SymcostError(f"{flag} must be a positive integer or a name")
        return sp.Integer(int(text))
    if not text.isidentifier():
        raise SymcostError(f"{flag} takes a positive integer or a name such as t, not '{text}'")
    if text in env.dims:
        if env.dims[text].doc == doc:  # the same degree named twice (--dp and --tp N_d …) is one symbol
            return env.dims[text].symbol
        raise SymcostError(f"{flag} {text}: the spec already uses the name '{text}'")
    if text in env.options:
        raise SymcostError(f"{flag} {text}: the spec already uses the name '{text}'")
    env.add_dim(S.DimDecl(text, None, doc, None, None), lambda *_: None)
    return env.dims[text].symbol


def _resolve_config(args):
    if not (args.hf_config or args.preset):
        return None
    from symcost.analysis.hf import preset_config, read_config, resolve

    config, source = read_config(args.hf_config) if args.hf_config else preset_config(args.preset)
    return resolve(config, source)


def _check_names(resolved, env) -> None:
    for name in resolved.values:
        if name not in env.dims:
            raise SymcostError(f"the {resolved.model_type} mapping sets dim '{name}', which this spec does not declare")
    for name in resolved.options:
        if name not in env.options:
            raise SymcostError(f"the {resolved.model_type} mapping sets option '{name}', which this spec does not declare")


def _presets(args) -> str:
    import json

    from symcost.analysis.hf import mappings, presets, read_json

    table = mappings()
    rows = []
    for name, path in presets().items():
        cfg = read_json(path, "preset")
        m = table.get(cfg.get("model_type"), {})
        dims = " ".join(f"{d}={_peek(cfg, rule)}" for d, rule in m.get("dims", {}).items())
        title = cfg.get("_symcost", {}).get("title", "")
        rows.append((name, cfg.get("model_type", "?"), m.get("spec", "?"), title, dims))
    if args.format == "json":
        return json.dumps([dict(zip(("name", "model_type", "spec", "title", "dims"), r)) for r in rows], indent=2) + "\n"
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join(f"{r[0].ljust(w[0])}  {r[1].ljust(w[1])}  {r[2].ljust(w[2])}  {r[3].ljust(w[3])}  {r[4]}\n" for r in rows)


def _peek(cfg: dict, rule):
    if isinstance(rule, dict) and "field" not in rule:
        return "…"
    field, default = (rule, None) if isinstance(rule, str) else (rule["field"], rule.get("default"))
    if cfg.get(field) is not None:
        return cfg[field]
    return _peek(cfg, default) if isinstance(default, str) else default


def _zoo(args) -> str:
    from symcost.analysis.zoo import render

    return render()


def _ops(args) -> str:
    from symcost.model.graph import _usage
    from symcost.ops.registry import OPS

    if args.name:
        if args.name not in OPS:
            from symcost.errors import suggest

            raise SymcostError(f"unknown op '{args.name}'", None, suggest(args.name, OPS))
        op = OPS[args.name]
        return f"{_usage(op.name)}\n\n{(op.fn.__doc__ or '').strip()}\n"
    width = max(len(_usage(n)) for n in OPS)
    return "".join(f"{_usage(n).ljust(width)}  {OPS[n].doc}\n" for n in sorted(OPS))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from symcost.paths import use_path

    use_path(getattr(args, "path", None) or [])
    try:
        if args.command == "validate":
            from symcost.analysis.validate import run

            text, status = run(args)
        else:
            handler = {"derive": _derive, "presets": _presets, "ops": _ops, "zoo": _zoo, "compare": _compare,
                       "devices": _devices}[args.command]
            text, status = handler(args), 0
    except SymcostError as e:
        print(e, file=sys.stderr)
        return 2
    except RecursionError:
        print("error: the spec nests too deeply to derive", file=sys.stderr)
        return 2
    if getattr(args, "output", None):
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as e:
            print(f"error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
