"""The JSON report, schema symcost.derive/1 (docs/json.md): every metric as {"expr", "value"}."""
from __future__ import annotations

import json

from symcost.cost.record import METRICS
from symcost.cost.accounting import Report
from symcost.analysis.evaluate import Evaluator

SCHEMA = "symcost.derive/1"


def _metric(expr, ev: Evaluator) -> dict:
    return {"expr": str(expr), "value": ev.json_value(expr)}


def _metrics(metrics: dict, ev: Evaluator) -> dict:
    return {m: _metric(metrics[m], ev) for m in METRICS}


def _tensor(t) -> dict:
    return {"name": t.name, "shape": [str(x) for x in t.shape], "dtype": t.dtype.name}


def document(report: Report, ev: Evaluator) -> dict:
    g, env = report.graph, report.env
    return {
        "schema": SCHEMA,
        "model": {"name": g.name, "title": g.title, "file": g.file},
        "phase": report.graph.phase,
        "conventions": {
            **(report.settings.describe() if report.settings else {}),
            "flops": report.convention,
            "dtype": env.default_dtype.name,
            "dtype_bytes": int(env.default_dtype.nbytes) if env.default_dtype.nbytes.is_Integer else str(env.default_dtype.nbytes),
            "activations": "bytes of every distinct storage saved for backward, counted once",
            "keep": list(report.keep),
        },
        "dims": {
            d.name: {
                "doc": d.doc,
                "definition": None if d.definition is None else str(d.definition),
                "value": ev.json_value(d.symbol),
            }
            for d in env.dims.values()
        },
        "options": dict(env.options),
        "totals": _metrics(report.totals, ev),
        "blocks": [
            {"path": b.path, "block": b.block, "repeat": _metric(b.repeat, ev), "per_instance": _metrics(b.metrics, ev)}
            for b in report.blocks
        ],
        "ops": [
            {
                "path": r.node.path,
                "op": r.node.op,
                "line": r.node.loc.line,
                "repeat": _metric(r.node.mult, ev),
                "inputs": [_tensor(t) for t in r.node.inputs],
                "outputs": [_tensor(t) for t in r.node.outputs],
                "per_instance": _metrics(r.metrics, ev),
            }
            for r in report.ops
        ],
    }


def render(report: Report, ev: Evaluator, extras: dict | None = None) -> str:
    return json.dumps({**document(report, ev), **(extras or {})}, indent=2) + "\n"
