"""Wall time of `symcost derive` against `python -c "import sympy, lark"`, and derive time against layer count.

Run from the repository root after `pip install .` (a normal install, so bytecode is compiled):

    python benchmarks/startup.py            # 21 alternating runs of each command, medians and their ratio
    python benchmarks/startup.py --runs 41 --spec specs/gpt2.arch

Both commands start the same interpreter; the ratio is the cost of symcost on top of its two imports.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--spec", default="specs/llama.arch")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base = [sys.executable, "-c", "import sympy, lark"]
    ours = [sys.executable, "-m", "symcost", "derive", args.spec]
    for cmd in (base, ours):  # warm the file cache and lark's grammar cache
        timed(cmd, env)
    b, s = [], []
    for _ in range(args.runs):
        b.append(timed(base, env))
        s.append(timed(ours, env))
    mb, ms = statistics.median(b), statistics.median(s)
    print(f"python {sys.version.split()[0]}, {args.runs} alternating runs each")
    print(f"  import sympy, lark         median {mb * 1000:7.1f} ms  (min {min(b) * 1000:.1f})")
    print(f"  symcost derive {args.spec:<11} median {ms * 1000:7.1f} ms  (min {min(s) * 1000:.1f})")
    print(f"  ratio of medians           {ms / mb:.2f}x")

    # Derive time against the number of layers: the repeat is costed once, never unrolled.
    spec = Path(args.spec).read_text()
    base_dir = Path(args.spec).resolve().parent
    print("\nparse + build + derive + render in one process, repeat count written as a literal:")
    for layers in ("L", "2", "80", "10000"):
        text = spec.replace("repeat L {", f"repeat {layers} {{")
        with tempfile.TemporaryDirectory() as tmp:  # its includes are found on the search path (the specs)
            path = Path(tmp) / "bench.arch"
            path.write_text(text)
            from symcost.paths import use_path

            use_path([base_dir])
            from symcost.cost.accounting import derive
            from symcost.model.builder import build
            from symcost.lang.parse import load

            times = []
            for _ in range(5):
                t = time.perf_counter()
                derive(build(load(path)))
                times.append(time.perf_counter() - t)
        print(f"  repeat {layers:>5}: {statistics.median(times) * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
