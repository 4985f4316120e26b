"""Closed forms to numbers: substitute concrete dimension values, exactly."""
from __future__ import annotations

import sympy as sp

from symcost.model.dims import Env
from symcost.errors import SymcostError, suggest


def parse_assignments(items: list[str], env: Env) -> tuple[dict[str, int], dict[str, bool]]:
    """`--set h=768 tied=false` → dim values and option overrides; every bad item is a clear error."""
    dims: dict[str, int] = {}
    options: dict[str, bool] = {}
    for item in items:
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or not name or not raw:
            raise SymcostError(f"--set expects NAME=VALUE, got '{item}'")
        if name in env.options:
            if raw.lower() not in ("true", "false"):
                raise SymcostError(f"option '{name}' takes true or false, not '{raw}'")
            options[name] = raw.lower() == "true"
            continue
        dim = env.dims.get(name)
        if dim is None:
            raise SymcostError(
                f"'{name}' is neither a dimension nor an option of this spec", None,
                suggest(name, [*env.dims, *env.options]),
            )
        if dim.definition is not None:
            raise SymcostError(f"'{name}' is derived ({name} = {dim.definition}); set the dimensions it is made of")
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise SymcostError(f"dimension '{name}' takes a positive integer, not '{raw}'") from None
        if value <= 0:
            raise SymcostError(f"dimension '{name}' must be positive, got {value}")
        dims[name] = value
    return dims, options


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
