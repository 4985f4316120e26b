"""The command line: argv → one request → the API → a printer. Every failure is an error message and a status."""
from __future__ import annotations

import argparse
import importlib
import sys

from symcost import __version__
from symcost.commands import NAMES
from symcost.errors import SymcostError


def _module(name: str):
    return importlib.import_module(f"symcost.commands.{name}")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are SymcostErrors: one boundary prints them, cleaned for the terminal."""

    def error(self, message: str):
        raise SymcostError(message, None, f"see `{self.prog} --help`")


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with `only`, just that command's (what a run needs: the others are not imported)."""
    p = _Parser(
        prog="symcost",
        description="Derive closed-form costs (parameters, FLOPs, activation memory, traffic) of neural "
        "networks described in the .arch language.",
    )
    p.add_argument("--version", action="version", version=f"symcost {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = _Parser(add_help=False)
    common.add_argument("--path", metavar="DIR", action="append", default=[],
                        help="look for specs, blocks, mappings (hf/), presets and devices (hardware/) in DIR before "
                        "the shipped ones; may be repeated (also: the SYMCOST_PATH environment variable)")
    for name in NAMES if only is None else (only,):
        _module(name).register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 success, 1 a validation that disagrees, 2 an error."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = _parser(argv[0] if argv and argv[0] in NAMES else None).parse_args(argv)
    except SystemExit as e:  # --help or --version
        return int(e.code or 0)
    except SymcostError as e:  # a usage error
        return _fail(str(e))
    from symcost.paths import use_path

    use_path(getattr(args, "path", None) or [])
    try:
        result = _module(args.command).run(args)
        text, status = result if isinstance(result, tuple) else (result, 0)
    except SymcostError as e:
        return _fail(str(e))
    except RecursionError:
        return _fail("error: the input nests too deeply")
    except MemoryError:
        return _fail("error: out of memory")
    return _emit(text, getattr(args, "output", None), status)


def _emit(text: str, output: str | None, status: int) -> int:
    """Write the result: to a file (-o), or to standard output, which may be closed, full or unable to encode."""
    if output:
        from symcost.files import shown

        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except (OSError, ValueError) as e:
            return _fail(f"error: cannot write {shown(output)}: {getattr(e, 'strerror', None) or type(e).__name__}")
        return status
    if sys.stdout is None:  # started with standard output closed: nothing to write to, as Unix tools do
        return status
    try:
        _write(sys.stdout, text)
        sys.stdout.flush()
    except BrokenPipeError:  # `symcost … | head`: the reader left; end quietly, as Unix tools do
        _silence_stdout()
        return status
    except OSError as e:
        _silence_stdout()
        return _fail(f"error: cannot write the output: {e.strerror or type(e).__name__}")
    return status


def _write(stream, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:  # a stream that cannot encode Unicode (PYTHONIOENCODING=ascii, a C locale)
        stream.write(ascii_text(text))


def ascii_text(text: str) -> str:
    """Unicode symbols of the reports spelled in ASCII (≥ as >=, · as *, superscripts as ^n)."""
    table = {"≥": ">=", "≤": "<=", "·": "*", "×": "x", "−": "-", "—": "--", "→": "->", "…": "...", "Ψ": "Psi",
             "µ": "u", "ᵀ": "^T", "≠": "!=", "✓": "ok", "✗": "FAIL", "\ufffd": "?"}
    sup = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-"))
    out, run = [], ""
    for ch in text:
        if ch in sup:
            run += sup[ch]
            continue
        if run:
            out.append("^" + run)
            run = ""
        out.append(table.get(ch, ch if ord(ch) < 128 else "?"))
    if run:
        out.append("^" + run)
    return "".join(out)


def _fail(message: str) -> int:
    if sys.stderr is None:
        return 2
    try:
        _write(sys.stderr, message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return 2


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
