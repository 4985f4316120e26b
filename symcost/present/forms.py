"""Shared formatting: a stable term order, Unicode and LaTeX renderings of closed forms, and readable units."""
from __future__ import annotations

from fractions import Fraction

import sympy as sp

_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


class Forms:
    """Renders expressions with factors in the spec's dimension order and terms by descending degree."""

    def __init__(self, symbols: list[sp.Symbol], tex: dict[sp.Symbol, str] | None = None):
        self.order = {s: i for i, s in enumerate(symbols)}
        self.tex_names = tex or {}
        self._cache: dict = {}
        self._names: dict = {}
        self._texts: dict = {}

    # ---- structure ----------------------------------------------------------------------------
    def _factors(self, term: sp.Expr):
        hit = self._cache.get(term)
        if hit is None:
            hit = self._cache[term] = self._split(term)
        return hit

    def _split(self, term: sp.Expr):
        coeff, rest = term.as_coeff_Mul()
        powers = rest.as_powers_dict() if rest != 1 else {}
        dims, other = [], []
        for base, exp in powers.items():
            (dims if base in self.order else other).append((base, exp))
        dims.sort(key=lambda be: self.order[be[0]])
        other.sort(key=lambda be: self._name(be[0]))
        return coeff, dims, other

    def _name(self, base: sp.Expr) -> str:
        """`str(base)`, remembered: nested floors print slowly and recur in every term."""
        hit = self._names.get(base)
        if hit is None:
            hit = self._names[base] = str(base)
        return hit

    def _key(self, term: sp.Expr):
        coeff, dims, other = self._factors(term)
        exps = {b: float(e) for b, e in dims}
        degree = sum(exps.values()) + sum(float(e) for _, e in other if e.is_number)
        vector = tuple(-exps.get(s, 0.0) for s in self.order)
        return (-degree, -abs(float(coeff)), vector, tuple((self._name(b), str(e)) for b, e in other))

    def terms(self, expr: sp.Expr) -> list[sp.Expr]:
        """The terms of an expanded expression (closed forms arrive expanded) in display order."""
        if expr == 0:
            return []
        parts = list(expr.args) if expr.is_Add else [expr]
        return sorted(parts, key=self._key)

    # ---- Unicode ------------------------------------------------------------------------------
    def text(self, expr: sp.Expr, collect: tuple = ()) -> str:
        """`24·b·s·h² + 4·b·s²·h`; with `collect` symbols, `L·(12·h² + 13·h) + V·h`."""
        if collect:
            groups = self._collect(expr, collect)
            if groups is not None:
                return groups
        hit = self._texts.get(expr)
        if hit is None:
            hit = self._texts[expr] = self._join([self._term_text(t) for t in self.terms(expr)])
        return hit

    def _buckets(self, expr, syms) -> dict | None:
        """Terms grouped by their powers of `syms` (L·(12h² + 13h) + …), or None when nothing groups."""
        buckets: dict[sp.Expr, list] = {}
        for t in self.terms(expr):
            key = sp.Integer(1)
            for s in syms:
                e = t.as_powers_dict().get(s, 0)
                if e:
                    key *= s**e
            buckets.setdefault(key, []).append(t / key)
        if not buckets or (len(buckets) == 1 and sp.Integer(1) in buckets):
            return None
        return {key: sorted(inner, key=self._key) for key, inner in buckets.items()}

    def _collect(self, expr, syms) -> str | None:
        buckets = self._buckets(expr, syms)
        if buckets is None:
            return None
        parts = []
        for key, inner_terms in buckets.items():
            if key == 1:
                parts.extend(self._term_text(t) for t in inner_terms)
            elif len(inner_terms) == 1:
                parts.append(self._term_text(key * inner_terms[0]))
            else:
                parts.append(f"{self._term_text(key)}·({self._join([self._term_text(t) for t in inner_terms])})")
        return self._join(parts)

    def _base_text(self, base: sp.Expr, exp) -> str:
        """A factor's base: a symbol, `(a + 2)`, `min(c, w)`, `⌊x⌋`, `⌈x⌉`, in the spec's notation."""
        if base.is_Symbol:
            return str(base)
        return _nonsymbol(base, exp, self.text, _TEXT)

    @staticmethod
    def _join(parts: list[str]) -> str:
        if not parts:
            return "0"
        out = parts[0]
        for p in parts[1:]:
            out += f" − {p[1:]}" if p.startswith("-") else f" + {p}"
        return out

    def _term_text(self, term: sp.Expr) -> str:
        coeff, dims, other = self._factors(term)
        num, den = [], []
        for base, exp in [*dims, *other]:
            name = self._base_text(base, exp)
            if exp.is_number and exp < 0:
                den.append(name + (str(-exp).translate(_SUP) if exp != -1 else ""))
            else:
                num.append(name + (str(exp).translate(_SUP) if exp != 1 else ""))
        frac = Fraction(int(coeff.p), int(coeff.q)) if coeff.is_Rational else None
        sign = "-" if coeff < 0 else ""
        if frac is not None:
            frac = abs(frac)
            if frac.denominator != 1:
                den.insert(0, str(frac.denominator))
            lead = str(frac.numerator)
        else:
            lead = sp.sstr(abs(coeff))
        body = "·".join(([lead] if lead != "1" or not num else []) + num)
        if den:
            body += "/" + ("·".join(den) if len(den) == 1 else "(" + "·".join(den) + ")")
        return sign + body

    # ---- LaTeX --------------------------------------------------------------------------------
    def latex(self, expr: sp.Expr, collect: tuple = ()) -> str:
        terms = self.latex_terms(expr, collect)
        return self._join_tex(terms) if terms else "0"

    def latex_terms(self, expr: sp.Expr, collect: tuple = ()) -> list[str]:
        """The TeX of each displayed term (grouped by the `collect` symbols), in display order."""
        buckets = self._buckets(expr, collect) if collect else None
        if buckets is None:
            return [self._term_tex(t) for t in self.terms(expr)]
        parts = []
        for key, inner in buckets.items():
            if key == 1:
                parts.extend(self._term_tex(t) for t in inner)
            elif len(inner) == 1:
                parts.append(self._term_tex(key * inner[0]))
            else:
                inside = self._join_tex([self._term_tex(t) for t in inner])
                parts.append(f"{self._term_tex(key)} \\left({inside}\\right)")
        return parts

    @staticmethod
    def _join_tex(parts: list[str]) -> str:
        out = parts[0]
        for p in parts[1:]:
            out += f" - {p[1:]}" if p.startswith("-") else f" + {p}"
        return out

    def _name_tex(self, base, exp=1) -> str:
        """A factor's base in TeX: a symbol's name, `\\left(a + 2\\right)`, `\\min\\left(c, w\\right)`, floors."""
        if base in self.tex_names:
            return self.tex_names[base]
        if base.is_Symbol:
            return sp.latex(base, symbol_names=self.tex_names)
        return _nonsymbol(base, exp, self.latex, _TEX)

    def _term_tex(self, term: sp.Expr) -> str:
        coeff, dims, other = self._factors(term)
        num, den = [], []
        for base, exp in [*dims, *other]:
            name = self._name_tex(base, exp)
            if exp.is_number and exp < 0:
                den.append(name + (f"^{{{-exp}}}" if exp != -1 else ""))
            else:
                num.append(name + (f"^{{{exp}}}" if exp != 1 else ""))
        sign = "-" if coeff < 0 else ""
        c = abs(coeff)
        if c.is_Rational and c.q != 1:
            den.insert(0, str(c.q))
            lead = str(c.p)
        else:
            lead = sp.latex(c)
        top = " ".join(([lead] if lead != "1" or not num else []) + num)
        if den:
            return sign + f"\\frac{{{top}}}{{{' '.join(den)}}}"
        return sign + top


def _ordered_args(expr: sp.Expr) -> list:
    """Min/Max arguments with symbolic ones first (`min(c, 4096)`), then by their printed form."""
    return sorted(expr.args, key=lambda arg: (arg.is_number, sp.default_sort_key(arg)))


# how a factor that is not a symbol is bracketed: Unicode (the spec's notation) and LaTeX
_TEXT = {"min": "min({})", "max": "max({})", "floor": "⌊{}⌋", "ceiling": "⌈{}⌉", "group": "({})"}
_TEX = {"min": "\\min\\left({}\\right)", "max": "\\max\\left({}\\right)", "floor": "\\left\\lfloor {} \\right\\rfloor",
        "ceiling": "\\left\\lceil {} \\right\\rceil", "group": "\\left({}\\right)"}


def _nonsymbol(base: sp.Expr, exp, render, brackets: dict) -> str:
    """A sum, min/max, floor or ceiling as a factor, its arguments rendered by `render` (text or latex)."""
    if isinstance(base, (sp.Min, sp.Max)):
        return brackets[type(base).__name__.lower()].format(", ".join(render(arg) for arg in _ordered_args(base)))
    if isinstance(base, (sp.floor, sp.ceiling)):
        return brackets[type(base).__name__].format(render(base.args[0]))
    if base.is_Add or base.is_Mul or (base.is_Pow and exp != 1):
        return brackets["group"].format(render(base))
    return render(base)
