"""Dimensions and the names a spec declares: every SymPy Symbol is made here; sizes are built node by node."""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp

from symcost.lang import syntax as S
from symcost.errors import Loc, SymcostError, suggest
from symcost.model.dtypes import BUILTIN_DTYPES, DEFAULT_DTYPE, FLOATING, DType, Roles

Expr = sp.Expr


@dataclass(frozen=True)
class Dim:
    """A named dimension: a free positive-integer symbol, or a derived one with its definition."""

    name: str
    symbol: sp.Symbol
    doc: str | None
    definition: Expr | None  # in terms of free dims only; None for a free dim
    tex: str
    loc: Loc | None = field(default=None, compare=False)
    default: Expr | None = None  # `dim f = default 4 * h`: the definition used unless a value is given for f
    decode: bool = False  # `dim t decode`: the sequence length a decode step fixes to 1


def make_symbol(name: str) -> sp.Symbol:
    """The one place a Symbol is created: dims are positive integers."""
    return sp.Symbol(name, positive=True, integer=True)


def device_symbol(name: str) -> sp.Symbol:
    """A device figure kept symbolic in a page or a plan (peak, bandwidth, memory): a positive real, not a dim."""
    return sp.Symbol(name, positive=True)


def placeholder(name: str, **assumptions) -> sp.Dummy:
    """A symbol no spec can name (a Dummy), standing for a subexpression while an expression is rewritten."""
    return sp.Dummy(name, **assumptions)


def placeholders(prefix: str):
    """Placeholders prefix0, prefix1, … as sympy.cse takes them for the subexpressions it shares."""
    return sp.numbered_symbols(prefix, cls=sp.Dummy)


# TeX a spec may give a dim's symbol (`dim kv tex "n_{kv}"`): letters, digits, sub- and superscripts, braces,
# primes, and these commands only — never \input, \def, \write or anything else that acts on the document
TEX_COMMANDS = frozenset({
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
    "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega", "ell",
    "mathrm", "mathit", "mathbf", "mathsf", "mathcal", "text", "textrm", "operatorname", "hat", "bar", "tilde",
    "prime", "cdot", ",", "!",
})


def check_tex(tex: str, loc: Loc | None) -> str:
    """A dim's TeX name, checked against TEX_COMMANDS; anything else is a located error."""
    import re

    if not all(c.isprintable() for c in tex):
        raise SymcostError("a TeX name may not contain control characters", loc)
    for m in re.finditer(r"\\([A-Za-z]+|.)", tex):
        if m.group(1) not in TEX_COMMANDS:
            raise SymcostError(f"\\{m.group(1)} is not allowed in a TeX name", loc,
                               "use letters, digits, _ ^ { }, Greek letters and \\mathrm{…}")
    if re.search(r"[$%&#~]", tex) or tex.count("{") != tex.count("}"):
        raise SymcostError(f"'{tex}' is not a TeX name (unbalanced braces or a special character)", loc)
    return tex


def default_tex(name: str) -> str:
    if len(name) == 1:
        return name
    head, _, tail = name.partition("_")
    if tail and len(head) == 1:
        return f"{head}_{{\\mathrm{{{tail}}}}}"
    return f"\\mathrm{{{name}}}"


MAX_EXPONENT = 64
MAX_MAGNITUDE = sp.Integer(10) ** 300


def number(text: str) -> Expr:
    """A numeric literal as an exact SymPy number (parsed with fractions, never sympify)."""
    frac = Fraction(text)
    return sp.Rational(frac.numerator, frac.denominator)


# Definitions of derived dims in force while a graph is built, so shape checks can see d·a = h.
_DERIVED: contextvars.ContextVar[dict] = contextvars.ContextVar("symcost_derived", default={})


def set_derived(defs: dict) -> contextvars.Token:
    return _DERIVED.set(defs)


def reset_derived(token: contextvars.Token) -> None:
    _DERIVED.reset(token)


def dims_equal(x, y) -> bool:
    """Symbolic equality of two sizes, looking through derived dims (d = h/a)."""
    if x == y:
        return True
    diff = sp.expand(x - y)
    if diff == 0:
        return True
    defs = _DERIVED.get()
    return bool(defs) and sp.expand(diff.xreplace(defs)) == 0


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(x).replace("**", "^") for x in shape) + "]"


@dataclass(frozen=True)
class Constraint:
    """A size that must be a positive integer once the dims have values: `repeat L / 2` needs an even L."""

    value: Expr
    loc: Loc | None
    what: str  # "the repeat count"
    whole: str  # "a positive integer", "a multiple of 2"
    shown: Expr  # what the user wrote (the count, where value is count / pattern length)
    least: int = 1  # the smallest value allowed (0: a symbolic repeat count may come out as no layers)
    text: str | None = None  # the count as written in the spec (`L - Ld`), for the message

    def check(self, subs: dict) -> None:
        v = self.value.xreplace(subs)
        if v.is_number and not (v.is_Integer and v >= self.least):
            shown = self.shown.xreplace(subs)
            given = ", ".join(f"{s}={subs[s]}" for s in sorted(self.shown.free_symbols, key=str) if s in subs)
            where = "" if self.shown.is_Symbol else f" at {given}"
            raise SymcostError(f"{self.what} {self.text or fmt_expr(self.shown)} = {fmt_expr(shown)}{where}: it must be "
                               f"{self.whole}", self.loc)


class Env:
    """Names visible while building: dims, options, dtypes, and (in subclasses' scopes) tensors."""

    def __init__(self) -> None:
        self.dims: dict[str, Dim] = {}
        self.options: dict[str, bool] = {}
        self.option_docs: dict[str, str | None] = {}
        self.dtypes: dict[str, DType] = {
            k: DType(k, sp.Rational(v.numerator, v.denominator) if isinstance(v, Fraction) else sp.Integer(v),
                     k in FLOATING) for k, v in BUILTIN_DTYPES.items()
        }
        self.default_dtype = self.dtypes[DEFAULT_DTYPE]
        self.activation_dtype: DType | None = None  # None: the default dtype
        self.weight_dtype: DType | None = None  # of the parameters `quantize` selects; None: the default dtype
        self.kv_dtype: DType | None = None  # of the KV cache; None: the activations'
        self.quantize = "layers"
        self.values: dict[sp.Symbol, Expr] = {}  # concrete values of free dims (numeric mode)
        self.fixed: dict[str, Expr] = {}  # dims a phase pins (s = 1 new token in decode)
        self.decode_dim = "s"  # the sequence length a decode step fixes to 1 (`dim t decode` names another)
        self.released: set[str] = set()  # dims with a default definition that are given values: free symbols
        self._declaring: str | None = None  # the dim whose definition is being read (options are not yet set)
        self.constraints: list[Constraint] = []  # sizes that must come out whole once the dims have values

    @property
    def roles(self) -> Roles:
        """The dtypes in use by role (model, activations, weights, KV cache)."""
        act = self.activation_dtype or self.default_dtype
        return Roles(self.default_dtype, act, self.weight_dtype or self.default_dtype, self.kv_dtype or act,
                     self.quantize, self.weight_dtype is not None, self.kv_dtype is not None,
                     self.activation_dtype is not None)

    # ---- dims
    def add_dim(self, decl: S.DimDecl, kinds) -> None:
        if decl.name in self.dims:
            raise SymcostError(f"dimension '{decl.name}' is declared twice", decl.loc)
        kinds(decl.name, decl.loc)
        if getattr(decl, "decode", False):
            first = next((d for d in self.dims.values() if d.decode), None)
            if first is not None:
                raise SymcostError(f"'{decl.name}' is marked decode, and so is '{first.name}': one sequence length is "
                                   "what a decode step fixes to 1", decl.loc)
            self.decode_dim = decl.name
        sym = make_symbol(decl.name)
        definition = fallback = None
        if decl.value is not None:
            self._declaring = decl.name
            try:
                definition = self.dim_expr(decl.value, {}, substitute=True)
            finally:
                self._declaring = None
            if is_bad_size(definition):
                raise SymcostError(f"dimension '{decl.name}' = {definition} is not a positive integer", decl.value.loc)
            if getattr(decl, "default", False):
                fallback = definition
                if decl.name in self.released:
                    definition = None
        tex = check_tex(decl.tex, decl.loc) if decl.tex is not None else default_tex(decl.name)
        self.dims[decl.name] = Dim(decl.name, sym, decl.doc, definition, tex, decl.loc, fallback,
                                   getattr(decl, "decode", False))

    def derived_defs(self) -> dict[sp.Symbol, Expr]:
        return {d.symbol: d.definition for d in self.dims.values() if d.definition is not None}

    def free_dims(self) -> list[Dim]:
        return [d for d in self.dims.values() if d.definition is None]

    def dtype(self, name: str, loc: Loc | None) -> DType:
        if name not in self.dtypes:
            raise SymcostError(f"unknown dtype '{name}'", loc, suggest(name, self.dtypes))
        return self.dtypes[name]

    def add_dtype(self, decl: S.DtypeDecl, kinds) -> None:
        if decl.name in self.dtypes:
            raise SymcostError(f"dtype '{decl.name}' is already defined", decl.loc)
        kinds(decl.name, decl.loc)
        nbytes = self.dim_expr(decl.nbytes, {})
        if (nbytes.is_number and not (nbytes.is_finite and nbytes > 0)) or nbytes.is_nonpositive:
            raise SymcostError(f"dtype '{decl.name}' must have a positive byte size, not {nbytes}", decl.loc)
        self.dtypes[decl.name] = DType(decl.name, nbytes, True)

    # ---- expressions
    def dim_expr(self, node: S.Expr, local: dict, substitute: bool = False) -> Expr:
        """Build a SymPy size from a syntax node. `local` maps block dim-parameters to expressions."""
        if isinstance(node, S.Num):
            return number(node.value)
        if isinstance(node, S.Name):
            if node.id in local:
                value = local[node.id]
                if isinstance(value, sp.Expr):
                    return value
                hint = (f"a name bound in a block shadows the dimension '{node.id}' from there on; rename one of them"
                        if node.id in self.dims else None)
                raise SymcostError(f"'{node.id}' is {_what(value)} here, not a dimension", node.loc, hint)
            if node.id in self.fixed:
                return self.fixed[node.id]
            dim = self.dims.get(node.id)
            if dim is None:
                raise SymcostError(
                    f"unknown dimension '{node.id}'", node.loc, suggest(node.id, [*self.dims, *local])
                )
            if dim.definition is not None and (substitute or self.values):
                return dim.definition.xreplace(self.values) if self.values else dim.definition
            return self.values.get(dim.symbol, dim.symbol)
        if isinstance(node, S.BinOp):
            left = self.dim_expr(node.left, local, substitute)
            right = self.dim_expr(node.right, local, substitute)
            if node.op == "+":
                return left + right
            if node.op == "-":
                return left - right
            if node.op == "*":
                return _bounded(left * right, node)
            if node.op == "/":
                if right == 0:
                    raise SymcostError("division by zero in a dimension expression", node.loc)
                return left / right
            if not right.is_Integer:
                raise SymcostError(f"an exponent must be an integer literal, not {right}", node.right.loc)
            if abs(right) > MAX_EXPONENT:
                raise SymcostError(f"an exponent must be at most {MAX_EXPONENT} in size, not {right}", node.right.loc)
            if left == 0 and right < 0:
                raise SymcostError("division by zero in a dimension expression", node.loc)
            return _bounded(left**right, node)
        if isinstance(node, S.Neg):
            return -self.dim_expr(node.operand, local, substitute)
        if isinstance(node, S.Func):
            args = [self.dim_expr(a, local, substitute) for a in node.args]
            if node.name in ("floor", "ceil"):
                return (sp.floor if node.name == "floor" else sp.ceiling)(args[0])
            return (sp.Min if node.name == "min" else sp.Max)(*args)
        if isinstance(node, S.IfExpr):
            chosen = node.then if self.truth(node.cond, local) else node.orelse
            return self.dim_expr(chosen, local, substitute)
        raise SymcostError(f"expected a dimension expression, found {describe(node)}", node.loc)

    def require_whole(self, value: Expr, loc: Loc | None, what: str, whole: str = "a positive integer",
                      shown: Expr | None = None, least: int = 1, text: str | None = None) -> None:
        """A count that must be a positive integer: an error now when it is a number that is not, or can never be
        one; otherwise, unless it is a whole number ≥ `least` for every size, a constraint checked when dims get
        values. `shown` is what the user wrote when `value` is derived from it (a count over a pattern's length);
        `least=0` lets a symbolic count come out as zero (`repeat L - Ld` with Ld = L: no such layers)."""
        shown = value if shown is None else shown
        if is_bad_size(value):
            raise SymcostError(f"{what} must be {whole}, not {fmt_expr(shown)}", loc)
        bound = value.is_positive if least == 1 else value.is_nonnegative
        if value.is_integer is not True or bound is not True:
            self.constraints.append(Constraint(value, loc, what, whole, shown, least, text))

    # ---- conditions
    def truth(self, node: S.Expr, local: dict, bools: dict | None = None) -> bool:
        """Decide a condition: true/false, options, block booleans and pattern kinds (`bools`), not/and/or,
        if(c, x, y), and comparisons — of booleans, of strings, or of sizes where the order is decidable for every
        size (`2 * h > h`, `w < 4096` once w has a value); an undecidable comparison is a located error."""
        if isinstance(node, S.Bool):
            return node.value
        if isinstance(node, S.Name):
            return self._bool_name(node, local, bools)
        if isinstance(node, S.Not):
            return not self.truth(node.operand, local, bools)
        if isinstance(node, S.BoolOp):  # both sides are checked, as both branches of an if are
            left, right = self.truth(node.left, local, bools), self.truth(node.right, local, bools)
            return (left and right) if node.op == "and" else (left or right)
        if isinstance(node, S.IfExpr):
            chosen = node.then if self.truth(node.cond, local, bools) else node.orelse
            return self.truth(chosen, local, bools)
        if isinstance(node, S.Compare):
            return self._compare(node, local, bools)
        raise SymcostError(f"expected a condition (true, false, an option or a comparison), found {describe(node)}",
                           node.loc)

    def _bool_name(self, node: S.Name, local: dict, bools: dict | None) -> bool:
        if bools and node.id in bools:
            return bools[node.id]
        if node.id in local:
            value = local[node.id]
            if isinstance(value, bool):
                return value
            raise SymcostError(f"'{node.id}' is {_what(value)} here, not a boolean", node.loc)
        if node.id in self.options:
            if self._declaring:
                raise SymcostError(f"dimension '{self._declaring}' cannot depend on option '{node.id}': options are "
                                   "set after the dimensions are declared", node.loc,
                                   "choose between sizes in the statements, with if")
            return self.options[node.id]
        if node.id in self.dims:
            raise SymcostError(f"'{node.id}' is a dimension, not a boolean; compare it (`{node.id} > 1`)", node.loc)
        names = [*self.options, *(bools or {}), *(k for k, v in local.items() if isinstance(v, bool))]
        raise SymcostError(f"unknown option '{node.id}'", node.loc, suggest(node.id, names))

    def _compare(self, node: S.Compare, local: dict, bools: dict | None) -> bool:
        kinds = {self._kind(node.left, local, bools), self._kind(node.right, local, bools)}
        if "text" in kinds or "bool" in kinds:
            if len(kinds) != 1:
                raise SymcostError(f"'{node.op}' compares {' with '.join(sorted(kinds))}: both sides must be of one kind",
                                   node.loc)
            if node.op not in ("==", "!="):
                raise SymcostError(f"'{node.op}' orders sizes; {kinds.pop()}s are compared with == or !=", node.loc)
            if "text" in kinds:
                same = _text(node.left) == _text(node.right)
            else:
                same = self.truth(node.left, local, bools) == self.truth(node.right, local, bools)
            return same == (node.op == "==")
        left, right = self.dim_expr(node.left, local), self.dim_expr(node.right, local)
        diff = sp.expand(left - right)
        defs = _DERIVED.get() or self.derived_defs()
        if defs and not self.values:
            diff = sp.expand(diff.xreplace(defs))
        decided = _decide(node.op, diff)
        if decided is None:
            shown = f"{fmt_expr(left)} {node.op} {fmt_expr(right)}"
            raise SymcostError(f"cannot decide {shown}: it holds for some sizes and not for others", node.loc,
                               "compare sizes whose order is known (2 * h > h), or numbers; or choose with an option")
        return decided

    def _kind(self, node: S.Expr, local: dict, bools: dict | None) -> str:
        if isinstance(node, (S.Str, S.Null)):
            return "text"
        if isinstance(node, (S.Bool, S.Not, S.BoolOp, S.Compare)):
            return "bool"
        if isinstance(node, S.Name) and ((bools and node.id in bools) or isinstance(local.get(node.id), bool)
                                         or (node.id not in local and node.id in self.options)):
            return "bool"
        return "size"


MAX_TERMS = 1000  # terms a dimension expression may expand to (a shape's product is expanded into costs)


def _bounded(value: Expr, node) -> Expr:
    if value.is_number and value.is_finite and abs(value) > MAX_MAGNITUDE:
        raise SymcostError("a number in a dimension expression is too large (over 10^300)", node.loc)
    if not value.is_number and expanded_terms(value) > MAX_TERMS:
        raise SymcostError(f"this dimension expression expands to more than {MAX_TERMS:,} terms; write the size as a "
                           "new dimension instead", node.loc)
    return value


def expanded_terms(e: Expr) -> int:
    """An upper bound on the terms of e once expanded, counted without expanding it: a sum adds its terms'
    counts, a product multiplies them, (t terms)^k has at most C(t + k − 1, k)."""
    from math import comb

    if e.is_Add:
        return sum(expanded_terms(a) for a in e.args)
    if e.is_Mul:
        n = 1
        for a in e.args:
            n *= expanded_terms(a)
            if n > 10**9:
                return n
        return n
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        t = expanded_terms(e.base)
        return comb(t + int(e.exp) - 1, int(e.exp)) if t > 1 else 1
    return 1


def is_bad_size(x) -> bool:
    """A size that can never be a positive integer: a non-positive or fractional number, or a negative symbol."""
    if x.is_number:
        return not (x.is_Integer and x > 0)
    return bool(x.is_nonpositive)


def _decide(op: str, diff: Expr) -> bool | None:
    """left op right, from diff = left − right; None when it depends on the sizes."""
    if op in ("==", "!="):
        zero = True if diff == 0 else (False if diff.is_zero is False else None)
        return None if zero is None else zero == (op == "==")
    facts = {"<": diff.is_negative, "<=": diff.is_nonpositive, ">": diff.is_positive, ">=": diff.is_nonnegative}
    value = facts[op]
    return None if value is None else bool(value)


def fmt_expr(x) -> str:
    return str(x).replace("**", "^")


def _text(node) -> str | None:
    return node.value if isinstance(node, S.Str) else None


def describe(node) -> str:
    """What kind of expression a node is, for error messages."""
    return {S.Bool: "a boolean", S.ListLit: "a list", S.Str: "a string", S.Null: "null", S.Compare: "a comparison",
            S.BoolOp: f"'{getattr(node, 'op', '')}'", S.Not: "'not'", S.Num: "a number", S.Name: "a name",
            S.IfExpr: "a conditional"}.get(type(node), "an arithmetic expression")


def _what(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    kind = type(value).__name__.lower()
    return f"a {kind}"
