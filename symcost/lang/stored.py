"""Syntax trees as JSON and back, for the parse cache: only the syntax classes, rebuilt field by field."""
from __future__ import annotations

import dataclasses
import json

from symcost.errors import Loc
from symcost.lang import syntax as S

CLASSES = {cls.__name__: cls for cls in vars(S).values()
           if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == S.__name__}


def _out(value):
    if isinstance(value, Loc):
        return {"@": "Loc", "v": [value.file, value.line, value.column, value.end_column]}
    if dataclasses.is_dataclass(value):
        return {"@": type(value).__name__,
                "v": [_out(getattr(value, f.name)) for f in dataclasses.fields(value)]}
    if isinstance(value, tuple):
        return {"@": "tuple", "v": [_out(x) for x in value]}
    if value is None or isinstance(value, (str, bool, int)):
        return value
    raise ValueError(f"a syntax tree holds {type(value).__name__}")


def _in(value):
    if isinstance(value, dict):
        kind, parts = value["@"], value["v"]
        if kind == "Loc":
            return Loc(*parts)
        if kind == "tuple":
            return tuple(_in(x) for x in parts)
        cls = CLASSES[kind]  # a KeyError for anything that is not a syntax class
        return cls(*(_in(x) for x in parts))
    if isinstance(value, list):
        raise ValueError("a stored syntax tree has no bare lists")
    return value


def dump(items) -> str:
    return json.dumps(_out(items), separators=(",", ":"))


def load(text: str):
    return _in(json.loads(text))
