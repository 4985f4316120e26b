"""A sweep table as aligned text: dims as plain integers, metrics in their units through present.units."""
from __future__ import annotations

from symcost.present import units


def cell(value, unit: str) -> str:
    if unit == "tokens/s":
        return units.plain(value)
    return units.quantity(value, unit)


def render(table, fmt: str = "table") -> str:
    """The table as text ("table"), CSV or JSON."""
    if fmt == "csv":
        return table.to_csv()
    if fmt == "json":
        return table.to_json()
    head = table.dims + table.metrics
    rows = [[units.integer(row[d]) for d in table.dims] + [cell(row[m], table.units[m]) for m in table.metrics]
            for row in table]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [_header(table)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)).rstrip())
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return "\n".join(lines) + "\n"


def _header(table) -> str:
    a = table.analysis
    parts = [f"{a.title} — {a.graph.file}", f"phase {a.request.phase}"]
    if a.device is not None:
        parts.append(f"on {a.device.name}")
    fixed = " ".join(f"{k}={v}" for k, v in table.fixed.items())
    return " · ".join(parts) + (f"\nat {fixed}" if fixed else "")
