"""The unparser: parse(unparse(tree)) == tree for every shipped spec and for generated trees (strategies derived
from the syntax dataclasses, the grammar's keywords and the op registry: tests/fuzz_syntax.py), with the fewest
parentheses."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_syntax import syntax_strategies
from symcost.lang.parse import parse_expression, parse_text
from symcost.lang.unparse import unparse, unparse_expr

from helpers import ROOT

FILES = sorted((ROOT / "specs").rglob("*.arch")) + sorted((ROOT / "tests" / "data" / "specs").glob("*.arch")) + sorted(
    (ROOT / "docs" / "examples").glob("*.arch"))
EXPRS, STMTS, ITEMS = syntax_strategies()
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_round_trips(path):
    tree = parse_text(path.read_text(encoding="utf-8"), str(path))
    text = unparse(tree)
    assert parse_text(text, "unparsed.arch") == tree
    assert unparse(parse_text(text, "again.arch")) == text  # canonical: a fixed point


@settings(max_examples=300, **SETTINGS)
@given(EXPRS)
def test_generated_expressions_round_trip(expr):
    text = unparse_expr(expr)
    assert parse_expression(text) == expr, text


@settings(max_examples=150, **SETTINGS)
@given(ITEMS)
def test_generated_specs_round_trip(items):
    text = unparse(items)
    assert parse_text(text, "generated.arch") == items, text


@pytest.mark.parametrize("text", [
    "(a + b) * c", "a - (b - c)", "a - b - c", "a / (b * c)", "a^b^c", "(a^b)^c", "(-a)^2", "-a^2", "2^-x",
    "a * -b", "not (a and b)", "not a and b", "(a or b) and c", "a or b and c", "(a < b) == c", "-(a + b)",
    "if(a < b, min(a, b), [a, 2 * b])", 'x == "gpt-2" or y != null', "floor((L + 2 * p - 1) / s) + 1",
])
def test_canonical_expressions_keep_only_needed_parentheses(text):
    assert unparse_expr(parse_expression(text)) == text


def test_unparse_writes_every_construct():
    text = ('dim b "batch"\ndim d = h / a tex "d_h"\noption tied = true\ninput x: fp32[b, 3, H, H] nograd "pixels"\n'
            "param pos: [1, n, h] frozen\nblock f(x: [b, s, h], k: dim, on: bool, y) {\n  z = linear(x, k, bias=on)\n"
            "  return z\n}\nrepeat L pattern [local, full] {\n  if local and not tied {\n    x = f(x, 2, true, x)\n"
            "  } else {\n    x = f(x, if(full, 4, 2), false, x)\n  }\n}\n")
    assert unparse(parse_text(text, "t.arch")) == text
