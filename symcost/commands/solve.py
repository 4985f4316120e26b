"""`symcost solve`: the largest or smallest value of a dim under constraints, crossovers, leading terms."""
from __future__ import annotations

from symcost.commands.args import RAW, add_settings, request_of, set_values, source
from symcost.errors import SymcostError

EPILOG = """constraints and terms (quoted; see docs/solve.md):
  NAME OP VALUE     OP: <= < >= > =   VALUE: a number with an optional unit (24GB, 24 GiB, 50ms, 2000),
                    `device` (the device's memory) or another term
  names             a metric (kv_cache_bytes, weight_bytes, flops_fwd, ...), BLOCK.METRIC of one block
                    instance (attention.flops_fwd), a dim (h), or: memory_bytes, device_memory,
                    training_state_bytes, gradient_bytes, optimizer_bytes, dp_comm_bytes, train_flops,
                    tokens, time_lower_bound_s (time), compute_time_s, memory_time_s, comm_time_s,
                    tokens_per_s
  terms             sums and products of names and numbers: 'weight_bytes + kv_cache_bytes',
                    'train_flops / tokens / params' (spaces around / between names)

examples:
  symcost solve llama --preset llama-2-70b --phase decode --tp 8 --device h100-sxm --set c=4096 \\
      --max b --where 'memory_bytes <= device'
  symcost solve llama --preset llama-2-7b --phase decode --set b=1 --max c --where 'kv_cache_bytes <= 24GB'
  symcost solve llama --preset llama-2-70b --phase decode --tp t --device h100-sxm --set b=64 c=4096 \\
      --min t --where 'memory_bytes <= device'
  symcost solve gpt2 --preset gpt2-small --set b=1 --crossover s --where 'attention.flops_fwd = mlp.flops_fwd'
  symcost solve gpt2 --limit h --of 'train_flops / tokens / params'"""


def register(sub, common) -> None:
    p = sub.add_parser(
        "solve", parents=[common], help="solve for a dim: largest/smallest value under constraints, crossovers, limits",
        formatter_class=RAW, epilog=EPILOG,
        description="Answer inverse questions exactly from the closed forms: the largest (--max) or smallest (--min) "
        "whole value of a dim such that every --where constraint holds, proven at the answer and the next integer, "
        "with the closed form of the boundary; where two quantities meet (--crossover DIM --where 'A = B'); the "
        "leading term and limit of a term as a dim grows (--limit DIM --of TERM). Every other dim takes its "
        "value from --set or the preset.")
    source(p, "a .arch file or a shipped spec's name; optional with --hf-config/--preset")
    set_values(p)
    add_settings(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--max", metavar="DIM", help="the largest whole value of DIM satisfying the constraints")
    q.add_argument("--min", metavar="DIM", help="the smallest whole value of DIM (a degree such as t: --tp t)")
    q.add_argument("--crossover", metavar="DIM", help="the DIM where the two sides of a --where equation meet")
    q.add_argument("--limit", metavar="DIM", help="the leading term and the limit of --of TERM as DIM grows")
    p.add_argument("--where", nargs="+", action="extend", default=[], metavar="CONSTRAINT",
                   help="a constraint such as 'memory_bytes <= device' (repeatable; all must hold)")
    p.add_argument("--of", metavar="TERM", help="with --limit: a term such as 'train_flops / tokens / params'")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")


def run(args) -> str:
    from symcost.analysis.solve import crossover, leading, solve_bound
    from symcost.api import run as derive
    from symcost.present.solve import render

    if args.limit is None and args.of is not None:
        raise SymcostError("--of names the term of --limit DIM")
    if args.limit is not None:
        if args.of is None or args.where:
            raise SymcostError("--limit DIM takes one term with --of (and no --where)")
    elif not args.where:
        raise SymcostError("give the constraints with --where, such as --where 'memory_bytes <= device'")
    if args.crossover is not None and len(args.where) != 1:
        raise SymcostError("--crossover DIM takes one equation with --where, such as 'attention.flops_fwd = "
                           "mlp.flops_fwd'")
    analysis = derive(request_of(args))
    if args.limit is not None:
        answer = leading(analysis, args.limit, args.of)
    elif args.crossover is not None:
        answer = crossover(analysis, args.crossover, args.where[0])
    else:
        answer = solve_bound(analysis, args.max or args.min, args.where, "max" if args.max else "min")
    return render(analysis, answer, args.format)
