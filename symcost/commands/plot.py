"""`symcost plot`: a metric against a dim for several specs or presets, a roofline, or memory stacks (PNG or SVG)."""
from __future__ import annotations

from symcost.commands.args import RAW, add_settings, set_values
from symcost.errors import SymcostError

KINDS = ("line", "roofline", "memory")


def register(sub, common) -> None:
    p = sub.add_parser(
        "plot", parents=[common], formatter_class=RAW,
        help="draw a metric against a dim, a roofline or memory stacks (needs symcost[plot])",
        description="Draw a chart as PNG or SVG (by the -o file name). --kind line (default): --y against --x, one "
        "line per spec or preset, the closed form in x in the legend, log axes where the data span two decades. "
        "--kind roofline: each op (or --by block) at its arithmetic intensity on the --device roofline. --kind "
        "memory: memory per device by part (weights, gradients, optimizer, activations, KV cache) against the "
        "device's memory, one bar per spec or preset and value of --x. Dims not on the x axis take their values "
        "from the presets and --set. Needs matplotlib: pip install 'symcost[plot]'.",
        epilog="examples:\n"
        "  symcost plot llama --preset llama-2-7b llama-2-13b llama-3-8b --phase prefill --device h100-sxm \\\n"
        "      --x s=512..32768:x2 --y time --set b=1 -o prefill.svg\n"
        "  symcost plot gpt2 --preset gpt2-small gpt2-medium gpt2-large --x s=128..4096:x2 --y activation_bytes "
        "--set b=8 -o act.png\n"
        "  symcost plot llama --preset llama-2-7b --kind roofline --phase decode --device h100-sxm --set b=1 c=4096 "
        "-o roof.svg\n"
        "  symcost plot llama --preset llama-2-7b llama-2-13b --kind memory --device a100-80gb --x b=1,8,32 "
        "--set s=2048 --zero 1 --dp 8 -o mem.png",
    )
    p.add_argument("specs", nargs="*", metavar="SPEC", help="one or more .arch files or spec names (optional with "
                   "--preset/--hf-config: chosen by model_type)")
    p.add_argument("--preset", nargs="+", default=[], action="extend", metavar="NAME",
                   help="one line (or bar) per preset (see `symcost presets`)")
    p.add_argument("--hf-config", nargs="+", default=[], action="extend", metavar="FILE",
                   help="one line (or bar) per transformers config.json")
    p.add_argument("--kind", choices=KINDS, default="line", help="the chart (default: line)")
    p.add_argument("--x", metavar="DIM=VALUES", help="the dim on the x axis and its values (512..32768:x2, "
                   "512..4096:+512, 1,8,64); with --kind memory, one bar per value")
    p.add_argument("--y", metavar="METRIC", help="the metric on the y axis (flops_fwd, time, tokens_per_s, "
                   "kv_cache_bytes, memory_bytes, layer.flops_fwd, ...: see `symcost sweep --help`)")
    p.add_argument("--by", choices=("op", "block"), default="op", help="--kind roofline: a point per op (default) "
                   "or per block")
    p.add_argument("--title", help="the chart's title (default: from the metric and settings)")
    p.add_argument("--logx", action=_Tristate, help="log x axis (default: when the values span two decades)")
    p.add_argument("--logy", action=_Tristate, help="log y axis (default: when the values span two decades)")
    set_values(p, "values of the dims not on the x axis (b=1 ...) and options (tied=false), for every line")
    add_settings(p)
    p.add_argument("-o", dest="image", metavar="FILE", required=True, help="the chart file: .png or .svg")


class _Tristate:
    """--logx / --no-logx; neither leaves the choice to the data."""

    def __new__(cls, option_strings, dest, **kwargs):
        import argparse

        return argparse.BooleanOptionalAction(option_strings, dest, default=None, **kwargs)


def series(args) -> list[tuple[str, object]]:
    """(label, Analysis) per line: one per preset or config (on the one spec given, or chosen by model_type),
    else one per spec."""
    from symcost.api import run
    from symcost.commands.args import request_of

    sources = [("preset", p) for p in args.preset] + [("hf_config", c) for c in args.hf_config]
    if sources and len(args.specs) > 1:
        raise SymcostError("give several specs, or presets/configs on at most one spec, not both")
    if not sources and not args.specs:
        raise SymcostError("give a spec, or presets (--preset NAME ...) or configs (--hf-config FILE ...)")
    out = []
    if sources:
        spec = args.specs[0] if args.specs else None
        for kind, value in sources:
            args.spec, args.preset_one, args.config_one = spec, value if kind == "preset" else None, \
                value if kind == "hf_config" else None
            label = value if kind == "preset" else _stem(value)
            out.append((label, run(_request(args))))
    else:
        given, declared = list(args.set), [_declared(spec) for spec in args.specs]
        for spec, names in zip(args.specs, declared):
            # a value for a dim another spec declares applies to that spec only (L=2 for gpt2 and llama, kv=4 for llama)
            args.set = [i for i in given if _name(i) in names or not any(_name(i) in d for d in declared)]
            args.spec, args.preset_one, args.config_one = spec, None, None
            out.append((None, run(_request(args))))
        args.set = given
        names = [a.name for _, a in out]
        out = [(a.name if names.count(a.name) == 1 else str(a.graph.file), a) for _, a in out]
    return out


def _name(item: str) -> str:
    return item.partition("=")[0].strip()


def _declared(spec: str) -> set:
    """The dims and options a spec declares."""
    from symcost.lang.parse import load
    from symcost.model.builder import Builder

    env = Builder(load(spec)).declare().env
    return set(env.dims) | set(env.options)


def _request(args):
    from symcost.settings import TABLE, request

    settings = {s.name: getattr(args, s.name) for s in TABLE if getattr(args, s.name, None) is not None}
    return request(args.spec, preset=args.preset_one, hf_config=args.config_one, values=args.set, **settings)


def _stem(path: str) -> str:
    from pathlib import Path

    p = Path(path)
    return p.parent.name if p.stem == "config" and p.parent.name else p.stem


def run(args) -> str:
    from symcost.analysis.grid import parse_over
    from symcost.present import charts, plot

    plot._matplotlib()  # a clear error before any work when the extra is missing
    plot._format(args.image, None)
    axis = parse_over([args.x]) if args.x else {}
    if len(axis) == 1 and next(iter(axis)) in {i.partition("=")[0].strip() for i in args.set}:
        raise SymcostError(f"'{next(iter(axis))}' is both on the x axis (--x) and set (--set); give it once")
    lines = series(args)
    x, values = next(iter(axis.items())) if axis else (None, None)
    try:
        if args.kind == "line":
            if x is None or not args.y:
                raise SymcostError("--kind line draws --y against --x: give both (--x s=512..32768:x2 --y flops_fwd)")
            path = charts.metric_chart(lines, x, values, args.y, args.image, title=args.title, logx=args.logx,
                                       logy=args.logy)
        elif args.kind == "roofline":
            if len(lines) > 1 or x is not None or args.y:
                raise SymcostError("--kind roofline draws one spec or preset at one point: no --x or --y; give the "
                                   "dims with --set")
            path = charts.roofline_chart(lines[0][1], args.image, by=args.by, title=args.title)
        else:
            if args.y:
                raise SymcostError("--kind memory stacks the memory parts: no --y")
            path = charts.memory_chart(lines, args.image, x=x, values=values, title=args.title)
    except OSError as e:
        from symcost.files import shown

        raise SymcostError(f"cannot write {shown(args.image)}: {e.strerror or type(e).__name__}") from None
    return f"wrote {path} ({args.kind}, {len(lines)} {'series' if args.kind == 'line' else 'spec'}" \
           f"{'s' if args.kind != 'line' and len(lines) > 1 else ''})\n"
