"""Syntax tree to canonical .arch text: parse(unparse(items)) == items, with the fewest parentheses."""
from __future__ import annotations

from symcost.lang import syntax as S

INDENT = "  "

# binding strength of each expression form, loosest first (grammar/arch.lark: or, and, not, comparison, sum,
# product, unary minus, power, atom)
OR, AND, NOT, COMPARE, SUM, PRODUCT, UNARY, POWER, ATOM = range(1, 10)
_BINARY = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT}


def unparse(items) -> str:
    """Canonical text of a module's items (a `syntax.Module` or a tuple of items), one item per line."""
    if isinstance(items, S.Module):
        items = items.items
    lines: list[str] = []
    for item in items:
        _item(item, 0, lines)
    return "\n".join(lines) + "\n" if lines else ""


def unparse_expr(node: S.Expr) -> str:
    """Canonical text of one expression (what `parse_expression` reads back)."""
    return _expr(node, 0)


def _level(node) -> int:
    if isinstance(node, S.BoolOp):
        return OR if node.op == "or" else AND
    if isinstance(node, S.Not):
        return NOT
    if isinstance(node, S.Compare):
        return COMPARE
    if isinstance(node, S.BinOp):
        return POWER if node.op == "^" else _BINARY[node.op]
    if isinstance(node, S.Neg):
        return UNARY
    return ATOM


def _expr(node, need: int) -> str:
    """The text of `node` where the grammar expects at least binding strength `need`."""
    text = _bare(node)
    return f"({text})" if _level(node) < need else text


def _bare(node) -> str:
    if isinstance(node, S.Num):
        return node.value
    if isinstance(node, S.Name):
        return node.id
    if isinstance(node, S.Bool):
        return "true" if node.value else "false"
    if isinstance(node, S.Str):
        return f'"{node.value}"'
    if isinstance(node, S.Null):
        return "null"
    if isinstance(node, S.BoolOp):
        level = _level(node)
        return f"{_expr(node.left, level)} {node.op} {_expr(node.right, level + 1)}"
    if isinstance(node, S.Not):
        return f"not {_expr(node.operand, NOT)}"
    if isinstance(node, S.Compare):
        return f"{_expr(node.left, SUM)} {node.op} {_expr(node.right, SUM)}"
    if isinstance(node, S.BinOp):
        if node.op == "^":  # atom ^ unary: right-associative
            return f"{_expr(node.left, ATOM)}^{_expr(node.right, UNARY)}"
        level = _BINARY[node.op]
        return f"{_expr(node.left, level)} {node.op} {_expr(node.right, level + 1)}"
    if isinstance(node, S.Neg):
        return f"-{_expr(node.operand, UNARY)}"
    if isinstance(node, S.Func):
        return f"{node.name}({', '.join(_expr(a, 0) for a in node.args)})"
    if isinstance(node, S.ListLit):
        return f"[{', '.join(_expr(a, 0) for a in node.items)}]"
    if isinstance(node, S.IfExpr):
        return f"if({_expr(node.cond, 0)}, {_expr(node.then, 0)}, {_expr(node.orelse, 0)})"
    raise TypeError(f"not an expression: {node!r}")


def _doc(doc: str | None) -> str:
    return "" if doc is None else f' "{doc}"'


def _type(tt: S.TensorType) -> str:
    return f"{tt.dtype or ''}[{', '.join(_expr(e, 0) for e in tt.shape)}]"


def _call(call: S.Call) -> str:
    args = [_expr(a, 0) for a in call.args] + [f"{k.name}={_expr(k.value, 0)}" for k in call.kwargs]
    return f"{call.name}({', '.join(args)})"


def _param(p: S.BlockParam) -> str:
    if p.kind == "dim":
        return f"{p.name}: dim"
    if p.kind == "bool":
        return f"{p.name}: bool"
    return p.name if p.type is None else f"{p.name}: {_type(p.type)}"


def _body(head: str, body, depth: int, lines: list[str]) -> None:
    pad = INDENT * depth
    lines.append(f"{pad}{head} {{")
    for st in body:
        _item(st, depth + 1, lines)
    lines.append(f"{pad}}}")


def _item(item, depth: int, lines: list[str]) -> None:
    pad = INDENT * depth
    if isinstance(item, S.If):
        _body(f"if {_expr(item.cond, 0)}", item.then, depth, lines)
        if item.orelse:
            lines[-1] += " else {"
            for st in item.orelse:
                _item(st, depth + 1, lines)
            lines.append(f"{pad}}}")
    elif isinstance(item, S.Repeat):
        kinds = f" pattern [{', '.join(k.id for k in item.pattern)}]" if item.pattern else ""
        _body(f"repeat {_expr(item.count, 0)}{kinds}", item.body, depth, lines)
    elif isinstance(item, S.Experts):
        _body(f"experts {_expr(item.count, 0)} top {_expr(item.active, 0)}", item.body, depth, lines)
    elif isinstance(item, S.Fused):
        _body("fused", item.body, depth, lines)
    elif isinstance(item, S.BlockDef):
        _body(f"block {item.name}({', '.join(_param(p) for p in item.params)})", item.body, depth, lines)
    else:
        lines.append(pad + _line(item))


def _line(item) -> str:
    if isinstance(item, S.Assign):
        return f"{', '.join(t.id for t in item.targets)} = {_call(item.call)}"
    if isinstance(item, S.Return):
        return f"return {', '.join(n.id for n in item.names)}"
    if isinstance(item, S.ModelDecl):
        return f"model {item.name}{_doc(item.title)}"
    if isinstance(item, S.Include):
        return f'include "{item.path}"'
    if isinstance(item, S.DimDecl):
        value = "" if item.value is None else f" = {'default ' if item.default else ''}{_expr(item.value, 0)}"
        tex = "" if item.tex is None else f' tex "{item.tex}"'
        return f"dim {item.name}{value}{' decode' if item.decode else ''}{_doc(item.doc)}{tex}"
    if isinstance(item, S.DtypeDecl):
        return f"dtype {item.name} = {_expr(item.nbytes, 0)}{_doc(item.doc)}"
    if isinstance(item, S.DefaultDtype):
        return f"default dtype {item.name}"
    if isinstance(item, S.OptionDecl):
        return f"option {item.name} = {'true' if item.value else 'false'}{_doc(item.doc)}"
    if isinstance(item, S.InputDecl):
        return f"input {item.name}: {_type(item.type)}{' nograd' if item.nograd else ''}{_doc(item.doc)}"
    if isinstance(item, S.ParamDecl):
        return f"param {item.name}: {_type(item.type)}{' frozen' if item.frozen else ''}{_doc(item.doc)}"
    raise TypeError(f"not an item: {item!r}")
