"""The one formatter of numbers: exact integers, SI or binary units, seconds, and numbers beyond a double.

Rules (docs/json.md and the README state them too):
- bytes, FLOPs and rates use decimal SI prefixes (1 GB = 10⁹ bytes); a device's memory, stored as the card
  has it, prints in binary units when it is a whole number of GiB (80 GiB = 80·2³⁰ bytes);
- counts (parameters) use K, M, B, T;
- four significant digits, trailing zeros dropped, the prefix chosen after rounding (999,950 B is 1 MB);
- a number too large for a double is printed in scientific form from its exact value, never as inf.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

DIGITS = 4
_SI = ((10**18, "E"), (10**15, "P"), (10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k"))
_COUNT = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K"))
_BINARY = ((2**50, "Pi"), (2**40, "Ti"), (2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki"))
_SECONDS = ((Fraction(1), "s"), (Fraction(1, 10**3), "ms"), (Fraction(1, 10**6), "µs"), (Fraction(1, 10**9), "ns"))
MAX_EXACT_DIGITS = 40  # an integer with more digits prints in scientific form


def exact(value) -> Fraction | None:
    """A number (int, float, Fraction, or a SymPy number) as an exact Fraction; None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(value) if math.isfinite(value) else None
    if getattr(value, "is_Rational", False):
        return Fraction(int(value.p), int(value.q))
    if getattr(value, "is_number", False) and getattr(value, "is_finite", False):
        try:
            return Fraction(repr(float(value)))
        except (OverflowError, ValueError, TypeError):
            return None
    return None


def _digits(x: Fraction, digits: int = DIGITS) -> str:
    """|x| to `digits` significant digits, plain below 10^digits, trailing zeros dropped."""
    if x == 0:
        return "0"
    with localcontext() as ctx:
        ctx.prec = digits
        ctx.rounding = ROUND_HALF_EVEN
        d = +(Decimal(x.numerator) / Decimal(x.denominator))
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _scaled(x: Fraction, table, unit: str, sep: str) -> str:
    """x with the largest prefix not above it (table descending), moved up one when rounding reaches 1000."""
    sign = "-" if x < 0 else ""
    x = abs(x)
    scales = [(Fraction(1), "")] + [(Fraction(s), p) for s, p in reversed(table)]  # ascending
    i = max((k for k, (s, _) in enumerate(scales) if x >= s), default=0)
    text = _digits(x / scales[i][0])
    if Decimal(text) >= 1000 and i + 1 < len(scales):
        i += 1
        text = _digits(x / scales[i][0])
    prefix = scales[i][1]
    return f"{sign}{text}{sep}{prefix}{unit}".rstrip() if unit or prefix else f"{sign}{text}"


def scientific(x: Fraction) -> str:
    """An exact number in scientific form with DIGITS significant digits: 1.235e+402."""
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    x = abs(x)
    exp = _log10_floor(x)
    mant = x / Fraction(10) ** exp
    text = _digits(mant)
    if Decimal(text) >= 10:
        exp, text = exp + 1, _digits(mant / 10)
    return f"{sign}{text}e{exp:+d}"


def _log10_floor(x: Fraction) -> int:
    guess = math.floor((x.numerator.bit_length() - x.denominator.bit_length()) * math.log10(2))
    while Fraction(10) ** guess > x:
        guess -= 1
    while Fraction(10) ** (guess + 1) <= x:
        guess += 1
    return guess


def _too_big(x: Fraction) -> bool:
    return abs(x) >= Fraction(10) ** 24


def quantity(value, unit: str = "", binary: bool = False) -> str:
    """A value in its unit: '1.25 MB', '124.4M' (a count), '80 GiB' (binary), '4.592 ms' (unit 's')."""
    x = exact(value)
    if x is None:
        return "" if value is None else str(value)
    if unit == "s":
        return seconds(x)
    if _too_big(x):
        return f"{scientific(x)} {unit}".rstrip()
    if binary and x.denominator == 1 and x.numerator % 2**30 == 0:
        return _scaled(x, _BINARY, unit, " ")
    if unit == "":
        return _scaled(x, _COUNT, "", "")
    return _scaled(x, _SI, unit, " ")


def seconds(value) -> str:
    """A duration: '4.592 ms', '15.6 µs', '2.1 s'; beyond a year in scientific seconds."""
    x = exact(value)
    if x is None:
        return "" if value is None else str(value)
    if x >= 10**7:
        return f"{scientific(x)} s"
    for scale, name in _SECONDS:
        if x >= scale:
            text = _digits(x / scale)
            if Decimal(text) >= 1000 and name != "s":
                continue
            return f"{text} {name}"
    return f"{_digits(x / Fraction(1, 10**9))} ns"


def integer(value) -> str:
    """An exact integer with thousands separators, or scientific past MAX_EXACT_DIGITS digits."""
    if abs(value) >= 10**MAX_EXACT_DIGITS:
        return scientific(Fraction(value))
    return f"{value:,}"


def element_size(nbytes) -> str:
    """Bytes per element of a dtype: '2 bytes', '1 byte', '4 bits', '4.125 bits' (exact when it terminates)."""
    x = exact(nbytes)
    if x is None:
        return f"{nbytes} bytes"
    if x.denominator == 1:
        return f"{x.numerator} byte" + ("" if x.numerator == 1 else "s")
    bits = x * 8
    return f"{terminating(bits)} bit" + ("" if bits == 1 else "s")


def terminating(x: Fraction) -> str:
    """A fraction whose decimal expansion ends (denominator 2^i·5^j) written out in full; others to 4 digits."""
    q = x.denominator
    for p in (2, 5):
        while q % p == 0:
            q //= p
    if q != 1 or x.denominator > 10**12:
        return _digits(x)
    with localcontext() as ctx:
        ctx.prec = 60
        text = format(Decimal(x.numerator) / Decimal(x.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(value) -> str:
    x = exact(value)
    return "" if x is None else f"{_digits(x * 100, 3)}%"


def rate(value, unit: str) -> str:
    """A rate such as FLOP/s or B/s: '989.4 TFLOP/s', '3.35 TB/s'."""
    return quantity(value, unit)


def plain(value) -> str:
    """A dimensionless number (tokens/s, FLOP per byte): grouped digits, 4 significant digits for fractions."""
    x = exact(value)
    if x is None:
        return "" if value is None else str(value)
    if _too_big(x):
        return scientific(x)
    if x.denominator == 1:
        return integer(x.numerator)
    if abs(x) >= 1000:
        return f"{round(x):,}"
    return _digits(x)
