"""`symcost compare`: two specs, or one spec under two settings, metric by metric."""
from __future__ import annotations

from symcost.commands.args import RAW, add_settings, request_of, set_values, source


def register(sub, common) -> None:
    c = sub.add_parser(
        "compare", parents=[common], formatter_class=RAW,
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
    source(c, "a .arch file or a spec name (optional with --hf-config/--preset)")
    c.add_argument("spec_b", nargs="?", help="a second spec (default: the same spec)")
    c.add_argument("--a", nargs="+", default=[], action="extend", metavar="NAME=VALUE",
                   help="side A: dims, options, a dim set to another dim (kv=a), or a setting (recompute=full, tp=8)")
    c.add_argument("--b", nargs="+", default=[], action="extend", metavar="NAME=VALUE", help="side B, likewise")
    set_values(c, "dims and options of both sides")
    add_settings(c)
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")


def run(args) -> str:
    from symcost.analysis.compare import compare, variants
    from symcost.present.compare import render

    va, vb = variants(request_of(args), args.spec_b, args.a, args.b)
    return render(compare(va.report, vb.report), va, vb, args.format)
