"""Syntax trees as Hypothesis strategies, one per class of syntax, for the unparser's round trip."""
from __future__ import annotations

import re

from fuzz_programs import DTYPES, grammar, op_registry

AT = None  # locations do not take part in equality


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
    from hypothesis import strategies as st

    from symcost.lang import syntax as S

    reserved = keywords()
    name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True).filter(lambda n: n not in reserved)
    text = st.text(st.characters(blacklist_characters='"\n', blacklist_categories=("Cs",)), max_size=6).filter(
        str.isprintable)  # the parser refuses control characters in strings
    exprs = _expressions(name, text)
    tensor_type = st.builds(lambda d, shape: S.TensorType(d, tuple(shape), AT),
                            st.one_of(st.none(), st.sampled_from(DTYPES)), st.lists(exprs, max_size=3))
    doc = st.one_of(st.none(), text)
    param_decl = st.builds(lambda n, t, d, f: S.ParamDecl(n, t, d, AT, f), name, tensor_type, doc, st.booleans())
    stmts = _statements(exprs, name, param_decl)
    items = _items(exprs, stmts, name, text, doc, tensor_type, param_decl)
    return exprs, stmts, items


def _expressions(name, text):
    """Every kind of expression node, nested at most 10 leaves deep."""
    import typing

    from hypothesis import strategies as st

    from symcost.lang import syntax as S
    from symcost.lang.parse import FUNCS

    number = st.one_of(st.integers(0, 10**6).map(str), st.tuples(st.integers(0, 99), st.integers(0, 99)).map(
        lambda p: f"{p[0]}.{p[1]}"))
    leaves = {
        S.Num: number.map(lambda v: S.Num(v, AT)),
        S.Name: name.map(lambda n: S.Name(n, AT)),
        S.Bool: st.booleans().map(lambda v: S.Bool(v, AT)),
        S.Str: text.map(lambda v: S.Str(v, AT)),
        S.Null: st.just(S.Null(AT)),
    }

    def extend(inner):
        binary = lambda cls, ops: st.builds(lambda o, a, b: cls(o, a, b, AT), st.sampled_from(ops), inner, inner)  # noqa: E731
        one_arg = st.builds(lambda f, a: S.Func(f, (a,), AT), st.sampled_from([f for f in FUNCS if f in ("floor", "ceil")]), inner)
        many = st.builds(lambda f, a: S.Func(f, tuple(a), AT), st.sampled_from([f for f in FUNCS if f in ("min", "max")]),
                         st.lists(inner, min_size=1, max_size=3))
        return {
            S.BinOp: binary(S.BinOp, ["+", "-", "*", "/", "^"]),
            S.Neg: inner.map(lambda a: S.Neg(a, AT)),
            S.Func: st.one_of(one_arg, many),
            S.ListLit: st.lists(inner, max_size=3).map(lambda xs: S.ListLit(tuple(xs), AT)),
            S.Compare: binary(S.Compare, list(S.COMPARISONS)),
            S.BoolOp: binary(S.BoolOp, ["and", "or"]),
            S.Not: inner.map(lambda a: S.Not(a, AT)),
            S.IfExpr: st.builds(lambda c, x, y: S.IfExpr(c, x, y, AT), inner, inner, inner),
        }

    missing = set(typing.get_args(S.Expr)) - set(leaves) - set(extend(st.nothing()))
    assert not missing, f"no strategy for expression nodes {missing}"
    return st.recursive(st.one_of(*leaves.values()), lambda inner: st.one_of(*extend(inner).values()), max_leaves=10)


def _calls(exprs, name):
    """Calls of registered ops (with their own keyword names) and of other names."""
    from hypothesis import strategies as st

    from symcost.lang import syntax as S

    ops = op_registry()

    def call_for(op_name):
        params = [p for p in ops[op_name].signature.parameters.values() if p.name != "build"]
        positional = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        keywords_ = [p.name for p in params if p.kind is not p.VAR_POSITIONAL]
        kwargs = st.lists(st.sampled_from(keywords_), unique=True, max_size=min(3, len(keywords_))) if keywords_ else st.just([])
        return st.builds(
            lambda args, kws, vals: S.Call(op_name, tuple(args), tuple(S.Kwarg(k, v, AT) for k, v in zip(kws, vals)), AT),
            st.lists(exprs, max_size=max(1, len(positional))), kwargs, st.lists(exprs, min_size=3, max_size=3))

    return st.one_of(st.sampled_from(sorted(ops)).flatmap(call_for),
                     st.builds(lambda n, a: S.Call(n, tuple(a), (), AT), name, st.lists(exprs, max_size=3)))


def _statements(exprs, name, param_decl):
    """Every kind of statement, nested at most 6 leaves deep."""
    import typing

    from hypothesis import strategies as st

    from symcost.lang import syntax as S

    calls = _calls(exprs, name)
    targets = st.lists(name, min_size=1, max_size=3).map(lambda ns: tuple(S.Name(n, AT) for n in ns))

    def statements(body):
        block = st.lists(body, max_size=3).map(tuple)
        branch = st.lists(st.one_of(body, param_decl), max_size=3).map(tuple)
        return {
            S.Assign: st.builds(lambda t, c: S.Assign(t, c, AT), targets, calls),
            S.Repeat: st.builds(lambda c, b, p: S.Repeat(c, b, AT, tuple(S.Name(k, AT) for k in p)), exprs, block,
                                st.lists(name, unique=True, max_size=3)),
            S.Experts: st.builds(lambda c, k, b: S.Experts(c, k, b, AT), exprs, exprs, block),
            S.Fused: block.map(lambda b: S.Fused(b, AT)),
            S.If: st.builds(lambda c, t, e: S.If(c, t, e, AT), exprs, branch, branch),
            S.Return: st.lists(name, min_size=1, max_size=3).map(lambda ns: S.Return(tuple(S.Name(n, AT) for n in ns), AT)),
        }

    missing = set(typing.get_args(S.Stmt)) - set(statements(st.nothing()))
    assert not missing, f"no strategy for statements {missing}"
    return st.recursive(st.one_of(*(v for k, v in statements(st.nothing()).items() if k in (S.Assign, S.Return))),
                        lambda inner: st.one_of(*statements(inner).values()), max_leaves=6)


def _items(exprs, stmts, name, text, doc, tensor_type, param_decl):
    """Whole modules: declarations of every kind and statements."""
    import typing

    from hypothesis import strategies as st

    from symcost.lang import syntax as S

    block_param = st.one_of(
        st.builds(lambda n, t: S.BlockParam(n, "tensor", t, AT), name, st.one_of(st.none(), tensor_type)),
        st.builds(lambda n, k: S.BlockParam(n, k, None, AT), name, st.sampled_from(["dim", "bool"])))
    declarations = {
        S.ModelDecl: st.builds(lambda n, d: S.ModelDecl(n, d, AT), name, doc),
        S.Include: text.map(lambda p: S.Include(p, AT)),
        S.DimDecl: st.builds(lambda n, v, d, t: S.DimDecl(n, v, d, t, AT), name, st.one_of(st.none(), exprs), doc, doc),
        S.DtypeDecl: st.builds(lambda n, v, d: S.DtypeDecl(n, v, d, AT), name, exprs, doc),
        S.DefaultDtype: name.map(lambda n: S.DefaultDtype(n, AT)),
        S.OptionDecl: st.builds(lambda n, v, d: S.OptionDecl(n, v, d, AT), name, st.booleans(), doc),
        S.InputDecl: st.builds(lambda n, t, d, g: S.InputDecl(n, t, d, AT, g), name, tensor_type, doc, st.booleans()),
        S.ParamDecl: param_decl,
        S.BlockDef: st.builds(lambda n, ps, b: S.BlockDef(n, tuple(ps), tuple(b), AT), name,
                              st.lists(block_param, max_size=3, unique_by=lambda p: p.name), st.lists(stmts, max_size=3)),
    }
    missing = set(typing.get_args(S.Item)) - set(declarations) - set(typing.get_args(S.Stmt))
    assert not missing, f"no strategy for items {missing}"
    return st.lists(st.one_of(*declarations.values(), stmts), max_size=6).map(tuple)
