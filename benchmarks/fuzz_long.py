"""The long fuzzing run: N generated and mutated specs, HF configs, device files and command lines.

    PYTHONPATH=. python3 benchmarks/fuzz_long.py -n 100000 --workers 2 --out fuzz-failures.jsonl

Each case runs in a worker process (a pool of --workers) under an address-space cap (--rss-mb, default 1 GB,
set with resource.setrlimit in the worker) and a per-case timer (--timeout, default 5 s: the worker's alarm
raises inside the case, so the record shows where it was; a worker that does not answer within timeout + 5 s is
killed and the case recorded as a hang). Workers are recycled every --recycle cases. A case is a pure function
of (--seed, index), so the parent can regenerate any case's input, and `--only INDEX` reruns one.

Every failure (escaping exception, bad exit status, unlocated spec error, unsafe output, timeout, memory, dead
worker) goes to the JSON-lines file with its input; the counts are printed at the end (and every --report s).
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import fuzzing as F  # noqa: E402
from fuzz_programs import grammar, program  # noqa: E402
from fuzz_sources import RandomSource  # noqa: E402

KINDS = [(30, "program"), (22, "mutated"), (4, "deep"), (12, "config"), (10, "device"), (18, "cli"),
         (3, "library"), (0.4, "env")]


class CaseTimeout(BaseException):
    """Raised by the worker's alarm inside a case that runs too long (a BaseException: nothing swallows it)."""


def make_case(seed: int, index: int, workdir: Path) -> dict:
    """The inputs of case `index`: files written under workdir, and the argv to run."""
    src = RandomSource(seed * 1_000_003 + index)
    kind = src.weighted(KINDS)
    case: dict = {"index": index, "kind": kind}
    if workdir.exists():
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    if kind in ("program", "mutated", "deep", "library"):
        _spec_case(src, case, workdir)
    elif kind == "config":
        blob = F.hostile_config(src)
        (workdir / "config.json").write_bytes(blob)
        case["config"] = blob.decode("utf-8", "backslashreplace")
        case["argv"] = ["derive", "--hf-config", str(workdir / "config.json")]
        if src.boolean(0.3):
            case["argv"] += ["--format", "json"]
    elif kind == "device":
        _device_case(src, case, workdir)
    elif kind == "cli":
        _cli_case(src, case, workdir)
    else:  # env: the process boundary (encodings, closed or full stdout, a reader that goes away)
        case["argv"] = ["derive", str(F.SPECS / src.choice(["gpt2.arch", "llama.arch"]))] + src.choice(
            [[], ["--format", "latex"], ["--explain"], ["--format", "json"]])
        case["env"] = src.choice([{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"},
                                  {"PYTHONIOENCODING": "latin-1"}, {}])
        case["stdout"] = src.choice(["pipe", "devfull", "closed", "early-close"])
    for key in ("spec", "config", "device"):
        if key in case and len(case[key]) > 20000:
            case[key] = case[key][:20000] + f"… ({len(case[key])} characters)"
    return case


def _spec_case(src, case: dict, workdir: Path) -> None:
    """A generated, mutated or deep spec, derived from the command line (or through the library)."""
    kind = case["kind"]
    if kind == "mutated":
        case["from"], text = F.mutated_spec(src)
    elif kind == "deep":
        text = F.deep_spec(src)
    else:
        text = program(src)
    path = F.write_spec_dir(workdir, text)
    case["spec"] = text
    fmt = src.weighted([(6, "text"), (2, "json"), (1, "latex"), (1, "markdown")])
    case["argv"] = ["derive", str(path)] + ([] if fmt == "text" else ["--format", fmt])
    case["spec_only"] = True


def _device_case(src, case: dict, workdir: Path) -> None:
    """A hostile device file for GPT-2, with or without dims."""
    blob = F.hostile_device(src)
    (workdir / "device.json").write_bytes(blob)
    case["device"] = blob.decode("utf-8", "backslashreplace")
    case["argv"] = ["derive", str(F.SPECS / "gpt2.arch"), "--device", str(workdir / "device.json")]
    if src.boolean(0.7):
        case["argv"] += ["--set", "a=12", "b=1", "s=1024", "h=768", "L=12", "V=50257", "P=1024"]
    if src.boolean(0.3):
        case["argv"] += ["--format", "json"]


def _cli_case(src, case: dict, workdir: Path) -> None:
    """A command line drawn from the real parser, over a shipped or generated spec and maybe hostile files."""
    spec = src.weighted([(4, "shipped"), (1, "generated")])
    files = F.Files(workdir)
    if spec == "shipped":
        files.spec = F.SPECS / src.choice([p.name for p in F.SPECS.glob("*.arch")])
    else:
        case["spec"] = program(src)
        files.spec = F.write_spec_dir(workdir, case["spec"])
    if src.boolean(0.3):
        files.config = workdir / "config.json"
        blob = F.hostile_config(src) if src.boolean(0.5) else src.choice(F.PRESETS).read_bytes()
        files.config.write_bytes(blob)
        case["config"] = blob.decode("utf-8", "backslashreplace")
    if src.boolean(0.3):
        files.device = workdir / "device.json"
        blob = F.hostile_device(src) if src.boolean(0.5) else src.choice(F.DEVICES).read_bytes()
        files.device.write_bytes(blob)
        case["device"] = blob.decode("utf-8", "backslashreplace")
    case["argv"] = F.command_line(src, files)


def run_env_case(case: dict, timeout: float) -> tuple[str | None, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **case["env"])
    cmd = [sys.executable, "-m", "symcost", *case["argv"]]
    how = case["stdout"]
    if how == "early-close":
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        p.stdout.read(1)
        p.stdout.close()
        try:
            err = p.stderr.read().decode("utf-8", "replace")
            code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            return "hang", ""
    else:
        out = {"pipe": subprocess.PIPE, "devfull": open("/dev/full", "wb"), "closed": subprocess.DEVNULL}[how]
        pre = (lambda: os.close(1)) if how == "closed" else None
        try:
            p = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.PIPE, timeout=timeout, cwd=ROOT, preexec_fn=pre)
        except subprocess.TimeoutExpired:
            return "hang", ""
        code, err = p.returncode, p.stderr.decode("utf-8", "replace")
    if "Traceback" in err:
        last = [l for l in err.strip().splitlines() if l and not l.startswith(" ")][-1:]
        return f"traceback at the process boundary ({how}, {case['env']}): {last[0][:80] if last else '?'}", err
    if code not in (0, 1, 2, -13):  # -13: SIGPIPE, the conventional end for a reader that went away
        return f"exit status {code} at the process boundary ({how})", err
    return None, err


def worker(conn, rss_mb: int, timeout: float, seed: int, base: str) -> None:
    """A worker process: capped memory, an alarm per case; runs the case indices it is sent, answers records."""
    if rss_mb:
        limit = rss_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))

    def alarm(*_):
        raise CaseTimeout(f"case over {timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    workdir = Path(base) / f"w{os.getpid()}"
    import symcost.cli  # noqa: F401 - warm imports outside the timer
    import symcost.cost.accounting  # noqa: F401
    import symcost.model.builder  # noqa: F401

    grammar()
    while True:
        msg = conn.recv()
        if msg is None:
            break
        t0 = time.perf_counter()
        rec = run_case(msg, seed, workdir, timeout, rss_mb)
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        conn.send(rec)


def run_case(index: int, seed: int, workdir: Path, timeout: float, rss_mb: int) -> dict:
    """Generate and run one case under the alarm; its record (with the problem and the input when it failed)."""
    rec = {"index": index}
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        case = make_case(seed, index, workdir)
        rec["kind"] = case["kind"]
        if case["kind"] == "env":
            signal.setitimer(signal.ITIMER_REAL, 0)
            problem, err = run_env_case(case, timeout * 4)
            res = None
        elif case["kind"] == "library":
            res = F.in_process_pipeline(case["spec"], workdir / "lib")
            problem = F.check(res, ["<library>"])
        else:
            res = F.run_cli(case["argv"])
            problem = F.check(res, case["argv"], spec_only=case.get("spec_only", False))
        signal.setitimer(signal.ITIMER_REAL, 0)
        if res is not None:
            rec["code"] = res.code
            if res.exc_type == "CaseTimeout":
                problem = f"timeout (> {timeout} s) at {res.where}"
            elif res.exc_type == "MemoryError":
                problem = f"memory (> {rss_mb} MB address space) at {res.where}"
        if problem:
            rec.update(problem=problem, case=case)
            if res is not None:
                rec.update(stderr=res.stderr[-3000:], traceback=(res.exc or "")[-6000:])
            else:
                rec.update(stderr=err[-3000:])
    except CaseTimeout:
        rec.update(problem=f"timeout (> {timeout} s) while generating or judging", kind=rec.get("kind", "?"))
    except MemoryError:
        signal.setitimer(signal.ITIMER_REAL, 0)
        rec.update(problem="memory while generating or judging", kind=rec.get("kind", "?"))
    except Exception as e:  # noqa: BLE001 - a bug in the harness, recorded as such
        signal.setitimer(signal.ITIMER_REAL, 0)
        import traceback

        rec.update(problem=f"harness error {type(e).__name__}: {e}"[:200], traceback=traceback.format_exc()[-4000:])
    return rec


class Pool:
    def __init__(self, n: int, args):
        self.args, self.slots = args, [None] * n
        self.base = tempfile.mkdtemp(prefix="symcost-fuzz-long-")
        self.ctx = mp.get_context("fork")

    def start(self, k: int):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=worker, args=(child, self.args.rss_mb, self.args.timeout, self.args.seed, self.base), daemon=True)
        p.start()
        self.slots[k] = {"proc": p, "conn": parent, "index": None, "since": 0.0, "done": 0}

    def stop(self, k: int, kill: bool = False):
        s = self.slots[k]
        if s is None:
            return
        try:
            if kill:
                s["proc"].kill()
            else:
                s["conn"].send(None)
        except (OSError, BrokenPipeError):
            pass
        s["proc"].join(5)
        if s["proc"].is_alive():
            s["proc"].kill()
            s["proc"].join()
        self.slots[k] = None


def main(argv=None) -> int:
    args = _arguments(argv)
    if args.only is not None:
        return _only(args)
    run = Run(args)
    run.loop()
    run.report()
    return 0


def _arguments(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="cases (default 100000)")
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per case (default 5)")
    ap.add_argument("--rss-mb", type=int, default=1024, help="address-space cap per worker in MB (default 1024)")
    ap.add_argument("--recycle", type=int, default=400, help="cases per worker process before a fresh one")
    ap.add_argument("--out", default="fuzz-failures.jsonl", help="JSON-lines file of failures")
    ap.add_argument("--summary", help="also write the counts as JSON here")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop after this long (0: no limit)")
    ap.add_argument("--report", type=float, default=60, help="print progress every this many seconds")
    ap.add_argument("--only", type=int, help="run (and print) one case index in this process")
    return ap.parse_args(argv)


def _only(args) -> int:
    """--only INDEX: the case's input, and what running it in this process gives."""
    case = make_case(args.seed, args.only, Path(tempfile.mkdtemp()))
    print(json.dumps({k: v for k, v in case.items()}, indent=2, ensure_ascii=False)[:20000])
    res = F.run_cli(case["argv"]) if case["kind"] not in ("env", "library") else None
    if res:
        print("exit", res.code, "\n", res.stderr[:3000], res.exc or "", "\nproblem:",
              F.check(res, case["argv"], spec_only=case.get("spec_only", False)))
    return 0


class Run:
    """The parent process: hands case indices to the workers, records what comes back, replaces dead or hung
    workers, and counts."""

    def __init__(self, args):
        self.args = args
        self.counts = collections.Counter()
        self.kinds = collections.Counter()
        self.signatures: dict[str, dict] = {}
        self.slowest = []
        self.t0 = self.last = time.time()
        self.pool = Pool(args.workers, args)
        for k in range(args.workers):
            self.pool.start(k)
        self.todo = iter(range(args.start, args.start + args.n))
        self.running = 0
        self.exhausted = False
        self.out = open(args.out, "a", encoding="utf-8")

    def record(self, rec: dict) -> None:
        self.kinds[rec.get("kind", "?")] += 1
        if rec.get("problem"):
            self.counts["failures"] += 1
            sig = rec["problem"]
            s = self.signatures.setdefault(sig, {"count": 0, "first": rec["index"], "kinds": collections.Counter()})
            s["count"] += 1
            s["kinds"][rec.get("kind", "?")] += 1
            self.out.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            self.out.flush()
        else:
            self.counts["ok"] += 1
            self.counts[f"exit {rec.get('code')}"] += 1
        self.counts["cases"] += 1
        self.slowest.append((rec.get("seconds", 0), rec["index"], rec.get("kind")))
        self.slowest.sort(reverse=True)
        del self.slowest[10:]

    def give(self, k: int) -> None:
        """The next case index to worker k (none once all are given or time is up)."""
        if self.exhausted:
            return
        if self.args.max_seconds and time.time() - self.t0 > self.args.max_seconds:
            self.exhausted = True
            return
        i = next(self.todo, None)
        if i is None:
            self.exhausted = True
            return
        s = self.pool.slots[k]
        s["conn"].send(i)
        s["index"], s["since"] = i, time.time()
        self.running += 1

    def loop(self) -> None:
        from multiprocessing.connection import wait

        args, pool = self.args, self.pool
        for k in range(args.workers):
            self.give(k)
        while self.running:
            conns = {pool.slots[k]["conn"]: k for k in range(args.workers)
                     if pool.slots[k] and pool.slots[k]["index"] is not None}
            for c in wait(list(conns), timeout=1.0):
                self._answer(conns[c], c)
            now = time.time()
            self._hard_timeouts(now)
            if now - self.last > args.report:
                self.last = now
                print(f"[{now - self.t0:7.0f} s] {self.counts['cases']} cases, {self.counts['failures']} failures, "
                      f"{len(self.signatures)} distinct", flush=True)
        for k in range(args.workers):
            pool.stop(k)
        shutil.rmtree(pool.base, ignore_errors=True)
        self.out.close()

    def _answer(self, k: int, c) -> None:
        """Worker k's record; a worker that died instead is recorded as such and replaced."""
        s = self.pool.slots[k]
        try:
            rec = c.recv()
        except (EOFError, OSError):
            code = s["proc"].exitcode if not s["proc"].is_alive() else None
            s["proc"].join(1)
            code = s["proc"].exitcode
            case = make_case(self.args.seed, s["index"], Path(self.pool.base) / "parent")
            rec = {"index": s["index"], "kind": case["kind"], "case": case,
                   "problem": f"worker died (exit {code}{', a signal' if code and code < 0 else ''})"}
            self.running -= 1
            self.record(rec)
            self._replace(k)
            return
        self.running -= 1
        s["index"] = None
        s["done"] += 1
        self.record(rec)
        if s["done"] >= self.args.recycle:
            self.pool.stop(k)
            self.pool.start(k)
        self.give(k)

    def _hard_timeouts(self, now: float) -> None:
        """A worker stuck where the alarm cannot reach: its case recorded as a hang, the worker replaced."""
        limit = self.args.timeout * 4 + 10
        for k in range(self.args.workers):
            s = self.pool.slots[k]
            if s and s["index"] is not None and now - s["since"] > limit:
                case = make_case(self.args.seed, s["index"], Path(self.pool.base) / "parent")
                self.running -= 1
                self.record({"index": s["index"], "kind": case["kind"], "case": case,
                             "problem": f"hang (no answer in {limit:.0f} s; worker killed)",
                             "seconds": round(now - s["since"], 1)})
                self._replace(k)

    def _replace(self, k: int) -> None:
        self.pool.stop(k, kill=True)
        self.pool.start(k)
        self.give(k)

    def report(self) -> None:
        """The counts: by kind, by exit status, each distinct failure, the slowest cases (and --summary)."""
        args, counts, signatures = self.args, self.counts, self.signatures
        elapsed = time.time() - self.t0
        print(f"\n{counts['cases']} cases in {elapsed:.0f} s ({counts['cases'] / max(elapsed, 1e-9):.1f}/s), seed {args.seed}")
        print("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items())))
        print(f"kept the contract: {counts['ok']} (exit 0: {counts['exit 0']}, exit 1: {counts['exit 1']}, "
              f"exit 2: {counts['exit 2']})")
        print(f"failures: {counts['failures']} in {len(signatures)} distinct signatures")
        for sig, s in sorted(signatures.items(), key=lambda kv: -kv[1]["count"]):
            print(f"  {s['count']:6d}  {sig}   (first case {s['first']}; {dict(s['kinds'])})")
        print("slowest cases: " + ", ".join(f"#{i} {k} {t:.2f}s" for t, i, k in self.slowest))
        if args.summary:
            Path(args.summary).write_text(json.dumps({
                "cases": counts["cases"], "seconds": round(elapsed), "seed": args.seed, "start": args.start,
                "by_kind": self.kinds, "ok": counts["ok"], "exit": {c: counts[f"exit {c}"] for c in (0, 1, 2)},
                "failures": counts["failures"],
                "signatures": {k: {"count": v["count"], "first": v["first"], "kinds": v["kinds"]}
                               for k, v in signatures.items()},
            }, indent=2, default=dict) + "\n")


if __name__ == "__main__":
    sys.exit(main())
