"""Docs cannot drift: every command output shown in README.md and docs/ is what the tool prints now."""
from __future__ import annotations

import importlib.util

import pytest

from helpers import ROOT


def _tool():
    spec = importlib.util.spec_from_file_location("docs_update", ROOT / "docs" / "update.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


@pytest.mark.parametrize("name", TOOL.FILES)
def test_shown_outputs_are_current(name):
    _, stale = TOOL.update(ROOT / name)
    assert not stale, f"{name} shows stale output for: {stale}; regenerate with `python3 docs/update.py`"


def test_zoo_page_is_current():
    _, stale = TOOL.zoo()
    assert not stale, "docs/zoo.md is stale: regenerate with `python3 docs/update.py`"


def test_the_tool_notices_a_change(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- output: ops linear -->\n```text\n$ symcost ops linear\nnot what it prints\n```\n")
    text, stale = TOOL.update(doc)
    assert stale == ["ops linear"] and "y = x·Wᵀ" in text


def test_line_selection():
    assert TOOL.select("a\nb\nc\nd\ne", "1-2,-1-") == ["a", "b", "…", "e"]
    assert TOOL.select("a\nb\nc", "2") == ["…", "b", "…"]


def test_api_examples_run():
    """docs/api.md's examples are doctests: what they show is what the library returns."""
    import doctest

    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


def test_an_error_block_shows_standard_error(tmp_path, monkeypatch):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- output: ops nosuchop ; expect=2 -->\n```text\nstale\n```\n")
    text, stale = TOOL.update(doc)
    assert stale == ["ops nosuchop ; expect=2"] and "error: " in text and "nosuchop" in text
    doc.write_text("<!-- output: ops linear ; expect=2 -->\n```text\nstale\n```\n")
    with pytest.raises(RuntimeError, match="status 2"):
        TOOL.update(doc)
