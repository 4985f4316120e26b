"""How parse + build + derive time and peak memory grow with the size of a spec.

    PYTHONPATH=. python3 benchmarks/scaling.py [--timeout 120] [--out scaling.md]

Series (each size in a fresh process, killed after --timeout seconds; a series stops at its first timeout):

* ops      — one straight chain of N ops alternating linear / relu / add / layernorm (1k … 100k ops);
* blocks   — N instances of a 4-op block, called one after another at the top level;
* nested   — blocks nested D deep (D = 5 … 30) where each block calls the next twice (2^D leaf calls);
* power    — one input shaped [(a+b+c)^k] for k = 8 … 256 (expansion of a large polynomial).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERIES = {
    "ops": [1000, 2000, 5000, 10000, 20000, 50000, 100000],
    "blocks": [100, 1000, 2000, 5000, 10000, 20000],
    "nested": [5, 10, 15, 20, 25, 30],
    "power": [8, 16, 32, 64, 128, 256],
}

HEAD = "dim b\ndim s\ndim h\ninput x0: [b, s, h]\n"


def spec(kind: str, n: int) -> str:
    if kind == "ops":
        lines, prev = [HEAD], "x0"
        for i in range(1, n + 1):
            op = ("linear({p}, h)", "relu({p})", "add({p}, x0)", "layernorm({p})")[i % 4].format(p=prev)
            lines.append(f"x{i} = {op}\n")
            prev = f"x{i}"
        return "".join(lines)
    if kind == "blocks":
        lines = [HEAD, "block layer(x: [b, s, h]) {\n  n = layernorm(x)\n  u = linear(n, h)\n  a = relu(u)\n"
                       "  r = add(x, a)\n  return r\n}\n"]
        prev = "x0"
        for i in range(1, n + 1):
            lines.append(f"x{i} = layer({prev})\n")
            prev = f"x{i}"
        return "".join(lines)
    if kind == "nested":
        lines = [HEAD, f"block f{n}(x: [b, s, h]) {{\n  y = linear(x, h)\n  return y\n}}\n"]
        for i in range(n - 1, -1, -1):
            lines.append(f"block f{i}(x: [b, s, h]) {{\n  a = f{i + 1}(x)\n  c = f{i + 1}(a)\n  return c\n}}\n")
        lines.append("out = f0(x0)\n")
        return "".join(lines)
    if kind == "power":
        return f"dim a\ndim b\ndim c\ninput x: [(a+b+c)^{n}]\ny = relu(x)\n"
    raise ValueError(kind)


def one(kind: str, n: int) -> None:
    """Run in the child: time each stage, report JSON on stdout."""
    import resource

    from symcost.cost.accounting import derive
    from symcost.model.builder import build
    from symcost.lang.parse import load

    d = Path(tempfile.mkdtemp())
    p = d / f"{kind}-{n}.arch"
    p.write_text(spec(kind, n))
    from symcost.errors import SymcostError

    t0 = time.perf_counter()
    try:
        module = load(p)
        t1 = time.perf_counter()
        graph = build(module)
        t2 = time.perf_counter()
        derive(graph)
        t3 = time.perf_counter()
    except SymcostError as e:
        print(json.dumps({"refused": str(e).splitlines()[0][:100]}))
        return
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"parse": t1 - t0, "build": t2 - t1, "derive": t3 - t2, "total": t3 - t0, "rss_mb": rss,
                      "bytes": p.stat().st_size}))


def measure(kind: str, n: int, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", kind, str(n)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return {"status": f"> {timeout:.0f} s (killed)", "wall": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        last = (err.strip().splitlines() or ["?"])[-1]
        return {"status": f"exit {p.returncode}: {last[:100]}", "wall": wall}
    r = json.loads(out.strip().splitlines()[-1])
    if "refused" in r:
        return {"status": f"refused: {r['refused']}", "wall": wall}
    r.update(status="ok", wall=wall)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    ap.add_argument("--out", help="also write the Markdown table here")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        one(args.one[0], int(args.one[1]))
        return 0
    rows = ["| series | size | parse s | build s | derive s | total s | peak RSS MB | status |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    print(rows[0], flush=True)
    for kind in args.series:
        stopped = None
        for n in SERIES[kind]:
            if stopped:
                row = f"| {kind} | {n} | | | | | | not run (the size before: {stopped}) |"
            else:
                r = measure(kind, n, args.timeout)
                if r["status"] == "ok":
                    row = (f"| {kind} | {n} | {r['parse']:.2f} | {r['build']:.2f} | {r['derive']:.2f} | {r['total']:.2f} "
                           f"| {r['rss_mb']:.0f} | ok |")
                else:
                    row = f"| {kind} | {n} | | | | | | {r['status']} |"
                    stopped = r["status"]
            rows.append(row)
            print(row, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
