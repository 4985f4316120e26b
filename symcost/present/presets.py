"""The preset table: each published config on the search path, its family, spec and the dims it sets."""
from __future__ import annotations

import json

from symcost.errors import SymcostError, clean


def rows() -> list[dict]:
    from symcost.analysis.hf import preset_config, presets, resolve

    out = []
    for name in presets():
        cfg, source = preset_config(name)
        meta = cfg.get("_symcost") if isinstance(cfg.get("_symcost"), dict) else {}
        try:
            r = resolve(cfg, source)
            spec, dims = r.spec.name, dict(r.values)
        except SymcostError as e:  # a user's preset that does not resolve still lists, with the reason
            spec, dims = "?", {"error": e.message}
        out.append({"name": clean(name), "model_type": clean(str(cfg.get("model_type", "?"))), "spec": spec,
                    "title": clean(str(meta.get("title", ""))), "dims": dims})
    return out


def parameters(table: list[dict]) -> dict:
    """Preset name -> (parameters, active per token), derived once per spec and options (not measured)."""
    from symcost.analysis.hf import preset_config, resolve
    from symcost.api import derive

    out, derived = {}, {}
    for r in table:
        if r["spec"] == "?":
            continue
        resolved = resolve(*preset_config(r["name"]))
        key = (str(resolved.spec), tuple(sorted(resolved.options.items())), tuple(sorted(resolved.values)),
               resolved.unset)
        if key not in derived:
            derived[key] = derive(preset=r["name"])
        v = derived[key].at(**resolved.values)
        out[r["name"]] = (v.params, v.active_params)
    return out


def markdown(table: list[dict]) -> str:
    """A Markdown table: preset, family, spec, title, and its parameters as derived (active per token too)."""
    from symcost.present import units

    counts = parameters(table)
    lines = ["| preset | family | spec | title | parameters (derived) |", "|---|---|---|---|---:|"]
    for r in table:
        total, active = counts.get(r["name"], (None, None))
        shown = "—" if total is None else units.integer(total)
        if active is not None and active != total:
            shown += f" ({units.integer(active)} active)"
        lines.append(f"| {r['name']} | {r['model_type']} | {r['spec']} | {r['title']} | {shown} |")
    return "\n".join(lines) + "\n"


def render(fmt: str = "text") -> str:
    table = rows()
    if fmt == "json":
        return json.dumps(table, indent=2) + "\n"
    if not table:
        return "no presets on the search path\n"
    if fmt == "markdown":
        return markdown(table)
    cells = [(r["name"], r["model_type"], r["spec"], r["title"], " ".join(f"{k}={v}" for k, v in r["dims"].items()))
             for r in table]
    w = [max(len(c[i]) for c in cells) for i in range(4)]
    return "".join(f"{c[0].ljust(w[0])}  {c[1].ljust(w[1])}  {c[2].ljust(w[2])}  {c[3].ljust(w[3])}  {c[4]}\n"
                   for c in cells)
