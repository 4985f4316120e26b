"""Closed forms to numbers: substitute concrete dimension values, exactly."""
from __future__ import annotations

import sympy as sp

from symcost.model.dims import Env
from symcost.errors import SymcostError, suggest


MAX_VALUE_DIGITS = 100  # a dimension given a value: at most this many decimal digits


def parse_assignments(items, env: Env) -> tuple[dict[str, int], dict[str, bool]]:
    """`--set h=768 tied=false` (texts) or (name, value) pairs → dim values and option overrides.

    Dims take positive integers written in ASCII digits (no signs, separators or other scripts); options take
    true or false. Every bad item is a clear error naming it."""
    dims: dict[str, int] = {}
    options: dict[str, bool] = {}
    for item in items:
        name, raw = item if isinstance(item, tuple) else _split(item)
        if name in env.options:
            options[name] = _boolean(name, raw)
            continue
        dim = env.dims.get(name)
        if dim is None:
            raise SymcostError(
                f"'{name}' is neither a dimension nor an option of this spec", None,
                suggest(name, [*env.dims, *env.options]),
            )
        if dim.definition is not None:
            if dim.default is not None:
                raise SymcostError(f"'{name}' is {dim.definition} by default; give its value when deriving (--set "
                                   f"{name}=…, derive(set={{'{name}': …}})) so that the closed forms carry {name}")
            raise SymcostError(f"'{name}' is derived ({name} = {dim.definition}); set the dimensions it is made of")
        dims[name] = _positive(name, raw)
    return dims, options


def assigned_names(items) -> set[str]:
    """The names `--set` items (texts or (name, value) pairs) give values to; bad items are reported later."""
    names = set()
    for item in items:
        if isinstance(item, tuple) and item:
            names.add(str(item[0]))
        elif isinstance(item, str) and "=" in item:
            names.add(item.partition("=")[0].strip())
    return names


def _split(item: str) -> tuple[str, str]:
    name, eq, raw = item.partition("=")
    name, raw = name.strip(), raw.strip()
    if not eq or not name or not raw:
        raise SymcostError(f"--set expects NAME=VALUE, got '{item[:80]}'")
    return name, raw


def _boolean(name: str, raw) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise SymcostError(f"option '{name}' takes true or false, not '{str(raw)[:40]}'")


def _positive(name: str, raw) -> int:
    if isinstance(raw, bool):
        raise SymcostError(f"dimension '{name}' takes a positive integer, not {raw}")
    if isinstance(raw, int):
        value = raw
        if value > 0 and len(str(value)) > MAX_VALUE_DIGITS:
            raise SymcostError(f"dimension '{name}': a value of more than {MAX_VALUE_DIGITS} digits is not a size")
    elif isinstance(raw, str):
        if not (raw.isascii() and raw.isdigit()):
            raise SymcostError(f"dimension '{name}' takes a positive integer in digits 0-9, not '{raw[:40]}'")
        if len(raw.lstrip("0")) > MAX_VALUE_DIGITS:
            raise SymcostError(f"dimension '{name}': a value of more than {MAX_VALUE_DIGITS} digits is not a size")
        value = int(raw)
    else:
        raise SymcostError(f"dimension '{name}' takes a positive integer, not {type(raw).__name__}")
    if value <= 0:
        raise SymcostError(f"dimension '{name}' must be positive, got {value}")
    return value


class Evaluator:
    """Substitutes the given dims; derived dims (d = h/a) follow from them and must come out whole."""

    def __init__(self, env: Env, values: dict[str, int]):
        self.subs: dict[sp.Symbol, sp.Expr] = {}
        self.given = dict(values)
        for name, value in values.items():
            self.subs[env.dims[name].symbol] = sp.Integer(value)
        for dim in env.dims.values():
            if dim.definition is None:
                continue
            v = dim.definition.xreplace(self.subs)
            if v.is_number:
                if not (v.is_Integer and v > 0):
                    shown = ", ".join(f"{s}={self.subs[s]}" for s in sorted(dim.definition.free_symbols, key=str))
                    raise SymcostError(f"{dim.name} = {dim.definition} is {v} at {shown}; it must be a positive integer", dim.loc)
            self.subs[dim.symbol] = v
        for constraint in env.constraints:  # repeat counts that must come out whole (repeat L / 2: L even)
            constraint.check(self.subs)

    @property
    def active(self) -> bool:
        return bool(self.given)

    def __call__(self, expr: sp.Expr):
        """An exact int (or a Rational/float for fractional bytes) when complete, else the partial expression."""
        v = expr.xreplace(self.subs) if self.given else expr
        if v.is_number:
            return int(v) if v.is_Integer else v
        return sp.expand(v)

    def json_value(self, expr: sp.Expr):
        v = self(expr) if self.active else expr
        if isinstance(v, int):
            return v
        if isinstance(v, sp.Expr) and v.is_number:
            return float(v)
        return None
