"""What a sweep checks at every grid point before trusting a number: derived dims whole, degrees that divide."""
from __future__ import annotations

import sympy as sp

from symcost.errors import SymcostError


def substitutions(analysis, fixed: dict, axes: dict) -> tuple[dict, list]:
    """Derived dims → their definitions in free dims, fixed dims → their values; the swept dims' symbols."""
    env = analysis.env
    symbols = [env.dims[name].symbol for name in axes]
    subs = {env.dims[n].symbol: sp.Integer(v) for n, v in fixed.items() if n in env.dims}
    for dim in env.dims.values():  # in declaration order: a definition uses only dims declared before it
        if dim.definition is not None:
            subs[dim.symbol] = dim.definition.xreplace(subs)
    return subs, symbols


def grid_arrays(axes: dict) -> dict:
    """Each axis as an int64 (or, past 2**62, a Python-int object) array shaped to broadcast into the open grid."""
    import numpy as np

    n = len(axes)
    out = {}
    for i, (name, values) in enumerate(axes.items()):
        dtype = np.int64 if max(values) < 2**62 else object
        out[name] = np.array(values, dtype=dtype).reshape((-1,) + (1,) * (n - 1 - i))
    return out


def check_grid(analysis, fixed: dict, axes: dict, subs: dict, symbols: list, arrays: dict) -> None:
    """The checks `Analysis.at` makes, at every point: once at the first point (config fields, degrees), then,
    vectorised over the grid, every derived dim whole and positive and every numeric degree dividing what it splits."""
    from symcost.analysis.sweep import as_expr

    analysis.at(**{k: v[0] for k, v in axes.items()})
    checks = []
    for dim in analysis.env.dims.values():
        if dim.definition is not None:
            expr = subs[dim.symbol]
            if expr.free_symbols:
                checks.append((expr, f"{dim.name} = {dim.definition} must be a positive whole number", True))
    settings = analysis.report.settings
    graph = analysis.report.graph
    if settings is not None and settings.tp is not None and settings.tp.is_Integer:
        sizes = [size for size, _ in graph.splits] + [p.shape[p.shard_axis] for p in graph.params
                                                      if p.shard_axis is not None]
        checks += [(as_expr(size).xreplace(subs) / settings.tp, f"--tp {settings.tp} must divide {size}", False)
                   for size in sizes]
    if settings is not None and settings.ep is not None and settings.ep.is_Integer:
        checks += [(as_expr(count).xreplace(subs) / settings.ep, f"--ep {settings.ep} must divide {count}", False)
                   for count, _ in graph.expert_counts]
    checks = [c for c in checks if c[0].free_symbols & set(symbols)]
    if checks:
        _whole_everywhere(checks, symbols, axes, arrays)


def _whole_everywhere(checks: list, symbols: list, axes: dict, arrays: dict) -> None:
    """Each check exactly (Python ints and Fractions), over the axes its expression depends on only."""
    import numpy as np

    from symcost.analysis.numeric import compile_exprs

    for expr, message, positive in checks:
        used = [k for k, s in zip(axes, symbols) if s in expr.free_symbols]
        reduced = {k: (a if k in used else a.reshape(-1)[:1].reshape((1,) * a.ndim)) for k, a in arrays.items()}
        values = compile_exprs({"v": expr}, symbols)(**reduced).objects("v")
        ok = np.frompyfunc(lambda v: isinstance(v, int) and (v > 0 or not positive), 1, 1)(values).astype(bool)
        if not ok.all():
            where = [int(j[0]) for j in np.nonzero(~ok)]
            point = ", ".join(f"{k}={axes[k][j]}" for k, j in zip(axes, where) if k in used)
            raise SymcostError(f"at {point}: {message}")
