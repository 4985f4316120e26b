"""Device files (symcost.hardware): the shipped table, user files, and clear errors."""
from __future__ import annotations

import json

import pytest
import sympy as sp

from symcost.errors import SymcostError
from symcost.analysis.hardware import PEAK_DTYPES, device_from_dict, list_devices, load_device
from symcost.present.devices import render as render_devices
from symcost.analysis.hf import specs_dir

SHIPPED = ["a100-40gb", "a100-80gb", "h100-pcie", "h100-sxm", "h200", "l40s", "mi300x", "rtx-4090", "tpu-v5e", "tpu-v5p"]

# dense bf16 FLOP/s, memory bandwidth (bytes/s), memory (bytes), as published
EXPECTED = {
    "h100-sxm": (989.4e12, 3.35e12, 80 * 2**30),
    "h100-pcie": (756e12, 2.0e12, 80 * 2**30),
    "h200": (989.4e12, 4.8e12, 141 * 2**30),
    "a100-40gb": (312e12, 1555e9, 40 * 2**30),
    "a100-80gb": (312e12, 2039e9, 80 * 2**30),
    "l40s": (362.05e12, 864e9, 48 * 2**30),
    "rtx-4090": (165.2e12, 1008e9, 24 * 2**30),
    "mi300x": (1307.4e12, 5.3e12, 192 * 2**30),
    "tpu-v5e": (197e12, 819e9, 16 * 2**30),
    "tpu-v5p": (459e12, 2765e9, 95 * 2**30),
}


def test_shipped_devices():
    assert list(list_devices()) == SHIPPED
    assert (specs_dir() / "hardware").is_dir()
    for name in SHIPPED:
        dev = load_device(name)
        assert dev.name == name
        peak, bw, mem = EXPECTED[name]
        assert dev.peak("bf16") == sp.Rational(repr(peak)) and float(dev.memory_bandwidth) == bw
        assert float(dev.memory_bytes) == mem
        assert dev.sources and all(s.strip() for s in dev.sources)
        assert set(dev.peak_flops) <= set(PEAK_DTYPES)
        assert dev.interconnect.bandwidth > 0 and dev.interconnect.kind
        # dense tensor peaks are ordered: fp8/int8 ≥ bf16 ≥ tf32, where published
        f = dev.peak_flops
        assert f.get("fp8", f["bf16"]) >= f["bf16"] >= f.get("tf32", 0) and f["bf16"] == f.get("fp16", f["bf16"])


def test_exact_numbers_and_ridge():
    h100 = load_device("h100-sxm")
    assert h100.peak("bf16") == 989_400_000_000_000  # exact, not a float
    assert h100.ridge_point("bf16") == sp.Rational(989_400_000_000_000, 3_350_000_000_000)
    assert h100.interconnect.per_direction == 450_000_000_000
    assert load_device("tpu-v5e").interconnect.per_direction == 200_000_000_000  # direction not stated: as published


def test_unknown_names_suggest():
    with pytest.raises(SymcostError) as e:
        load_device("h100")
    assert "h100-sxm" in str(e.value) and "h100-pcie" in str(e.value)
    with pytest.raises(SymcostError) as e:
        load_device("tpu-v5e").peak("fp32")
    assert "no published fp32 peak" in str(e.value) and "bf16" in str(e.value)
    with pytest.raises(SymcostError) as e:
        load_device("a100-80gb").peak("bf61")
    assert "bf16" in e.value.hint


GOOD = {
    "name": "my-gpu",
    "peak_flops": {"bf16": 100e12, "fp32": 25e12},
    "memory_bandwidth": 1e12,
    "memory_bytes": 32e9,
    "interconnect": {"kind": "PCIe Gen4 x16", "bandwidth": 64e9, "bidirectional": True},
    "sources": ["my own measurements"],
}


def test_user_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(GOOD))
    dev = load_device(str(path))
    assert dev.name == "my-gpu" and dev.peak("bf16") == 100 * 10**12 and dev.path == str(path)
    assert load_device(path).memory_bytes == 32 * 10**9


def _bad(**changes):
    data = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    "data, needle",
    [
        (_bad(memory_bandwidth=...), "missing field 'memory_bandwidth'"),
        (_bad(sources=...), "missing field 'sources'"),
        (_bad(memory_bandwidth="1 TB/s"), "'memory_bandwidth' must be a positive number, not text"),
        (_bad(memory_bytes=-1), "'memory_bytes' must be a positive number"),
        (_bad(memory_bytes=True), "not a boolean"),
        (_bad(peak_flops={}), "'peak_flops' must be a non-empty object"),
        (_bad(peak_flops={"bf16": "fast"}), "'peak_flops.bf16' must be a positive number"),
        (_bad(peak_flops={"bf61": 1e12}), "unknown dtype 'bf61'"),
        (_bad(interconnect={"kind": "NVLink"}), "missing field 'interconnect.bandwidth'"),
        (_bad(interconnect={"kind": "NVLink", "bandwidth": 1e9, "bidirectional": "yes"}), "must be true or false"),
        (_bad(interconnect=900e9), "'interconnect' must be"),
        (_bad(sources=[]), "'sources' must be"),
        (_bad(name=3), "'name' must be non-empty text"),
        (_bad(memory_bandwith=1e12), "unknown field 'memory_bandwith'"),
        ([GOOD], "holds a JSON object"),
    ],
)
def test_bad_device_data(data, needle):
    with pytest.raises(SymcostError) as e:
        device_from_dict(data, "mine.json")
    assert needle in str(e.value)


def test_bad_device_hints():
    with pytest.raises(SymcostError) as e:
        device_from_dict(_bad(memory_bandwith=1e12), "mine.json")
    assert "memory_bandwidth" in e.value.hint
    with pytest.raises(SymcostError) as e:
        device_from_dict(_bad(peak_flops={"bf61": 1e12}), "mine.json")
    assert "bf16" in e.value.hint


def test_bad_device_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",')
    with pytest.raises(SymcostError, match="not valid JSON"):
        load_device(str(broken))
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(GOOD).replace("1000000000000.0", "NaN"))
    with pytest.raises(SymcostError, match="NaN is not a JSON number"):
        load_device(str(nan))
    with pytest.raises(SymcostError, match="cannot read hardware file"):
        load_device(str(tmp_path / "missing.json"))


def test_device_table():
    md = render_devices(fmt="markdown")
    assert all(f"| {n} |" in md for n in SHIPPED) and "989.4 TFLOP/s" in md and "16 GiB" in md
    assert len(json.loads(render_devices(fmt="json"))) == len(SHIPPED)
    assert render_devices(fmt="text").splitlines()[0].startswith("device")
