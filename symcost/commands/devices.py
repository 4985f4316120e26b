"""`symcost devices`: the hardware table."""
from __future__ import annotations


def register(sub, common) -> None:
    dv = sub.add_parser("devices", parents=[common], help="list the hardware table",
                        description="List the devices on the search path: peak FLOP/s, bandwidth, memory, sources.")
    dv.add_argument("--format", choices=("text", "markdown", "json"), default="text")


def run(args) -> str:
    from symcost.present.devices import render

    return render(fmt=args.format)
