"""Spec text (and command-line values) are data, never Python.

Python payloads go into every position of the grammar and every command-line value; each must end in a clean
SymcostError (or, in harmless string positions, a normal derive) without any side effect. The source is checked
for eval-like calls, and random text and random token soup must never raise anything but SymcostError.
"""
from __future__ import annotations

import ast
import builtins
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import symcost
from symcost import cli
from symcost.cost.accounting import derive
from symcost.errors import SymcostError
from symcost.model.builder import build
from symcost.lang.parse import load, parse_text
from symcost.lang.syntax import Module

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(symcost.__file__).resolve().parent
GPT2 = ROOT / "specs" / "gpt2.arch"
MARK = "PWNED"

# ---- payloads ---------------------------------------------------------------------------------------------------
PAYLOADS = [
    "__import__('os').system('touch PWNED')",
    'exec("open(\'PWNED\', \'w\').close()")',
    "eval('__import__(\"os\").system(\"touch PWNED\")')",
    "lambda: open('PWNED', 'w')",
    "().__class__.__bases__[0].__subclasses__()",
    "open('PWNED', 'w').write('x')",
    "getattr(__builtins__, 'exec')('open(\"PWNED\", \"w\")')",
    "[open('PWNED', 'w') for _ in range(1)]",
    "1; import os; os.system('touch PWNED')",
    "h if open('PWNED', 'w') else h",
    "h ** 2 // 1 @ h",
    "\\\\ \\\" \\n \\x00 ' PWNED",
    "{PWNED} %s ${PWNED} `touch PWNED`",
    "__import__",
    "__builtins__",
    "exec",
    "eval",
    "open",
    "__class__",
]
# payloads that contain neither a double quote nor a newline fit inside a string literal
STRING_SAFE = [p for p in PAYLOADS if '"' not in p and "\n" not in p]

BASE = "dim b\ndim h\ninput x: [b, h]\n"
BLOCK = "block f(t) {\n  u = gelu(t)\n  return u\n}\n"

# position -> (template with @P@, is it a harmless string position?)
POSITIONS = {
    "model-name": ("model @P@\n" + BASE, False),
    "model-title": ('model m "@P@"\n' + BASE, True),
    "dim-name": ("dim @P@\n" + BASE, False),
    "dim-definition": (BASE + "dim d = @P@\n", False),
    "dim-description": ('dim b "@P@"\ndim h\ninput x: [b, h]\n', True),
    "dim-tex": ('dim b "batch" tex "@P@"\ndim h\ninput x: [b, h]\n', False),  # TeX: an allowlist
    "dtype-name": ("dtype @P@ = 2\n" + BASE, False),
    "dtype-size": ("dtype q = @P@\n" + BASE, False),
    "dtype-description": ('dtype q = 2 "@P@"\n' + BASE, True),
    "default-dtype": ("default dtype @P@\n" + BASE, False),
    "tensor-dtype": ("dim b\ndim h\ninput x: @P@[b, h]\n", False),
    "option-name": ("option @P@ = true\n" + BASE, False),
    "option-value": ("option o = @P@\n" + BASE, False),
    "option-description": ('option o = true "@P@"\n' + BASE, True),
    "input-name": ("dim b\ndim h\ninput @P@: [b, h]\n", False),
    "input-shape": ("dim b\ndim h\ninput x: [@P@]\n", False),
    "input-description": ('dim b\ndim h\ninput x: [b, h] "@P@"\n', True),
    "param-name": (BASE + "param @P@: [h, h]\n", False),
    "param-shape": (BASE + "param w: [@P@, h]\n", False),
    "op-name": (BASE + "y = @P@(x)\n", False),
    "op-argument": (BASE + "y = linear(x, @P@)\n", False),
    "op-kwarg-name": (BASE + "y = linear(x, h, @P@=true)\n", False),
    "op-kwarg-value": (BASE + "y = linear(x, h, bias=@P@)\n", False),
    "assign-target": (BASE + "@P@ = gelu(x)\n", False),
    "assign-second-target": (BASE + "y, @P@ = split(x, 2)\n", False),
    "block-name": ("dim b\ndim h\nblock @P@(t) {\n  u = gelu(t)\n  return u\n}\ninput x: [b, h]\ny = @P@(x)\n", False),
    "block-param": (BASE + "block f(t, @P@) {\n  u = gelu(t)\n  return u\n}\ny = f(x, x)\n", False),
    "block-param-type": (BASE + "block f(t: [@P@]) {\n  u = gelu(t)\n  return u\n}\ny = f(x)\n", False),
    "block-argument": (BASE + "block f(t, n: dim) {\n  u = linear(t, n)\n  return u\n}\ny = f(x, @P@)\n", False),
    "block-kwarg": (BASE + BLOCK + "y = f(@P@=x)\n", False),
    "return-name": (BASE + "block f(t) {\n  u = gelu(t)\n  return @P@\n}\ny = f(x)\n", False),
    "repeat-count": (BASE + "repeat @P@ {\n  x = gelu(x)\n}\n", False),
    "if-option": (BASE + "option o = true\nif @P@ {\n  y = gelu(x)\n}\n", False),
    "if-not-option": (BASE + "option o = true\nif not @P@ {\n  y = gelu(x)\n}\n", False),
    "include-path": ('include "@P@"\n' + BASE, False),
    "comment": (BASE + "# @P@\n", True),
}


_WARM: list = []


def _warm_up() -> None:
    """Import and run everything once that may legitimately exec generated code on first use (dataclasses,
    lazy imports of the printers), so the spy below sees only what the payloads cause."""
    if not _WARM:
        for fmt in ("text", "json", "latex", "markdown"):
            cli.main(["derive", str(GPT2), "--format", fmt, "--set", "h=768", "a=12", "-o", os.devnull])
        _WARM.append(True)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Work in tmp_path, and record any eval/exec of a string carrying the payload marker."""
    monkeypatch.chdir(tmp_path)
    _warm_up()
    calls: list = []

    def spy(real, name):
        def wrapper(source, *args, **kwargs):
            if isinstance(source, (str, bytes)) and MARK in str(source):
                calls.append((name, source))
            return real(source, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "eval", spy(builtins.eval, "eval"))
    monkeypatch.setattr(builtins, "exec", spy(builtins.exec, "exec"))
    yield tmp_path, calls
    assert not calls, f"payload text reached eval/exec: {calls}"
    assert not (tmp_path / MARK).exists(), "a payload created a file"
    assert not (ROOT / MARK).exists(), "a payload created a file in the checkout"


def test_sandbox_spy_sees_eval_of_the_marker(sandbox):
    """The eval/exec spy of the sandbox works (so its silence in the other tests means something)."""
    _, calls = sandbox
    assert eval("'PWNED'") == MARK  # noqa: S307 - deliberately, to test the spy
    assert calls == [("eval", "'PWNED'")]
    calls.clear()


def derive_text(path: Path):
    return derive(build(load(path)))


@pytest.mark.parametrize("position", list(POSITIONS))
def test_payloads_in_spec_position(sandbox, position):
    """Every payload in this position: a clean SymcostError, or (harmless string positions) a normal derive."""
    tmp, _ = sandbox
    template, harmless = POSITIONS[position]
    path = tmp / "t.arch"
    failures = []
    for payload in PAYLOADS:
        path.write_text(template.replace("@P@", payload), encoding="utf-8")
        try:
            report = derive_text(path)
        except SymcostError as e:
            if harmless and payload in STRING_SAFE:
                failures.append(f"{payload!r}: a description is just text, but: {e.message}")
            elif not str(e).startswith("error: "):
                failures.append(f"{payload!r}: badly rendered error {str(e)!r}")
        except Exception as e:  # noqa: BLE001 - the point of the test
            failures.append(f"{payload!r}: {type(e).__name__}: {e}")
        else:
            assert report.totals
        # a name-like payload (`exec`, `__class__`) is a legal name: success is fine, a side effect is not
        assert not (tmp / MARK).exists(), f"{payload!r} created a file"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("position", list(POSITIONS))
def test_each_position_template_is_valid(sandbox, position):
    """The templates above derive with an ordinary value, so a SymcostError there is due to the payload."""
    tmp, _ = sandbox
    template, harmless = POSITIONS[position]
    ordinary = {
        "dim-definition": "h / 2", "dtype-size": "2", "default-dtype": "bf16", "tensor-dtype": "fp16",
        "option-value": "false", "input-shape": "b, h", "param-shape": "h", "op-name": "gelu", "op-argument": "h",
        "op-kwarg-name": "bias", "op-kwarg-value": "false", "block-param-type": "b, h", "block-argument": "h",
        "block-kwarg": "t", "return-name": "u", "repeat-count": "3", "if-option": "o", "if-not-option": "o",
        "block-param": "z",
    }.get(position, "ok_name")
    if position == "include-path":
        (tmp / "inc.arch").write_text("dim q\n")
        ordinary = "inc.arch"
    path = tmp / "t.arch"
    path.write_text(template.replace("@P@", ordinary), encoding="utf-8")
    assert derive_text(path).totals


def test_payload_in_included_file_name_and_content(sandbox):
    tmp, _ = sandbox
    name = "__import__('os').system('touch PWNED').arch"
    (tmp / name).write_text("dim q \"__import__('os').system('touch PWNED')\"\n")
    (tmp / "t.arch").write_text(f'include "{name}"\n' + BASE)
    assert derive_text(tmp / "t.arch").totals
    (tmp / name).write_text("dim q = __import__('os').system('touch PWNED')\n")
    with pytest.raises(SymcostError):
        derive_text(tmp / "t.arch")


# ---- command-line values ----------------------------------------------------------------------------------------
CLI_PAYLOADS = [p for p in PAYLOADS if not p.startswith("-")]


def cli_run(capsys, argv):
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse rejecting a value is a clean refusal too
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "where",
    ["set-value", "set-name", "set-option-value", "dtype", "keep", "spec-path", "ops-name", "preset", "flops", "format"],
)
def test_payloads_on_command_line(sandbox, capsys, where):
    gpt2 = str(GPT2)
    failures = []
    for payload in CLI_PAYLOADS:
        argv = {
            "set-value": ["derive", gpt2, "--set", f"h={payload}"],
            "set-name": ["derive", gpt2, "--set", f"{payload}=3"],
            "set-option-value": ["derive", gpt2, "--set", f"tied={payload}"],
            "dtype": ["derive", gpt2, "--dtype", payload],
            "keep": ["derive", gpt2, "--keep", payload],
            "spec-path": ["derive", payload],
            "ops-name": ["ops", payload],
            "preset": ["derive", "--preset", payload],
            "flops": ["derive", gpt2, "--flops", payload],
            "format": ["derive", gpt2, "--format", payload],
        }[where]
        try:
            status, out, err = cli_run(capsys, argv)
        except Exception as e:  # noqa: BLE001 - the point of the test
            failures.append(f"{payload!r}: {type(e).__name__}: {e}")
            continue
        if status != 2 or "Traceback" in err or "error" not in err:
            failures.append(f"{payload!r}: status {status}, stderr {err[-300:]!r}")
        assert not (Path.cwd() / MARK).exists(), f"{payload!r} created a file"
    assert not failures, "\n".join(failures)


def test_payload_set_values_all_at_once(sandbox, capsys):
    """Even an '=' inside the value, or many bad items at once, is refused cleanly."""
    argv = ["derive", str(GPT2), "--set", "h=__import__('os').system('touch PWNED')=1", "a=exec('x')", "L==3"]
    status, out, err = cli_run(capsys, argv)
    assert status == 2 and err.startswith("error:") and "Traceback" not in err


HF_CONFIGS = {
    "model-type-payload": {"model_type": "__import__('os').system('touch PWNED')"},
    "model-type-list": {"model_type": ["gpt2"]},
    "model-type-object": {"model_type": {"__class__": "PWNED"}},
    "field-payload": {"model_type": "gpt2", "n_embd": "__import__('os').system('touch PWNED')", "n_layer": 2,
                      "n_head": 2, "vocab_size": 10, "n_positions": 8},
    "field-list": {"model_type": "gpt2", "n_embd": [64], "n_layer": 2, "n_head": 2, "vocab_size": 10, "n_positions": 8},
    "option-payload": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2, "vocab_size": 10,
                       "n_positions": 8, "tie_word_embeddings": "exec('PWNED')"},
}


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_payload_in_hf_config(sandbox, capsys, name):
    tmp, _ = sandbox
    (tmp / "config.json").write_text(json.dumps(HF_CONFIGS[name]))
    status, out, err = cli_run(capsys, ["derive", "--hf-config", "config.json"])
    assert status == 2, (status, err)
    assert err.startswith("error:") and "Traceback" not in err


MALFORMED_CONFIGS = {
    "huge-integer": '{"model_type": "gpt2", "n_embd": 1' + "0" * 5000 + "}",
    "binary": "\x00\udcff",
    "deeply-nested": "[" * 100_000,
}


@pytest.mark.parametrize("name", list(MALFORMED_CONFIGS))
def test_malformed_hf_config(sandbox, capsys, name):
    tmp, _ = sandbox
    text = MALFORMED_CONFIGS[name]
    (tmp / "config.json").write_text(text, encoding="utf-8", errors="surrogateescape")
    status, out, err = cli_run(capsys, ["derive", "--hf-config", "config.json"])
    assert status == 2, (status, err)
    assert err.startswith("error:") and "Traceback" not in err


# ---- huge, long and deeply nested input ---------------------------------------------------------------------------
N = 2000
DEEP = {
    "parentheses": "dim h\ndim x = " + "(" * N + "h" + ")" * N + "\n",
    "long-sum": "dim h\ndim x = " + " + ".join(["h"] * N) + "\n",
    "long-product": "dim h\ndim x = " + " * ".join(["h"] * N) + "\n",
    "unary-minus": "dim h\ndim x = " + "-" * N + "h\n",
    "nested-min": "dim h\ndim x = " + "min(" * N + "h" + ")" * N + "\n",
    "power-chain": "dim h\ndim x = " + "^".join(["1"] * N) + "\n",
    "long-shape": "dim h\ninput x: [" + ", ".join(["h"] * N) + "]\n",
    "long-argument-list": "dim h\ninput x: [h]\ny = gelu(" + ", ".join(["x"] * N) + ")\n",
    "nested-repeat": "dim h\ninput x: [h]\n" + "repeat 2 {\n" * 600 + "x = gelu(x)\n" + "}\n" * 600,
    "nested-if": "dim h\noption o = true\ninput x: [h]\n" + "if o {\n" * 600 + "y = gelu(x)\n" + "}\n" * 600,
    "block-call-chain": "dim h\ninput x: [h]\n"
    + "".join(f"block b{i}(t) {{\n  u = b{i + 1}(t)\n  return u\n}}\n" for i in range(600))
    + "block b600(t) {\n  u = gelu(t)\n  return u\n}\ny = b0(x)\n",
    "many-statements": "dim h\ninput x0: [h]\n" + "".join(f"x{i + 1} = gelu(x{i})\n" for i in range(300)),
    "long-name": "dim " + "h" * 100_000 + "\n",
    "long-string": 'dim h "' + "x" * 1_000_000 + '"\n',
    "huge-literal": "dim h\ndim x = " + "9" * 5000 + "\ninput y: [x]\nz = gelu(y)\n",
    "huge-decimal": "dim h\ndim x = 1." + "0" * 5000 + "1\n",
    "huge-power": "dim x = 10^5000\ninput y: [x]\nz = gelu(y)\n",
}


def _no_raw(fn, *args):
    """Run fn; a raw exception fails the test with a one-line message (a RecursionError's traceback is huge)."""
    try:
        return fn(*args)
    except SymcostError:
        raise
    except BaseException as e:  # noqa: BLE001 - the point of the test
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        inner = getattr(e, "orig_exc", None)
        detail = f" wrapping {type(inner).__name__}: {inner}" if inner is not None else ""
        pytest.fail(f"raw {type(e).__module__}.{type(e).__name__}: {str(e)[:200]}{detail[:200]}", pytrace=False)


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_or_huge_spec_api(name):
    """The library API: success or a SymcostError, never RecursionError, ValueError or a lark exception."""
    try:
        _no_raw(lambda: derive(build(Module("deep.arch", parse_text(DEEP[name], "deep.arch")))))
    except SymcostError as e:
        assert e.message


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_or_huge_spec_cli(sandbox, capsys, name):
    tmp, _ = sandbox
    (tmp / "deep.arch").write_text(DEEP[name])
    status, out, err = _no_raw(cli_run, capsys, ["derive", "deep.arch"])
    assert "Traceback" not in err
    assert status in (0, 2), (status, err[-500:])
    if status == 2:
        assert err.startswith("error:")


def _limit_memory():  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_AS")
def test_power_tower_does_not_hang(tmp_path):
    """`9^9^9` has 370 million digits: reject it (or keep it symbolic) instead of computing it."""
    (tmp_path / "tower.arch").write_text("dim x = 9^9^9\ninput y: [x]\nz = gelu(y)\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "symcost", "derive", "tower.arch"], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=6, preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("symcost derive on `dim x = 9^9^9` did not finish in 6 s")
    assert proc.returncode in (0, 2), proc.stderr[-500:]
    assert "Traceback" not in proc.stderr


# ---- the source never evaluates text ---------------------------------------------------------------------------
BUILTINS = {"eval", "exec", "compile", "__import__"}  # as a bare name or builtins.X (model.eval() is torch's)
EVALUATING = {"sympify", "parse_expr", "lambdify", "parse_latex", "literal_eval"}  # under any name


def _called_name(func) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _forbidden_calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node.func)
        bare = isinstance(node.func, ast.Name) or (
            isinstance(node.func, ast.Attribute) and _called_name(node.func.value) == "builtins"
        )
        if name in EVALUATING or (name in BUILTINS and bare):
            found.append((node.lineno, name))
        elif name == "S" and node.args and not (
            isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, (int, float))
        ):
            found.append((node.lineno, "S(...)"))  # sympy.S("...") is sympify
        elif name in ("load", "loads") and isinstance(node.func, ast.Attribute) and _called_name(node.func.value) in (
            "pickle", "marshal", "yaml", "dill",
        ):
            found.append((node.lineno, f"{node.func.value.id}.{name}"))
    return found


def test_forbidden_call_detector_works():
    tree = ast.parse(
        "import sympy as sp\nsp.sympify(t)\neval(x)\nsp.S('1')\nre.compile('x')\nexec(y)\npickle.load(f)\n"
        "model.eval()\nsp.S(1)\nbuiltins.exec(z)\nparse_expr(t)\n"
    )
    found = [n for _, n in _forbidden_calls(tree)]
    assert found == ["sympify", "eval", "S(...)", "exec", "pickle.load", "exec", "parse_expr"]


def test_source_never_evaluates_text():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 8
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, name in _forbidden_calls(tree):
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}(")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                if any(m and (m.startswith("sympy.parsing") or m in ("pickle", "marshal", "dill")) for m in mods):
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: import {mods}")
    assert not bad, "\n".join(bad)


def test_grammar_cache_is_not_unpickled_from_a_shared_temp_dir():
    """Lark's cache=True pickles the parser to a predictable name in the system temp dir and unpickles it on the
    next start: anyone who can write there first runs code as the user. Cache privately or not at all."""
    from symcost.lang.parse import _parser

    cache = _parser().options.cache
    if cache is False or cache is None:
        return
    assert isinstance(cache, str), "cache=True writes .lark_cache_*.tmp into the shared temp dir"
    assert not Path(cache).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())


# ---- random input ---------------------------------------------------------------------------------------------------
KEYWORDS = ["model", "include", "dim", "tex", "dtype", "default", "option", "input", "param", "block", "dim", "bool",
            "repeat", "if", "else", "not", "return", "true", "false", "experts", "top", "fused", "training"]
PUNCT = ["=", ":", "[", "]", ",", "(", ")", "{", "}", "+", "-", "*", "/", "^", "\n", "#"]
NAMES = ["b", "s", "h", "x", "y", "w", "o", "f", "t", "L", "d", "bf16", "int64", "q", "z"]
OPS_USED = ["linear", "gelu", "add", "matmul", "split", "reshape", "concat", "layernorm", "rmsnorm", "transpose",
            "embedding", "split_heads", "merge_heads", "expand_heads", "dropout", "cross_entropy", "slice", "arange",
            "softmax", "mul", "rope", "bias", "weight", "axis", "out", "enabled", "min", "max", "cache", "topk",
            "parallel", "column", "row", "causal", "window", "tanh", "sigmoid"]
LITERALS = ["0", "1", "2", "3", "0.5", '"doc"', '"blocks/x.arch"', "'", "$", "__import__"]
TOKENS = KEYWORDS + PUNCT + NAMES + OPS_USED + LITERALS
PRELUDE = "dim b\ndim s\ndim h\noption o = true\ninput x: [b, s, h]\ninput e: []\nparam w: [h, h]\n"
SETTINGS = settings(  # deterministic, and writes nothing (no example database, no .hypothesis/patches)
    max_examples=200, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)


def _parse_and_build(text: str) -> None:
    try:
        module = Module("fuzz.arch", parse_text(text, "fuzz.arch"))
        derive(build(module))
        # the serving and parallel paths too: decode shapes, sharding, recomputation, fused traffic
        derive(build(module, phase="decode"), tp=2, sp=True, recompute="full", flash=True, causal="half")
    except SymcostError as e:
        assert isinstance(e.message, str) and str(e).startswith("error: ")


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_never_raises_anything_else(text):
    _parse_and_build(text)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_random_token_soup_never_raises_anything_else(tokens):
    _parse_and_build(" ".join(tokens))


def _statement():
    name = st.sampled_from(["x", "y", "z", "w", "e", "u", "h", "o"])
    arg = st.one_of(name, st.sampled_from(["h", "2", "3 * h", "[b, s, h]", "[h, h]", "true", "false", "0", "-1",
                                           "h / 2", "o", "[]", "1.5"]))
    kwarg = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["bias", "weight", "axis", "out", "enabled",
                                                                  "transpose_b", "heads"]), arg)
    call = st.builds(lambda op, args: f"{op}({', '.join(args)})", st.sampled_from(OPS_USED[:20]),
                     st.lists(st.one_of(arg, kwarg), max_size=4))
    targets = st.lists(name, min_size=1, max_size=3).map(", ".join)
    assign = st.builds(lambda t, c: f"{t} = {c}", targets, call)
    return st.one_of(assign, st.lists(st.sampled_from(TOKENS), max_size=8).map(" ".join))


@SETTINGS
@given(st.lists(_statement(), max_size=8))
def test_random_statements_after_a_valid_prelude(stmts):
    """Mostly well-formed calls with wrong ranks, kinds and arities reach the op rules and the builder."""
    _parse_and_build(PRELUDE + "\n".join(stmts) + "\n")
