"""Layouts per second of the plan search: every layout's step time and memory per device from the compiled forms.

Run from the repository root:

    python benchmarks/plan_rate.py                 # llama-2-70b, s=4096, h100-sxm; median of 7 runs
    python benchmarks/plan_rate.py --runs 11 --preset llama-2-7b

The forms are derived and compiled once (3 recomputation modes × 3 stages, degrees t, p, N_d and the micro-batch
b as symbols), then `evaluate_train` runs over a grid of layouts: t ∈ {1, 2, 4, 8}, p ∈ the divisors of L,
d ∈ 1..256, b ∈ 1..32 (m = ⌊1024 / (d·b)⌋ micro-batches, at least 1: a whole number, as the data-parallel bytes
of ZeRO-2 and ZeRO-3 are compiled with m as an integer argument; the arithmetic is the same where d·b does not
divide 1024), × 3 recomputation modes × 4 ZeRO stages. A layout is one (t, p, d, b, ZeRO, recompute) point with
its compute, bubble, TP and DP communication times, step time, and memory per device (weights, gradients,
optimizer state, in-flight activations). The rate is layouts / median wall time of one evaluation.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symcost.analysis.plan import divisors, evaluate_train, prepare  # noqa: E402


def grid(L: int) -> tuple:
    t = np.array([1, 2, 4, 8])
    p = np.array(divisors(L))
    d = np.arange(1, 257)
    b = np.arange(1, 33)
    T, P, D, B = (a.ravel() for a in np.meshgrid(t, p, d, b, indexing="ij"))
    return T, P, D, B, np.maximum(1, 1024 // (D * B))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama-2-70b")
    ap.add_argument("--device", default="h100-sxm")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    t0 = time.perf_counter()
    search = prepare("llama", preset=args.preset, set={"s": 4096}, device=args.device)
    print(f"{args.preset} on {args.device}: derived and compiled in {time.perf_counter() - t0:.2f} s")
    T, P, D, B, M = grid(search.analysis.values["L"])
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        found = evaluate_train(search, T, P, D, B, M)
        times.append(time.perf_counter() - t)
    n = len(found.t)
    med = statistics.median(times)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"{n:,} layouts ({len(T):,} (t, p, d, b) points × {len(search.recompute)} recompute × {len(search.zero)} "
          f"ZeRO) in {med * 1e3:.1f} ms (median of {args.runs}; min {min(times) * 1e3:.1f}, max "
          f"{max(times) * 1e3:.1f}) = {n / med / 1e6:.2f} M layouts/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
