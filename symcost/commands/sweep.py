"""`symcost sweep`: every metric over a grid of dims, as a table, CSV or JSON, in one process."""
from __future__ import annotations

from symcost.commands.args import RAW, add_settings, request_of, set_values, source


def register(sub, common) -> None:
    s = sub.add_parser(
        "sweep", parents=[common], formatter_class=RAW,
        help="evaluate metrics over a grid of dims (a table, CSV or JSON)",
        description="Evaluate metrics at every point of a grid of dims: the closed forms are compiled once to "
        "vectorised numpy and evaluated in one process, exactly (whole numbers past 2^53 too). Dims not swept take "
        "their values from --preset/--hf-config and --set. The first --over dim varies slowest.\n\n"
        "VALUES: a list 1,8,64; a geometric range 512..32768:x2; an arithmetic range 512..4096:+512.\n"
        "Metrics: the whole-model metrics (params, flops_fwd, ...), a block's per instance (layer.flops_fwd), "
        "memory per device (memory_bytes, memory_weights_bytes, memory_kv_cache_bytes, ...), and with --device "
        "the phase's roofline bounds (time_lower_bound_s or time, tokens_per_s, compute_time_s, memory_time_s). "
        "--metrics all lists every one.",
        epilog="examples:\n"
        "  symcost sweep llama --preset llama-2-7b --phase prefill --device h100-sxm --over s=512..32768:x2 --set b=1\n"
        "  symcost sweep llama --preset llama-2-7b --over s=512..32768:x2 b=1,8,64 --metrics flops_fwd,kv_cache_bytes\n"
        "  symcost sweep gpt2 --preset gpt2-small --over b=1..64:+1 --set s=1024 --format csv > gpt2.csv",
    )
    source(s, "a .arch file or a spec name (optional with --hf-config/--preset)")
    s.add_argument("--over", nargs="+", required=True, action="extend", metavar="DIM=VALUES",
                   help="the dims to sweep and their values")
    s.add_argument("--metrics", metavar="M,M,...", help="metrics to give (default: the whole-model metrics, and the "
                   "roofline bounds with --device); 'all' for every one")
    set_values(s, "values of the dims not swept (h=4096 ...) and options (tied=false)")
    add_settings(s)
    s.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")


def run(args) -> str:
    from symcost.analysis.sweep import sweep
    from symcost.api import run as derive
    from symcost.present.sweep import render

    over = args.over
    given = {item.partition("=")[0].strip() for item in args.set}
    both = [item.partition("=")[0].strip() for item in over if item.partition("=")[0].strip() in given]
    if both:
        from symcost.errors import SymcostError

        raise SymcostError(f"'{both[0]}' is both swept (--over) and set (--set); give it once")
    table = sweep(derive(request_of(args)), over, args.metrics)
    return render(table, args.format)
