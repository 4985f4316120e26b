"""Accelerator descriptions for roofline bounds: peak FLOP/s per dtype, memory bandwidth and size, interconnect.

One JSON file per device. The shipped ones are `specs/hardware/<name>.json` (installed as
`symcost.specs.hardware`); a user file is any path to a JSON object of the same shape:

    {
      "name": "h100-sxm",                         required, text
      "title": "NVIDIA H100 SXM5 80 GB",          optional, text
      "peak_flops": {"bf16": 989.4e12, ...},      required: dense (no sparsity) FLOP/s per dtype; keys from
                                                  fp64 fp32 tf32 bf16 fp16 fp8 fp6 fp4 int8 int4 (ops/s for ints)
      "memory_bandwidth": 3.35e12,                required: bytes/s
      "memory_bytes": 80e9,                       required: bytes
      "memory_kind": "HBM3",                      optional, text
      "interconnect": {"kind": "NVLink 4", "bandwidth": 900e9, "bidirectional": true},
                                                  required: bytes/s; bidirectional (optional) says the figure
                                                  is the total of both directions
      "sources": ["vendor datasheet ..."],        required: where each figure was published
      "notes": "..."                              optional, text or a list of texts
    }

Every number becomes an exact SymPy Rational (989.4e12 → 989400000000000), so bounds stay exact.
Problems (an unknown name, a missing or ill-typed field, a misspelt key) are SymcostErrors with a
"did you mean" hint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import sympy as sp

from symcost.errors import SymcostError, suggest
from symcost.files import exists, shown
from symcost.analysis.hf import read_json, specs_dir

PEAK_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "fp4", "int8", "int4")
_FIELDS = {
    "name": "the device's name (text)",
    "title": "a display name (text)",
    "peak_flops": "dense peak FLOP/s per dtype, an object such as {\"bf16\": 989.4e12}",
    "memory_bandwidth": "memory bandwidth in bytes/s (a positive number)",
    "memory_bytes": "memory size in bytes (a positive number)",
    "memory_kind": "the memory technology (text)",
    "interconnect": "an object {\"kind\": text, \"bandwidth\": bytes/s, \"bidirectional\": true|false}",
    "sources": "a list of texts naming where each figure was published",
    "notes": "text, or a list of texts",
}
_REQUIRED = ("name", "peak_flops", "memory_bandwidth", "memory_bytes", "interconnect", "sources")
_LINK_FIELDS = ("kind", "bandwidth", "bidirectional")
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Interconnect:
    kind: str
    bandwidth: sp.Rational  # bytes/s as published
    bidirectional: bool | None = None  # True: `bandwidth` is both directions together; None: not stated

    @property
    def per_direction(self) -> sp.Rational:
        """Bytes/s one way: half a bidirectional total, else the published figure."""
        return self.bandwidth / 2 if self.bidirectional else self.bandwidth


@dataclass(frozen=True)
class Device:
    name: str
    title: str
    peak_flops: dict  # dtype name -> exact dense FLOP/s
    memory_bandwidth: sp.Rational  # bytes/s
    memory_bytes: sp.Rational
    memory_kind: str | None
    interconnect: Interconnect
    sources: tuple
    notes: tuple = ()
    path: str | None = None

    def peak(self, dtype: str) -> sp.Rational:
        """Dense peak FLOP/s for a dtype name (`report.env.default_dtype.name`); an error lists what exists."""
        if dtype in self.peak_flops:
            return self.peak_flops[dtype]
        have = ", ".join(self.peak_flops)
        raise SymcostError(
            f"device '{self.name}' has no published {dtype} peak (it has: {have})",
            None,
            suggest(dtype, self.peak_flops) or "choose the arithmetic's dtype with --dtype or --activations, or add it "
            "to the device file",
        )

    def ridge_point(self, dtype: str) -> sp.Rational:
        """FLOPs per byte at which an op turns from memory-bound to compute-bound: peak / bandwidth."""
        return self.peak(dtype) / self.memory_bandwidth


def shipped_dir() -> Path:
    """The shipped device files, specs/hardware (inside the installed package or the checkout)."""
    return specs_dir() / "hardware"


def list_devices() -> dict[str, Path]:
    """Device names → their files, from every `hardware/` directory on the search path (a user's first)."""
    from symcost.paths import listing

    return listing("hardware")


def load_device(name_or_path: str | Path) -> Device:
    """A shipped device by name (`h100-sxm`), or a user's device file by path."""
    text = str(name_or_path)
    path = Path(text)
    if isinstance(name_or_path, Path) or exists(path) or "/" in text or "\\" in text or text.endswith(".json"):
        return read_device(path)
    table = list_devices()
    if text not in table:
        if not table:
            raise SymcostError(
                f"no shipped hardware files found in {shipped_dir()} (the package data 'symcost.specs.hardware' is missing)"
            )
        raise SymcostError(
            f"unknown device '{shown(text)}'; known: {', '.join(table)}",
            None,
            suggest(text, table) or "or give the path to a device JSON file",
        )
    return read_device(table[text])


def read_device(path: str | Path) -> Device:
    """Read and check one device file."""
    path = Path(path)
    if not exists(path):
        raise SymcostError(f"cannot read hardware file {shown(path)}: no such file", None,
                           suggest(path.stem, list_devices()))
    data = read_json(path, "hardware file", MAX_FILE_BYTES)
    return device_from_dict(data, str(path))


def device_from_dict(data, source: str = "<device>") -> Device:
    """Check a parsed device object field by field; `source` names it in errors."""
    if not isinstance(data, dict):
        raise SymcostError(f"{source}: a device file holds a JSON object, not {_kind(data)}")
    for key in data:
        if key not in _FIELDS:
            raise SymcostError(f"{source}: unknown field '{key}'", None, suggest(key, _FIELDS) or f"fields: {', '.join(_FIELDS)}")
    for key in _REQUIRED:
        if key not in data:
            raise SymcostError(f"{source}: missing field '{key}': {_FIELDS[key]}")
    name = _text(data["name"], "name", source)
    peaks = data["peak_flops"]
    if not isinstance(peaks, dict) or not peaks:
        raise SymcostError(f"{source}: 'peak_flops' must be a non-empty object of dtype → FLOP/s, not {_kind(peaks)}")
    peak_flops = {}
    for dtype, value in peaks.items():
        if dtype not in PEAK_DTYPES:
            raise SymcostError(
                f"{source}: unknown dtype '{dtype}' in 'peak_flops'", None,
                suggest(dtype, PEAK_DTYPES) or f"dtypes: {', '.join(PEAK_DTYPES)}",
            )
        peak_flops[dtype] = _positive(value, f"peak_flops.{dtype}", source)
    link = data["interconnect"]
    if not isinstance(link, dict):
        raise SymcostError(f"{source}: 'interconnect' must be {_FIELDS['interconnect']}, not {_kind(link)}")
    for key in link:
        if key not in _LINK_FIELDS:
            raise SymcostError(f"{source}: unknown field 'interconnect.{key}'", None, suggest(key, _LINK_FIELDS))
    for key in ("kind", "bandwidth"):
        if key not in link:
            raise SymcostError(f"{source}: missing field 'interconnect.{key}'")
    bidir = link.get("bidirectional")
    if bidir is not None and not isinstance(bidir, bool):
        raise SymcostError(f"{source}: 'interconnect.bidirectional' must be true or false, not {_kind(bidir)}")
    sources = data["sources"]
    if not isinstance(sources, list) or not sources:
        raise SymcostError(f"{source}: 'sources' must be {_FIELDS['sources']} (at least one), not {_kind(sources)}")
    notes = data.get("notes", ())
    notes = (notes,) if isinstance(notes, str) else notes
    if not isinstance(notes, (list, tuple)):
        raise SymcostError(f"{source}: 'notes' must be {_FIELDS['notes']}, not {_kind(notes)}")
    return Device(
        name=name,
        title=_text(data["title"], "title", source) if "title" in data else name,
        peak_flops=peak_flops,
        memory_bandwidth=_positive(data["memory_bandwidth"], "memory_bandwidth", source),
        memory_bytes=_positive(data["memory_bytes"], "memory_bytes", source),
        memory_kind=_text(data["memory_kind"], "memory_kind", source) if "memory_kind" in data else None,
        interconnect=Interconnect(
            _text(link["kind"], "interconnect.kind", source),
            _positive(link["bandwidth"], "interconnect.bandwidth", source),
            bidir,
        ),
        sources=tuple(_text(s, "sources[]", source) for s in sources),
        notes=tuple(_text(n, "notes[]", source) for n in notes),
        path=source,
    )


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _text(v, field: str, source: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise SymcostError(f"{source}: '{field}' must be non-empty text, not {_kind(v)}")
    if not v.isprintable():
        raise SymcostError(f"{source}: '{field}' may not contain control characters")
    return v


def _positive(v, field: str, source: str) -> sp.Rational:
    """A positive finite JSON number as an exact Rational (floats read through their shortest repr)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SymcostError(f"{source}: '{field}' must be a positive number, not {_kind(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise SymcostError(f"{source}: '{field}' must be a finite number, not {v}")
    if not 1 <= v <= 1e30:  # FLOP/s, bytes/s and bytes of any real device lie well inside this range
        raise SymcostError(f"{source}: '{field}' must be a positive number from 1 to 1e30, not {v}")
    frac = Fraction(repr(v)) if isinstance(v, float) else Fraction(v)
    return sp.Rational(frac.numerator, frac.denominator)
