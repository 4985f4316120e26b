"""SymPy closed forms to JSON expression trees the report page evaluates, node by node."""
from __future__ import annotations

import sympy as sp

from ...errors import SymcostError

# {"n": "12"} / {"n": "-3/4"}: an exact rational; {"s": "h"}: a symbol;
# {"f": <op>, "a": [children]}: an operation with one or more operands.
OPS = ("add", "mul", "pow", "max", "min", "floor", "ceiling")
_HEADS = {sp.Add: "add", sp.Mul: "mul", sp.Pow: "pow", sp.Max: "max", sp.Min: "min",
          sp.floor: "floor", sp.ceiling: "ceiling"}
_ARITY = {"pow": 2, "floor": 1, "ceiling": 1}


class TreeError(SymcostError):
    """An expression holds something the report page cannot evaluate exactly."""


def to_tree(expr) -> dict:
    """The JSON tree of a SymPy expression (or a Python int); raises TreeError on anything else."""
    if isinstance(expr, bool) or isinstance(expr, str):
        raise TreeError(f"expected a SymPy expression, got {type(expr).__name__} {expr!r:.60}")
    if isinstance(expr, int):
        return {"n": str(expr)}
    if not isinstance(expr, sp.Basic):
        raise TreeError(f"expected a SymPy expression, got {type(expr).__name__}")
    return _node(expr)


def _node(e: sp.Basic) -> dict:
    if e.is_Rational:
        return {"n": str(e.p) if e.q == 1 else f"{e.p}/{e.q}"}
    if e.is_Symbol:
        return {"s": e.name}
    if e.is_Number:
        raise TreeError(f"inexact or special number {sp.sstr(e)!r:.60} in a closed form; "
                        "use an exact Rational (sympy.Rational / nsimplify)")
    head = _head(e)
    if head is None:
        raise TreeError(f"cannot export '{type(e).__name__}' ({sp.sstr(e)[:60]}) to the report page; "
                        f"supported: numbers, symbols, {', '.join(OPS)}")
    args = [_node(a) for a in e.args]
    want = _ARITY.get(head)
    if want is not None and len(args) != want:
        raise TreeError(f"'{head}' takes {want} operand(s), got {len(args)}")
    return {"f": head, "a": args}


def _head(e: sp.Basic) -> str | None:
    for cls, name in _HEADS.items():
        if isinstance(e, cls):
            return name
    return None


def tree_symbols(tree: dict) -> set[str]:
    """The symbol names a tree mentions."""
    if "s" in tree:
        return {tree["s"]}
    out: set[str] = set()
    for child in tree.get("a", ()):
        out |= tree_symbols(child)
    return out
