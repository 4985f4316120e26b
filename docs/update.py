"""Regenerate every command output shown in README.md and docs/*.md from the tool itself.

A block to regenerate is marked in the Markdown source by a comment on the line before its fence:

    <!-- output: derive specs/gpt2.arch --set a=12 b=1 ; lines=1-12,-4- -->
    ```text
    $ symcost derive specs/gpt2.arch --set a=12 b=1
    …the output…
    ```

The comment holds the arguments of `symcost` (run in-process from the repository root) and, optionally after
`;`, `lines=` ranges of output lines to keep (1-based, inclusive; negative counts from the end; `-4-` is the
last four); a gap between kept ranges is shown as `…`. `status=2` shows an error: the command must fail with
exit status 2, and its standard error is shown. docs/zoo.md is `symcost zoo` output as a whole.

    python3 docs/update.py          rewrite the files in place
    python3 docs/update.py --check  exit 1 and list the stale blocks (what tests/test_docs.py runs)
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md") if p.name != "zoo.md")]
MARK = re.compile(r"<!-- output: (?P<cmd>.*?) -->\n(?P<fence>```[a-z]*)\n(?P<body>.*?)\n```", re.S)
WIDTH = "100"  # the terminal width the outputs are rendered at


def run(args: list[str], status_wanted: int | None = None) -> str:
    """`symcost ARGS` in-process from the repository root: its standard output, and a failure if it fails; with
    `status_wanted`, the standard error of a run that must end with that status (an error shown in the docs)."""
    from symcost.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.environ["COLUMNS"] = WIDTH
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(args)
    finally:
        os.chdir(cwd)
    if status_wanted is not None:
        if status != status_wanted:
            raise RuntimeError(f"symcost {' '.join(args)} ended with {status}, not {status_wanted}")
        return err.getvalue()
    if status not in (0, 1):
        raise RuntimeError(f"symcost {' '.join(args)} failed ({status}):\n{err.getvalue()}")
    return out.getvalue()


def select(text: str, spec: str | None) -> list[str]:
    """The output lines a `lines=` selection keeps, with … where lines are left out."""
    lines = text.rstrip("\n").split("\n")
    if not spec:
        return lines
    n = len(lines)
    keep: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d*))?", part.strip())
        if m is None:
            raise ValueError(f"bad lines= range '{part}'")
        start = int(m.group(1))
        start = n + start + 1 if start < 0 else start
        if m.group(2) is None:
            end = start
        elif m.group(2) == "":
            end = n
        else:
            end = int(m.group(2))
            end = n + end + 1 if end < 0 else end
        keep.extend(range(max(1, start), min(n, end) + 1))
    out, prev = [], 0
    for i in sorted(set(keep)):
        if i != prev + 1:
            out.append("…")
        out.append(lines[i - 1])
        prev = i
    if prev != n:
        out.append("…")
    return out


def render_block(cmd: str) -> str:
    args_text, _, opts = cmd.partition(";")
    args = shlex.split(args_text)
    settings = dict(o.strip().split("=", 1) for o in opts.split() if "=" in o)
    status = int(settings["status"]) if "status" in settings else None
    body = select(run(args, status), settings.get("lines"))
    return "\n".join([f"$ symcost {args_text.strip()}", *body])


def update(path: Path) -> tuple[str, list[str]]:
    """The file's text with every marked block regenerated, and the commands whose blocks changed."""
    text = path.read_text(encoding="utf-8")
    stale: list[str] = []

    def replace(m: re.Match) -> str:
        body = render_block(m.group("cmd"))
        if body != m.group("body"):
            stale.append(m.group("cmd"))
        return f"<!-- output: {m.group('cmd')} -->\n{m.group('fence')}\n{body}\n```"

    return MARK.sub(replace, text), stale


def zoo() -> tuple[str, bool]:
    from symcost.analysis.zoo import render

    page = render()
    return page, (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8") != page


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    check = "--check" in argv
    problems = []
    for name in FILES:
        path = ROOT / name
        text, stale = update(path)
        problems += [f"{name}: {cmd}" for cmd in stale]
        if stale and not check:
            path.write_text(text, encoding="utf-8")
    page, zoo_stale = zoo()
    if zoo_stale:
        problems.append("docs/zoo.md")
        if not check:
            (ROOT / "docs" / "zoo.md").write_text(page, encoding="utf-8")
    for p in problems:
        print(("stale: " if check else "updated: ") + p)
    return 1 if (check and problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
