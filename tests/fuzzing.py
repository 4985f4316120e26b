"""Input generators for fuzzing symcost: programs walked from the Lark grammar, calls shaped by the op
registry, mutations of the shipped specs, hostile HF configs and device files, and command lines drawn from
the real argparse parser.

Every generator takes a *source* of choices, so the same code serves two drivers:

* ``RandomSource(seed)`` — a plain ``random.Random``: fast and reproducible from a seed (benchmarks/fuzz_long.py);
* ``HypothesisSource(draw)`` — draws from Hypothesis, so failures shrink (tests/test_fuzz.py).

``run_cli`` runs ``symcost.cli.main`` in-process and ``check`` judges the result against the contract: exit
0/1/2, an "error:" message on 2 (located for spec errors), no exception escaping, and output that is safe to
print (no terminal escapes, strict JSON, no TeX primitives from spec strings).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
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


# ---- the grammar, introspected ---------------------------------------------------------------------
class Grammar:
    """The Lark rules grouped by origin, with the height of the shallowest derivation of each nonterminal."""

    def __init__(self, lark=None):
        if lark is None:
            from symcost.lang.parse import _parser

            lark = _parser()
        self.lark = lark
        self.rules: dict[str, list] = {}
        for r in lark.rules:
            self.rules.setdefault(r.origin.name, []).append(r)
        self.terminals = {t.name: t for t in lark.terminals}
        self.literal = {t.name: t.pattern.value for t in lark.terminals if type(t.pattern).__name__ == "PatternStr"}
        self.height = self._heights()
        # a lexer-shaped tokenizer for mutations, built from the terminal patterns
        pats = [t.pattern.to_regexp() for t in sorted(lark.terminals, key=lambda t: -t.priority)
                if type(t.pattern).__name__ == "PatternRE"]
        self.token_re = re.compile("|".join(f"(?:{p})" for p in pats) + r"|.", re.S)

    def _heights(self) -> dict[str, float]:
        h = {name: math.inf for name in self.rules}
        changed = True
        while changed:
            changed = False
            for name, rules in self.rules.items():
                for r in rules:
                    sub = [0 if s.is_term else h[s.name] for s in r.expansion]
                    v = 1 + max(sub, default=0)
                    if v < h[name]:
                        h[name], changed = v, True
        return h

    def tokens(self, text: str) -> list[str]:
        return self.token_re.findall(text)


_GRAMMAR: Grammar | None = None


def grammar() -> Grammar:
    global _GRAMMAR
    if _GRAMMAR is None:
        _GRAMMAR = Grammar()
    return _GRAMMAR


def op_registry():
    from symcost.ops.registry import OPS

    return OPS


DTYPES = ("fp32", "bf16", "fp16", "fp8", "int64", "int32", "bool", "tf32")


@dataclass
class _Scope:
    dims: list = field(default_factory=list)
    tensors: list = field(default_factory=list)
    bools: list = field(default_factory=list)


class ProgramGen:
    """Walks the grammar from `start`, choosing alternatives with `src`, bounded in depth; names are biased
    toward what has been declared so far and calls toward the op registry and declared blocks."""

    def __init__(self, src, max_depth: int = 9, max_items: int = 24, max_body: int = 6):
        self.src, self.g, self.max_depth = src, grammar(), max_depth
        self.max_items, self.max_body = max_items, max_body
        self.ops = op_registry()
        self.out: list[str] = []
        self.glob = _Scope()
        self.options: list[str] = []
        self.dtypes: list[str] = list(DTYPES)
        self.blocks: dict[str, list] = {}  # name -> [(param name, kind)]
        self.scopes: list[_Scope] = [self.glob]
        self.counter = 0
        self.block_params: list | None = None
        self.declare = None

    # names
    def fresh(self, prefix: str) -> str:
        self.counter += 1
        if self.src.boolean(0.03):
            return self.src.choice(["training", "min", "max", "none", "column", "c", "s", "b", "x", "_", "true_"])
        return f"{prefix}{self.counter}"

    @property
    def scope(self) -> _Scope:
        return self.scopes[-1]

    def visible_dims(self):
        return self.glob.dims + (self.scope.dims if self.scope is not self.glob else [])

    def visible_tensors(self):
        return self.scope.tensors or self.glob.tensors

    def any_name(self):
        pool = self.visible_dims() + self.visible_tensors() + self.options + list(self.blocks) + ["training"]
        if pool and self.src.boolean(0.9):
            return self.src.choice(pool)
        return self.fresh("u")

    def dim_name(self):
        dims = self.visible_dims()
        if dims and self.src.boolean(0.92):
            return self.src.choice(dims)
        if not dims and self.src.boolean(0.9):
            return str(self.src.integer(1, 8))  # a NAME slot filled with a number still parses as an atom
        return self.any_name()

    def tensor_name(self):
        ts = self.visible_tensors()
        if ts and self.src.boolean(0.92):
            return self.src.choice(ts)
        return self.any_name()

    def bool_name(self):
        pool = self.options + self.scope.bools + ["training"]
        return self.src.choice(pool) if self.src.boolean(0.9) else self.any_name()

    # terminals
    def terminal(self, name: str, ctx: tuple) -> str:
        g, src = self.g, self.src
        if name in g.literal:
            return g.literal[name]
        if name == "NUMBER":
            return src.weighted([(10, str(src.integer(1, 8))), (2, str(src.integer(9, 4096))), (1, "0"),
                                 (1, f"{src.integer(0, 9)}.{src.integer(0, 99)}"), (0.2, huge_digits(src)[:src.integer(1, 60)])])
        if name == "BOOL":
            return src.choice(["true", "false"])
        if name == "STRING":
            if ctx[0] == "include" and src.boolean(0.85):
                return '"blocks/' + src.choice([p.name for p in SPEC_FILES if p.parent.name == "blocks"]) + '"'
            if src.boolean(0.8):
                return '"' + src.choice(["", "a doc", "hidden size", "x_{1}", "n_{kv}"]) + '"'
            return '"' + hostile_text(src).replace('"', "'").replace("\n", " ") + '"'
        if name == "NAME":
            return self.name_at(ctx)
        # any other regex terminal: take a sample from the shipped specs
        return "x"

    def name_at(self, ctx: tuple) -> str:
        origin, alias, index = ctx
        src = self.src
        if origin == "dim_decl":
            n = self.fresh("d") if src.boolean(0.95) else self.any_name()
            self.declare = (self.scope.dims, n)  # visible after its own definition
            return n
        if origin == "option_decl":
            n = self.fresh("o")
            self.options.append(n)
            return n
        if origin in ("input_decl", "param_decl"):
            n = self.fresh("t") if src.boolean(0.95) else self.any_name()
            self.declare = (self.scope.tensors, n)
            return n
        if origin in ("dtype_decl",):
            n = self.fresh("dt")
            self.dtypes.append(n)
            return n
        if origin in ("default_dtype", "tensor_type"):
            return src.choice(self.dtypes) if src.boolean(0.95) else self.any_name()
        if origin == "block_def":
            self.cur_block = self.fresh("blk")
            return self.cur_block
        if origin == "block_param":
            n = self.fresh("p")
            kind = {"param_dim": "dim", "param_bool": "bool"}.get(alias, "tensor")
            target = {"dim": self.scope.dims, "bool": self.scope.bools}.get(kind, self.scope.tensors)
            target.append(n)
            if self.block_params is not None:
                self.block_params.append((n, kind))
            return n
        if origin in ("assign", "__assign_star_4") or origin.startswith("__assign"):
            if self.visible_tensors() and src.boolean(0.15):
                return self.src.choice(self.visible_tensors())  # reassignment (carried through a repeat)
            n = self.fresh("v")
            self.pending.append(n)
            return n
        if origin == "call":
            self.current_call = self.callee()
            return self.current_call
        if origin in ("cond",) or alias in ("cond_name", "cond_not"):
            return self.bool_name()
        if origin in ("return_stmt",) or origin.startswith("__return"):
            return self.tensor_name()
        if alias == "func":
            return src.choice(["min", "max"]) if src.boolean(0.9) else self.any_name()
        if alias == "kwarg":
            return self.kwarg_name()
        if alias == "name":
            return self.dim_name() if src.boolean(0.95) else self.any_name()
        return self.any_name()

    def callee(self) -> str:
        if self.blocks and self.src.boolean(0.3):
            return self.src.choice(list(self.blocks))
        if self.src.boolean(0.97):
            return self.src.choice(list(self.ops))
        return self.any_name()

    def kwarg_name(self) -> str:
        op = self.ops.get(self.current_call or "")
        if op is not None and self.src.boolean(0.8):
            names = [p for p in op.signature.parameters if p != "build"]
            return self.src.choice(names)
        return self.any_name()

    # the walk
    def generate(self) -> str:
        self.pending: list[str] = []
        self.current_call = None
        self.out = []
        self.walk("start", 0, ("", None, 0))
        return " ".join(self.out).replace(" \n ", "\n").strip() + "\n"

    def walk(self, name: str, depth: int, ctx: tuple) -> None:
        g, src = self.g, self.src
        rules = g.rules[name]
        if "_star_" in name:
            return self.star(name, rules, depth)
        if name in ("_item", "_stmt", "_branch"):
            self.out.append("\n")
        if depth >= self.max_depth:
            best = min(self.rule_height(r) for r in rules)
            rules = [r for r in rules if self.rule_height(r) <= best]
        rule = self.pick(name, rules)
        if name == "call" and src.boolean(0.9):
            return self.registry_call(depth)
        if name == "assign":
            self.pending = []
        if name == "block_def":
            self.scopes.append(_Scope())
            self.block_params = []
        for i, sym in enumerate(rule.expansion):
            if sym.is_term:
                if name == "block_def" and sym.name == "RBRACE" and src.boolean(0.9):
                    self.out += ["\n", "return", self.tensor_name()]  # a block ends with a return
                self.out.append(self.terminal(sym.name, (name, rule.alias, i)))
                if name == "block_def" and sym.name == "RPAR" and self.block_params is not None:
                    self.blocks[self.cur_block] = self.block_params
                    self.block_params = None
            else:
                self.walk(sym.name, depth + 1, (name, rule.alias, i))
        if name == "assign":
            self.scope.tensors.extend(self.pending)
            self.pending = []
        if name in ("dim_decl", "input_decl", "param_decl") and self.declare:
            self.declare[0].append(self.declare[1])
            self.declare = None
        if name == "block_def":
            self.scopes.pop()

    def pick(self, name: str, rules: list):
        src = self.src
        if name == "_item" and len(rules) > 1:
            want = {"dim_decl": 6 if len(self.glob.dims) < 3 else 1, "input_decl": 6 if not self.glob.tensors else 1,
                    "_stmt": 6, "block_def": 1.5, "option_decl": 1, "param_decl": 1, "include": 0.2,
                    "model_decl": 0.3, "dtype_decl": 0.5, "default_dtype": 0.5}
            return src.weighted([(want.get(r.expansion[0].name, 1), r) for r in rules])
        if name == "_stmt" and len(rules) > 1:
            want = {"assign": 8, "return_stmt": 1 if self.scope is not self.glob else 0.2}
            return src.weighted([(want.get(r.expansion[0].name, 1), r) for r in rules])
        if name == "atom":
            want = {"number": 3, "name": 8, "boolean": 0.2, "func": 0.5, "list": 0.2}
            return src.weighted([(want.get(r.alias, 0.7), r) for r in rules])
        if any(any("_star_" in s.name for s in r.expansion) for r in rules):  # bodies and lists: mostly present
            return src.weighted([(1 + 4 * sum("_star_" in s.name for s in r.expansion) + len(r.expansion), r) for r in rules])
        if len(rules) > 1:  # prefer the shallowest alternatives so most expressions stay small
            hs = [self.rule_height(r) for r in rules]
            return src.weighted([(4 if h == min(hs) else 1, r) for h, r in zip(hs, rules)])
        return rules[0]

    def rule_height(self, r) -> float:
        return 1 + max(((0 if s.is_term else self.g.height[s.name]) for s in r.expansion), default=0)

    def star(self, name: str, rules: list, depth: int) -> None:
        base = next(r for r in rules if not any(s.name == name for s in r.expansion))
        rec = next(r for r in rules if any(s.name == name for s in r.expansion))
        limit = self.max_items if name == "__start_star_0" else self.max_body
        if depth >= self.max_depth:
            limit = 0
        if name.startswith(("__assign", "__return")):  # several results: now and then
            n = self.src.weighted([(12, 0), (2, 1), (1, min(limit, 3))])
        elif name.startswith(("__tensor_type", "__call")):
            n = self.src.integer(0, min(limit, 3))
        else:
            n = self.src.integer(0, limit)
        for r in [base] + [rec] * n:
            for i, sym in enumerate(r.expansion):
                if sym.name == name:
                    continue
                if sym.is_term:
                    self.out.append(self.terminal(sym.name, (name, r.alias, i)))
                else:
                    self.walk(sym.name, depth + 1, (name, r.alias, i))

    def expr(self, depth: int) -> str:
        saved, self.out = self.out, []
        self.walk("expr", max(depth, self.max_depth - 4), ("arg", None, 0))
        text, self.out = " ".join(self.out), saved
        return text

    def registry_call(self, depth: int) -> None:
        """`callee(args)` with arguments shaped by the op's signature (or the block's parameters)."""
        from symcost.ops import registry as O

        src = self.src
        callee = self.callee()
        args: list[str] = []
        keyword = False
        if callee in self.blocks:
            for pname, kind in self.blocks[callee]:
                if src.boolean(0.05):
                    continue
                args.append({"dim": lambda: self.expr(depth), "bool": self.bool_name}.get(kind, self.tensor_name)())
        elif callee in self.ops:
            for p in self.ops[callee].signature.parameters.values():
                if p.name == "build":
                    continue
                ann = p.annotation
                required = p.default is p.empty and p.kind is not p.VAR_POSITIONAL
                if not required and not src.boolean(0.35 if p.kind is p.VAR_POSITIONAL else 0.3):
                    if p.kind is not p.VAR_POSITIONAL:
                        continue
                count = src.integer(1, 3) if p.kind is p.VAR_POSITIONAL else 1
                for _ in range(count):
                    if ann is O.T:
                        v = self.tensor_name()
                    elif ann is O.Dim:
                        v = self.expr(depth)
                    elif ann is O.Dims:
                        v = "[" + ", ".join(self.expr(depth) for _ in range(src.integer(1, 4))) + "]"
                        if src.boolean(0.2):
                            v = str(src.integer(1, 4))
                    elif ann is O.Axis:
                        v = str(src.integer(-4, 3)).replace("-", "- ")
                    elif ann is bool:
                        v = src.choice(["true", "false"]) if src.boolean(0.7) else self.bool_name()
                    elif isinstance(ann, O.Word):
                        v = src.choice(ann.choices) if src.boolean(0.9) else self.any_name()
                    elif ann is O.DTypeName:
                        v = src.choice(self.dtypes)
                    else:
                        v = self.expr(depth)
                    if p.kind is p.KEYWORD_ONLY or (p.kind is not p.VAR_POSITIONAL and (keyword or (not required and src.boolean(0.5)))):
                        v, keyword = f"{p.name}={v}", True
                    args.append(v)
        if src.boolean(0.05) and args:
            del args[src.integer(0, len(args) - 1)]
        if src.boolean(0.05):
            args.append(self.any_name())
        self.out.append(f"{callee}({', '.join(args)})")


def program(src, **kw) -> str:
    """One syntactically valid program (unless a rare NAME happens to be a keyword)."""
    return ProgramGen(src, **kw).generate()


# ---- mutations of shipped specs -------------------------------------------------------------------
def _read(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def mutate_text(src, text: str, others: list[str] | None = None, rounds: int | None = None) -> str:
    g = grammar()
    others = others if others is not None else [_read(p) for p in SPEC_FILES]
    for _ in range(rounds if rounds is not None else src.integer(1, 3)):
        toks = g.tokens(text)
        if not toks:
            toks = [""]
        i = src.integer(0, len(toks) - 1)
        kind = src.choice(["delete", "duplicate", "swap", "number", "name", "unicode", "splice", "nest",
                           "truncate", "bom_crlf", "include", "repeat_line", "string"])
        if kind == "delete":
            del toks[i: i + src.integer(1, 3)]
        elif kind == "duplicate":
            toks.insert(i, toks[i] * src.integer(1, 3))
        elif kind == "swap":
            j = src.integer(0, len(toks) - 1)
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "number":
            idx = [k for k, t in enumerate(toks) if t[:1].isdigit()] or [i]
            k = src.choice(idx)
            toks[k] = src.weighted([(2, huge_digits(src)), (2, "0"), (2, "-" + toks[k]), (1, "0.0"),
                                    (1, "1" + "0" * src.integer(10, 60)), (1, "99999999999"), (1, "٣")])
        elif kind == "name":
            names = [t for t in toks if re.fullmatch(r"[A-Za-z_]\w*", t)] or ["x"]
            idx = [k for k, t in enumerate(toks) if t in names] or [i]
            toks[src.choice(idx)] = src.choice(names + ["training", "c", "_", "é", "min", "true"])
        elif kind == "unicode":
            toks.insert(i, src.choice(CONTROL + UNICODE + TEX))
        elif kind == "splice":
            lines = src.choice(others).split("\n")
            piece = "\n".join(lines[src.integer(0, len(lines) - 1):][: src.integer(1, 8)])
            toks.insert(i, "\n" + piece + "\n")
        elif kind == "nest":
            n = src.weighted([(3, src.integer(10, 200)), (2, src.integer(200, 1500)), (1, src.integer(1500, 20000))])
            form = src.choice(["paren", "neg", "fused", "repeat", "if", "list", "pow"])
            tail = "\n"
            if form == "paren":
                piece = "(" * n + "h" + ")" * n
                toks = _replace_number_or_insert(src, toks, piece)
            elif form == "neg":
                toks = _replace_number_or_insert(src, toks, "-" * n + "1")
            elif form == "pow":
                toks = _replace_number_or_insert(src, toks, "^".join(["2"] * n))
            elif form == "list":
                toks = _replace_number_or_insert(src, toks, "[" * n + "1" + "]" * n)
            else:
                head = {"fused": "fused {", "repeat": "repeat 2 {", "if": "if training {"}[form]
                toks.append("\n" + (head + "\n") * n + "zz = identity(x)" + tail + "}\n" * n)
        elif kind == "truncate":
            toks = toks[: i]
        elif kind == "bom_crlf":
            text = "".join(toks)
            text = src.choice(["\ufeff" + text, text.replace("\n", "\r\n"), text.replace("\n", "\r"),
                               text.encode("utf-8", "replace").decode("latin-1")])
            toks = [text]
        elif kind == "include":
            toks.insert(i, "\ninclude " + src.choice(['"../../../etc/passwd"', '"/dev/zero"', '"/dev/stdin"', '"spec.arch"',
                                                      '"blocks"', '""', '"blocks/attention.arch"', '"nonexistent.arch"',
                                                      '"/proc/self/environ"', '"' + "a/" * 200 + '"']) + "\n")
        elif kind == "repeat_line":
            lines = "".join(toks).split("\n")
            k = src.integer(0, len(lines) - 1)
            lines[k:k + 1] = [lines[k]] * src.integer(2, 50)
            toks = ["\n".join(lines)]
        elif kind == "string":
            idx = [k for k, t in enumerate(toks) if t.startswith('"')] or [i]
            toks[src.choice(idx)] = '"' + hostile_text(src, 20).replace('"', "").replace("\n", "") + '"'
        text = "".join(toks)
    return text


def _replace_number_or_insert(src, toks: list, piece: str) -> list:
    idx = [k for k, t in enumerate(toks) if t[:1].isdigit()]
    if idx:
        toks[src.choice(idx)] = piece
        return toks
    return toks + [f"\ndim zz = {piece}\n"]


def mutated_spec(src) -> tuple[str, str]:
    """(name of the shipped file mutated, mutated text)."""
    p = src.choice(SPEC_FILES)
    return p.name, mutate_text(src, _read(p))


def deep_spec(src, max_n: int = 12000) -> str:
    """Specifically deep or wide programs: nesting that may outrun a recursive walker."""
    n = src.weighted([(2, src.integer(20, 120)), (2, src.integer(120, 1200)), (1, src.integer(1200, 12000))])
    n = min(n, max_n)
    form = src.choice(["paren", "neg", "pow", "fused", "repeat", "if", "blocks", "list", "add"])
    head = "dim b\ndim h\ninput x: [b, h]\n"
    if form == "paren":
        return head + f"dim q = {'(' * n}h{')' * n}\ny = relu(x)\n"
    if form == "neg":
        return head + f"dim q = {'-' * n}h\ny = relu(x)\n"
    if form == "pow":
        return head + f"dim q = {'^'.join(['h'] * n)}\ny = relu(x)\n"
    if form == "add":
        return head + f"dim q = {' + '.join(['h'] * n)}\ny = linear(x, q)\n"
    if form == "list":
        return head + f"y = reshape(x, {'[' * n}b, h{']' * n})\n"
    if form == "blocks":
        n = min(n, 3000)
        body = "".join(f"block f{i}(x: [b, h]) {{\n  y = f{i + 1}(x)\n  return y\n}}\n" for i in range(n))
        return head + body + f"block f{n}(x: [b, h]) {{\n  y = relu(x)\n  return y\n}}\nout = f0(x)\n"
    open_ = {"fused": "fused {", "repeat": "repeat 2 {", "if": "if training {"}[form]
    return head + (open_ + "\n") * n + "x = relu(x)\n" + "}\n" * n


# ---- HF configs and devices -----------------------------------------------------------------------
def hostile_value(src, depth: int = 0):
    """A JSON value of a surprising type or size (alternatives built lazily: only the chosen one draws)."""
    table = [
        (2, lambda: None), (2, lambda: src.integer(-3, 3)), (1, lambda: 10 ** src.integer(15, 30)),
        (1, lambda: int(huge_digits(src)[:4000])), (1, lambda: float("nan")), (1, lambda: float("inf")),
        (1, lambda: -float("inf")), (1, lambda: 1e-320), (1, lambda: 1e308), (1, lambda: -0.0), (1, src.real),
        (2, lambda: src.choice([True, False])), (2, lambda: hostile_text(src)), (1, lambda: "768"), (1, lambda: ""),
        (1, lambda: [] if depth > 2 else [hostile_value(src, depth + 1) for _ in range(src.integer(0, 3))]),
        (1, lambda: {} if depth > 2 else {hostile_text(src, 4): hostile_value(src, depth + 1) for _ in range(src.integer(0, 3))}),
    ]
    return src.weighted(table)()


def _nest(src, value):
    n = src.weighted([(2, src.integer(5, 100)), (1, src.integer(100, 5000)), (1, src.integer(5000, 200000))])
    kind = src.choice(["list", "dict"])
    text = json.dumps(value)
    return ("[" * n + text + "]" * n) if kind == "list" else ('{"a":' * n + text + "}" * n)


def hostile_json(src, base: dict, models: list[str] | None = None) -> bytes:
    """A JSON document made from a shipped one: fields retyped, deleted, nulled, huge, nested; or broken bytes."""
    doc = json.loads(json.dumps(base))
    keys = list(doc) or ["x"]
    for _ in range(src.integer(1, 4)):
        k = src.choice(keys + [hostile_text(src, 5), "model_type", "_symcost"])
        action = src.choice(["set", "set", "set", "delete", "model_type", "nested"])
        if action == "set":
            doc[k] = hostile_value(src)
        elif action == "delete":
            doc.pop(k, None)
        elif action == "model_type" and models:
            doc["model_type"] = src.choice(models + ["", "__proto__", "../../etc/passwd", hostile_text(src, 6)])
        elif action == "nested" and isinstance(doc.get(k), (dict, list)):
            doc[k] = {"field": hostile_value(src), "default": hostile_value(src)}
    shape = src.weighted([(10, "doc"), (1, "list"), (1, "scalar"), (1, "deep"), (1, "raw")])
    if shape == "list":
        doc = [doc]
    elif shape == "scalar":
        doc = hostile_value(src)
    if shape == "deep":
        text = _nest(src, doc)
    else:
        try:
            text = json.dumps(doc, indent=src.choice([None, 2]))
        except ValueError:  # an int over the str-conversion limit
            text = json.dumps({k: v for k, v in doc.items() if not isinstance(v, int)}) if isinstance(doc, dict) else "{}"
    data = text.encode("utf-8", "surrogatepass")
    if shape == "raw":
        data = src.choice([data[: src.integer(0, len(data))], b"\xef\xbb\xbf" + data, data + b"\xff\xfe",
                           data.replace(b'"', b"'", 1), b"", b"\x00" * 10, b"{" * 100000, b'"' + b"a" * 10 + b'"',
                           b'{"model_type": "gpt2", "n_embd": 1' + b"0" * 5000 + b"}"])
    return data


def hostile_config(src) -> bytes:
    base = json.loads(_read(src.choice(PRESETS)))
    models = sorted({json.loads(_read(p)).get("model_type", "") for p in PRESETS} | {p.stem for p in HF_MAPPINGS})
    return hostile_json(src, base, models)


def hostile_device(src) -> bytes:
    base = json.loads(_read(src.choice(DEVICES)))
    doc = hostile_json(src, base)
    if src.boolean(0.3):  # retype inside the peak table / interconnect too
        try:
            d = json.loads(doc)
            if isinstance(d, dict) and isinstance(d.get("peak_flops"), dict):
                d["peak_flops"][src.choice(list(d["peak_flops"]) + ["bf16", "x"])] = hostile_value(src)
                doc = json.dumps(d).encode()
        except (ValueError, RecursionError):
            pass
    return doc


# ---- command lines from the real argparse parser --------------------------------------------------
def cli_parser() -> argparse.ArgumentParser:
    from symcost.cli import _parser

    return _parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


@dataclass
class Files:
    """Paths a command line may name, made by the caller in a scratch directory."""

    workdir: Path
    spec: Path | None = None
    config: Path | None = None
    device: Path | None = None


def spec_names(path: Path | None) -> tuple[list[str], list[str]]:
    """Dims and options a spec (and what it includes) declares, read textually."""
    dims, options = [], []
    files = [path] if path is not None and path.exists() else [SPECS / "gpt2.arch"]
    try:
        text = files[0].read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    dims += re.findall(r"^\s*dim\s+([A-Za-z_]\w*)", text, re.M)
    options += re.findall(r"^\s*option\s+([A-Za-z_]\w*)", text, re.M)
    return dims or ["h", "b", "s"], options or ["bias"]


def assignment(src, dims: list[str], options: list[str]) -> str:
    kind = src.weighted([(6, "dim"), (2, "option"), (1, "other"), (1, "setting")])
    if kind == "dim":
        return f"{src.choice(dims)}={hostile_number_text(src)}"
    if kind == "option":
        return f"{src.choice(options)}={src.choice(['true', 'false', 'TRUE', 'yes', '1', '', hostile_text(src, 3)])}"
    if kind == "setting":
        from symcost.settings import TABLE

        setting = src.choice([s for s in TABLE if s.choices or s.kind == "flag"])
        allowed = [str(c) for c in setting.choices] or ["true", "false"]
        return f"{setting.name.replace('_', '-')}={src.choice(allowed + ['bogus'])}"
    return src.choice([f"{src.choice(dims)}={src.choice(dims)}", "=", "x", "==1", f"training={src.choice(['true', 'false'])}",
                       f"{hostile_text(src, 4)}={hostile_number_text(src)}", f"c={hostile_number_text(src)}"])


def _value_for(src, action: argparse.Action, files: Files, dims, options) -> str:
    meta = (action.metavar or action.dest or "").upper()
    if action.choices is not None and src.boolean(0.92):
        return str(src.choice(list(action.choices)))
    if action.type is float:
        return hostile_float_text(src)
    if action.type is int:
        return src.choice(["0", "1", "2", "3", "4", "-1", huge_digits(src)[:30], "x"])
    if "NAME=VALUE" in meta:
        return assignment(src, dims, options)
    if meta == "NAME|FILE":
        from symcost.analysis.hardware import list_devices

        pool = list(list_devices()) + ([str(files.device)] if files.device else []) + ["nope", "/dev/null", str(SPECS / "gpt2.arch"), str(SPECS)]
        return src.choice(pool)
    if meta == "FILE":
        if action.dest == "output":
            return src.choice([str(files.workdir / "out.txt"), "/dev/null", str(files.workdir), str(files.workdir / "no" / "such" / "f"), "/dev/full"])
        pool = ([str(files.config)] * 4 if files.config else []) + [str(p) for p in PRESETS[:3]] + [str(HF_MAPPINGS[0]), "/dev/null", "nope.json", str(SPECS)]
        return src.choice(pool)
    if meta == "DIR":
        return src.choice([str(files.workdir), str(SPECS), "/nonexistent", "/dev/null", str(SPECS / "gpt2.arch")])
    if meta == "NAME":
        from symcost.analysis.hf import presets

        return src.choice(list(presets()) + ["nope", "../gpt2", ""]) if action.dest == "preset" else src.choice(list(op_registry()) + ["lineer"])
    if meta == "DIM":
        return src.choice(dims + ["d", "nope"])
    if meta == "DTYPE":
        return src.choice(list(DTYPES) + ["fp4", "nope", ""])
    if meta in ("T", "P", "E", "N"):
        return src.choice(["1", "2", "4", "8", "3", "0", "-1", "t", "h", "N_d", "b", huge_digits(src)[:30], "٣", "1.5", "x y"])
    if meta.startswith("BXS"):
        return src.choice(["2x16", "0x0", "1x" + "9" * 12, "x", "2x16,3x32"])
    return hostile_text(src, 6)


def command_line(src, files: Files, parser: argparse.ArgumentParser | None = None) -> list[str]:
    parser = parser or cli_parser()
    subs = subcommands(parser)
    weights = {"derive": 12, "compare": 3, "ops": 1, "devices": 1, "presets": 1, "zoo": 0, "validate": 0.3}
    cmd = src.weighted([(weights.get(n, 1), n) for n in subs])
    sp_ = subs[cmd]
    dims, options = spec_names(files.spec)
    argv = [cmd]
    positionals = [a for a in sp_._actions if not a.option_strings and not isinstance(a, argparse._HelpAction)]
    optionals = [a for a in sp_._actions if a.option_strings]
    for a in positionals:
        if a.nargs == "?" and src.boolean(0.2):
            continue
        if cmd == "ops":
            argv.append(src.choice(list(op_registry()) + ["lineer", ""]))
            continue
        pool = ([str(files.spec)] * 6 if files.spec else []) + [str(p) for p in SPEC_FILES[:4]] + ["llama", "nope", str(SPECS), "/dev/null"]
        argv.append(src.choice(pool))
    for _ in range(src.integer(0, 5)):
        a = src.choice(optionals)
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction)) and src.boolean(0.9):
            continue
        flag = src.choice(a.option_strings)
        if a.nargs == 0:
            argv.append(flag)
        elif a.nargs == "+":
            argv.append(flag)
            argv.extend(_value_for(src, a, files, dims, options) for _ in range(src.integer(1, 4)))
        else:
            argv += [flag, _value_for(src, a, files, dims, options)]
    return argv


# ---- running and judging --------------------------------------------------------------------------
@dataclass
class Result:
    code: int | None
    stdout: str
    stderr: str
    exc: str | None = None  # a formatted traceback when an exception escaped main()
    exc_type: str | None = None
    where: str | None = None  # the innermost symcost frame of that traceback


def _where(tb) -> str:
    frames = [f for f in traceback.extract_tb(tb) if "/symcost/" in f.filename.replace("\\", "/")]
    f = frames[-1] if frames else (traceback.extract_tb(tb)[-1] if tb else None)
    return f"{Path(f.filename).name}:{f.name}:{f.lineno}" if f else "?"


def run_cli(argv: list[str]) -> Result:
    from symcost.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    except SystemExit as e:  # argparse: usage errors (2), --help / --version (0)
        c = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        return Result(c, out.getvalue(), err.getvalue())
    except BaseException as e:  # noqa: BLE001 - the point is to see everything that escapes
        if isinstance(e, KeyboardInterrupt):
            raise
        return Result(None, out.getvalue(), err.getvalue(), traceback.format_exc(), type(e).__name__, _where(e.__traceback__))
    return Result(code, out.getvalue(), err.getvalue())


def write_spec_dir(workdir: Path, text: str, name: str = "spec.arch") -> Path:
    """The spec in a scratch directory beside a copy of the shipped blocks (so its includes resolve)."""
    workdir.mkdir(parents=True, exist_ok=True)
    blocks = workdir / "blocks"
    if not blocks.exists():
        shutil.copytree(SPECS / "blocks", blocks)
    p = workdir / name
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return p


_ESC = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")
_TEX = re.compile(r"\\(input|include|write|openout|immediate|def|catcode|read|csname)\b")


def check(res: Result, argv: list[str], spec_only: bool = False) -> str | None:
    """None when the run kept the contract, else a short signature of the misbehaviour (for dedup)."""
    if res.exc is not None:
        return f"traceback {res.exc_type} at {res.where}"
    if res.code not in (0, 1, 2):
        return f"exit status {res.code!r}"
    err = res.stderr
    if res.code == 2:
        if err.startswith("usage:") and "error:" in err:
            pass  # argparse rejecting a flag; not a spec error
        elif not err.startswith("error:"):
            return "exit 2 without an 'error:' message"
        elif spec_only and "\n  --> " not in err:
            first = err.splitlines()[0]
            return "unlocated spec error: " + re.sub(r"'[^']*'|\d+", "…", first)[:90]
    if _ESC.search(res.stdout) or _ESC.search(err.replace("\n", "")):
        return "control character / terminal escape in output"
    fmt = _flag(argv, "--format")
    if any(a in ("-h", "--help", "--version") for a in argv):
        fmt = None  # argparse printed its help text instead
    if res.code == 0 and fmt == "json" and not _flag(argv, "-o") and not _flag(argv, "--output"):
        try:
            json.loads(res.stdout, parse_constant=_reject_constant)
        except ValueError as e:
            return f"invalid JSON output: {str(e)[:60]}"
    if res.code == 0 and fmt == "latex" and _TEX.search(res.stdout):
        return "TeX primitive from the spec in LaTeX output"
    return None


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _flag(argv: list[str], flag: str) -> str | None:
    """The value of a flag as argparse takes it: the last occurrence wins."""
    found = None
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            found = argv[i + 1]
    return found


def in_process_pipeline(text: str, workdir: Path) -> Result:
    """parse → build → derive on a spec text through the library API (not the CLI)."""
    from symcost.cost.accounting import derive
    from symcost.errors import SymcostError
    from symcost.model.builder import build
    from symcost.lang.parse import load

    p = write_spec_dir(workdir, text)
    try:
        derive(build(load(p)))
    except SymcostError as e:
        return Result(2, "", str(e))
    except RecursionError:
        return Result(2, "", "error: recursion")
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return Result(None, "", "", traceback.format_exc(), type(e).__name__, _where(e.__traceback__))
    return Result(0, "", "")


def _samples():  # python tests/fuzzing.py SEED prints a few generated programs
    s = RandomSource(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    for _ in range(3):
        print(program(s))
        print("----")


# ---- misbehaviours already recorded in FINDINGS.md (signature pattern -> finding id) ---------------
KNOWN: list[tuple[str, str]] = [
    ("F1/F2 time", r"^timeout .* at (derive|graph|compare)\.py"),
    ("F3 compare time", r"^timeout .* at compare\.py"),
    ("F4 KeyError --pp prefill", r"^traceback KeyError at derive\.py:nbytes"),
    ("F5 huge --set values", r"^traceback (ValueError|OverflowError) at (forms|roofline|text|json)\.py"),
    ("F7 deep nesting", r"nests too deeply|^timeout .* at parse\.py"),
    ("F10 control characters echoed", r"^control character / terminal escape in output"),
    ("F12 unlocated built-in option", r"unlocated spec error: error: … is a built-in option"),
]


def known(problem: str) -> str | None:
    for finding, pattern in KNOWN:
        if re.search(pattern, problem):
            return finding
    return None


if __name__ == "__main__":
    _samples()


# ---- syntax trees as Hypothesis strategies (the unparser's round trip) ------------------------------------------
def keywords() -> frozenset:
    """The words the grammar reserves: every literal terminal that looks like a name (dim, if, null, nograd, …)."""
    g = grammar()
    words = set(g.literal.values())
    for t in g.terminals.values():  # BOOL, NOGRAD, FROZEN: small regex terminals of fixed words
        if type(t.pattern).__name__ == "PatternRE" and "[" not in t.pattern.value:
            words.update(w for w in re.findall(r"[A-Za-z_]+", t.pattern.value) if re.fullmatch(t.pattern.value, w))
    return frozenset(w for w in words if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", w))


def syntax_strategies():
    """Hypothesis strategies for syntax trees: one per class of syntax.Expr, syntax.Stmt and syntax.Item (checked
    complete against those unions), calls shaped by the op registry. Returns (exprs, stmts, items)."""
    import typing

    from hypothesis import strategies as st

    from symcost.lang import syntax as S
    from symcost.lang.parse import FUNCS

    at = None  # locations do not take part in equality
    reserved = keywords()
    name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True).filter(lambda n: n not in reserved)
    text = st.text(st.characters(blacklist_characters='"\n', blacklist_categories=("Cs",)), max_size=6).filter(
        str.isprintable)  # the parser refuses control characters in strings
    number = st.one_of(st.integers(0, 10**6).map(str), st.tuples(st.integers(0, 99), st.integers(0, 99)).map(
        lambda p: f"{p[0]}.{p[1]}"))
    leaves = {
        S.Num: number.map(lambda v: S.Num(v, at)),
        S.Name: name.map(lambda n: S.Name(n, at)),
        S.Bool: st.booleans().map(lambda v: S.Bool(v, at)),
        S.Str: text.map(lambda v: S.Str(v, at)),
        S.Null: st.just(S.Null(at)),
    }

    def extend(inner):
        binary = lambda cls, ops: st.builds(lambda o, a, b: cls(o, a, b, at), st.sampled_from(ops), inner, inner)  # noqa: E731
        one_arg = st.builds(lambda f, a: S.Func(f, (a,), at), st.sampled_from([f for f in FUNCS if f in ("floor", "ceil")]), inner)
        many = st.builds(lambda f, a: S.Func(f, tuple(a), at), st.sampled_from([f for f in FUNCS if f in ("min", "max")]),
                         st.lists(inner, min_size=1, max_size=3))
        return {
            S.BinOp: binary(S.BinOp, ["+", "-", "*", "/", "^"]),
            S.Neg: inner.map(lambda a: S.Neg(a, at)),
            S.Func: st.one_of(one_arg, many),
            S.ListLit: st.lists(inner, max_size=3).map(lambda xs: S.ListLit(tuple(xs), at)),
            S.Compare: binary(S.Compare, list(S.COMPARISONS)),
            S.BoolOp: binary(S.BoolOp, ["and", "or"]),
            S.Not: inner.map(lambda a: S.Not(a, at)),
            S.IfExpr: st.builds(lambda c, x, y: S.IfExpr(c, x, y, at), inner, inner, inner),
        }

    missing = set(typing.get_args(S.Expr)) - set(leaves) - set(extend(st.nothing()))
    assert not missing, f"no strategy for expression nodes {missing}"
    exprs = st.recursive(st.one_of(*leaves.values()), lambda inner: st.one_of(*extend(inner).values()), max_leaves=10)

    ops = op_registry()

    def call_for(op_name):
        params = [p for p in ops[op_name].signature.parameters.values() if p.name != "build"]
        positional = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        keywords_ = [p.name for p in params if p.kind is not p.VAR_POSITIONAL]
        kwargs = st.lists(st.sampled_from(keywords_), unique=True, max_size=min(3, len(keywords_))) if keywords_ else st.just([])
        return st.builds(
            lambda args, kws, vals: S.Call(op_name, tuple(args), tuple(S.Kwarg(k, v, at) for k, v in zip(kws, vals)), at),
            st.lists(exprs, max_size=max(1, len(positional))), kwargs, st.lists(exprs, min_size=3, max_size=3))

    calls = st.one_of(st.sampled_from(sorted(ops)).flatmap(call_for),
                      st.builds(lambda n, a: S.Call(n, tuple(a), (), at), name, st.lists(exprs, max_size=3)))
    targets = st.lists(name, min_size=1, max_size=3).map(lambda ns: tuple(S.Name(n, at) for n in ns))
    tensor_type = st.builds(lambda d, shape: S.TensorType(d, tuple(shape), at),
                            st.one_of(st.none(), st.sampled_from(DTYPES)), st.lists(exprs, max_size=3))
    doc = st.one_of(st.none(), text)
    param_decl = st.builds(lambda n, t, d, f: S.ParamDecl(n, t, d, at, f), name, tensor_type, doc, st.booleans())

    def statements(body):
        block = st.lists(body, max_size=3).map(tuple)
        branch = st.lists(st.one_of(body, param_decl), max_size=3).map(tuple)
        return {
            S.Assign: st.builds(lambda t, c: S.Assign(t, c, at), targets, calls),
            S.Repeat: st.builds(lambda c, b, p: S.Repeat(c, b, at, tuple(S.Name(k, at) for k in p)), exprs, block,
                                st.lists(name, unique=True, max_size=3)),
            S.Experts: st.builds(lambda c, k, b: S.Experts(c, k, b, at), exprs, exprs, block),
            S.Fused: block.map(lambda b: S.Fused(b, at)),
            S.If: st.builds(lambda c, t, e: S.If(c, t, e, at), exprs, branch, branch),
            S.Return: st.lists(name, min_size=1, max_size=3).map(lambda ns: S.Return(tuple(S.Name(n, at) for n in ns), at)),
        }

    missing = set(typing.get_args(S.Stmt)) - set(statements(st.nothing()))
    assert not missing, f"no strategy for statements {missing}"
    stmts = st.recursive(st.one_of(*(v for k, v in statements(st.nothing()).items() if k in (S.Assign, S.Return))),
                         lambda inner: st.one_of(*statements(inner).values()), max_leaves=6)
    block_param = st.one_of(
        st.builds(lambda n, t: S.BlockParam(n, "tensor", t, at), name, st.one_of(st.none(), tensor_type)),
        st.builds(lambda n, k: S.BlockParam(n, k, None, at), name, st.sampled_from(["dim", "bool"])))
    declarations = {
        S.ModelDecl: st.builds(lambda n, d: S.ModelDecl(n, d, at), name, doc),
        S.Include: text.map(lambda p: S.Include(p, at)),
        S.DimDecl: st.builds(lambda n, v, d, t: S.DimDecl(n, v, d, t, at), name, st.one_of(st.none(), exprs), doc, doc),
        S.DtypeDecl: st.builds(lambda n, v, d: S.DtypeDecl(n, v, d, at), name, exprs, doc),
        S.DefaultDtype: name.map(lambda n: S.DefaultDtype(n, at)),
        S.OptionDecl: st.builds(lambda n, v, d: S.OptionDecl(n, v, d, at), name, st.booleans(), doc),
        S.InputDecl: st.builds(lambda n, t, d, g: S.InputDecl(n, t, d, at, g), name, tensor_type, doc, st.booleans()),
        S.ParamDecl: param_decl,
        S.BlockDef: st.builds(lambda n, ps, b: S.BlockDef(n, tuple(ps), tuple(b), at), name,
                              st.lists(block_param, max_size=3, unique_by=lambda p: p.name), st.lists(stmts, max_size=3)),
    }
    missing = set(typing.get_args(S.Item)) - set(declarations) - set(typing.get_args(S.Stmt))
    assert not missing, f"no strategy for items {missing}"
    items = st.lists(st.one_of(*declarations.values(), stmts), max_size=6).map(tuple)
    return exprs, stmts, items
