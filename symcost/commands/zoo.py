"""`symcost zoo`: the model zoo page, generated from the specs and presets."""
from __future__ import annotations


def register(sub, common) -> None:
    z = sub.add_parser("zoo", parents=[common], help="write the model zoo page (docs/zoo.md) from the specs and presets",
                       description="Render every family's per-layer closed forms and each preset's numbers as Markdown.")
    z.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")


def run(args) -> str:
    from symcost.analysis.zoo import render

    return render()
