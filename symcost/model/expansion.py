"""The size a spec expands to: refused before building when its blocks elaborate to far more ops than it writes."""
from __future__ import annotations

from symcost.errors import SymcostError
from symcost.lang import syntax as S

EXPANSION = 8  # op nodes a spec may elaborate to: 8 per op statement written, and at least MIN_OP_INSTANCES
MIN_OP_INSTANCES = 2_000
MAX_BLOCK_DEPTH = 64  # blocks calling blocks


def check_size(items, stmts, blocks: dict) -> None:
    """Refuse, before building, a spec whose blocks expand to far more op instances than it writes (a block
    calling the next one twice, many levels deep, doubles at each level): at most EXPANSION per op statement
    and at least MIN_OP_INSTANCES, so time grows with the spec's size; a repeat is counted once."""
    memo: dict[str, int] = {}
    limit = max(MIN_OP_INSTANCES, EXPANSION * _written_calls(items))

    def count(body, active: tuple) -> int:
        total = 0
        for st in body:
            if isinstance(st, S.Assign):
                name = st.call.name
                if name in blocks and name not in active:
                    if len(active) >= MAX_BLOCK_DEPTH:
                        raise SymcostError(f"blocks call blocks more than {MAX_BLOCK_DEPTH} deep here (through "
                                           f"{' -> '.join(active[:3])} … {active[-1]})", st.loc)
                    if name not in memo:
                        memo[name] = count(blocks[name].body, (*active, name))
                    total += memo[name]
                else:
                    total += 1
                if total > limit:
                    raise SymcostError(
                        f"the spec expands to more than {limit:,} op instances (blocks calling blocks "
                        "several times each); a repeat is costed once: use repeat for layers", st.loc)
            elif isinstance(st, (S.Repeat, S.Experts, S.Fused)):
                total += count(st.body, active)
            elif isinstance(st, S.If):
                total += count(st.then, active) + count(st.orelse, active)
        return total

    count(stmts, ())


def _written_calls(items) -> int:
    """The op and block calls a module writes (in blocks and at the top, through every branch and region)."""
    n = 0
    stack = list(items)
    while stack:
        st = stack.pop()
        if isinstance(st, S.Assign):
            n += 1
        elif isinstance(st, S.BlockDef):
            stack.extend(st.body)
        elif isinstance(st, (S.Repeat, S.Experts, S.Fused)):
            stack.extend(st.body)
        elif isinstance(st, S.If):
            stack.extend((*st.then, *st.orelse))
    return n
