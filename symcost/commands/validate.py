"""`symcost validate`: derived costs beside a real transformers model built from the same config."""
from __future__ import annotations

from symcost.commands.args import source


def register(sub, common) -> None:
    v = sub.add_parser(
        "validate", parents=[common],
        help="compare derived costs with a real transformers model (needs symcost[torch])",
        description="Build the transformers model for a config and measure, beside what symcost derives: the "
        "parameter count of the full-size model on the meta device (exact), forward and forward+backward matmul "
        "FLOPs of a tiny model of the same structure with FlopCounterMode (exact), and bytes saved for backward "
        "(reported). Exit status 1 when an exact quantity disagrees.",
    )
    source(v, "a .arch file (optional: chosen by model_type)", required_source=True)
    v.add_argument("--shapes", default=None, metavar="BxS,...",
                   help="batch x length (tokens, or image side) for the tiny-model checks (default: the family's "
                        "own, else 2x16,3x32,1x64)")
    v.add_argument("--format", choices=("text", "json"), default="text")


def run(args) -> tuple[str, int]:
    from symcost.analysis.validate import run as validate

    return validate(args)
