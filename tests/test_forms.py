"""The printed closed forms read back to the same value: parentheses, min/max, floors and powers survive printing."""
from __future__ import annotations

import re
from fractions import Fraction

import sympy as sp
from hypothesis import given, settings, strategies as st

from symcost.analysis import rules
from symcost.present.forms import Forms
from tests.helpers import sym

NAMES = ["b", "s", "h", "a", "c", "w"]
SYMS = [sym(n) for n in NAMES]
FORMS = Forms(SYMS)
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def _as_rule(text: str) -> str:
    """The Unicode form in the mapping rules' syntax (`*`, `-`, `^`, floor, ceil), which symcost parses itself."""
    text = text.replace("·", "*").replace("−", "-").replace("⌊", "floor(").replace("⌋", ")")
    text = text.replace("⌈", "ceil(").replace("⌉", ")")
    return re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+", lambda m: "^" + m.group(0).translate(_SUPERSCRIPT), text)


def _read_back(text: str, values: dict) -> Fraction:
    tree = rules.parse(_as_rule(text), "<form>")
    return Fraction(rules.evaluate(tree, rules.Fields({str(k): v for k, v in values.items()})))


def _atoms():
    small = st.integers(min_value=1, max_value=5)
    sym_ = st.sampled_from(SYMS)
    linear = st.builds(lambda x, k, y: x + k * y, sym_, small, sym_)
    shifted = st.builds(lambda x, k: x - k, sym_, small)
    return st.one_of(
        sym_,
        linear,
        st.builds(lambda x, y: sp.Min(x, y), sym_, st.one_of(sym_, shifted, small)),
        st.builds(lambda x, y: sp.Max(x, y), sym_, shifted),
        st.builds(lambda x: sp.floor(x / 2), linear),
        st.builds(lambda x: sp.ceiling(x / 3), sym_),
        st.builds(lambda x, e: x**e, linear, st.integers(min_value=2, max_value=3)),
    )


def _expressions():
    term = st.builds(lambda c, fs: c * sp.Mul(*fs), st.integers(min_value=-7, max_value=9).filter(bool),
                     st.lists(_atoms(), min_size=1, max_size=3))
    quotient = st.builds(lambda t, x: t / x, term, st.one_of(st.sampled_from(SYMS), st.builds(lambda x: x + 1, st.sampled_from(SYMS))))
    return st.builds(lambda ts: sp.Add(*ts), st.lists(st.one_of(term, quotient), min_size=1, max_size=4))


@settings(max_examples=300, deadline=None)
@given(_expressions(), st.lists(st.integers(min_value=1, max_value=40), min_size=len(NAMES), max_size=len(NAMES)))
def test_text_reads_back_to_the_same_value(expr, numbers):
    values = dict(zip(SYMS, numbers))
    exact = sp.Rational(expr.xreplace(values))
    assert _read_back(FORMS.text(expr), values) == Fraction(int(exact.p), int(exact.q)), FORMS.text(expr)


def test_golden_forms():
    b, s, h, a, c, w = SYMS
    assert FORMS.text(b * h * (a + 2)) == "b·h·(a + 2)"
    assert FORMS.text(3 * (s + 1) ** 2 / (h + 1)) == "3·(s + 1)²/(h + 1)"
    assert FORMS.text(4 * b * h * sp.Min(c, w - 1) / a) == "4·b·h·min(c, w − 1)/a"
    assert FORMS.text(16384 * b * sp.Min(c, 4096)) == "16384·b·min(c, 4096)"
    assert FORMS.text(b * sp.floor((s + 1) / 2)) == "b·⌊s/2 + 1/2⌋"
    assert FORMS.latex(4 * b * sp.Min(c, w)) == r"4 b \min\left(c, w\right)"
    assert FORMS.latex(h * (a + 2)) == r"h \left(a + 2\right)"
    assert FORMS.latex(sp.ceiling(s / 3)) == r"\left\lceil \frac{s}{3} \right\rceil"
