"""Names while building: the scopes of block bodies and repeats, and the context an op is elaborated in."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symcost.errors import Loc, SymcostError
from symcost.lang import syntax as S


class Scope:
    """Names bound in a block body or at top level; a repeat body is a child scope."""

    def __init__(self, parent: "Scope | None" = None, carried: frozenset = frozenset()):
        self.parent = parent
        self.names: dict[str, object] = {}
        self.carried = set(carried)

    def lookup(self, name: str):
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def bind(self, name: str, value, loc: Loc) -> None:
        if name in self.carried:  # a tensor carried through a repeat: rebound in the body (as often as it says)
            self.names[name] = value
            return
        if self.lookup(name) is not None:
            raise SymcostError(
                f"'{name}' is already defined in this scope; give the result a new name", loc
            )
        self.names[name] = value

    def rebind(self, name: str, value) -> None:
        scope = self
        while scope is not None:
            if name in scope.names:
                scope.names[name] = value
                return
            scope = scope.parent
        self.names[name] = value  # pragma: no cover - callers rebind only bound names


@dataclass(frozen=True)
class Ctx:
    prefix: str  # path prefix, "" or "layer/attn/"
    mult: sp.Expr  # how many times the ops here run (over all tokens)
    calls: tuple = ()  # blocks being elaborated (to catch recursion)
    param_mult: sp.Expr | None = None  # how many copies of the parameters here exist; None: mult
    tags: frozenset = frozenset()  # the enclosing Regions (repeat, fused, experts)
    blocks: tuple = ()  # the paths of the enclosing block instances, outermost first

    @property
    def params(self) -> sp.Expr:
        return self.mult if self.param_mult is None else self.param_mult



def assigned(stmts, decide) -> list[str]:
    """Names a statement list assigns at its own level (through the taken branches of ifs; `decide(cond)` says
    which branch is taken)."""
    out: list[str] = []
    for st in stmts:
        if isinstance(st, S.Assign):
            out.extend(t.id for t in st.targets)
        elif isinstance(st, S.If):
            out.extend(assigned(st.then if decide(st.cond) else st.orelse, decide))
        elif isinstance(st, (S.Repeat, S.Fused, S.Experts)):
            out.extend(assigned(st.body, decide))
    return out
