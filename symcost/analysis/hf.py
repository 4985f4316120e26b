"""Hugging Face configs to spec values: the declarative field mappings (specs/hf/*.json) and the shipped presets.

One mapping file per model_type, `specs/hf/<model_type>.json`:
  spec      the .arch file (relative to specs/)
  dims      spec dim -> a rule (symcost.analysis.rules): `"n_embd"`, `"n_inner if n_inner != null else 4 * n_embd"`;
            a rule giving null leaves the dim to the spec's default (`dim f = default 4 * h`)
  options   spec option -> a rule giving true or false: `"feed_forward_proj == 'gated-gelu'"`
  defaults  field -> transformers' class default, used when the config has no such field (null is a value)
  fields    alias -> [config paths]: a nested field (`rope_parameters.partial_rotary_factor`) or several spellings
  requires  [{"check": rule, "because": text}]: what the spec needs of every config it models
  ignores   {reason: [fields]}: fields known to change nothing symcost derives (symcost.analysis.fields)
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
    unset: tuple = ()  # dims whose rule gave null: the spec's default definition applies
    fields: object = None  # symcost.analysis.fields.Account: the config's fields read, ignored, unknown


def _rule_tree(rule, where: str):
    """A rule's syntax tree (symcost.analysis.rules)."""
    from symcost.analysis.rules import parse

    if not isinstance(rule, str):
        raise SymcostError(f"{where}: a rule is an expression text such as \"n_embd\" or "
                           f"\"n_inner if n_inner != null else 4 * n_embd\", not {str(rule)[:80]}")
    return parse(rule, where)


def _run_rule(rule, where: str, fields):
    """Evaluate one rule over the config."""
    from symcost.analysis.rules import evaluate

    return evaluate(_rule_tree(rule, where), fields)


def _rules_section(m: dict, key: str, model_type: str) -> dict:
    section = m.get(key, {})
    if not isinstance(section, dict):
        raise SymcostError(f"the {model_type} mapping's '{key}' must be an object")
    return section


def resolve(config: dict, source: str) -> Resolved:
    """Map a transformers config onto its spec's dims and options, accounting for every field it carries."""
    from symcost.analysis.fields import account
    from symcost.analysis.rules import Fields, shown, whole

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
    defaults, aliases = _rules_section(m, "defaults", model_type), _rules_section(m, "fields", model_type)
    fields = Fields(config, defaults, aliases)

    def run(rule, where: str):
        try:
            return _run_rule(rule, where, fields)
        except SymcostError as e:
            if e.loc is None and not e.message.startswith(source):
                raise SymcostError(f"{source}: {e.message} (the {model_type} mapping's {where})", None, e.hint) from None
            raise SymcostError(f"{source}: {e.message}", e.loc, e.hint) from None

    values, unset = {}, []
    for dim, rule in _rules_section(m, "dims", model_type).items():
        v = run(rule, f"{model_type} mapping: dims.{dim}")
        if v is None:
            unset.append(dim)
            continue
        n = whole(v)
        if n is None or n <= 0 or n > 10**15:
            raise SymcostError(f"{source}: {dim} must be a positive integer, but the {model_type} mapping's rule "
                               f"gives {shown(v)}", None, _rule_hint(rule))
        values[dim] = n
    options = {}
    for opt, rule in _rules_section(m, "options", model_type).items():
        v = run(rule, f"{model_type} mapping: options.{opt}")
        if not isinstance(v, bool):
            raise SymcostError(f"{source}: option {opt} must be true or false, but the {model_type} mapping's rule "
                               f"gives {shown(v)}", None, _rule_hint(rule))
        options[opt] = v
    _requires(m, model_type, source, run, fields)
    checks = {}
    for dim, fld in _rules_section(m, "derived", model_type).items():
        v = run(str(fld), f"{model_type} mapping: derived.{dim}") if (fld in config or fld in aliases) else None
        if v is not None:
            checks[dim] = (fld, v)
    acc = account(config, m, model_type, set(fields.read) | _named_fields(m), fields.read, fields.defaulted, source)
    return Resolved(model_type, _mapped_spec(m, model_type), values, options, checks, m, source, tuple(unset), acc)


def _rule_hint(rule) -> str:
    return f"the rule is {rule!r}"[:200]


def _requires(m: dict, model_type: str, source: str, run, fields) -> None:
    """`requires`: [{"check": rule, "because": text}], each true for every config the spec can model."""
    from symcost.analysis.rules import shown

    requires = m.get("requires", [])
    if not isinstance(requires, list):
        raise SymcostError(f"the {model_type} mapping's 'requires' must be a list")
    for i, item in enumerate(requires):
        if not isinstance(item, dict) or not isinstance(item.get("check"), str):
            raise SymcostError(f"the {model_type} mapping's requires[{i}] must be {{\"check\": rule, \"because\": text}}")
        before = dict(fields.read)
        ok = run(item["check"], f"{model_type} mapping: requires[{i}]")
        if ok is not True:
            named = {k: v for k, v in fields.read.items() if k not in before or k in _names(item["check"])}
            what = ", ".join(f"{k}={shown(v)}" for k, v in named.items()) or item["check"]
            raise SymcostError(f"{source}: {what} is not supported: {item.get('because', item['check'])}")


def _names(text: str) -> set:
    """The field names a rule text reads (its syntax tree's names)."""
    from symcost.analysis.rules import names_in, parse

    return names_in(parse(text, "rule"))


def _named_fields(m: dict) -> set:
    """Every top-level config field a mapping's rules may read, whether or not this config took that branch."""
    names = set()
    for key in ("dims", "options"):
        for rule in m.get(key, {}).values():
            names |= _names(rule) if isinstance(rule, str) else set()
    for item in m.get("requires", []):
        if isinstance(item, dict) and isinstance(item.get("check"), str):
            names |= _names(item["check"])
    names |= {str(f) for f in m.get("derived", {}).values()}
    aliases = m.get("fields", {})
    out = set()
    for name in names:
        paths = aliases.get(name, [name])
        for path in paths if isinstance(paths, list) else [paths]:
            out.add(str(path).split(".")[0])
    return out


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
