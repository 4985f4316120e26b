"""The device table: peak FLOP/s, memory bandwidth and size, interconnect and the first source of each device."""
from __future__ import annotations

import json

from symcost.errors import SymcostError, suggest
from symcost.present import units


def rows(devices=None, dtype: str = "bf16") -> list[dict]:
    """One row per device (default: every device on the search path), numbers exact."""
    from symcost.analysis.hardware import list_devices, load_device

    devs = devices if devices is not None else [load_device(n) for n in list_devices()]
    out = []
    for d in devs:
        link = d.interconnect
        out.append({
            "device": d.name,
            "title": d.title,
            f"peak_{dtype}": d.peak_flops.get(dtype),
            "memory_bandwidth": d.memory_bandwidth,
            "memory_bytes": d.memory_bytes,
            "interconnect": f"{link.kind}, {units.rate(link.bandwidth, 'B/s')}"
                            + (" (both directions)" if link.bidirectional else ""),
            "source": d.sources[0].split(" (")[0].split(":")[0],
        })
    return out


def render(devices=None, dtype: str = "bf16", fmt: str = "text") -> str:
    """The device table as text, markdown or JSON."""
    from symcost.present.json import number

    table = rows(devices, dtype)
    if fmt == "json":
        return json.dumps([{k: (number(v) if k != "device" and not isinstance(v, str) and v is not None else v)
                            for k, v in r.items()} for r in table], indent=2) + "\n"
    head = ("device", f"peak {dtype} dense", "memory bandwidth", "memory", "interconnect", "source")
    body = [
        (r["device"], units.rate(r[f"peak_{dtype}"], "FLOP/s") if r[f"peak_{dtype}"] else "—",
         units.rate(r["memory_bandwidth"], "B/s"), units.quantity(r["memory_bytes"], "B", binary=True),
         r["interconnect"], r["source"])
        for r in table
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---:", "---:", "---:", "---", "---"]) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines) + "\n"
    if fmt != "text":
        raise SymcostError(f"unknown format '{fmt}'; use text, markdown or json", None,
                           suggest(fmt, ("text", "markdown", "json")))
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in (head, *body))
