"""Sweep axes: `s=512..32768:x2`, `s=0..4096:+512`, `b=1,8,64` (strictly parsed) or Python ranges and lists."""
from __future__ import annotations

import re

from symcost.errors import SymcostError

MAX_POINTS = 50_000_000  # grid points of one sweep (each metric holds a float64 per point)
MAX_AXIS = 10_000_000  # values on one axis
MAX_DIGITS = 100  # as --set: a value of more digits is not a size
SYNTAX = ("a list 1,8,64, a geometric range 512..32768:x2 (each value K times the last) or an arithmetic range "
          "512..4096:+512 (each value K more)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)\.\.([0-9]+)(?::([x+])([0-9]+))?")


def parse_over(items) -> dict[str, list[int]]:
    """`NAME=VALUES` texts (the command line's --over) → dim name → its values, in the order given."""
    out: dict[str, list[int]] = {}
    for item in items:
        name, eq, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not eq or not name or not raw:
            raise SymcostError(f"--over expects NAME=VALUES, got '{item[:80]}'", None, f"VALUES is {SYNTAX}")
        if not _NAME.fullmatch(name):
            raise SymcostError(f"--over {item[:80]}: '{name[:40]}' is not a dimension name")
        if name in out:
            raise SymcostError(f"--over gives '{name}' twice")
        out[name] = parse_values(name, raw)
    return out


def parse_values(name: str, text: str) -> list[int]:
    """One axis from text: a list, a geometric range or an arithmetic range of positive integers."""
    where = f"--over {name}={text[:80]}"
    m = _RANGE.fullmatch(text)
    if m:
        lo, hi = _int(m.group(1), where), _int(m.group(2), where)
        if m.group(3) is None:
            raise SymcostError(f"{where}: a range needs a step, ':x2' (geometric) or ':+512' (arithmetic)")
        step = int(m.group(4)) if len(m.group(4)) <= MAX_DIGITS else 0
        if step < 1:
            raise SymcostError(f"{where}: the step must be a positive whole number of at most {MAX_DIGITS} digits")
        if hi < lo:
            raise SymcostError(f"{where}: the range ends below its start ({hi} < {lo})")
        return _geometric(lo, hi, step, where) if m.group(3) == "x" else _arithmetic(lo, hi, step, where)
    if ".." in text:
        raise SymcostError(f"{where}: not a range; write START..END:xK or START..END:+K with whole numbers",
                           None, f"VALUES is {SYNTAX}")
    parts = text.split(",")
    bad = next((p for p in parts if not _INT.fullmatch(p.strip())), None)
    if bad is not None:
        shown = f"'{bad.strip()[:40]}'" if bad.strip() else "an empty item"
        raise SymcostError(f"{where}: {shown} is not a whole number", None, f"VALUES is {SYNTAX}")
    return check_values(name, [_int(p.strip(), where) for p in parts], where)


def check_values(name: str, values, where: str | None = None) -> list[int]:
    """An axis given by the API (a range, a list, a numpy array): positive whole numbers, no repeats."""
    if isinstance(values, (str, bytes)):
        return parse_values(name, values.decode() if isinstance(values, bytes) else values)
    if isinstance(values, range):
        if len(values) > MAX_AXIS:
            raise SymcostError(f"'{name}': {len(values):,} values on one axis; at most {MAX_AXIS:,}")
        values = list(values)
    elif isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    else:
        try:
            values = list(values)
        except TypeError:
            raise SymcostError(f"'{name}' takes a list or range of whole numbers, not {type(values).__name__}") from None
    out = []
    for v in values:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise SymcostError(f"'{name}' takes whole numbers, not {v!r:.40}")
        v = int(v.__index__())
        if v < 1:
            raise SymcostError(f"'{name}' must be positive, got {v}")
        if len(str(v)) > MAX_DIGITS:
            raise SymcostError(f"'{name}': a value of more than {MAX_DIGITS} digits is not a size")
        out.append(v)
    if not out:
        raise SymcostError(f"'{name}' has no values")
    if len(set(out)) != len(out):
        seen = set()
        twice = next(v for v in out if v in seen or seen.add(v))
        raise SymcostError(f"{where or repr(name)}: lists {twice} twice")
    if len(out) > MAX_AXIS:
        raise SymcostError(f"'{name}': {len(out):,} values on one axis; at most {MAX_AXIS:,}")
    return out


def check_size(axes: dict[str, list[int]]) -> int:
    """The number of grid points, checked against MAX_POINTS."""
    n = 1
    for values in axes.values():
        n *= len(values)
    if n > MAX_POINTS:
        shape = " × ".join(f"{len(v):,} {k}" for k, v in axes.items())
        raise SymcostError(f"the grid has {n:,} points ({shape}); at most {MAX_POINTS:,}")
    return n


def _int(text: str, where: str) -> int:
    if len(text.lstrip("0")) > MAX_DIGITS:
        raise SymcostError(f"{where}: a value of more than {MAX_DIGITS} digits is not a size")
    value = int(text)
    if value < 1:
        raise SymcostError(f"{where}: values must be positive, got {value}")
    return value


def _geometric(lo: int, hi: int, k: int, where: str) -> list[int]:
    if k < 2:
        raise SymcostError(f"{where}: a geometric step multiplies by 2 or more, not by {k}")
    out = [lo]
    while out[-1] * k <= hi:
        out.append(out[-1] * k)
    return out


def _arithmetic(lo: int, hi: int, k: int, where: str) -> list[int]:
    count = (hi - lo) // k + 1
    if count > MAX_AXIS:
        raise SymcostError(f"{where}: {count:,} values on one axis; at most {MAX_AXIS:,}")
    return list(range(lo, hi + 1, k))
