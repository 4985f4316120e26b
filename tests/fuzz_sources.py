"""What the fuzz generators draw with: a source of choices (seeded or Hypothesis), hostile scalars, shipped files."""
from __future__ import annotations

import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SPEC_FILES = sorted(SPECS.glob("*.arch")) + sorted((SPECS / "blocks").glob("*.arch"))
PRESETS = sorted((SPECS / "presets").glob("*.json"))
DEVICES = sorted((SPECS / "hardware").glob("*.json"))
HF_MAPPINGS = sorted((SPECS / "hf").glob("*.json"))


# ---- sources of choices ---------------------------------------------------------------------------
class RandomSource:
    def __init__(self, seed=None):
        self.r = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def boolean(self, p: float = 0.5) -> bool:
        return self.r.random() < p

    def choice(self, seq):
        seq = list(seq)
        return seq[self.r.randrange(len(seq))]

    def weighted(self, pairs):
        """pairs: [(weight, value)]"""
        total = sum(w for w, _ in pairs)
        x = self.r.random() * total
        for w, v in pairs:
            x -= w
            if x < 0:
                return v
        return pairs[-1][1]

    def real(self) -> float:
        return self.r.random()


class HypothesisSource(RandomSource):
    """The same interface, every choice drawn from Hypothesis (so examples shrink)."""

    def __init__(self, draw):
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def integer(self, lo, hi):
        return self.draw(self.st.integers(lo, hi))

    def boolean(self, p=0.5):
        return self.draw(self.st.integers(0, 999)) < int(p * 1000)

    def choice(self, seq):
        seq = list(seq)
        return seq[self.draw(self.st.integers(0, len(seq) - 1))]

    def weighted(self, pairs):
        total = sum(w for w, _ in pairs)
        x = self.draw(self.st.floats(0, total, exclude_max=True))
        for w, v in pairs:
            x -= w
            if x < 0:
                return v
        return pairs[-1][1]

    def real(self):
        return self.draw(self.st.floats(0, 1, exclude_max=True))


# ---- hostile scalars ------------------------------------------------------------------------------
CONTROL = ["\x00", "\x07", "\x08", "\x1b[31m", "\x1b]0;pwned\x07", "\r", "\x0b", "\x0c", "\x7f", "\x85",
           "\u2028", "\u2029", "\u202e", "\u200b", "\ufeff", "\udcff"[:0] + "\ufffd"]
UNICODE = ["é", "ß", "日本", "٣", "𝟘", "Ａ", "ﬁ", "\u0301", "🙂", "İ", "ǅ", "µ"]
TEX = ["\\input{/etc/passwd}", "\\write18{touch /tmp/x}", "\\def\\x{1}", "$", "%", "}", "{", "\\\\", "\\end{align*}"]


def hostile_text(src, max_len: int = 12) -> str:
    parts = []
    for _ in range(src.integer(0, max_len)):
        parts.append(src.weighted([(6, src.choice("abcxyz _-.0123456789")), (2, src.choice(CONTROL)),
                                   (2, src.choice(UNICODE)), (1, src.choice(TEX))]))
    return "".join(parts)


def huge_digits(src) -> str:
    n = src.weighted([(3, src.integer(13, 45)), (2, src.integer(300, 450)), (2, src.integer(2990, 3010)),
                      (1, src.integer(4290, 4310)), (1, src.integer(5000, 20000))])
    return "1" + "7" * (n - 1)


def hostile_number_text(src) -> str:
    """Text meant as a dimension value on the command line."""
    return src.weighted([
        (6, str(src.integer(1, 8192))), (1, "0"), (1, "-1"), (1, "-" + str(src.integer(1, 99))),
        (2, huge_digits(src)), (1, "٣"), (1, "７６８"), (1, "7_6_8"), (1, "1e3"), (1, "0x10"), (1, "1.5"),
        (1, " 768 "), (1, ""), (1, "nan"), (1, "inf"), (1, "true"), (1, "None"), (1, hostile_text(src, 4)),
    ])


def hostile_float_text(src) -> str:
    return src.weighted([(4, repr(src.real() * 10)), (1, "1e-320"), (1, "5e-324"), (1, "1e308"), (1, "1e309"),
                         (1, "0"), (1, "-0.0"), (1, "-1"), (1, "nan"), (1, "inf"), (1, "-inf"), (1, "1e-300"),
                         (1, "abc")])
