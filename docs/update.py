"""Regenerate every command output shown in README.md and docs/*.md from the tool itself.

A block to regenerate is marked in the Markdown source by a comment on the line before its fence:

    <!-- output: derive specs/gpt2.arch --set a=12 b=1 ; lines=1-12,-4- -->
    ```text
    $ symcost derive specs/gpt2.arch --set a=12 b=1
    …the output…
    ```

The comment holds the arguments of `symcost` (run in-process from the repository root) and, optionally after
`;`, `json=` top-level keys of a JSON output to show, each as `"key": value` the way the document writes it
(`json=device,memory`), `lines=` ranges of output lines to keep (1-based, inclusive; negative counts from the
end; `-4-` is the last four; a gap between kept ranges is shown as `…`; applied after `json=`) and `expect=2`
for an example of an error (the block shows standard error). docs/zoo.md is `symcost zoo` output as a whole; docs/errors.md ends with the
catalogue of every error message in the source, between `<!-- catalogue -->` and `<!-- /catalogue -->`.

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
MARK = re.compile(r"<!-- output: (?P<cmd>.*?) -->\n(?P<fence>```[a-z]*)\n(?P<body>.*?)^```", re.S | re.M)
WIDTH = "100"  # the terminal width the outputs are rendered at


def run(args: list[str], expect: int = 0) -> str:
    """`symcost ARGS` in-process from the repository root: its standard output — or, when the block expects
    the exit status 2 (an error example), its standard error — and a failure if the status is not the expected."""
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
    if expect == 2:
        if status != 2:
            raise RuntimeError(f"symcost {' '.join(args)} was to fail with status 2, not {status}")
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


def members(text: str, keys: str | None) -> str:
    """The top-level members `keys` (comma-separated) of a JSON document, each as `"key": value` indented as the
    document indents it (two spaces), in the order asked; the text itself without keys."""
    if not keys:
        return text
    import json

    doc = json.loads(text)
    out = []
    for key in keys.split(","):
        if key not in doc:
            raise ValueError(f"json= asks for '{key}', which the document does not have: {', '.join(doc)}")
        out.append(f"{json.dumps(key)}: {json.dumps(doc[key], indent=2)}")
    return "\n".join(out) + "\n"


def render_block(cmd: str) -> str:
    args_text, _, opts = cmd.partition(";")
    args = shlex.split(args_text)
    options = dict(o.strip().split("=", 1) for o in opts.split() if "=" in o)
    text = members(run(args, int(options.get("expect", 0))), options.get("json"))
    body = select(text, options.get("lines"))
    return "\n".join([f"$ symcost {args_text.strip()}", *body])


def update(path: Path) -> tuple[str, list[str]]:
    """The file's text with every marked block regenerated, and the commands whose blocks changed."""
    text = path.read_text(encoding="utf-8")
    stale: list[str] = []

    def replace(m: re.Match) -> str:
        body = render_block(m.group("cmd"))
        if body != m.group("body").removesuffix("\n"):
            stale.append(m.group("cmd"))
        return f"<!-- output: {m.group('cmd')} -->\n{m.group('fence')}\n{body}\n```"

    text = MARK.sub(replace, text)
    if CATALOGUE.search(text):
        current = catalogue()
        m = CATALOGUE.search(text)
        if m.group(2) != current:
            stale.append("catalogue")
            text = text[: m.start(2)] + current + text[m.end(2):]
    return text, stale


CATALOGUE = re.compile(r"(<!-- catalogue -->\n)(.*?)(\n<!-- /catalogue -->)", re.S)


def _template(node) -> str:
    """An error message's source as a template: literal text, each interpolated value as `…`."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _template(node.left) + _template(node.right)
    return "…"


def catalogue() -> str:
    """Every message a SymcostError is raised with in symcost/, by module: the list docs/errors.md ends with."""
    import ast

    out = []
    for path in sorted((ROOT / "symcost").rglob("*.py")):
        messages = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SymcostError" and node.args:
                text = " ".join(_template(node.args[0]).split())
                if text not in messages:
                    messages.append(text)
        if messages:
            out.append(f"\n**`{path.relative_to(ROOT)}`**\n")
            out += ["- " + m.replace("|", "\\|") for m in sorted(messages)]
    return "\n".join(out).lstrip("\n")


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
