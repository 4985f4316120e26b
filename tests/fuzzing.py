"""Fuzz inputs and their judge: mutated specs, hostile HF configs and device files, command lines, and the contract.

Generated programs come from fuzz_programs.py (walked from the Lark grammar, calls shaped by the op registry),
sources of choices and hostile scalars from fuzz_sources.py; here: mutations of the shipped specs, hostile HF
configs and device files, and command lines drawn from the real argparse parser.

Every generator takes a *source* of choices, so the same code serves two drivers:

* ``RandomSource(seed)`` — a plain ``random.Random``: fast and reproducible from a seed (benchmarks/fuzz_long.py);
* ``HypothesisSource(draw)`` — draws from Hypothesis, so failures shrink (tests/test_fuzz.py).

``run_cli`` runs ``symcost.cli.main`` in-process and ``check`` judges the result against the contract: exit
0/1/2, an "error:" message on 2 (located for spec errors), no exception escaping, and output that is safe to
print (no terminal escapes, strict JSON, no TeX primitives from spec strings).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from fuzz_programs import DTYPES, grammar, op_registry, program
from fuzz_sources import (CONTROL, DEVICES, HF_MAPPINGS, PRESETS, SPEC_FILES, SPECS, TEX,
                          UNICODE, RandomSource, hostile_float_text, hostile_number_text, hostile_text, huge_digits)


# ---- mutations of shipped specs -------------------------------------------------------------------
def _read(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def mutate_text(src, text: str, others: list[str] | None = None, rounds: int | None = None) -> str:
    """A shipped spec's text changed token by token: deletions, swaps, numbers, names, Unicode, splices, nesting."""
    g = grammar()
    others = others if others is not None else [_read(p) for p in SPEC_FILES]
    for _ in range(rounds if rounds is not None else src.integer(1, 3)):
        toks = g.tokens(text)
        if not toks:
            toks = [""]
        i = src.integer(0, len(toks) - 1)
        kind = src.choice(["delete", "duplicate", "swap", "number", "name", "unicode", "splice", "nest",
                           "truncate", "bom_crlf", "include", "repeat_line", "string"])
        if kind == "delete":
            del toks[i: i + src.integer(1, 3)]
        elif kind == "duplicate":
            toks.insert(i, toks[i] * src.integer(1, 3))
        elif kind == "swap":
            j = src.integer(0, len(toks) - 1)
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "number":
            idx = [k for k, t in enumerate(toks) if t[:1].isdigit()] or [i]
            k = src.choice(idx)
            toks[k] = src.weighted([(2, huge_digits(src)), (2, "0"), (2, "-" + toks[k]), (1, "0.0"),
                                    (1, "1" + "0" * src.integer(10, 60)), (1, "99999999999"), (1, "٣")])
        elif kind == "name":
            names = [t for t in toks if re.fullmatch(r"[A-Za-z_]\w*", t)] or ["x"]
            idx = [k for k, t in enumerate(toks) if t in names] or [i]
            toks[src.choice(idx)] = src.choice(names + ["training", "c", "_", "é", "min", "true"])
        elif kind == "unicode":
            toks.insert(i, src.choice(CONTROL + UNICODE + TEX))
        elif kind == "splice":
            lines = src.choice(others).split("\n")
            piece = "\n".join(lines[src.integer(0, len(lines) - 1):][: src.integer(1, 8)])
            toks.insert(i, "\n" + piece + "\n")
        elif kind == "nest":
            toks = _nested(src, toks)
        elif kind == "truncate":
            toks = toks[: i]
        elif kind == "bom_crlf":
            text = "".join(toks)
            text = src.choice(["\ufeff" + text, text.replace("\n", "\r\n"), text.replace("\n", "\r"),
                               text.encode("utf-8", "replace").decode("latin-1")])
            toks = [text]
        elif kind == "include":
            toks.insert(i, "\ninclude " + src.choice(['"../../../etc/passwd"', '"/dev/zero"', '"/dev/stdin"', '"spec.arch"',
                                                      '"blocks"', '""', '"blocks/attention.arch"', '"nonexistent.arch"',
                                                      '"/proc/self/environ"', '"' + "a/" * 200 + '"']) + "\n")
        elif kind == "repeat_line":
            lines = "".join(toks).split("\n")
            k = src.integer(0, len(lines) - 1)
            lines[k:k + 1] = [lines[k]] * src.integer(2, 50)
            toks = ["\n".join(lines)]
        elif kind == "string":
            idx = [k for k, t in enumerate(toks) if t.startswith('"')] or [i]
            toks[src.choice(idx)] = '"' + hostile_text(src, 20).replace('"', "").replace("\n", "") + '"'
        text = "".join(toks)
    return text


def _nested(src, toks: list) -> list:
    """The tokens with a deeply nested expression or block put in (parentheses, minus signs, powers, lists,
    fused/repeat/if blocks)."""
    n = src.weighted([(3, src.integer(10, 200)), (2, src.integer(200, 1500)), (1, src.integer(1500, 20000))])
    form = src.choice(["paren", "neg", "fused", "repeat", "if", "list", "pow"])
    tail = "\n"
    if form == "paren":
        piece = "(" * n + "h" + ")" * n
        toks = _replace_number_or_insert(src, toks, piece)
    elif form == "neg":
        toks = _replace_number_or_insert(src, toks, "-" * n + "1")
    elif form == "pow":
        toks = _replace_number_or_insert(src, toks, "^".join(["2"] * n))
    elif form == "list":
        toks = _replace_number_or_insert(src, toks, "[" * n + "1" + "]" * n)
    else:
        head = {"fused": "fused {", "repeat": "repeat 2 {", "if": "if training {"}[form]
        toks.append("\n" + (head + "\n") * n + "zz = identity(x)" + tail + "}\n" * n)
    return toks


def _replace_number_or_insert(src, toks: list, piece: str) -> list:
    idx = [k for k, t in enumerate(toks) if t[:1].isdigit()]
    if idx:
        toks[src.choice(idx)] = piece
        return toks
    return toks + [f"\ndim zz = {piece}\n"]


def mutated_spec(src) -> tuple[str, str]:
    """(name of the shipped file mutated, mutated text)."""
    p = src.choice(SPEC_FILES)
    return p.name, mutate_text(src, _read(p))


def deep_spec(src, max_n: int = 12000) -> str:
    """Specifically deep or wide programs: nesting that may outrun a recursive walker."""
    n = src.weighted([(2, src.integer(20, 120)), (2, src.integer(120, 1200)), (1, src.integer(1200, 12000))])
    n = min(n, max_n)
    form = src.choice(["paren", "neg", "pow", "fused", "repeat", "if", "blocks", "list", "add"])
    head = "dim b\ndim h\ninput x: [b, h]\n"
    if form == "paren":
        return head + f"dim q = {'(' * n}h{')' * n}\ny = relu(x)\n"
    if form == "neg":
        return head + f"dim q = {'-' * n}h\ny = relu(x)\n"
    if form == "pow":
        return head + f"dim q = {'^'.join(['h'] * n)}\ny = relu(x)\n"
    if form == "add":
        return head + f"dim q = {' + '.join(['h'] * n)}\ny = linear(x, q)\n"
    if form == "list":
        return head + f"y = reshape(x, {'[' * n}b, h{']' * n})\n"
    if form == "blocks":
        n = min(n, 3000)
        body = "".join(f"block f{i}(x: [b, h]) {{\n  y = f{i + 1}(x)\n  return y\n}}\n" for i in range(n))
        return head + body + f"block f{n}(x: [b, h]) {{\n  y = relu(x)\n  return y\n}}\nout = f0(x)\n"
    open_ = {"fused": "fused {", "repeat": "repeat 2 {", "if": "if training {"}[form]
    return head + (open_ + "\n") * n + "x = relu(x)\n" + "}\n" * n


# ---- HF configs and devices -----------------------------------------------------------------------
def hostile_value(src, depth: int = 0):
    """A JSON value of a surprising type or size (alternatives built lazily: only the chosen one draws)."""
    table = [
        (2, lambda: None), (2, lambda: src.integer(-3, 3)), (1, lambda: 10 ** src.integer(15, 30)),
        (1, lambda: int(huge_digits(src)[:4000])), (1, lambda: float("nan")), (1, lambda: float("inf")),
        (1, lambda: -float("inf")), (1, lambda: 1e-320), (1, lambda: 1e308), (1, lambda: -0.0), (1, src.real),
        (2, lambda: src.choice([True, False])), (2, lambda: hostile_text(src)), (1, lambda: "768"), (1, lambda: ""),
        (1, lambda: [] if depth > 2 else [hostile_value(src, depth + 1) for _ in range(src.integer(0, 3))]),
        (1, lambda: {} if depth > 2 else {hostile_text(src, 4): hostile_value(src, depth + 1) for _ in range(src.integer(0, 3))}),
    ]
    return src.weighted(table)()


def _nest(src, value):
    n = src.weighted([(2, src.integer(5, 100)), (1, src.integer(100, 5000)), (1, src.integer(5000, 200000))])
    kind = src.choice(["list", "dict"])
    text = json.dumps(value)
    return ("[" * n + text + "]" * n) if kind == "list" else ('{"a":' * n + text + "}" * n)


def hostile_json(src, base: dict, models: list[str] | None = None) -> bytes:
    """A JSON document made from a shipped one: fields retyped, deleted, nulled, huge, nested; or broken bytes."""
    doc = json.loads(json.dumps(base))
    keys = list(doc) or ["x"]
    for _ in range(src.integer(1, 4)):
        k = src.choice(keys + [hostile_text(src, 5), "model_type", "_symcost"])
        action = src.choice(["set", "set", "set", "delete", "model_type", "nested"])
        if action == "set":
            doc[k] = hostile_value(src)
        elif action == "delete":
            doc.pop(k, None)
        elif action == "model_type" and models:
            doc["model_type"] = src.choice(models + ["", "__proto__", "../../etc/passwd", hostile_text(src, 6)])
        elif action == "nested" and isinstance(doc.get(k), (dict, list)):
            doc[k] = {"field": hostile_value(src), "default": hostile_value(src)}
    shape = src.weighted([(10, "doc"), (1, "list"), (1, "scalar"), (1, "deep"), (1, "raw")])
    if shape == "list":
        doc = [doc]
    elif shape == "scalar":
        doc = hostile_value(src)
    if shape == "deep":
        text = _nest(src, doc)
    else:
        try:
            text = json.dumps(doc, indent=src.choice([None, 2]))
        except ValueError:  # an int over the str-conversion limit
            text = json.dumps({k: v for k, v in doc.items() if not isinstance(v, int)}) if isinstance(doc, dict) else "{}"
    data = text.encode("utf-8", "surrogatepass")
    if shape == "raw":
        data = src.choice([data[: src.integer(0, len(data))], b"\xef\xbb\xbf" + data, data + b"\xff\xfe",
                           data.replace(b'"', b"'", 1), b"", b"\x00" * 10, b"{" * 100000, b'"' + b"a" * 10 + b'"',
                           b'{"model_type": "gpt2", "n_embd": 1' + b"0" * 5000 + b"}"])
    return data


def hostile_config(src) -> bytes:
    base = json.loads(_read(src.choice(PRESETS)))
    models = sorted({json.loads(_read(p)).get("model_type", "") for p in PRESETS} | {p.stem for p in HF_MAPPINGS})
    return hostile_json(src, base, models)


def hostile_device(src) -> bytes:
    base = json.loads(_read(src.choice(DEVICES)))
    doc = hostile_json(src, base)
    if src.boolean(0.3):  # retype inside the peak table / interconnect too
        try:
            d = json.loads(doc)
            if isinstance(d, dict) and isinstance(d.get("peak_flops"), dict):
                d["peak_flops"][src.choice(list(d["peak_flops"]) + ["bf16", "x"])] = hostile_value(src)
                doc = json.dumps(d).encode()
        except (ValueError, RecursionError):
            pass
    return doc


# ---- command lines from the real argparse parser --------------------------------------------------
def cli_parser() -> argparse.ArgumentParser:
    from symcost.cli import _parser

    return _parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


@dataclass
class Files:
    """Paths a command line may name, made by the caller in a scratch directory."""

    workdir: Path
    spec: Path | None = None
    config: Path | None = None
    device: Path | None = None


def spec_names(path: Path | None) -> tuple[list[str], list[str]]:
    """Dims and options a spec (and what it includes) declares, read textually."""
    dims, options = [], []
    files = [path] if path is not None and path.exists() else [SPECS / "gpt2.arch"]
    try:
        text = files[0].read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    dims += re.findall(r"^\s*dim\s+([A-Za-z_]\w*)", text, re.M)
    options += re.findall(r"^\s*option\s+([A-Za-z_]\w*)", text, re.M)
    return dims or ["h", "b", "s"], options or ["bias"]


def assignment(src, dims: list[str], options: list[str]) -> str:
    kind = src.weighted([(6, "dim"), (2, "option"), (1, "other"), (1, "setting")])
    if kind == "dim":
        return f"{src.choice(dims)}={hostile_number_text(src)}"
    if kind == "option":
        return f"{src.choice(options)}={src.choice(['true', 'false', 'TRUE', 'yes', '1', '', hostile_text(src, 3)])}"
    if kind == "setting":
        from symcost.settings import TABLE

        setting = src.choice([s for s in TABLE if s.choices or s.kind == "flag"])
        allowed = [str(c) for c in setting.choices] or ["true", "false"]
        return f"{setting.name.replace('_', '-')}={src.choice(allowed + ['bogus'])}"
    return src.choice([f"{src.choice(dims)}={src.choice(dims)}", "=", "x", "==1", f"training={src.choice(['true', 'false'])}",
                       f"{hostile_text(src, 4)}={hostile_number_text(src)}", f"c={hostile_number_text(src)}"])


def _value_for(src, action: argparse.Action, files: Files, dims, options) -> str:
    meta = (action.metavar or action.dest or "").upper()
    if action.choices is not None and src.boolean(0.92):
        return str(src.choice(list(action.choices)))
    if action.type is float:
        return hostile_float_text(src)
    if action.type is int:
        return src.choice(["0", "1", "2", "3", "4", "-1", huge_digits(src)[:30], "x"])
    if "NAME=VALUE" in meta:
        return assignment(src, dims, options)
    if meta == "NAME|FILE":
        from symcost.analysis.hardware import list_devices

        pool = list(list_devices()) + ([str(files.device)] if files.device else []) + ["nope", "/dev/null", str(SPECS / "gpt2.arch"), str(SPECS)]
        return src.choice(pool)
    if meta == "FILE":
        if action.dest == "output":
            return src.choice([str(files.workdir / "out.txt"), "/dev/null", str(files.workdir), str(files.workdir / "no" / "such" / "f"), "/dev/full"])
        pool = ([str(files.config)] * 4 if files.config else []) + [str(p) for p in PRESETS[:3]] + [str(HF_MAPPINGS[0]), "/dev/null", "nope.json", str(SPECS)]
        return src.choice(pool)
    if meta == "DIR":
        return src.choice([str(files.workdir), str(SPECS), "/nonexistent", "/dev/null", str(SPECS / "gpt2.arch")])
    if meta == "NAME":
        from symcost.analysis.hf import presets

        return src.choice(list(presets()) + ["nope", "../gpt2", ""]) if action.dest == "preset" else src.choice(list(op_registry()) + ["lineer"])
    if meta == "DIM":
        return src.choice(dims + ["d", "nope"])
    if meta == "DTYPE":
        return src.choice(list(DTYPES) + ["fp4", "nope", ""])
    if meta in ("T", "P", "E", "N"):
        return src.choice(["1", "2", "4", "8", "3", "0", "-1", "t", "h", "N_d", "b", huge_digits(src)[:30], "٣", "1.5", "x y"])
    if meta.startswith("BXS"):
        return src.choice(["2x16", "0x0", "1x" + "9" * 12, "x", "2x16,3x32"])
    return hostile_text(src, 6)


def command_line(src, files: Files, parser: argparse.ArgumentParser | None = None) -> list[str]:
    parser = parser or cli_parser()
    subs = subcommands(parser)
    weights = {"derive": 12, "compare": 3, "ops": 1, "devices": 1, "presets": 1, "zoo": 0, "validate": 0.3}
    cmd = src.weighted([(weights.get(n, 1), n) for n in subs])
    sp_ = subs[cmd]
    dims, options = spec_names(files.spec)
    argv = [cmd]
    positionals = [a for a in sp_._actions if not a.option_strings and not isinstance(a, argparse._HelpAction)]
    optionals = [a for a in sp_._actions if a.option_strings]
    for a in positionals:
        if a.nargs == "?" and src.boolean(0.2):
            continue
        if cmd == "ops":
            argv.append(src.choice(list(op_registry()) + ["lineer", ""]))
            continue
        pool = ([str(files.spec)] * 6 if files.spec else []) + [str(p) for p in SPEC_FILES[:4]] + ["llama", "nope", str(SPECS), "/dev/null"]
        argv.append(src.choice(pool))
    for _ in range(src.integer(0, 5)):
        a = src.choice(optionals)
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction)) and src.boolean(0.9):
            continue
        flag = src.choice(a.option_strings)
        if a.nargs == 0:
            argv.append(flag)
        elif a.nargs == "+":
            argv.append(flag)
            argv.extend(_value_for(src, a, files, dims, options) for _ in range(src.integer(1, 4)))
        else:
            argv += [flag, _value_for(src, a, files, dims, options)]
    return argv


# ---- running and judging --------------------------------------------------------------------------
@dataclass
class Result:
    code: int | None
    stdout: str
    stderr: str
    exc: str | None = None  # a formatted traceback when an exception escaped main()
    exc_type: str | None = None
    where: str | None = None  # the innermost symcost frame of that traceback


def _where(tb) -> str:
    frames = [f for f in traceback.extract_tb(tb) if "/symcost/" in f.filename.replace("\\", "/")]
    f = frames[-1] if frames else (traceback.extract_tb(tb)[-1] if tb else None)
    return f"{Path(f.filename).name}:{f.name}:{f.lineno}" if f else "?"


def run_cli(argv: list[str]) -> Result:
    from symcost.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    except SystemExit as e:  # argparse: usage errors (2), --help / --version (0)
        c = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        return Result(c, out.getvalue(), err.getvalue())
    except BaseException as e:  # noqa: BLE001 - the point is to see everything that escapes
        if isinstance(e, KeyboardInterrupt):
            raise
        return Result(None, out.getvalue(), err.getvalue(), traceback.format_exc(), type(e).__name__, _where(e.__traceback__))
    return Result(code, out.getvalue(), err.getvalue())


def write_spec_dir(workdir: Path, text: str, name: str = "spec.arch") -> Path:
    """The spec in a scratch directory beside a copy of the shipped blocks (so its includes resolve)."""
    workdir.mkdir(parents=True, exist_ok=True)
    blocks = workdir / "blocks"
    if not blocks.exists():
        shutil.copytree(SPECS / "blocks", blocks)
    p = workdir / name
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return p


_ESC = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")
_TEX = re.compile(r"\\(input|include|write|openout|immediate|def|catcode|read|csname)\b")


def check(res: Result, argv: list[str], spec_only: bool = False) -> str | None:
    """None when the run kept the contract, else a short signature of the misbehaviour (for dedup)."""
    if res.exc is not None:
        return f"traceback {res.exc_type} at {res.where}"
    if res.code not in (0, 1, 2):
        return f"exit status {res.code!r}"
    err = res.stderr
    if res.code == 2:
        if err.startswith("usage:") and "error:" in err:
            pass  # argparse rejecting a flag; not a spec error
        elif not err.startswith("error:"):
            return "exit 2 without an 'error:' message"
        elif spec_only and "\n  --> " not in err:
            first = err.splitlines()[0]
            return "unlocated spec error: " + re.sub(r"'[^']*'|\d+", "…", first)[:90]
    if _ESC.search(res.stdout) or _ESC.search(err.replace("\n", "")):
        return "control character / terminal escape in output"
    fmt = _flag(argv, "--format")
    if any(a in ("-h", "--help", "--version") for a in argv):
        fmt = None  # argparse printed its help text instead
    if res.code == 0 and fmt == "json" and not _flag(argv, "-o") and not _flag(argv, "--output"):
        try:
            json.loads(res.stdout, parse_constant=_reject_constant)
        except ValueError as e:
            return f"invalid JSON output: {str(e)[:60]}"
    if res.code == 0 and fmt == "latex" and _TEX.search(res.stdout):
        return "TeX primitive from the spec in LaTeX output"
    return None


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _flag(argv: list[str], flag: str) -> str | None:
    """The value of a flag as argparse takes it: the last occurrence wins."""
    found = None
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            found = argv[i + 1]
    return found


def in_process_pipeline(text: str, workdir: Path) -> Result:
    """parse → build → derive on a spec text through the library API (not the CLI)."""
    from symcost.cost.accounting import derive
    from symcost.errors import SymcostError
    from symcost.model.builder import build
    from symcost.lang.parse import load

    p = write_spec_dir(workdir, text)
    try:
        derive(build(load(p)))
    except SymcostError as e:
        return Result(2, "", str(e))
    except RecursionError:
        return Result(2, "", "error: recursion")
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return Result(None, "", "", traceback.format_exc(), type(e).__name__, _where(e.__traceback__))
    return Result(0, "", "")


def _samples():  # python tests/fuzzing.py SEED prints a few generated programs
    s = RandomSource(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    for _ in range(3):
        print(program(s))
        print("----")


# ---- misbehaviours already recorded in docs/robustness.md (signature pattern -> finding id) ---------------
KNOWN: list[tuple[str, str]] = [
    ("F1/F2 time", r"^timeout .* at (derive|graph|compare)\.py"),
    ("F3 compare time", r"^timeout .* at compare\.py"),
    ("F4 KeyError --pp prefill", r"^traceback KeyError at derive\.py:nbytes"),
    ("F5 huge --set values", r"^traceback (ValueError|OverflowError) at (forms|roofline|text|json)\.py"),
    ("F7 deep nesting", r"nests too deeply|^timeout .* at parse\.py"),
    ("F10 control characters echoed", r"^control character / terminal escape in output"),
    ("F12 unlocated built-in option", r"unlocated spec error: error: … is a built-in option"),
]


def known(problem: str) -> str | None:
    for finding, pattern in KNOWN:
        if re.search(pattern, problem):
            return finding
    return None


if __name__ == "__main__":
    _samples()
