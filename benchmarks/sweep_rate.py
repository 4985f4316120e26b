"""Point-metric evaluations per second of compiled closed forms over a grid, and the cost of the exact fallback.

Run from the repository root:

    python benchmarks/sweep_rate.py                       # llama's 12 metrics over about 1e6 points, median of 7 runs
    python benchmarks/sweep_rate.py --spec specs/deepseek.arch --runs 11 --workers 1

First through `symcost.sweep`, the path `symcost sweep` takes: the spec derived for a prefill on an H100, every dim
swept over the open grid below, the 12 whole-model metrics and the roofline time and tokens/s bounds; timed from the
call to every metric's float64 array in hand (the first call of the process: compiling included; then the median of
the runs, compiled forms cached by SymPy). Then the compiled program alone on three grids over the same metrics: an open grid (one axis per dimension, as a sweep builds it), the same points as
flat arrays (one value per point and argument), and a grid with batch sizes up to 10**12, where most values pass
2**53 and are recomputed exactly.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symcost.analysis.numeric import compile_exprs  # noqa: E402
from symcost.cost.accounting import derive_file  # noqa: E402

# Sizes per dimension: the open grid takes each list on its own axis.
SIZES = {
    "b": list(range(1, 9)),
    "s": list(range(64, 2049, 64)),
    "h": [2048, 4096, 5120, 8192],
    "a": [16, 32, 64, 128],  # every h divisible by every a: head sizes whole (a sweep checks it)
    "kv": [1, 8, 16, 32],
    "f": [5632, 8192, 11008, 14336],
    "L": [16, 22, 32, 40, 80],
    "V": [32000, 50257, 128256],
}


def open_grid(symbols) -> dict:
    names = [s.name for s in symbols]
    out = {}
    for axis, name in enumerate(names):
        values = np.array(SIZES.get(name, [1, 2, 3, 4]), dtype=np.int64)
        out[name] = values.reshape((-1,) + (1,) * (len(names) - 1 - axis))
    return out


def flat(grid: dict) -> dict:
    shape = np.broadcast_shapes(*(v.shape for v in grid.values()))
    return {k: np.ascontiguousarray(np.broadcast_to(v, shape)).ravel() for k, v in grid.items()}


def timed(compiled, values: dict, runs: int) -> tuple[float, object]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = compiled(**values)
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def through_sweep(spec: str, runs: int) -> None:
    import symcost
    from symcost.cost.record import METRICS

    analysis = symcost.derive(spec, phase="prefill", device="h100-sxm")
    metrics = [*METRICS, "time_lower_bound_s", "tokens_per_s"]
    free = {s.name for s in analysis.totals["flops_fwd"].free_symbols}
    over = {name: SIZES.get(name, [1, 2, 3, 4]) for name in [*SIZES, *sorted(free)] if name in free}
    times = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        table = symcost.sweep(analysis, over=over, metrics=metrics)
        for m in table.metrics:
            table.array(m)
        times.append(time.perf_counter() - t)
    n = len(table) * len(table.metrics)
    exact = sum(len(e) for e in table._result.exact.values())
    print(f"symcost.sweep: {len(table):,} points × {len(table.metrics)} metrics ({', '.join(table.dims)} swept); "
          f"{exact:,} evaluations exact in Python ints")
    print(f"   first call: {times[0] * 1e3:8.1f} ms = {n / times[0] / 1e6:6.1f} M evaluations/s (compiling included)")
    warm = statistics.median(times[1:])
    print(f"  median of {runs}: {warm * 1e3:8.1f} ms = {n / warm / 1e6:6.1f} M evaluations/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="specs/llama.arch")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--workers", type=int, default=None, help="threads (default: the module's choice)")
    args = ap.parse_args()

    through_sweep(args.spec, args.runs)
    totals = derive_file(args.spec).totals
    symbols = sorted(set().union(*(e.free_symbols for e in totals.values())), key=lambda s: s.name)
    t = time.perf_counter()
    compiled = compile_exprs(totals, symbols)
    print(f"{args.spec}: {len(totals)} metrics in {', '.join(s.name for s in symbols)}; "
          f"compiled to {len(compiled.program.steps)} ufunc calls in {time.perf_counter() - t:.2f} s")
    if args.workers:
        compiled.workers = args.workers
    print(f"threads: {compiled.workers}")

    grid = open_grid(symbols)
    huge = dict(grid, b=np.array([10**9, 10**10, 10**11, 10**12]).reshape((-1,) + grid["b"].shape[1:]))
    for title, values in (("open grid", grid), ("flat arrays", flat(grid)), ("b up to 1e12", huge)):
        seconds, result = timed(compiled, values, args.runs)
        points = next(iter(result.values())).size
        exact = sum(len(e) for e in result.exact.values())
        rate = points * len(totals) / seconds
        line = f"{title:>13}: {points:>9,} points × {len(totals)} metrics in {seconds * 1e3:8.1f} ms = {rate / 1e6:6.1f} M evaluations/s"
        if exact:
            line += f"; {exact:,} evaluations exact in Python ints ({seconds * 1e6 / exact:.2f} µs each, all included)"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
