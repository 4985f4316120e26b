"""`symcost derive`: the closed forms of a spec, its values and the analyses its settings ask for."""
from __future__ import annotations

from symcost.commands.args import FORMATS, RAW, add_settings, request_of, set_values, source
from symcost.errors import SymcostError


def register(sub, common) -> None:
    d = sub.add_parser(
        "derive", parents=[common], help="print the closed forms of a spec", formatter_class=RAW,
        description="Print per-block and whole-model closed forms for a spec; with --set, also their values.",
        epilog="examples:\n"
        "  symcost derive llama\n"
        "  symcost derive specs/gpt2.arch --set a=12 b=1 s=1024 h=768 L=12 V=50257 P=1024\n"
        "  symcost derive llama --preset llama-2-7b --phase decode --device h100-sxm --set b=1 c=4096\n"
        "  symcost derive specs/llama.arch --explain --flops mac\n"
        "  symcost derive specs/llama.arch --format latex --document > llama.tex",
    )
    source(d, "a .arch file, or the name of a spec on the search path (llama); optional with --hf-config/--preset: "
              "chosen by model_type")
    set_values(d)
    add_settings(d)
    d.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    d.add_argument("--explain", action="store_true", help="walk through the derivation op by op (text format)")
    d.add_argument("--document", action="store_true", help="with --format latex: a complete document for pdflatex")
    d.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")


def run(args) -> str:
    from symcost.api import run as derive
    from symcost.present import render

    if args.explain and args.format != "text":
        raise SymcostError("--explain walks the derivation in text; use it without --format")
    analysis = derive(request_of(args))
    return render(analysis, args.format, explain=args.explain, document=args.document)
