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


def test_an_empty_block_is_filled_and_the_next_left_alone(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- output: ops linear -->\n```text\n```\n\ntext\n\n```text\nkept\n```\n")
    text, stale = TOOL.update(doc)
    assert stale == ["ops linear"] and "y = x·Wᵀ" in text and text.endswith("\ntext\n\n```text\nkept\n```\n")


def test_json_members_are_shown_as_the_document_writes_them():
    import json

    doc = json.dumps({"schema": "s/1", "device": {"name": "x", "ops": [1, 2]}, "memory": None}, indent=2) + "\n"
    shown = TOOL.members(doc, "memory,device")
    assert shown == '"memory": null\n"device": {\n  "name": "x",\n  "ops": [\n    1,\n    2\n  ]\n}\n'
    body = "\n".join(shown.splitlines()[1:])  # each member's lines are the document's own, indentation aside
    assert "\n".join("  " + line for line in body.splitlines()[1:]) in doc
    with pytest.raises(ValueError, match="does not have"):
        TOOL.members(doc, "training")
    assert TOOL.members(doc, None) == doc


def test_line_selection():
    assert TOOL.select("a\nb\nc\nd\ne", "1-2,-1-") == ["a", "b", "…", "e"]
    assert TOOL.select("a\nb\nc", "2") == ["…", "b", "…"]


DOCTESTS = [name for name in TOOL.FILES if ">>> " in (ROOT / name).read_text(encoding="utf-8")]


def test_python_examples_are_doctests():
    """The Python examples of the README and the docs are doctests (collected by their `>>> ` prompts)."""
    assert {"README.md", "docs/api.md", "docs/solve.md", "docs/analysis.md", "docs/json.md"} <= set(DOCTESTS)


@pytest.mark.parametrize("name", DOCTESTS)
def test_python_examples_run(name, tmp_path, monkeypatch):
    """Every doctest in README.md and docs/ passes, run from a directory outside the repository: what an example
    shows is what the library returns, wherever it is called from."""
    import doctest

    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(ROOT / name), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_an_error_block_shows_standard_error(tmp_path, monkeypatch):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- output: ops nosuchop ; expect=2 -->\n```text\nstale\n```\n")
    text, stale = TOOL.update(doc)
    assert stale == ["ops nosuchop ; expect=2"] and "error: " in text and "nosuchop" in text
    doc.write_text("<!-- output: ops linear ; expect=2 -->\n```text\nstale\n```\n")
    with pytest.raises(RuntimeError, match="status 2"):
        TOOL.update(doc)
