"""Files: includes stay inside the spec's tree and the search path; only bounded regular files are read."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, SPECS
from symcost.cli import main
from symcost.errors import SymcostError
from symcost.lang.parse import load

SECRET = "TOP-SECRET-LINE-1234"


@pytest.fixture
def outside(tmp_path):
    """A directory with a secret file beside the user's spec directory (never readable through a spec)."""
    secret_dir = tmp_path / "elsewhere"
    secret_dir.mkdir()
    (secret_dir / "secret.arch").write_text(SECRET + "\n")
    work = tmp_path / "work"
    work.mkdir()
    return work, secret_dir / "secret.arch"


def _err(path) -> SymcostError:
    with pytest.raises(SymcostError) as info:
        load(path)
    return info.value


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ", "../elsewhere/secret.arch",
                                    "../../../../../../../../etc/passwd", "sub/../../elsewhere/secret.arch"])
def test_includes_outside_the_roots_are_refused_without_quoting_them(outside, target):
    work, _ = outside
    (work / "sub").mkdir()
    spec = work / "m.arch"
    spec.write_text(f'dim h\ninclude "{target}"\n')
    err = _err(spec)
    text = str(err)
    assert err.loc is not None and err.loc.line == 2
    assert SECRET not in text and "root:" not in text and "PATH=" not in text
    assert "outside" in text or "relative" in text or "not found" in text


def test_a_symlink_out_of_the_tree_is_refused(outside):
    work, secret = outside
    (work / "link.arch").symlink_to(secret)
    spec = work / "m.arch"
    spec.write_text('include "link.arch"\n')
    err = _err(spec)
    assert "outside" in str(err) and SECRET not in str(err)


def test_includes_below_the_spec_and_on_the_search_path_work(tmp_path, monkeypatch):
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "mine.arch").write_text("dim h\n")
    spec = tmp_path / "m.arch"
    spec.write_text('include "blocks/mine.arch"\ninclude "blocks/attention.arch"\ndim b\ndim s\ndim a\n'
                    'dim d = h / a\ninput x: [b, s, h]\ny = causal_self_attention(x, false, false)\n')
    module = load(spec)  # blocks/attention.arch is the shipped one, found on the search path
    assert any(getattr(i, "name", None) == "causal_self_attention" for i in module.items)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_devices_pipes_and_directories_are_not_read(tmp_path):
    fifo = tmp_path / "pipe.arch"
    os.mkfifo(fifo)
    code = f"from symcost.cli import main; raise SystemExit(main(['derive', {str(fifo)!r}]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    for path in ("/dev/zero", str(tmp_path)):
        assert main(["derive", path]) == 2
        assert main(["derive", str(SPECS / "gpt2.arch"), "--device", path]) == 2
        assert main(["derive", "--hf-config", path]) == 2


def test_big_files_are_refused(tmp_path, capsys):
    big = tmp_path / "big.json"
    big.write_text(" " * (1024 * 1024 + 10) + "{}")
    assert main(["derive", "--hf-config", str(big)]) == 2
    assert "larger than 1,048,576 bytes" in capsys.readouterr().err


def test_a_long_line_is_quoted_in_part(tmp_path, capsys):
    spec = tmp_path / "long.arch"
    spec.write_text("dim h\n" + "x" * 200_000 + " ?\n")
    assert main(["derive", str(spec)]) == 2
    err = capsys.readouterr().err
    assert len(err) < 2_000 and "…" in err


def test_a_byte_order_mark_is_accepted_and_bad_utf8_is_located(tmp_path, capsys):
    spec = tmp_path / "bom.arch"
    spec.write_bytes(b"\xef\xbb\xbfdim h\ninput x: [h]\n")
    assert main(["derive", str(spec)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.arch"
    bad.write_bytes(b"dim h\ndim \xff\n")
    assert main(["derive", str(bad)]) == 2
    assert "not UTF-8 text (byte 10, line 2, column 5)" in capsys.readouterr().err


def test_a_long_path_is_an_error_not_a_traceback(capsys):
    assert main(["derive", "x" * 5000 + ".arch"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err) < 1_000


def test_spec_names_and_user_directories(tmp_path, capsys, monkeypatch):
    """A model written outside the package: its spec, mapping and preset found through --path or SYMCOST_PATH."""
    (tmp_path / "hf").mkdir()
    (tmp_path / "presets").mkdir()
    (tmp_path / "tinymlp.arch").write_text(
        'model tinymlp "Tiny MLP"\ndim b\ndim h\ndim f\ninput x: [b, h]\ny = linear(x, f)\nz = linear(y, h)\n')
    (tmp_path / "hf" / "tinymlp.json").write_text(json.dumps(
        {"spec": "tinymlp.arch", "dims": {"h": "hidden", "f": "inner"}}))
    (tmp_path / "presets" / "tinymlp-s.json").write_text(json.dumps(
        {"model_type": "tinymlp", "hidden": 8, "inner": 32}))
    monkeypatch.chdir(tmp_path.parent)
    assert main(["derive", "--path", str(tmp_path), "--preset", "tinymlp-s", "--set", "b=1", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["params"]["value"] == 8 * 32 + 32 + 32 * 8 + 8
    monkeypatch.setenv("SYMCOST_PATH", str(tmp_path))
    assert main(["derive", "tinymlp", "--set", "b=1", "h=8", "f=32", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["name"] == "tinymlp"
    assert main(["presets"]) == 0
    assert "tinymlp-s" in capsys.readouterr().out


def test_shipped_specs_by_name_from_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["derive", "llama", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["name"] == "llama"
