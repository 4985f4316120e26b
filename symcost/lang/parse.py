"""Text to syntax tree: the Lark parser and its private caches, located parse errors, and include resolution."""
from __future__ import annotations

import functools
import hashlib
import os
import stat
from importlib import resources
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from symcost.lang import syntax as S
from symcost.lang import transform
from symcost.lang.transform import FUNCS, ToSyntax
from symcost.errors import Loc, SymcostError, register_source

_READABLE = {"NAME": "a name", "NUMBER": "a number", "STRING": "a quoted string", "BOOL": "true or false",
             "COMPARE": "a comparison", "NOGRAD": "'nograd'", "FROZEN": "'frozen'",
             "DECODE": "'decode'"}


def _grammar_text() -> str:
    """The grammar ships inside the package; a source checkout has it at the top level (preferred there)."""
    checkout = Path(__file__).resolve().parents[2] / "grammar" / "arch.lark"
    if checkout.is_file():
        return checkout.read_text()
    return resources.files("symcost.grammar").joinpath("arch.lark").read_text()


def _cache_dir() -> Path | None:
    """The per-user cache directory, or None when no safe place exists.

    What is cached there is unpickled, so it must never live where another user can write (such as /tmp):
    the directory must be ours and closed to group and others. SYMCOST_NO_CACHE=1 turns caching off.
    """
    if os.environ.get("SYMCOST_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "symcost"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        if not os.access(folder, os.W_OK):
            return None
    except (OSError, AttributeError):
        return None
    return folder


def _private_cache(grammar: str) -> str | bool:
    """A per-user cache file for Lark's parse tables, or False when no safe place exists."""
    folder = _cache_dir()
    if folder is None:
        return False
    digest = hashlib.sha256(grammar.encode()).hexdigest()[:16]
    return str(folder / f"arch-grammar-{digest}.lark-cache")


def _tree_cache(text: str, file: str, start: str) -> Path | None:
    """Where a parse of this text (as this file, from this start rule, by this grammar and this module) is kept."""
    folder = _cache_dir()
    if folder is None:
        return None
    key = hashlib.sha256(_code_digest().encode())
    for part in (file, start, text):
        key.update(part.encode("utf-8", "surrogatepass"))
        key.update(b"\0")
    return folder / f"parsed-{key.hexdigest()[:32]}.json"


@functools.cache
def _code_digest() -> str:
    """What a cached parse depends on besides the text: the grammar, this module, the transformer and the syntax
    classes."""
    key = hashlib.sha256()
    for part in (_grammar_text(), Path(__file__).read_text(encoding="utf-8"),
                 Path(transform.__file__).read_text(encoding="utf-8"), Path(S.__file__).read_text(encoding="utf-8")):
        key.update(part.encode("utf-8", "surrogatepass"))
    return key.hexdigest()


MAX_CACHED_PARSES = 256


def _prune(folder: Path) -> None:
    """Keep the newest MAX_CACHED_PARSES parses (checked now and then, when a parse is written)."""
    files = sorted(folder.glob("parsed-*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in files[MAX_CACHED_PARSES:]:
        old.unlink(missing_ok=True)


@functools.cache
def _parser() -> Lark:
    grammar = _grammar_text()
    options = dict(parser="lalr", propagate_positions=True, maybe_placeholders=True, start=["start", "expression"])
    cache = _private_cache(grammar)
    if cache:
        try:
            return Lark(grammar, cache=cache, **options)
        except Exception:  # an unreadable or stale cache file: build the tables afresh
            pass
    return Lark(grammar, **options)


def _check_strings(tree, file: str) -> None:
    """A quoted string (a title, a doc, an include) may not carry control characters or bidirectional marks:
    they would reach a terminal or a document."""
    for tok in tree.scan_values(lambda v: isinstance(v, Token) and v.type == "STRING"):
        bad = next((i for i, c in enumerate(str(tok)) if not c.isprintable()), None)
        if bad is not None:
            raise SymcostError(f"a string may not contain the control character U+{ord(str(tok)[bad]):04X}",
                               Loc(file, tok.line, tok.column + bad))


def _expected(e: UnexpectedInput) -> str:
    names = sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
    if not names:
        return ""
    shown = []
    for n in names:
        if n in _READABLE:
            shown.append(_READABLE[n])
            continue
        try:
            pattern = _parser().get_terminal(n).pattern
            shown.append(f"'{pattern.value}'" if pattern.type == "str" else n.lower())
        except KeyError:
            shown.append(n.lower())
    return "; expected " + ", ".join(dict.fromkeys(shown))


MAX_NESTING = 64  # braces, brackets and parentheses inside one another, and unary minus signs in a row


def _check_nesting(text: str, file: str) -> None:
    """Refuse absurd nesting before parsing, at the place it happens (Lark and the tree walk recurse on it)."""
    depth, run, line, col = 0, 0, 1, 0
    in_string = in_comment = False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment, in_string = line + 1, 0, False, False
            continue
        if in_comment:
            continue
        if in_string:
            in_string = ch != '"'
            continue
        if ch == "#":
            in_comment = True
        elif ch == '"':
            in_string = True
        elif ch in "{([":
            depth += 1
            if depth > MAX_NESTING:
                raise SymcostError(f"the spec nests more than {MAX_NESTING} levels deep here", Loc(file, line, col))
        elif ch in "})]":
            depth -= 1
        if ch == "-":
            run += 1
            if run > MAX_NESTING:
                raise SymcostError(f"more than {MAX_NESTING} minus signs in a row", Loc(file, line, col))
        elif not ch.isspace():
            run = 0


def parse_text(text: str, file: str) -> tuple[S.Item, ...]:
    """Parse one file's text into syntax items (includes not yet resolved)."""
    return _parse(text, file, "start")


def parse_expression(text: str, file: str = "<expression>", funcs: tuple = FUNCS) -> S.Expr:
    """Parse one expression on its own (`int_dim * 2`, `if(use_sliding_window, sliding_window, null)`, `a == "x"`)
    into a syntax node, with the spec language's grammar; errors are located in `file`. Nothing is evaluated.
    `funcs`: the functions it may call (FUNCS; a mapping rule adds its own)."""
    return _parse(text, file, "expression", funcs)


def _parse(text: str, file: str, start: str, funcs: tuple = FUNCS):
    """The syntax of a text: from the private cache when this exact text was parsed before, else parsed (and
    kept there when it parsed cleanly); errors are never cached."""
    register_source(file, text)
    key = (text, file, start, funcs)
    remember = len(text) <= _SEEN_CHARS and not os.environ.get("SYMCOST_NO_CACHE")
    hit = _SEEN.get(key) if remember else None
    if hit is not None:
        return hit
    items = _parse_stored(text, file, start, funcs)
    if remember:
        if len(_SEEN) >= _SEEN_ENTRIES:
            _SEEN.clear()
        _SEEN[key] = items
    return items


_SEEN: dict = {}  # this process's parses of short texts (mapping rules, blocks): syntax trees are immutable
_SEEN_CHARS = 65536
_SEEN_ENTRIES = 4096


def _parse_stored(text: str, file: str, start: str, funcs: tuple):
    """`_parse` below the in-process memo: the on-disk cache, else Lark."""
    from symcost.lang import stored

    cached = _tree_cache(text, file, start + ":" + ",".join(funcs)) if len(text) > 200 else None
    if cached is not None and cached.is_file():
        try:
            return stored.load(cached.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError, RecursionError):  # stale or damaged: parse afresh
            pass
    items = _parse_text(text, file, start, funcs)
    if cached is not None:
        try:
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(stored.dump(items), encoding="utf-8")
            os.replace(tmp, cached)
            if int.from_bytes(os.urandom(1), "little") < 8:  # about one write in 32
                _prune(cached.parent)
        except (OSError, ValueError, RecursionError):
            pass
    return items


def _parse_text(text: str, file: str, start: str, funcs: tuple = FUNCS):
    _check_nesting(text, file)
    try:
        tree = _parser().parse(text, start=start)
    except RecursionError:
        raise _too_deep(text, file) from None
    except UnexpectedCharacters as e:
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "end of file"
        raise SymcostError(f"unexpected character {ch!r}", Loc(file, e.line, e.column)) from None
    except UnexpectedEOF as e:
        raise SymcostError(f"unexpected end of {_end_name(start)}" + _expected(e), _end_of(text, file)) from None
    except UnexpectedToken as e:
        if e.token.type == "$END":
            raise SymcostError(f"unexpected end of {_end_name(start)}" + _expected(e), _end_of(text, file)) from None
        line, col = (e.line, e.column) if e.line and e.line > 0 else (1, 1)
        hint = ("`nograd` marks an input and `frozen` a parameter, after the shape: `input x: [..] nograd`, "
                "`param w: [..] frozen`") if e.token.type in ("NOGRAD", "FROZEN") else None
        raise SymcostError(f"unexpected {str(e.token)!r}" + _expected(e), Loc(file, line, col), hint) from None
    try:
        _check_strings(tree, file)
        return ToSyntax(file, funcs).transform(tree)
    except RecursionError:
        raise _too_deep(text, file) from None
    except VisitError as e:
        if isinstance(e.orig_exc, SymcostError):
            raise e.orig_exc from None
        if isinstance(e.orig_exc, RecursionError):
            raise _too_deep(text, file) from None
        raise


def _end_name(start: str) -> str:
    return "file" if start == "start" else "the expression"


def _too_deep(text: str, file: str) -> SymcostError:
    """An expression too long to build (thousands of terms), located at the line with the most operators."""
    lines = text.split("\n")
    worst = max(range(len(lines)), key=lambda i: sum(lines[i].count(c) for c in "+-*/^,"))
    return SymcostError("this expression is too long to build (thousands of terms); write it with fewer terms",
                        Loc(file, worst + 1, 1))


def _end_of(text: str, file: str) -> Loc:
    """Just past the last non-blank, non-comment character: where the missing text should go."""
    lines = text.split("\n")
    for i in range(len(lines) - 1, -1, -1):
        code = lines[i].split("#", 1)[0].rstrip()
        if code:
            return Loc(file, i + 1, len(code) + 1)
    return Loc(file, 1, 1)


def display_path(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load(path: str | Path) -> S.Module:
    """Parse a spec and the files it includes (each once; cycles are errors) into one module.

    `path` is a file, or a spec name found on the search path (`llama`). An include is looked up beside the
    including file, then in each search-path directory, and must resolve (symlinks followed) inside the root
    spec's directory or a search-path directory: nothing else on the machine can be read through a spec.
    """
    from symcost.files import MAX_SPEC_BYTES, exists, read_text, shown
    from symcost.paths import resolve_spec, search_dirs

    root = resolve_spec(str(path))
    if not exists(root):
        raise SymcostError(f"spec file not found: {shown(path)}", None,
                           "give a path to a .arch file, or a spec name such as llama (see `symcost presets`)")
    searched = search_dirs()
    roots = []
    for d in (root.parent, *searched):
        try:
            roots.append(d.resolve())
        except (OSError, RuntimeError, ValueError):
            continue
    items: list[S.Item] = []
    seen: set[Path] = set()

    def visit(file: Path, stack: tuple[Path, ...], at: Loc | None) -> None:
        real = file.resolve()
        if real in stack:
            chain = " -> ".join(display_path(p) for p in (*stack, real))
            raise SymcostError(f"include cycle: {chain}", at)
        if real in seen:
            return
        seen.add(real)
        text = read_text(file, "spec", MAX_SPEC_BYTES, at)
        for item in parse_text(text, display_path(file)):
            if isinstance(item, S.Include):
                visit(_include_target(item, real, searched, roots), (*stack, real), item.loc)
            else:
                items.append(item)

    visit(root, (), None)
    return S.Module(display_path(root), tuple(items))


def _include_target(item: S.Include, including: Path, searched: list, roots: list) -> Path:
    """Where an include points: beside the including file, else in a search-path directory; always inside a root."""
    from symcost.files import exists, inside, shown

    name = item.path
    if not name or "\x00" in name or Path(name).is_absolute():
        raise SymcostError(f"include \"{shown(name)}\": give a path relative to the including file", item.loc)
    candidates = [including.parent / name, *(d / name for d in searched)]
    for target in candidates:
        if not exists(target):
            continue
        if not inside(target, roots):
            raise SymcostError(f"include \"{shown(name)}\" leads outside the spec's directory and the search path",
                               item.loc, "includes may name files beside the spec, below it, or on the search path")
        return target
    raise SymcostError(f"included file not found: {shown(name)} (looked in {display_path(including.parent)} and "
                       "the search path)", item.loc)
