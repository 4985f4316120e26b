"""The report page's data contract: checks a page-data dict, fills defaults and sanitises every text in it.

    {"title": str, "subtitle": str = "", "conventions": [str] = [],
     "dims": [{"name": "h", "tex": "h" (= name), "doc": "hidden size" (= ""), "value": 4096,
               "min": 1, "max": 65536, "scale": "log" | "linear" (= "linear")}],
     "devices": [{"name": "h100-sxm", "title": str (= name), "peak": FLOP/s, "bandwidth": B/s,
                  "memory": bytes, "link": B/s one way on the interconnect (optional)}] = [],
     "device": a device name (= the first),
     "metrics": [METRIC], where METRIC = {"key": str, "title": str, "unit": "FLOP" | "B" | "" | "s" | ...,
                                          "latex": str, "tree": TREE},
     "blocks": [{"path": str, "repeat_latex": str, "repeat_tree": TREE, "metrics": [METRIC]}] = [],
     "ops": [{"path": str, "op": str, "statement": str, "flops": TREE, "bytes": TREE, "params": TREE}] = [],
     "memory": {"parts": [{"key": str, "title": str, "tree": TREE}]} | None = None,
     "roofline": bool = False}

TREE is tree.py's JSON form. Trees may use the dims' names and the device symbols peak, bandwidth,
memory (needs at least one device) and link (needs every device to give it). Dim values, bounds and device figures must be finite; dim values
are integers with |x| < 2**53 so that the page reads them exactly.
"""
from __future__ import annotations

import math
import re

from ...errors import SymcostError
from .tree import OPS

DEVICE_SYMBOLS = ("peak", "bandwidth", "memory", "link")
SAFE_INT = 2**53 - 1
_NUMBER = re.compile(r"-?\d+(/[1-9]\d*)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class PageDataError(SymcostError):
    """The page data does not follow the contract."""


def clean_text(text: str) -> str:
    """Control characters become visible pictures (U+2400…), C1 controls and lone surrogates U+FFFD."""
    def repl(m: re.Match) -> str:
        c = ord(m.group())
        if c < 0x20:
            return chr(0x2400 + c)
        return "\u2421" if c == 0x7F else "\ufffd"

    return _CONTROL.sub(repl, text)


def _text(obj: dict, key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise PageDataError(f"{where}: '{key}' must be text, got {type(value).__name__}")
    return clean_text(value)


def _int(obj: dict, key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > SAFE_INT:
        raise PageDataError(f"{where}: '{key}' must be an integer below 2**53, got {value!r:.40}")
    return value


def _positive(obj: dict, key: str, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise PageDataError(f"{where}: '{key}' must be a positive finite number, got {value!r:.40}")
    return float(value)


def _obj(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise PageDataError(f"{where} must be an object")
    return raw


def _list(obj: dict, key: str, where: str) -> list:
    value = obj.get(key, [])
    if not isinstance(value, (list, tuple)):
        raise PageDataError(f"{where}: '{key}' must be a list")
    return list(value)


def _unique(items: list, key: str, what: str) -> None:
    seen: set = set()
    for it in items:
        if it[key] in seen:
            raise PageDataError(f"two {what} named '{it[key]}'")
        seen.add(it[key])


def check_tree(tree, symbols: frozenset, where: str) -> dict:
    """A tree that follows tree.py's form and mentions only known symbols (returned as is)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise PageDataError(f"{where}: a tree node must be an object, got {node!r:.60}")
        if "n" in node and len(node) == 1:
            if not isinstance(node["n"], str) or not _NUMBER.fullmatch(node["n"]):
                raise PageDataError(f"{where}: bad number {node['n']!r:.40} (integers or p/q as text)")
        elif "s" in node and len(node) == 1:
            if node["s"] not in symbols:
                hint = " (a device symbol: give at least one device)" if node["s"] in DEVICE_SYMBOLS else ""
                raise PageDataError(f"{where}: unknown symbol {node['s']!r:.40}{hint}; "
                                    f"known: {', '.join(sorted(symbols))}")
        elif set(node) == {"f", "a"} and node["f"] in OPS and isinstance(node["a"], list) and node["a"]:
            if node["f"] == "pow" and len(node["a"]) != 2 or node["f"] in ("floor", "ceiling") and len(node["a"]) != 1:
                raise PageDataError(f"{where}: wrong number of operands for '{node['f']}'")
            stack.extend(node["a"])
        else:
            raise PageDataError(f"{where}: bad tree node {node!r:.60}")
    return tree


def _dim(raw: dict, i: int) -> dict:
    where = f"dims[{i}]"
    _obj(raw, where)
    name = _text(raw, "name", where)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in DEVICE_SYMBOLS:
        raise PageDataError(f"{where}: '{name}' is not a usable dimension name")
    d = {"name": name, "tex": _text(raw, "tex", where, name), "doc": _text(raw, "doc", where, ""),
         "value": _int(raw, "value", where), "min": _int(raw, "min", where), "max": _int(raw, "max", where),
         "scale": raw.get("scale", "linear")}
    if d["scale"] not in ("log", "linear"):
        raise PageDataError(f"{where}: scale is 'log' or 'linear', got {d['scale']!r:.20}")
    if not (d["min"] <= d["value"] <= d["max"]) or d["min"] < (1 if d["scale"] == "log" else 0):
        raise PageDataError(f"{where}: need {'1' if d['scale'] == 'log' else '0'} <= min <= value <= max")
    return d


def _device(raw: dict, i: int) -> dict:
    where = f"devices[{i}]"
    _obj(raw, where)
    name = _text(raw, "name", where)
    out = {"name": name, "title": _text(raw, "title", where, name), "peak": _positive(raw, "peak", where),
           "bandwidth": _positive(raw, "bandwidth", where), "memory": _positive(raw, "memory", where)}
    if raw.get("link") is not None:
        out["link"] = _positive(raw, "link", where)
    return out


def _metric(raw: dict, where: str, syms: frozenset) -> dict:
    _obj(raw, where)
    return {"key": _text(raw, "key", where), "title": _text(raw, "title", where),
            "unit": _text(raw, "unit", where, ""), "latex": _text(raw, "latex", where),
            "tree": check_tree(raw.get("tree"), syms, where)}


def _block(raw: dict, i: int, syms: frozenset) -> dict:
    where = f"blocks[{i}]"
    _obj(raw, where)
    return {"path": _text(raw, "path", where), "repeat_latex": _text(raw, "repeat_latex", where, "1"),
            "repeat_tree": check_tree(raw.get("repeat_tree", {"n": "1"}), syms, where),
            "metrics": [_metric(m, f"{where}.metrics[{j}]", syms) for j, m in enumerate(_list(raw, "metrics", where))]}


def _op(raw: dict, i: int, syms: frozenset) -> dict:
    where = f"ops[{i}]"
    _obj(raw, where)
    out = {k: _text(raw, k, where, "" if k == "statement" else None) for k in ("path", "op", "statement")}
    for k in ("flops", "bytes", "params"):
        out[k] = check_tree(raw.get(k, {"n": "0"}), syms, f"{where}.{k}")
    return out


def _memory(raw, syms: frozenset):
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.get("parts"):
        raise PageDataError("memory: an object with a non-empty list 'parts'")
    parts = []
    for j, p in enumerate(_list(raw, "parts", "memory")):
        where = f"memory.parts[{j}]"
        _obj(p, where)
        parts.append({"key": _text(p, "key", where), "title": _text(p, "title", where),
                      "tree": check_tree(p.get("tree"), syms, where)})
    return {"parts": parts}


def normalize(data: dict) -> dict:
    """The page data checked against the contract, with defaults filled in and every text sanitised."""
    if not isinstance(data, dict):
        raise PageDataError("page data must be an object")
    dims = [_dim(d, i) for i, d in enumerate(_list(data, "dims", "page"))]
    devices = [_device(d, i) for i, d in enumerate(_list(data, "devices", "page"))]
    _unique(dims, "name", "dimensions")
    _unique(devices, "name", "devices")
    device_syms = [s for s in DEVICE_SYMBOLS if s != "link" or all("link" in d for d in devices)]
    syms = frozenset([d["name"] for d in dims] + (device_syms if devices else []))
    device = data.get("device", devices[0]["name"] if devices else None)
    if devices and device not in {d["name"] for d in devices}:
        raise PageDataError(f"selected device {device!r:.40} is not among the devices")
    out = {"title": _text(data, "title", "page"), "subtitle": _text(data, "subtitle", "page", ""),
           "conventions": [_text({"convention": c}, "convention", f"conventions[{i}]")
                           for i, c in enumerate(_list(data, "conventions", "page"))],
           "dims": dims, "devices": devices, "device": device if devices else None,
           "metrics": [_metric(m, f"metrics[{j}]", syms) for j, m in enumerate(_list(data, "metrics", "page"))],
           "blocks": [_block(b, i, syms) for i, b in enumerate(_list(data, "blocks", "page"))],
           "ops": [_op(o, i, syms) for i, o in enumerate(_list(data, "ops", "page"))],
           "memory": _memory(data.get("memory"), syms),
           "roofline": bool(data.get("roofline", False))}
    if (out["memory"] is not None or out["roofline"]) and not devices:
        raise PageDataError("the memory bar and the roofline need at least one device")
    return out
