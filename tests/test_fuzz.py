"""Fuzzing the whole front door in-process: generated and mutated specs, hostile HF configs and device files,
and command lines drawn from the real parser. Every run must end in exit 0/1/2, with an "error:" message on
2 (located for spec errors), no escaping exception, and output safe to print.

Misbehaviours already recorded in docs/robustness.md are recognised by `fuzzing.known()` and noted rather than failed
(their reproducers are pinned in test_known_findings as strict xfails, so a fix shows up as XPASS); anything
else fails with the input shown. The long run is benchmarks/fuzz_long.py. Select with `-m fuzz`, skip with
`-m "not fuzz"`.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings, strategies as st

import fuzzing as F
from fuzz_programs import program
from fuzz_sources import ROOT, HypothesisSource

pytestmark = pytest.mark.fuzz

from hypothesis import Phase

# no shrinking in the default run (it can take minutes on a slow input); the failure message shows the input
SETTINGS = dict(deadline=None, derandomize=False, database=None, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="symcost-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _judge(res: F.Result, argv: list[str], inputs: dict, spec_only: bool = False) -> None:
    problem = F.check(res, argv, spec_only=spec_only)
    if problem is None:
        return
    finding = F.known(problem)
    if finding:
        note(f"known finding {finding}: {problem}")
        return
    shown = "\n".join(f"--- {k} ---\n{v if isinstance(v, str) else repr(v)[:4000]}" for k, v in inputs.items())
    pytest.fail(f"{problem}\nargv: {argv}\n{shown}\n--- exit {res.code} ---\nstderr:\n{res.stderr[:2000]}\n"
                f"{res.exc or ''}", pytrace=False)


@settings(max_examples=40, **SETTINGS)
@given(st.data())
def test_generated_programs(workdir, data):
    """Programs walked from the grammar, with calls shaped by the op registry, through `symcost derive`."""
    text = program(HypothesisSource(data.draw))
    path = F.write_spec_dir(workdir, text)
    argv = ["derive", str(path)]
    _judge(F.run_cli(argv), argv, {"spec": text}, spec_only=True)


@settings(max_examples=25, **SETTINGS)
@given(st.data())
def test_generated_programs_library(workdir, data):
    """The same programs through parse.load → graph.build → derive, without the CLI's safety net."""
    text = program(HypothesisSource(data.draw))
    res = F.in_process_pipeline(text, workdir / "lib")
    _judge(res, ["<library>"], {"spec": text})


@settings(max_examples=25, **SETTINGS)
@given(st.data())
def test_mutated_shipped_specs(workdir, data):
    src = HypothesisSource(data.draw)
    name, text = F.mutated_spec(src)
    path = F.write_spec_dir(workdir / "mut", text)
    fmt = src.choice(["text", "json", "latex", "markdown"])
    argv = ["derive", str(path), "--format", fmt]
    _judge(F.run_cli(argv), argv, {"mutated from": name, "spec": text}, spec_only=True)


@settings(max_examples=8, **SETTINGS)
@given(st.data())
def test_deep_specs(workdir, data):
    text = F.deep_spec(HypothesisSource(data.draw), max_n=400)
    path = F.write_spec_dir(workdir / "deep", text)
    argv = ["derive", str(path)]
    _judge(F.run_cli(argv), argv, {"spec": text[:3000]}, spec_only=True)


@settings(max_examples=25, **SETTINGS)
@given(st.data())
def test_hostile_hf_configs(workdir, data):
    src = HypothesisSource(data.draw)
    blob = F.hostile_config(src)
    path = workdir / "config.json"
    path.write_bytes(blob)
    argv = ["derive", "--hf-config", str(path)] + (["--format", "json"] if src.boolean(0.3) else [])
    _judge(F.run_cli(argv), argv, {"config.json": blob[:4000]})


@settings(max_examples=20, **SETTINGS)
@given(st.data())
def test_hostile_device_files(workdir, data):
    src = HypothesisSource(data.draw)
    blob = F.hostile_device(src)
    path = workdir / "device.json"
    path.write_bytes(blob)
    argv = ["derive", str(F.SPECS / "gpt2.arch"), "--device", str(path)]
    if src.boolean(0.7):
        argv += ["--set", "a=12", "b=1", "s=1024", "h=768", "L=12", "V=50257", "P=1024"]
    if src.boolean(0.3):
        argv += ["--format", "json"]
    _judge(F.run_cli(argv), argv, {"device.json": blob[:4000]})


@settings(max_examples=40, **SETTINGS)
@given(st.data())
def test_command_lines(workdir, data):
    src = HypothesisSource(data.draw)
    files = F.Files(workdir / "cli", spec=F.SPECS / src.choice(["gpt2.arch", "llama.arch", "mixtral.arch", "t5.arch"]))
    files.workdir.mkdir(exist_ok=True)
    if src.boolean(0.3):
        files.config = files.workdir / "config.json"
        files.config.write_bytes(F.hostile_config(src) if src.boolean(0.5) else F.PRESETS[0].read_bytes())
    if src.boolean(0.3):
        files.device = files.workdir / "device.json"
        files.device.write_bytes(F.hostile_device(src) if src.boolean(0.5) else F.DEVICES[0].read_bytes())
    argv = F.command_line(src, files)
    _judge(F.run_cli(argv), argv, {})


# ---- the recorded findings, pinned: each is expected to misbehave until fixed -----------------------
def _subprocess(argv, env=None, stdout=subprocess.PIPE, timeout=30):
    import os

    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "symcost", *argv], env=e, stdout=stdout, stderr=subprocess.PIPE,
                       timeout=timeout, cwd=ROOT)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def _ok(code, err):
    return code in (0, 2) and "Traceback" not in err and (code == 0 or err.startswith("error:"))


GPT2 = str(F.SPECS / "gpt2.arch")
VALUES = ["a=12", "b=1", "s=1024", "h=768", "L=12", "V=50257", "P=1024"]


def _inproc(argv, workdir=None):
    res = F.run_cli(argv)
    return F.check(res, argv) is None


KNOWN_REPRODUCERS = {  # ids as in docs/robustness.md
    "F5 --set with a 3001-digit value": lambda w: _inproc(["derive", GPT2, "--set", "h=" + "7" * 3001]),
    "F6 PYTHONIOENCODING=ascii": lambda w: _ok(*_subprocess(["derive", GPT2], env={"PYTHONIOENCODING": "ascii"})),
    "F6 stdout is /dev/full": lambda w: _ok(*_subprocess(["derive", GPT2], stdout=open("/dev/full", "wb"))),
    "F11 ANSI escape in a model title": lambda w: _inproc(["derive", str(F.write_spec_dir(
        w / "f4", 'model m "\x1b[31mRED\x1b[0m"\ndim h\ninput x: [h]\ny = relu(x)\n'))]),
    "F9 TeX primitive in a dim's tex name": lambda w: _inproc(["derive", str(F.write_spec_dir(
        w / "f5", 'dim h tex "\\\\input{/etc/passwd}"\ninput x: [h]\ny = relu(x)\n')), "--format", "latex"]),
    "F8 --step-time 1e-320 writes Infinity into JSON": lambda w: _inproc(
        ["derive", GPT2, "--device", "h100-sxm", "--step-time", "1e-320", "--format", "json", "--set", *VALUES]),
    "F4 derive gemma --pp 2 --phase prefill": lambda w: _inproc(["derive", str(F.SPECS / "gemma.arch"), "--pp", "2",
                                                                 "--phase", "prefill"]),
}


@pytest.mark.parametrize("name", sorted(KNOWN_REPRODUCERS))
def test_known_findings(name, tmp_path):
    assert KNOWN_REPRODUCERS[name](tmp_path), f"recorded in docs/robustness.md and fixed since: {name}"
