"""Where specs, blocks, mappings, presets and device files are found: the user's directories, then the shipped ones.

The search path is, in order: directories given with `--path` (or `symcost.paths.use_path`, `derive(path=…)`),
the directories in the environment variable SYMCOST_PATH (separated by the platform's path separator, ':' on
Unix), then the specs shipped with symcost. Each directory is laid out like the shipped one: `NAME.arch` specs and their blocks,
`hf/MODEL_TYPE.json` mappings, `presets/NAME.json`, `hardware/NAME.json`.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from symcost.files import exists, is_file

ENV_VAR = "SYMCOST_PATH"
_extra: list[Path] = []


def shipped_dir() -> Path:
    """The shipped specs: the checkout's top-level specs/ when run from a source tree, else the installed package's."""
    checkout = Path(__file__).resolve().parent.parent / "specs"
    if (checkout / "hf").is_dir():
        return checkout
    try:
        spec = importlib.util.find_spec("symcost.specs")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:  # a directory-backed (namespace) package
        for location in spec.submodule_search_locations:
            if (Path(location) / "hf").is_dir():
                return Path(location)
    return checkout


def use_path(dirs) -> None:
    """Put these directories first on the search path (the CLI's --path), replacing earlier ones."""
    _extra[:] = [Path(d) for d in dirs]


def user_dirs() -> list[Path]:
    """The user's directories on the search path, in order: --path, then SYMCOST_PATH."""
    env = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    return [*_extra, *env]


def search_dirs() -> list[Path]:
    """Every directory searched, the user's first, the shipped specs last."""
    return [*user_dirs(), shipped_dir()]


def find(subdir: str, name: str, suffix: str = ".json") -> Path | None:
    """The first `DIR/subdir/name+suffix` on the search path (subdir '' for specs), or None."""
    for d in search_dirs():
        candidate = (d / subdir if subdir else d) / f"{name}{suffix}"
        if is_file(candidate):
            return candidate
    return None


def listing(subdir: str, suffix: str = ".json") -> dict[str, Path]:
    """Every `name -> file` under `subdir` on the search path; a user's file hides a shipped one of that name."""
    out: dict[str, Path] = {}
    for d in search_dirs():
        folder = d / subdir if subdir else d
        if folder.is_dir():
            for p in sorted(folder.glob(f"*{suffix}")):
                out.setdefault(p.name[: -len(suffix)], p)
    return dict(sorted(out.items()))


def resolve_spec(text: str) -> Path:
    """A spec argument: an existing file as given, else a name (`llama`, `llama.arch`) found on the search path."""
    path = Path(text)
    if exists(path) or os.sep in text or (os.altsep and os.altsep in text):
        return path
    stem = text[: -len(".arch")] if text.endswith(".arch") else text
    found = find("", stem, ".arch")
    return found if found is not None else path


def shareable(path) -> str:
    """A spec's path fit to print in a file meant to be shared: shipped specs as `specs/NAME.arch (shipped with
    symcost)`, others relative to the working directory when under it, else the file name alone."""
    p = Path(path).resolve()
    for base, shown in ((shipped_dir().resolve(), "specs/{} (shipped with symcost)"), (Path.cwd().resolve(), "{}")):
        try:
            return shown.format(p.relative_to(base).as_posix())
        except ValueError:
            continue
    return p.name
