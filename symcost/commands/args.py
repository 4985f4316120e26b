"""What commands share: the settings as flags, a spec source, --set, and the request a namespace describes."""
from __future__ import annotations

import argparse

FORMATS = ("text", "json", "latex", "markdown")
RAW = argparse.RawDescriptionHelpFormatter


def add_settings(parser: argparse.ArgumentParser,
                 stages=("build", "account", "train", "memory", "device", "serving"), skip=()) -> None:
    """The settings of symcost.settings.TABLE as flags (derive and compare share them; `skip`: names left out)."""
    from symcost.settings import TABLE

    for s in TABLE:
        if s.stage not in stages or s.name in skip:
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
        elif s.kind == "zero-point":  # --zero-point alone: at the weights' own width
            parser.add_argument(s.flag, nargs="?", const=True, metavar=s.metavar, **kw)
        else:
            parser.add_argument(s.flag, metavar=s.metavar, **kw)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: '{text[:40]}'") from None
    return value


def source(parser, spec_help: str, required_source: bool = False) -> None:
    parser.add_argument("spec", nargs="?", help=spec_help)
    src = parser.add_mutually_exclusive_group(required=required_source)
    src.add_argument("--hf-config", metavar="FILE", help="take dims and options from a transformers config.json")
    src.add_argument("--preset", metavar="NAME", help="take dims and options from a preset (see `symcost presets`)")


def set_values(parser, help_text="give dimensions values (h=768 L=12 ...) or flip options (tied=false)") -> None:
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", action="extend", help=help_text)


def request_of(args, **extra):
    """The API request an argparse namespace describes (settings named as in symcost.settings.TABLE)."""
    from symcost.settings import TABLE, request

    settings = {s.name: getattr(args, s.name) for s in TABLE if hasattr(args, s.name)}
    settings = {k: v for k, v in settings.items() if v is not None}
    settings.update(extra)
    return request(getattr(args, "spec", None), preset=getattr(args, "preset", None),
                   hf_config=getattr(args, "hf_config", None), values=getattr(args, "set", []), **settings)
