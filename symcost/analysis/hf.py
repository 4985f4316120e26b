"""Hugging Face configs to spec values: the declarative field mappings (specs/hf/*.json) and the shipped presets.

One mapping file per model_type, `specs/hf/<model_type>.json`:
  spec      the .arch file (relative to specs/)
  dims      spec dim -> config field, or {"field": name, "default": number | other field}
  options   spec option -> {"field": name, "default": bool}, {"any_nonzero": [fields], "default": bool},
            or {"differ": [dim rule, dim rule]} (true when the two fields differ)
  derived   spec derived dim -> config field that must agree with it when present (head_dim -> d)
  validate  the transformers model and config classes `symcost validate` builds
  tiny      how `symcost validate` shrinks the config for its tiny model
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from symcost.errors import SymcostError, suggest


def specs_dir() -> Path:
    """The shipped specs directory (see symcost.paths)."""
    from symcost.paths import shipped_dir

    return shipped_dir()


def mappings() -> dict:
    """model_type -> mapping, from every `hf/` directory on the search path (a user's file first)."""
    from symcost.paths import listing

    return {name: read_json(path, "mapping") for name, path in listing("hf").items()}


def presets() -> dict[str, Path]:
    """Preset name -> file, from every `presets/` directory on the search path (a user's file first)."""
    from symcost.paths import listing

    return listing("presets")


def preset_config(name: str) -> tuple[dict, str]:
    table = presets()
    if name not in table:
        raise SymcostError(f"unknown preset '{name}'", None, suggest(name, table) or "see `symcost presets`")
    data = read_json(table[name], "preset")
    if not isinstance(data, dict):
        raise SymcostError(f"preset {name} ({table[name]}) must hold a JSON object, not {type(data).__name__}")
    return data, f"preset {name}"


def read_json(path, what: str, max_bytes: int | None = None):
    """A JSON file the user names (a config, a device): every way it can be unreadable is a SymcostError."""
    from symcost.files import MAX_JSON_BYTES, read_text, shown

    text = read_text(path, what, max_bytes or MAX_JSON_BYTES)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise SymcostError(f"{shown(path)} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except (ValueError, RecursionError) as e:
        raise SymcostError(f"{shown(path)} cannot be read as a {what}: {str(e)[:120]}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_config(path: str) -> tuple[dict, str]:
    data = read_json(path, "config")
    if not isinstance(data, dict):
        raise SymcostError(f"{path} must hold a JSON object (a transformers config), not {type(data).__name__}")
    return data, path


@dataclass(frozen=True)
class Resolved:
    model_type: str
    spec: Path
    values: dict  # dim name -> int
    options: dict  # option name -> bool
    checks: dict  # derived dim name -> (field, value) that must agree
    mapping: dict
    source: str


def _field(config: dict, rule, dim: str, source: str, model_type: str):
    field, default = (rule, None) if isinstance(rule, str) else (rule["field"], rule.get("default"))
    if field in config and config[field] is not None:
        return config[field]
    if isinstance(default, str):
        return _field(config, default, dim, source, model_type)
    if default is not None:
        return default
    raise SymcostError(f"{source}: missing field '{field}' (needed for {dim} in a {model_type} config)")


def resolve(config: dict, source: str) -> Resolved:
    """Map a transformers config onto its spec's dims and options."""
    table = mappings()
    model_type = config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise SymcostError(f"{source}: 'model_type' must be a string, not {type(model_type).__name__}")
    if model_type is None:
        raise SymcostError(f"{source}: no 'model_type' field; pass the spec explicitly (symcost derive SPEC --hf-config …)")
    if model_type not in table:
        raise SymcostError(
            f"{source}: model_type '{model_type}' has no mapping; known: {', '.join(sorted(table))}",
            None,
            suggest(model_type, table),
        )
    m = table[model_type]
    values = {}
    for dim, rule in m["dims"].items():
        v = _field(config, rule, dim, source, model_type)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v > 10**15:
            raise SymcostError(f"{source}: {dim} comes from a field that must be a positive integer, got {v!r}")
        values[dim] = v
    options = {}
    for opt, rule in m.get("options", {}).items():
        if isinstance(rule, dict) and "differ" in rule:  # true when two fields (resolved with defaults) differ
            first, second = (_field(config, f, opt, source, model_type) for f in rule["differ"])
            options[opt] = first != second
            continue
        if isinstance(rule, dict) and "any_nonzero" in rule:
            present = [config[f] for f in rule["any_nonzero"] if config.get(f) is not None]
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in present):
                raise SymcostError(f"{source}: {', '.join(rule['any_nonzero'])} must be numbers")
            options[opt] = any(v != 0 for v in present) if present else rule["default"]
            continue
        v = _field(config, rule, opt, source, model_type)
        if not isinstance(v, bool):
            raise SymcostError(f"{source}: option {opt} must be true or false, got {v!r}")
        options[opt] = v
    checks = {dim: (fld, config[fld]) for dim, fld in m.get("derived", {}).items() if config.get(fld) is not None}
    return Resolved(model_type, _mapped_spec(m, model_type), values, options, checks, m, source)


def _mapped_spec(m: dict, model_type: str) -> Path:
    """The spec a mapping names, found on the search path."""
    from symcost.paths import find

    name = m.get("spec")
    if not isinstance(name, str) or not name:
        raise SymcostError(f"the {model_type} mapping has no 'spec' naming its .arch file")
    found = find("", name[: -len(".arch")] if name.endswith(".arch") else name, ".arch")
    if found is None:
        raise SymcostError(f"the {model_type} mapping names spec '{name}', which is not on the search path")
    return found


def check_derived(resolved: Resolved, evaluator) -> None:
    """A config field such as head_dim must agree with what the spec derives (d = h/a)."""
    env_subs = evaluator.subs
    for dim, (fld, value) in resolved.checks.items():
        sym = next((s for s in env_subs if s.name == dim), None)
        if sym is not None and env_subs[sym] != value:
            raise SymcostError(
                f"{resolved.source}: {fld}={value}, but this spec derives {dim} = {env_subs[sym]}; "
                "use a spec whose head size is a free dimension"
            )
