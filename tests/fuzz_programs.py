"""Spec programs for fuzzing, walked from the Lark grammar with calls shaped by the op registry."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from fuzz_sources import SPEC_FILES, hostile_text, huge_digits


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
