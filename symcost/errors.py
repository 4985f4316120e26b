"""The single error class, and the source registry that lets it point at a file, line and column."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Loc:
    """A position in a spec file (1-based line and column)."""

    file: str
    line: int
    column: int
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


_SOURCES: dict[str, str] = {}
_LINES: dict[str, list[str]] = {}
MAX_QUOTED = 120  # characters of a source line an error quotes


def register_source(file: str, text: str) -> None:
    """Remember a file's text so errors can quote the offending line."""
    _SOURCES[file] = text
    _LINES.pop(file, None)


def source_line(loc: Loc) -> str | None:
    lines = _LINES.get(loc.file)
    if lines is None:
        text = _SOURCES.get(loc.file)
        if text is None:
            return None
        # Lark counts lines by \n only; str.splitlines() also splits on \x0c, \u2028, ...
        lines = _LINES[loc.file] = text.split("\n")
    if 1 <= loc.line <= len(lines):
        return lines[loc.line - 1].rstrip("\r")
    return None


def _excerpt(line: str, column: int, width: int) -> tuple[str, int, int]:
    """At most MAX_QUOTED characters of a line around a column: (text, caret column, caret width)."""
    if len(line) <= MAX_QUOTED:
        return line, column, width
    start = max(0, min(column - 1 - MAX_QUOTED // 2, len(line) - MAX_QUOTED))
    text = line[start : start + MAX_QUOTED]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + MAX_QUOTED < len(line) else ""
    col = column - start + len(prefix)
    return prefix + text + suffix, col, max(1, min(width, MAX_QUOTED - (column - 1 - start)))


def clean(text: str) -> str:
    """Text from a spec or a file made safe for a terminal: each control character or bidirectional mark becomes
    one U+FFFD, so columns still line up under a caret."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in text)


class SymcostError(Exception):
    """Every problem with a spec or a request: a message, a place, the source line and a caret."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint

    def with_loc(self, loc: Loc | None) -> "SymcostError":
        if self.loc is None and loc is not None:
            self.loc = loc
        return self

    def __str__(self) -> str:
        out = [f"error: {_lines(self.message)}"]
        if self.loc is not None:
            out.append(f"  --> {self.loc}")
            line = source_line(self.loc)
            if line is not None:
                num = str(self.loc.line)
                pad = " " * len(num)
                width = 1
                if self.loc.end_column and self.loc.end_column > self.loc.column:
                    width = self.loc.end_column - self.loc.column
                line, column, width = _excerpt(clean(line), self.loc.column, width)
                out.append(f"{pad} |")
                out.append(f"{num} | {line}")
                out.append(f"{pad} | {' ' * (column - 1)}{'^' * width}")
        if self.hint:
            out.append(f"  = help: {_lines(self.hint)}")
        return "\n".join(out)


def _lines(text: str) -> str:
    """A message safe for a terminal: each line cleaned (text from files and specs can carry escapes)."""
    return "\n".join(clean(line) for line in text.split("\n"))


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint naming the closest candidates, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
