"""Reading the files users name: regular files only, bounded in size, UTF-8, every failure a SymcostError."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from symcost.errors import Loc, SymcostError

MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec file (and each file it includes)
MAX_JSON_BYTES = 1024 * 1024  # a config, preset, mapping or device file
MAX_SHOWN_PATH = 160  # characters of a path an error message shows


def shown(path) -> str:
    """A path for an error message: at most MAX_SHOWN_PATH characters, control characters escaped."""
    text = str(path)
    if len(text) > MAX_SHOWN_PATH:
        text = text[: MAX_SHOWN_PATH // 2] + "…" + text[-MAX_SHOWN_PATH // 2 :]
    return text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text


def read_text(path, what: str, limit: int, at: Loc | None = None) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes (a byte-order mark is dropped).

    Devices, pipes, sockets and directories are refused before they are opened, so /dev/zero cannot fill
    memory and a named pipe cannot hang the process.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except (OSError, ValueError) as e:
        raise SymcostError(f"cannot read {what} {shown(path)}: {_reason(e)}", at) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise SymcostError(f"{what} {shown(path)} is {kind}", at)
    if info.st_size > limit:
        raise SymcostError(f"{what} {shown(path)} is larger than {limit:,} bytes", at)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except (OSError, ValueError) as e:
        raise SymcostError(f"cannot read {what} {shown(path)}: {_reason(e)}", at) from None
    if len(data) > limit:  # the file grew after it was checked
        raise SymcostError(f"{what} {shown(path)} is larger than {limit:,} bytes", at)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SymcostError(f"{what} {shown(path)} is not UTF-8 text (byte {e.start}, line {line}, column {column})",
                           at) from None


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__


def exists(path) -> bool:
    """Path.exists that answers False for names the OS refuses (too long, NUL bytes) instead of raising."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def is_file(path) -> bool:
    """Path.is_file that answers False for names the OS refuses instead of raising."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def inside(path: Path, roots) -> bool:
    """Does `path` (resolved, symlinks followed) lie inside one of the resolved `roots`?"""
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    for root in roots:
        try:
            real.relative_to(root)
            return True
        except ValueError:
            continue
    return False
