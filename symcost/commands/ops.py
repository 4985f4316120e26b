"""`symcost ops`: the built-in ops and their arguments."""
from __future__ import annotations

from symcost.errors import SymcostError


def register(sub, common) -> None:
    o = sub.add_parser("ops", parents=[common], help="list the built-in ops",
                       description="List the built-in ops and their arguments.")
    o.add_argument("name", nargs="?", help="show one op in full")


def run(args) -> str:
    from symcost.ops.registry import OPS, usage

    if args.name:
        if args.name not in OPS:
            from symcost.errors import suggest

            raise SymcostError(f"unknown op '{args.name}'", None, suggest(args.name, OPS))
        op = OPS[args.name]
        return f"{usage(op.name)}\n\n{(op.fn.__doc__ or '').strip()}\n"
    width = max(len(usage(n)) for n in OPS)
    return "".join(f"{usage(n).ljust(width)}  {OPS[n].doc}\n" for n in sorted(OPS))
