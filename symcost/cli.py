"""The command line: `symcost derive`, `symcost ops`."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import SymcostError

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

    d = sub.add_parser(
        "derive",
        help="print the closed forms of a spec",
        description="Print per-block and whole-model closed forms for a spec; with --set, also their values.",
        epilog="examples:\n"
        "  symcost derive specs/gpt2.arch\n"
        "  symcost derive specs/gpt2.arch --set a=12 b=1 s=1024 h=768 L=12 V=50257 P=1024\n"
        "  symcost derive specs/llama.arch --explain --flops mac\n"
        "  symcost derive specs/llama.arch --format latex > llama.tex",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("spec", help="path to a .arch file")
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
    d.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    d.add_argument("--explain", action="store_true", help="walk through the derivation op by op (text format)")
    d.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")

    o = sub.add_parser("ops", help="list the built-in ops", description="List the built-in ops and their arguments.")
    o.add_argument("name", nargs="?", help="show one op in full")
    return p


def _derive(args) -> str:
    from .derive import derive
    from .evaluate import Evaluator, parse_assignments
    from .graph import build
    from .parse import load

    module = load(args.spec)
    # options from --set must be known before building, dims after (the env is the spec's)
    probe = build(module, dtype=args.dtype)
    values, options = parse_assignments(args.set, probe.env)
    graph = build(module, options=options, dtype=args.dtype) if options else probe
    report = derive(graph, args.flops, tuple(args.keep))
    ev = Evaluator(graph.env, values)
    if args.format == "json":
        from .printers import json as printer
    elif args.format == "latex":
        from .printers import latex as printer
    elif args.format == "markdown":
        from .printers import markdown as printer
    else:
        from .printers import text

        return text.render(report, ev, explain=args.explain)
    return printer.render(report, ev)


def _ops(args) -> str:
    from .graph import _usage
    from .ops import OPS

    if args.name:
        if args.name not in OPS:
            from .errors import suggest

            raise SymcostError(f"unknown op '{args.name}'", None, suggest(args.name, OPS))
        op = OPS[args.name]
        return f"{_usage(op.name)}\n\n{(op.fn.__doc__ or '').strip()}\n"
    width = max(len(_usage(n)) for n in OPS)
    return "".join(f"{_usage(n).ljust(width)}  {OPS[n].doc}\n" for n in sorted(OPS))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        text = _derive(args) if args.command == "derive" else _ops(args)
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
