"""The parse cache: a spec parsed before comes back identical from the private cache, never from elsewhere,
and a damaged or foreign cache file is ignored (the text is parsed again)."""
from __future__ import annotations

import json

import pytest

from helpers import SPECS
from symcost.lang import stored
from symcost.lang.parse import _tree_cache, load


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    from symcost.lang.parse import _parser

    _parser()  # built (and its tables cached) where the user's cache is, not in this test's directory
    monkeypatch.setattr("symcost.lang.parse._SEEN", {})  # nothing remembered from earlier tests in this process
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SYMCOST_NO_CACHE", raising=False)
    return tmp_path / "symcost"


def test_a_cached_parse_equals_a_fresh_one(private_cache, monkeypatch):
    first = load(SPECS / "llama.arch")
    assert list(private_cache.glob("parsed-*.json"))  # written
    again = load(SPECS / "llama.arch")
    monkeypatch.setenv("SYMCOST_NO_CACHE", "1")
    fresh = load(SPECS / "llama.arch")
    assert first == again == fresh
    assert [i.loc for i in again.items] == [i.loc for i in fresh.items]  # positions too (they do not compare)


def test_a_damaged_or_foreign_cache_file_is_parsed_again(private_cache, tmp_path):
    spec = tmp_path / "m.arch"
    spec.write_text("dim b\ndim h\ninput x: [b, h]\n" + "".join(f"y{i} = relu(x)\n" for i in range(30)))
    good = load(spec)
    (cached,) = private_cache.glob("parsed-*.json")
    for junk in ("not json", json.dumps({"@": "os.system", "v": ["echo hacked"]}), json.dumps([1, 2])):
        cached.write_text(junk)
        assert load(spec) == good


def test_only_syntax_classes_are_rebuilt():
    with pytest.raises(KeyError):
        stored.load(json.dumps({"@": "Popen", "v": []}))
    with pytest.raises(ValueError):
        stored.dump((object(),))


def test_no_cache_without_a_private_directory(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "symcost").mkdir(parents=True)
    (shared / "symcost").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    assert _tree_cache("x" * 300, "f.arch", "start") is None
