"""Every kind of error symcost reports: a SymcostError with a place, a message naming the culprit, the source
line and a caret under the right column; and on the command line exit status 2 with `error:` and no traceback.

Each case writes a small spec into a temporary directory (which becomes the working directory, so locations
read `t.arch:5:5`), then loads, builds and derives it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from symcost import cli
from symcost.cost.accounting import derive
from symcost.errors import clean, SymcostError
from symcost.analysis.evaluate import Evaluator, parse_assignments
from symcost.model.builder import build
from symcost.ops.registry import OPS
from symcost.lang.parse import load

ROOT = Path(__file__).resolve().parents[1]
GPT2 = ROOT / "specs" / "gpt2.arch"
GPT2_FREE = {"a": 12, "b": 1, "s": 1024, "h": 768, "L": 12, "V": 50257, "P": 1024}

HEAD = "dim b\ndim s\ndim h\n"  # lines 1-3 of most cases


# ---- helpers ----------------------------------------------------------------------------------------------------
@pytest.fixture
def spec(tmp_path, monkeypatch):
    """Write spec files into tmp_path (the working directory for the test); returns the relative name."""
    monkeypatch.chdir(tmp_path)

    def write(text: str, name: str = "t.arch") -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return name

    return write


def run(path, **kwargs):
    return derive(build(load(path), **kwargs))


def expect_error(path, **kwargs) -> SymcostError:
    with pytest.raises(SymcostError) as info:
        run(path, **kwargs)
    return info.value


def caret_columns(rendered: str, source: str) -> set[int]:
    """The 1-based columns of `source` that the rendered error underlines with '^'."""
    lines = rendered.split("\n")
    for i, line in enumerate(lines[:-1]):
        if line.endswith(" | " + source) or (source == "" and line.endswith(" |")):
            start = len(line) - len(source)
            below = lines[i + 1]
            return {j - start + 1 for j, ch in enumerate(below) if ch == "^" and j >= start}
    raise AssertionError(f"the source line {source!r} is not quoted in:\n{rendered}")


def check_located(err: SymcostError, text: str, file: str, at, *, exact: bool = True) -> None:
    """`at` is (line, column) or a list of acceptable (line, column) pairs.

    exact=True: loc.column must equal the column. exact=False: the loc may start earlier (a statement), but the
    caret drawn under the quoted line must still be under that column."""
    assert err.loc is not None, f"the error has no location:\n{err}"
    choices = at if isinstance(at, list) else [at]
    rendered = str(err)
    problems = []
    for line, col in choices:
        if err.loc.file != file or err.loc.line != line:
            problems.append(f"expected {file}:{line}, got {err.loc.file}:{err.loc.line}")
            continue
        if exact and err.loc.column != col:
            problems.append(f"expected column {col}, got {err.loc.column}")
            continue
        source = clean(text.split("\n")[line - 1])  # control characters are shown as U+FFFD, one column each
        cols = caret_columns(rendered, source)
        if col not in cols:
            problems.append(f"no caret under column {col} (carets at {sorted(cols)})")
            continue
        return
    raise AssertionError("; ".join(problems) + f"\n{rendered}")


# ---- one case per error kind located in a spec -------------------------------------------------------------------
@dataclass
class Case:
    id: str
    text: str
    at: object  # (line, column) or a list of acceptable ones
    says: tuple  # fragments the message must contain (the offending value)
    hint: str | None = None  # a fragment the hint must contain
    exact: bool = True
    kwargs: dict = field(default_factory=dict)


BLOCK_F = "block f(x) {\n  y = gelu(x)\n  return y\n}\n"  # lines 4-7 after HEAD

CASES = [
    # syntax
    Case("syntax-unexpected-token", HEAD + "input x: [b, s h]\n", (4, 16), ("'h'",)),
    Case("syntax-unexpected-character", HEAD + "input x: [b, s, h] $\n", (4, 20), ("'$'",)),
    Case("syntax-unexpected-character-quote", HEAD + "input x: [b, s, h] 'doc'\n", (4, 20), ("\"'\"",)),
    # at the end of the input, the caret goes just past the last character
    Case("syntax-unexpected-eof", HEAD + "input x: [b, s,", (4, 16), ("end of file",)),
    Case("syntax-unexpected-eof-newline", HEAD + "input x: [b, s,\n", (4, 16), ("end of file",)),
    Case("syntax-unexpected-eof-after-keyword", "dim", (1, 4), ("end of file",)),
    Case("syntax-positional-after-keyword", HEAD + "input x: [b, s, h]\ny = linear(out=h, x)\n", (5, 12), ("positional",)),
    # unknown names
    Case("unknown-op", HEAD + "input x: [b, s, h]\ny = lineer(x, h)\n", (5, 5), ("lineer",), "'linear'"),
    Case("unknown-block-argument", HEAD + BLOCK_F + "input x: [b, s, h]\ny = f(x, foo=x)\n", (9, 10), ("foo",)),
    Case("unknown-dimension", HEAD + "input x: [b, s, hh]\n", (4, 17), ("hh",), "'h'"),
    Case("unknown-dimension-in-definition", "dim h\ndim d = h / aa\n", (2, 13), ("aa",)),
    Case("unknown-tensor", HEAD + "input xin: [b, s, h]\ny = gelu(xim)\n", (5, 10), ("xim",), "'xin'"),
    Case("unknown-dtype", HEAD + "input x: fp33[b, s, h]\n", (4, 10), ("fp33",), "'fp32'"),
    Case("unknown-default-dtype", "default dtype bf61\n", (1, 15), ("bf61",), "'bf16'", exact=False),
    Case("unknown-option-in-if", HEAD + "option bias = true\ninput x: [b, s, h]\nif bais {\n  y = gelu(x)\n}\n",
         (6, 4), ("bais",), "'bias'"),
    Case("unknown-option-in-if-not", HEAD + "option bias = true\ninput x: [b, s, h]\nif not bais {\n  y = gelu(x)\n}\n",
         (6, 8), ("bais",), "'bias'"),
    Case("unknown-option-as-argument", HEAD + "option bias = true\ninput x: [b, s, h]\ny = linear(x, h, bias=bais)\n",
         (6, 23), ("bais",), "'bias'"),
    Case("unknown-function", "dim h\ndim d = sqrt(h)\n", (2, 9), ("sqrt",)),
    # shapes
    Case("shape-linear-weight", HEAD + "input x: [b, s, h]\nparam w: [s, b]\ny = linear(x, weight=w)\n", (6, 5),
         ("[b, s, h]", "[s, b]")),
    Case("shape-matmul", HEAD + "input x: [b, s, h]\ninput z: [b, s, b]\ny = matmul(x, z)\n", (6, 5),
         ("[b, s, h]", "[b, s, b]")),
    Case("shape-add-broadcast", HEAD + "input x: [b, s, h]\ninput z: [b, h, s]\ny = add(x, z)\n", (6, 5),
         ("[b, s, h]", "[b, h, s]")),
    Case("shape-reshape-count", HEAD + "input x: [b, s, h]\ny = reshape(x, [b, s])\n", (5, 5), ("[b, s, h]", "[b, s]")),
    Case("shape-split-sizes", HEAD + "input x: [b, s, h]\ny, z = split(x, [h, s])\n", (5, 8), ("[h, s]",)),
    Case("shape-block-annotation", HEAD + "block f(x: [b, s, h]) {\n  y = gelu(x)\n  return y\n}\n"
         "input x: [b, h, s]\ny = f(x)\n", (9, 7), ("[b, s, h]", "[b, h, s]")),
    Case("shape-linear-on-scalar", HEAD + "input x: []\ny = linear(x, h)\n", (5, 5), ("linear",)),
    Case("shape-layernorm-on-scalar", HEAD + "input x: []\ny = layernorm(x)\n", (5, 5), ("layernorm",)),
    Case("shape-rmsnorm-on-scalar", HEAD + "input x: []\ny = rmsnorm(x)\n", (5, 5), ("rmsnorm",)),
    Case("shape-concat-one-tensor", HEAD + "input x: [b, s, h]\ny = concat(x)\n", (5, 5), ("concat",)),
    Case("shape-repeat-changes-carried", HEAD + "dim L\ninput x: [b, s, h]\nrepeat L {\n  x = reshape(x, [b, h, s])\n}\n",
         [(6, 1), (7, 3)], ("'x'", "[b, s, h]", "[b, h, s]")),
    Case("repeat-count-not-positive", HEAD + "input x: [b]\nrepeat 0 {\n  x = gelu(x)\n}\n", (5, 8), ("0",)),
    # arity
    Case("arity-too-many-positional", HEAD + "input x: [b, s, h]\ny = gelu(x, x)\n", (5, 13), ("gelu", "2")),
    Case("arity-missing-argument", HEAD + "input x: [b, s, h]\ny = split_heads(x)\n", (5, 5), ("heads",)),
    Case("arity-unknown-keyword", HEAD + "input x: [b, s, h]\ny = linear(x, h, biass=false)\n", (5, 18), ("biass",), "'bias'"),
    Case("arity-given-twice", HEAD + "input x: [b, s, h]\ny = linear(x, h, out=h)\n", (5, 18), ("out",)),
    Case("arity-block-too-many", HEAD + BLOCK_F + "input x: [b, s, h]\ny = f(x, x)\n", [(9, 5), (9, 10)], ("'f'", "2")),
    Case("arity-block-missing", HEAD + "block f(x, z) {\n  return x\n}\ninput x: [b]\ny = f(x)\n", (8, 5), ("'z'",)),
    Case("arity-two-names-one-output", HEAD + "input x: [b, s, h]\ny, z = gelu(x)\n", (5, 1), ("gelu", "2")),
    # duplicate names
    Case("duplicate-dim", HEAD + "dim h\n", (4, 5), ("'h'",), exact=False),
    Case("duplicate-tensor", HEAD + "input x: [b, s, h]\ny = gelu(x)\ny = relu(x)\n", (6, 1), ("'y'",)),
    Case("duplicate-tensor-named-like-dim", HEAD + "input x: [b, s, h]\nh = gelu(x)\n", (5, 1), ("'h'",)),
    Case("duplicate-block-named-like-op", "block gelu(x) {\n  return x\n}\n", (1, 7), ("gelu",), exact=False),
    Case("duplicate-block", "block f(x) {\n  return x\n}\nblock f(x) {\n  return x\n}\n", (4, 7), ("'f'",), exact=False),
    Case("duplicate-option", "option o = true\noption o = false\n", (2, 8), ("'o'",), exact=False),
    Case("duplicate-input", HEAD + "input x: [b]\ninput x: [s]\n", (5, 7), ("'x'",), exact=False),
    Case("duplicate-input-and-param", HEAD + "input x: [b]\nparam x: [s]\n", (5, 7), ("'x'",), exact=False),
    Case("duplicate-block-parameter", HEAD + "block f(x, x) {\n  return x\n}\ninput y: [b]\nz = f(y, y)\n",
         (4, 12), ("'x'",), exact=False),
    # blocks
    Case("block-without-return", HEAD + BLOCK_F.replace("  return y\n", "") + "input x: [b, s, h]\ny = f(x)\n",
         (4, 7), ("'f'", "return")),
    Case("block-without-return-never-called", HEAD + BLOCK_F.replace("  return y\n", ""), (4, 7), ("'f'", "return")),
    Case("block-calls-itself", HEAD + "block f(x) {\n  y = f(x)\n  return y\n}\ninput x: [b]\ny = f(x)\n", (5, 7), ("'f'",)),
    Case("block-calls-itself-through-another",
         HEAD + "block f(x) {\n  y = g(x)\n  return y\n}\nblock g(x) {\n  y = f(x)\n  return y\n}\ninput x: [b]\ny = f(x)\n",
         (9, 7), ("'f'", "g")),
    Case("return-outside-block", HEAD + "input x: [b, s, h]\nreturn x\n", (5, 1), ("return",)),
    # the constructs of convolutional, positional and conditional specs
    Case("conv-kernel-does-not-fit", HEAD + "input x: [b, 2, 3]\ny = conv1d(x, 4, 5)\n", (5, 5), ("conv1d", "does not fit")),
    Case("conv-groups-do-not-divide", HEAD + "input x: [b, 8, s]\ny = conv1d(x, 6, 3, groups=3)\n", (5, 5),
         ("3 groups", "8 input channels")),
    Case("conv-not-channels-first", HEAD + "input x: [b, s]\ny = conv2d(x, h, 3)\n", (5, 5), ("conv2d", "[b, s]")),
    Case("conv-kernel-list-length", HEAD + "input x: [b, h, s, s]\ny = conv2d(x, h, [3, 3, 3])\n", (5, 5),
         ("kernel takes 1 or 2 values",)),
    Case("pool-padding-over-half", HEAD + "input x: [b, h, s, s]\ny = max_pool2d(x, 3, padding=2)\n", (5, 5),
         ("padding 2", "kernel 3")),
    Case("expand-does-not-broadcast", HEAD + "input x: [b, s]\ny = expand(x, [b, h])\n", (5, 5), ("[b, s]", "[b, h]")),
    Case("nograd-on-a-parameter", HEAD + "param w: [b, s] nograd\n", (4, 17), ("'nograd'",), "frozen"),
    Case("pattern-kind-twice", HEAD + "dim L\ninput x: [b]\nrepeat L pattern [u, w, u] {\n  x = gelu(x)\n}\n", (6, 25),
         ("'u'", "twice")),
    Case("pattern-count-not-a-multiple", HEAD + "input x: [b]\nrepeat 3 pattern [u, w] {\n  x = gelu(x)\n}\n", (5, 8),
         ("multiple of 2", "3")),
    Case("repeat-count-fraction", HEAD + "input x: [b]\nrepeat 3 / 2 {\n  x = gelu(x)\n}\n", (5, 8), ("3/2",)),
    Case("if-undecidable-comparison", HEAD + "input x: [b]\nif h > s {\n  y = gelu(x)\n}\n", (5, 4), ("h > s",),
         "option"),
    Case("if-dimension-as-condition", HEAD + "input x: [b]\nif h {\n  y = gelu(x)\n}\n", (5, 4), ("'h'", "boolean")),
    Case("if-number-as-condition", HEAD + "input x: [b]\nif 2 {\n  y = gelu(x)\n}\n", (5, 4), ("a number",)),
    Case("if-compare-boolean-with-size", HEAD + "option o = true\ninput x: [b]\nif o == h {\n  y = gelu(x)\n}\n", (6, 4),
         ("both sides",)),
    Case("if-order-booleans", HEAD + "option o = true\ninput x: [b]\nif o < true {\n  y = gelu(x)\n}\n", (6, 4),
         ("'<'",)),
    Case("if-unknown-option-in-and", HEAD + "option bias = true\ninput x: [b]\nif bias and bais {\n  y = gelu(x)\n}\n",
         (6, 13), ("bais",), "'bias'"),
    Case("string-as-dimension", HEAD + 'input x: [b, "s"]\n', (4, 14), ("a string",)),
    Case("null-as-dimension", HEAD + "input x: [b, null]\n", (4, 14), ("null",)),
    Case("comparison-as-dimension", HEAD + "input x: [b, s < h]\n", (4, 14), ("a comparison",)),
    Case("floor-takes-one-argument", "dim h\ndim d = floor(h, 2)\n", (2, 9), ("floor",)),
    Case("dim-depends-on-option", "option big = true\ndim h\ndim w = if(big, 2 * h, h)\n", (3, 12), ("'w'", "'big'")),
    Case("shadowed-dimension-used-as-size", HEAD + "dim k\nblock f(x) {\n  k = gelu(x)\n  y = linear(k, k)\n  return y\n}\n"
         "input x: [b, s, h]\nz = f(x)\n", (7, 17), ("'k'", "tensor"), "shadows"),
    # includes
    Case("missing-include", 'dim h\ninclude "nope.arch"\n', (2, 9), ("nope.arch",), exact=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_spec_error(spec, case):
    path = spec(case.text)
    err = expect_error(path, **case.kwargs)
    for fragment in case.says:
        assert fragment in err.message, f"{fragment!r} not in {err.message!r}"
    if case.hint is not None:
        assert err.hint and case.hint in err.hint, f"hint {err.hint!r} lacks {case.hint!r}"
    check_located(err, case.text, "t.arch", case.at, exact=case.exact)
    assert str(err).startswith("error: ")


def test_error_inside_included_file_points_into_that_file(spec):
    blk = "block g(x) {\n  y = gelu(x)\n  z = lineer(y)\n  return z\n}\n"
    spec(blk, "blocks/blk.arch")
    main = HEAD + 'include "blocks/blk.arch"\ninput x: [b, s, h]\ny = g(x)\n'
    err = expect_error(spec(main))
    assert "lineer" in err.message
    check_located(err, blk, "blocks/blk.arch", (3, 7))


@pytest.mark.parametrize(
    "sep", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e"], ids=lambda c: f"U+{ord(c):04X}"
)
def test_a_line_separator_or_control_character_in_a_string_is_refused_where_it_is(spec, sep):
    """A string may not carry a line separator or a control character (it would reach a terminal or a
    document); the error points at it, and only '\\n' ends a line when the line is quoted."""
    text = f'dim h "a{sep}b"\ninput x: [q]\n'
    err = expect_error(spec(text))
    assert "control character" in err.message
    check_located(err, text, "t.arch", (1, 9))


def test_quoted_line_with_form_feed_as_whitespace(spec):
    text = "dim h\x0cdim h\n"
    err = expect_error(spec(text))
    check_located(err, text, "t.arch", (1, 11), exact=False)


def test_quoted_line_with_crlf_line_endings(spec):
    text = "dim h\r\ninput x: [q]\r\n"
    err = expect_error(spec(text))
    check_located(err, text.replace("\r\n", "\n"), "t.arch", (2, 11))


def test_missing_spec_file(spec):
    with pytest.raises(SymcostError) as info:
        load("nope.arch")
    assert "nope.arch" in info.value.message
    assert str(info.value).startswith("error: ")


def test_cyclic_include_shows_the_cycle(spec):
    spec('dim b\ninclude "b.arch"\n', "a.arch")
    spec('dim c\ninclude "a.arch"\n', "b.arch")
    with pytest.raises(SymcostError) as info:
        load("a.arch")
    err = info.value
    assert "a.arch -> b.arch -> a.arch" in err.message
    check_located(err, 'dim c\ninclude "a.arch"\n', "b.arch", (2, 9), exact=False)


def test_self_include_is_a_cycle(spec):
    spec('dim b\ninclude "a.arch"\n', "a.arch")
    with pytest.raises(SymcostError) as info:
        load("a.arch")
    assert "a.arch -> a.arch" in info.value.message
    assert info.value.loc is not None and info.value.loc.line == 2


# ---- errors about what the command line asks for (no place in a spec) ------------------------------------------
def gpt2_env():
    return build(load(GPT2)).env


def test_derived_dim_not_an_integer_evaluator():
    values = {**GPT2_FREE, "h": 10, "a": 3}
    with pytest.raises(SymcostError) as info:
        Evaluator(gpt2_env(), values)
    assert "d" in info.value.message and "10/3" in info.value.message


def test_derived_dim_not_an_integer_concrete_build():
    values = {**GPT2_FREE, "h": 10, "a": 3}
    with pytest.raises(SymcostError) as info:
        build(load(GPT2), values=values)
    assert "10/3" in info.value.message


@pytest.mark.parametrize(
    "item, says, hint",
    [
        ("d=64", ("'d'", "derived"), None),
        ("hh=3", ("'hh'",), "'h'"),
        ("h=abc", ("'abc'",), None),
        ("h=1.5", ("'1.5'",), None),
        ("h=0", ("0",), None),
        ("h=-3", ("-3",), None),
        ("h=", ("h=",), None),
        ("h", ("'h'",), None),
        ("tied=maybe", ("'maybe'",), None),
    ],
)
def test_bad_set_item(item, says, hint):
    with pytest.raises(SymcostError) as info:
        parse_assignments([item], gpt2_env())
    for fragment in says:
        assert fragment in info.value.message
    if hint:
        assert info.value.hint and hint in info.value.hint


def test_set_of_derived_dim_in_concrete_build():
    with pytest.raises(SymcostError) as info:
        build(load(GPT2), values={**GPT2_FREE, "d": 64})
    assert "'d'" in info.value.message and "derived" in info.value.message


@pytest.mark.parametrize("keep", ["zz", "h"])
def test_keep_must_name_a_derived_dim(keep):
    graph = build(load(GPT2))
    with pytest.raises(SymcostError) as info:
        derive(graph, "fma", (keep,))
    assert f"'{keep}'" in info.value.message


def test_unknown_dtype_override():
    with pytest.raises(SymcostError) as info:
        build(load(GPT2), dtype="fp33")
    assert "fp33" in info.value.message
    assert info.value.hint and "'fp32'" in info.value.hint


def test_unknown_option_override():
    with pytest.raises(SymcostError) as info:
        build(load(GPT2), options={"tide": False})
    assert "tide" in info.value.message
    assert info.value.hint and "'tied'" in info.value.hint


# ---- the command line: exit status 2, `error:` on stderr, no traceback -------------------------------------------
CLI_CASES = {
    "syntax": (HEAD + "input x: [b, s h]\n", [], ("t.arch:4:16", "^")),
    "unknown-op": (HEAD + "input x: [b, s, h]\ny = lineer(x, h)\n", [], ("t.arch:5:5", "lineer", "'linear'", "^")),
    "shape": (HEAD + "input x: [b, s, h]\ninput z: [b, h, s]\ny = add(x, z)\n", [], ("t.arch:6:5", "[b, h, s]")),
    "missing-spec": (None, [], ("nope.arch",)),
    "derived-not-integer": ("gpt2", ["--set", "h=10", "a=3"], ("10/3",)),
    "set-derived": ("gpt2", ["--set", "d=64"], ("'d'", "derived")),
    "set-unknown": ("gpt2", ["--set", "hh=64"], ("'hh'",)),
    "set-not-integer": ("gpt2", ["--set", "h=7.5"], ("'7.5'",)),
    "keep-unknown": ("gpt2", ["--keep", "zz"], ("'zz'",)),
    "dtype-unknown": ("gpt2", ["--dtype", "fp33"], ("fp33", "'fp32'")),
    "scalar-linear": (HEAD + "input x: []\ny = linear(x, h)\n", [], ("t.arch:5",)),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_reports_error_with_status_2(spec, capsys, name):
    text, extra, says = CLI_CASES[name]
    if text is None:
        path = "nope.arch"
    elif text == "gpt2":
        path = str(GPT2)
    else:
        path = spec(text)
    status = cli.main(["derive", path, *extra])
    out, err = capsys.readouterr()
    assert status == 2
    assert err.startswith("error:"), err
    assert "Traceback" not in err
    assert out == ""
    for fragment in says:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_cli_unknown_op_name(capsys):
    assert cli.main(["ops", "lineer"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error:") and "lineer" in err and "'linear'" in err
    assert "Traceback" not in err


# ---- no op rule lets a raw Python exception escape, whatever the ranks and arguments ---------------------------
SHAPES = ["[]", "[h]", "[s, h]", "[b, s, h]"]
ARGS = ["", "x", "x, x", "x, h", "x, 2", "x, 0", "x, [h]", "x, x, x", "x, h, h", "x, weight=x", "x, 1, 0", "x, 0, axis=0"]


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_never_raises_a_raw_exception(spec, op):
    failures = []
    for shape in SHAPES:
        for args in ARGS:
            text = HEAD + f"input x: {shape}\ny = {op}({args})\n"
            try:
                run(spec(text))
            except SymcostError as e:
                assert e.loc is not None, f"{op}({args}) on {shape}: no location: {e}"
            except Exception as e:  # noqa: BLE001 - the point of the test
                failures.append(f"{op}({args}) on x: {shape}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)
