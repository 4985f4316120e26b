"""The package's structure rules: symbols made in one place, regions as data, op names tested only by the ops.

Also: small modules and functions, each module saying in one line what it does."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import symcost
from symcost.model.builder import build
from symcost.model.graph import Kind, Region
from symcost.lang.parse import load
from symcost.ops.registry import OPS

from helpers import SPECS

PACKAGE = Path(symcost.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
SYMBOL_MAKERS = {"Symbol", "Dummy", "Wild", "symbols", "numbered_symbols", "var"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _called(node: ast.Call) -> str | None:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _symbol_makers(tree: ast.Module) -> list[int]:
    """Lines that make a SymPy symbol: Symbol(…), Dummy(…), symbols(…), …, or cls=Dummy handed to a maker."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (_called(node) in SYMBOL_MAKERS or any(
                k.arg == "cls" and isinstance(k.value, ast.Attribute) and k.value.attr in SYMBOL_MAKERS
                for k in node.keywords)):
            lines.append(node.lineno)
    return lines


def _op_name_tests(tree: ast.Module) -> list[int]:
    """Lines comparing an `.op` or `.name` attribute with the name of a registered op."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if not any(isinstance(x, ast.Attribute) and x.attr in ("op", "name") for x in operands):
            continue
        for x in operands:
            items = x.elts if isinstance(x, (ast.Tuple, ast.List, ast.Set)) else [x]
            if any(isinstance(i, ast.Constant) and i.value in OPS for i in items):
                lines.append(node.lineno)
    return lines


def test_the_checks_find_what_they_look_for():
    tree = ast.parse("import sympy as sp\nx = sp.Symbol('x')\ny = sp.Dummy()\nz = sp.numbered_symbols('t', cls=sp.Dummy)\n"
                     "if node.op == 'linear': pass\nif call.name in ('softmax', 'x'): pass\nif a.quantize == 'linear': pass\n")
    assert _symbol_makers(tree) == [2, 3, 4]
    assert _op_name_tests(tree) == [5, 6]


def test_symbols_are_made_only_in_dims():
    dims = PACKAGE / "model" / "dims.py"
    assert _symbol_makers(_tree(dims)), "model/dims.py makes the symbols"
    bad = [f"{_name(p)}:{line}" for p in SOURCES if p != dims for line in _symbol_makers(_tree(p))]
    assert not bad, "symbols made outside model/dims.py: " + ", ".join(bad)


def test_only_the_ops_test_op_names():
    bad = [f"{_name(p)}:{line}" for p in SOURCES if p.parent.name != "ops" for line in _op_name_tests(_tree(p))]
    assert not bad, "an op's name tested outside symcost/ops (give its Rule a trait): " + ", ".join(bad)


def test_every_module_opens_with_a_one_line_summary():
    bad = []
    for p in SOURCES:
        doc = ast.get_docstring(_tree(p))
        if not doc or "\n" in doc.split("\n\n")[0]:
            bad.append(_name(p))
    assert not bad, "modules without a one-line docstring summary: " + ", ".join(bad)


def test_modules_and_functions_are_small():
    bad = []
    for p in SOURCES:
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            bad.append(f"{_name(p)}: {text.count(chr(10))} lines")
        for node in ast.walk(_tree(p)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    bad.append(f"{_name(p)}:{node.lineno} {node.name}: {n} lines")
    assert not bad, "over the size limits: " + "; ".join(bad)


@pytest.mark.parametrize("spec", ["mixtral.arch", "gpt2.arch", "falcon.arch"])
def test_regions_and_blocks_are_data(spec):
    graph = build(load(SPECS / spec))
    tags = [t for node in graph.ops for t in node.tags] + [t for s in graph.storages.values() for t in s.tags]
    assert tags and all(isinstance(t, Region) and isinstance(t.kind, Kind) for t in tags)
    assert any(t.kind is Kind.REPEAT for t in tags)
    paths = {b.path for b in graph.blocks}
    for node in graph.ops:
        assert all(p in paths for p in node.blocks)
        assert node.path == (node.scope + "/" if node.scope else "") + node.path.rsplit("/", 1)[-1]
        if node.blocks:  # the innermost block instance encloses the op
            assert node.path.startswith(node.blocks[-1] + "/")
        for p in node.params:
            assert p.path == (node.scope + "/" if node.scope else "") + p.name
    for b in graph.blocks:
        assert b.path == (b.scope + "/" if b.scope else "") + b.name
