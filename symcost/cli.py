"""The command line: argv → one request → the API → a printer. Every failure is an error message and a status."""
from __future__ import annotations

import argparse
import sys

from symcost import __version__
from symcost.errors import SymcostError

FORMATS = ("text", "json", "latex", "markdown")


def add_settings(parser: argparse.ArgumentParser, stages=("build", "account", "train", "device")) -> None:
    """The settings of symcost.settings.TABLE as flags (derive and compare share them)."""
    from symcost.settings import TABLE

    for s in TABLE:
        if s.stage not in stages:
            continue
        kw = dict(help=s.help, dest=s.name)
        if s.kind == "flag":
            action = argparse.BooleanOptionalAction if s.default else "store_true"
            parser.add_argument(s.flag, action=action, default=s.default, **kw)
        elif s.kind in ("choice", "int-choice"):  # no default here: the request knows what was given
            parser.add_argument(s.flag, choices=s.choices, type=int if s.kind == "int-choice" else None, **kw)
        elif s.kind == "names":
            parser.add_argument(s.flag, nargs="+", default=[], action="extend", metavar=s.metavar, **kw)
        elif s.kind == "number":
            parser.add_argument(s.flag, type=_seconds, metavar=s.metavar, **kw)
        else:
            parser.add_argument(s.flag, metavar=s.metavar, **kw)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: '{text[:40]}'") from None
    return value


def _source(parser, spec_help: str, required_source: bool = False) -> None:
    parser.add_argument("spec", nargs="?", help=spec_help)
    src = parser.add_mutually_exclusive_group(required=required_source)
    src.add_argument("--hf-config", metavar="FILE", help="take dims and options from a transformers config.json")
    src.add_argument("--preset", metavar="NAME", help="take dims and options from a preset (see `symcost presets`)")


def _set(parser, help_text="give dimensions values (h=768 L=12 ...) or flip options (tied=false)") -> None:
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", action="extend", help=help_text)


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
    raw = argparse.RawDescriptionHelpFormatter

    d = sub.add_parser(
        "derive", parents=[common], help="print the closed forms of a spec", formatter_class=raw,
        description="Print per-block and whole-model closed forms for a spec; with --set, also their values.",
        epilog="examples:\n"
        "  symcost derive llama\n"
        "  symcost derive specs/gpt2.arch --set a=12 b=1 s=1024 h=768 L=12 V=50257 P=1024\n"
        "  symcost derive llama --preset llama-2-7b --phase decode --device h100-sxm --set b=1 c=4096\n"
        "  symcost derive specs/llama.arch --explain --flops mac\n"
        "  symcost derive specs/llama.arch --format latex --document > llama.tex",
    )
    _source(d, "a .arch file, or the name of a spec on the search path (llama); optional with --hf-config/--preset: "
               "chosen by model_type")
    _set(d)
    add_settings(d)
    d.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    d.add_argument("--explain", action="store_true", help="walk through the derivation op by op (text format)")
    d.add_argument("--document", action="store_true", help="with --format latex: a complete document for pdflatex")
    d.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")

    v = sub.add_parser(
        "validate", parents=[common],
        help="compare derived costs with a real transformers model (needs symcost[torch])",
        description="Build the transformers model for a config and measure, beside what symcost derives: the "
        "parameter count of the full-size model on the meta device (exact), forward and forward+backward matmul "
        "FLOPs of a tiny model of the same structure with FlopCounterMode (exact), and bytes saved for backward "
        "(reported). Exit status 1 when an exact quantity disagrees.",
    )
    _source(v, "a .arch file (optional: chosen by model_type)", required_source=True)
    v.add_argument("--shapes", default="2x16,3x32,1x64", metavar="BxS,...",
                   help="batch x sequence sizes for the tiny-model FLOP checks (default: 2x16,3x32,1x64)")
    v.add_argument("--format", choices=("text", "json"), default="text")

    c = sub.add_parser(
        "compare", parents=[common], formatter_class=raw,
        help="compare two specs, or one spec under two settings, metric by metric",
        description="Print, per metric, the symbolic difference B − A and ratio B / A, simplified, and their values "
        "with --set. Compare one spec under two settings (--a kv=a --b kv=1) or two specs (SPEC SPEC_B). Every "
        "option of derive applies to both sides; --a/--b also take a setting for one side (recompute=full, tp=8).",
        epilog="examples:\n"
        "  symcost compare llama --a kv=a --b kv=1                  # multi-head vs multi-query\n"
        "  symcost compare llama --preset llama-2-70b --phase prefill --a kv=a --b kv=8 --set b=1 s=4096\n"
        "  symcost compare gpt2 --a recompute=selective --b recompute=full\n"
        "  symcost compare specs/gpt2.arch specs/llama.arch",
    )
    _source(c, "a .arch file or a spec name (optional with --hf-config/--preset)")
    c.add_argument("spec_b", nargs="?", help="a second spec (default: the same spec)")
    c.add_argument("--a", nargs="+", default=[], action="extend", metavar="NAME=VALUE",
                   help="side A: dims, options, a dim set to another dim (kv=a), or a setting (recompute=full, tp=8)")
    c.add_argument("--b", nargs="+", default=[], action="extend", metavar="NAME=VALUE", help="side B, likewise")
    _set(c, "dims and options of both sides")
    add_settings(c)
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")

    dv = sub.add_parser("devices", parents=[common], help="list the hardware table", description="List the devices.")
    dv.add_argument("--format", choices=("text", "markdown", "json"), default="text")

    pr = sub.add_parser("presets", parents=[common], help="list the model presets",
                        description="List the presets (published configs) on the search path.")
    pr.add_argument("--format", choices=("text", "json"), default="text")

    z = sub.add_parser("zoo", parents=[common], help="write the model zoo page (docs/zoo.md) from the specs and presets",
                       description="Render every family's per-layer closed forms and each preset's numbers as Markdown.")
    z.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")

    o = sub.add_parser("ops", parents=[common], help="list the built-in ops", description="List the built-in ops and their arguments.")
    o.add_argument("name", nargs="?", help="show one op in full")
    return p


def request_of(args, **extra):
    """The API request an argparse namespace describes (settings named as in symcost.settings.TABLE)."""
    from symcost.settings import TABLE, request

    settings = {s.name: getattr(args, s.name) for s in TABLE if hasattr(args, s.name)}
    settings = {k: v for k, v in settings.items() if v is not None}
    settings.update(extra)
    return request(getattr(args, "spec", None), preset=getattr(args, "preset", None),
                   hf_config=getattr(args, "hf_config", None), values=getattr(args, "set", []), **settings)


def _derive(args) -> str:
    from symcost.api import run
    from symcost.present import render

    if args.explain and args.format != "text":
        raise SymcostError("--explain walks the derivation in text; use it without --format")
    analysis = run(request_of(args))
    return render(analysis, args.format, explain=args.explain, document=args.document)


def _compare(args) -> str:
    from symcost.analysis.compare import compare, variants
    from symcost.present.compare import render

    va, vb = variants(request_of(args), args.spec_b, args.a, args.b)
    return render(compare(va.report, vb.report), va, vb, args.format)


def _devices(args) -> str:
    from symcost.present.devices import render

    return render(fmt=args.format)


def _presets(args) -> str:
    from symcost.present.presets import render

    return render(fmt=args.format)


def _zoo(args) -> str:
    from symcost.analysis.zoo import render

    return render()


def _ops(args) -> str:
    from symcost.ops.registry import OPS, usage

    if args.name:
        if args.name not in OPS:
            from symcost.errors import suggest

            raise SymcostError(f"unknown op '{args.name}'", None, suggest(args.name, OPS))
        op = OPS[args.name]
        return f"{usage(op.name)}\n\n{(op.fn.__doc__ or '').strip()}\n"
    width = max(len(usage(n)) for n in OPS)
    return "".join(f"{usage(n).ljust(width)}  {OPS[n].doc}\n" for n in sorted(OPS))


def _validate(args) -> tuple[str, int]:
    from symcost.analysis.validate import run

    return run(args)


HANDLERS = {"derive": _derive, "compare": _compare, "devices": _devices, "presets": _presets, "zoo": _zoo,
            "ops": _ops}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 success, 1 a validation that disagrees, 2 an error."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or argparse's own usage error (status 2)
        return int(e.code or 0)
    from symcost.paths import use_path

    use_path(getattr(args, "path", None) or [])
    try:
        if args.command == "validate":
            text, status = _validate(args)
        else:
            text, status = HANDLERS[args.command](args), 0
    except SymcostError as e:
        return _fail(str(e))
    except RecursionError:
        return _fail("error: the input nests too deeply")
    except MemoryError:
        return _fail("error: out of memory")
    return _emit(text, getattr(args, "output", None), status)


def _emit(text: str, output: str | None, status: int) -> int:
    """Write the result: to a file (-o), or to standard output, which may be closed, full or unable to encode."""
    if output:
        from symcost.files import shown

        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except (OSError, ValueError) as e:
            return _fail(f"error: cannot write {shown(output)}: {getattr(e, 'strerror', None) or type(e).__name__}")
        return status
    try:
        _write(sys.stdout, text)
        sys.stdout.flush()
    except BrokenPipeError:  # `symcost … | head`: the reader left; end quietly, as Unix tools do
        _silence_stdout()
        return status
    except OSError as e:
        _silence_stdout()
        return _fail(f"error: cannot write the output: {e.strerror or type(e).__name__}")
    return status


def _write(stream, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:  # a stream that cannot encode Unicode (PYTHONIOENCODING=ascii, a C locale)
        stream.write(ascii_text(text))


def ascii_text(text: str) -> str:
    """Unicode symbols of the reports spelled in ASCII (≥ as >=, · as *, superscripts as ^n)."""
    table = {"≥": ">=", "≤": "<=", "·": "*", "×": "x", "−": "-", "—": "--", "→": "->", "…": "...", "Ψ": "Psi",
             "µ": "u", "ᵀ": "^T", "≠": "!=", "✓": "ok", "✗": "FAIL", "\ufffd": "?"}
    sup = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-"))
    out, run = [], ""
    for ch in text:
        if ch in sup:
            run += sup[ch]
            continue
        if run:
            out.append("^" + run)
            run = ""
        out.append(table.get(ch, ch if ord(ch) < 128 else "?"))
    if run:
        out.append("^" + run)
    return "".join(out)


def _fail(message: str) -> int:
    try:
        _write(sys.stderr, message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return 2


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
