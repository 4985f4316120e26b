"""`symcost presets`: the published configs on the search path."""
from __future__ import annotations


def register(sub, common) -> None:
    pr = sub.add_parser("presets", parents=[common], help="list the model presets",
                        description="List the presets (published configs) on the search path.")
    pr.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                    help="markdown adds each preset's parameter count as derived (active per token for a mixture)")


def run(args) -> str:
    from symcost.present.presets import render

    return render(fmt=args.format)
