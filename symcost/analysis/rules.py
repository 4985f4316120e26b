"""Mapping rules: small expressions over a Hugging Face config's fields, evaluated node by node (never eval).

A rule is an expression of the spec language (symcost.lang.parse.parse_expression): arithmetic (`+ - * / ^`,
unary minus, parentheses), comparisons (`== != < <= > >=`), `and`/`or`/`not`, conditionals
(`if(cond, then, else)`), string literals ("gated-gelu"), `null`, `true`/`false`, and the functions of FUNCS. Names are config fields, or aliases a mapping declares in
`fields` (a nested path such as `rope_parameters.partial_rotary_factor`, or several spellings, the first present
one read). A field absent from the config takes the mapping's `defaults` entry (transformers' class default,
possibly null); a field with neither is an error. null is a value: `if(n_inner != null, n_inner, 4 * n_embd)`.
A list field's items are reached through an alias path (`depths.0`).

Numbers are Python's: integers exact, `/` of integers an exact fraction, a float field (0.25) a float; `floor`
is transformers' `int(head_dim * partial_rotary_factor)` for the positive numbers sizes are. Every value stays within MAX_MAGNITUDE,
every exponent an integer within MAX_EXPONENT; booleans are not numbers; types never mix silently.
"""
from __future__ import annotations

import math
from fractions import Fraction

from symcost.errors import Loc, SymcostError

MAX_MAGNITUDE = 10**30
MAX_EXPONENT = 64
MAX_RULE_CHARS = 1000
MAX_PATH_DEPTH = 8
FUNCS = {
    "floor": "round down (transformers' int() of a positive number)",
    "ceil": "round up (transformers' math.ceil)",
    "min": "the smallest of its arguments",
    "max": "the largest of its arguments",
    "is_number": "true when its argument is a number (a field that may also be a word: time_step_rank \"auto\")",
}


def parse(text: str, file: str):
    """A rule's syntax tree."""
    from symcost.lang.parse import parse_expression

    if len(text) > MAX_RULE_CHARS:
        raise SymcostError(f"{file}: a rule of {len(text)} characters is too long (at most {MAX_RULE_CHARS})")
    return parse_expression(text, file, tuple(FUNCS))


def kind(value) -> str:
    """A value's kind as a message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Fraction, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def shown(value) -> str:
    """A value as the config writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, Fraction):
        return str(value) if value.denominator != 1 else str(value.numerator)
    if isinstance(value, list) and len(value) <= 8 and all(isinstance(x, (int, float, str)) for x in value):
        return "[" + ", ".join(shown(x) for x in value) + "]"
    if isinstance(value, (list, dict)):
        return f"{kind(value)} of {len(value)}"
    return repr(value)


class Fields:
    """A config's fields as rules see them: lookups (with aliases and class defaults) and a record of what was read."""

    def __init__(self, config: dict, defaults: dict | None = None, aliases: dict | None = None):
        self.config = config
        self.defaults = defaults or {}
        self.aliases = aliases or {}
        self.read: dict[str, object] = {}  # top-level field -> its value (as the config gives it)
        self.defaulted: dict[str, object] = {}  # name -> the class default used because the field is absent

    def lookup(self, name: str, loc: Loc | None):
        paths = self.aliases.get(name, [name])
        for path in paths if isinstance(paths, list) else [paths]:
            found, value = self._path(str(path))
            if found:
                return value
        if name in self.defaults:
            self.defaulted[name] = self.defaults[name]
            return self.defaults[name]
        spelled = " or ".join(paths) if isinstance(paths, list) else str(paths)
        raise SymcostError(f"missing field '{spelled}'", loc)

    def _path(self, path: str):
        parts = path.split(".")
        if len(parts) > MAX_PATH_DEPTH:
            raise SymcostError(f"the field path '{path[:80]}' is deeper than {MAX_PATH_DEPTH}")
        node = self.config
        for i, part in enumerate(parts):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return False, None
            if i == 0:
                self.read[part] = node
        return True, node


def evaluate(tree, fields: Fields):
    """The value of a rule's syntax tree over a config's fields."""
    return _Eval(fields).value(tree)


class _Eval:
    def __init__(self, fields: Fields):
        self.fields = fields

    def value(self, node):
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise SymcostError(f"a {type(node).__name__} cannot appear in a mapping rule", getattr(node, "loc", None))
        return method(node)

    # literals and names
    def _Num(self, node):
        text = node.value
        return int(text) if text.isdigit() else float(text)

    def _Bool(self, node):
        return node.value

    def _Str(self, node):
        return node.value

    def _Null(self, node):
        return None

    def _Name(self, node):
        value = self.fields.lookup(node.id, node.loc)
        if isinstance(value, float) and not math.isfinite(value):
            raise SymcostError(f"field '{node.id}' is not a finite number", node.loc)
        return _bounded(value, node) if _is_number(value) else value

    # arithmetic
    def _Neg(self, node):
        return -self._number(node.operand, "minus")

    def _BinOp(self, node):
        left, right = self._number(node.left, node.op), self._number(node.right, node.op)
        if node.op == "+":
            out = left + right
        elif node.op == "-":
            out = left - right
        elif node.op == "*":
            out = left * right
        elif node.op == "/":
            if right == 0:
                raise SymcostError("division by zero", node.loc)
            out = Fraction(left) / Fraction(right) if _exact(left, right) else left / right
        else:
            out = self._power(left, right, node)
        return _bounded(out, node)

    def _power(self, base, exponent, node):
        if not (isinstance(exponent, int) or (isinstance(exponent, Fraction) and exponent.denominator == 1)):
            raise SymcostError(f"an exponent must be a whole number, not {shown(exponent)}", node.right.loc)
        exponent = int(exponent)
        if abs(exponent) > MAX_EXPONENT:
            raise SymcostError(f"an exponent must be at most {MAX_EXPONENT} in size, not {exponent}", node.right.loc)
        if base == 0 and exponent < 0:
            raise SymcostError("division by zero", node.loc)
        if abs(base) > 1 and exponent * math.log10(abs(base)) > 31:
            raise SymcostError(f"a number in this rule is too large (over 10^30)", node.loc)
        return Fraction(base) ** exponent if _exact(base, base) else base**exponent

    def _number(self, node, what: str):
        value = self.value(node)
        if not _is_number(value):
            raise SymcostError(f"'{what}' needs numbers, but this is {kind(value)} ({shown(value)})", node.loc)
        return value

    # comparisons and logic
    def _Compare(self, node):
        left, right = self.value(node.left), self.value(node.right)
        if node.op in ("==", "!="):
            if left is not None and right is not None and kind(left) != kind(right):
                raise SymcostError(f"'{node.op}' compares {kind(left)} ({shown(left)}) with {kind(right)} "
                                   f"({shown(right)})", node.loc)
            equal = left == right
            return equal if node.op == "==" else not equal
        for side, v in ((node.left, left), (node.right, right)):
            if not _is_number(v):
                raise SymcostError(f"'{node.op}' compares numbers, but this is {kind(v)} ({shown(v)})", side.loc)
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[node.op]

    def _truth(self, node) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise SymcostError(f"a condition must be true or false, but this is {kind(value)} ({shown(value)})",
                               getattr(node, "loc", None), "compare it: x != null, x == 'value', x > 0")
        return value

    def _BoolOp(self, node):
        first = self._truth(node.left)
        if node.op == "and":
            return first and self._truth(node.right)
        return first or self._truth(node.right)

    def _Not(self, node):
        return not self._truth(node.operand)

    def _IfExpr(self, node):
        return self.value(node.then) if self._truth(node.cond) else self.value(node.orelse)

    # functions
    def _Func(self, node):
        name = node.name
        if name not in FUNCS:
            raise SymcostError(f"unknown function '{name}' in a mapping rule; known: {', '.join(FUNCS)}", node.loc)
        args = [self.value(a) for a in node.args]
        if name == "is_number":
            if len(args) != 1:
                raise SymcostError("is_number() takes one value", node.loc)
            return _is_number(args[0])
        for a, arg in zip(node.args, args):
            if not _is_number(arg):
                raise SymcostError(f"{name}() takes numbers, but this is {kind(arg)} ({shown(arg)})", a.loc)
        if name in ("min", "max"):
            return (min if name == "min" else max)(args)
        if len(args) != 1:
            raise SymcostError(f"{name}() takes one number", node.loc)
        return (math.floor if name == "floor" else math.ceil)(args[0])


def _is_number(value) -> bool:
    return isinstance(value, (int, Fraction, float)) and not isinstance(value, bool)


def _exact(*values) -> bool:
    return all(isinstance(v, (int, Fraction)) for v in values)


def _bounded(value, node):
    if abs(value) > MAX_MAGNITUDE:
        raise SymcostError("a number in this rule is too large (over 10^30)", getattr(node, "loc", None))
    return value


def whole(value):
    """A number that is a whole number, as an int; None otherwise (0.5, 197.5, a string)."""
    if not _is_number(value):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else None
    if isinstance(value, Fraction):
        return value.numerator if value.denominator == 1 else None
    return value


def names_in(tree) -> set:
    """The names a rule's syntax tree reads."""
    found, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if type(node).__name__ == "Name":
            found.add(node.id)
            continue
        for attr in ("left", "right", "operand", "cond", "then", "orelse"):
            child = getattr(node, attr, None)
            if child is not None:
                stack.append(child)
        stack.extend(getattr(node, "args", ()) or ())
    return found
