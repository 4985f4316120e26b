"""The JSON report, schema symcost.derive/1 (docs/json.md): every metric as {"expr", "value"}, numbers always JSON."""
from __future__ import annotations

import json
import math

from symcost.cost.record import METRICS
from symcost.present import units

SCHEMA = "symcost.derive/1"


MAX_JSON_INTEGER = 10**300  # an exact integer at or past this is given as a string in scientific form


def number(value):
    """A value as JSON: an exact integer as an integer (below MAX_JSON_INTEGER), another number as a double,
    a number beyond those as a string in scientific form ("1.235e+402"), anything else (a partly evaluated
    form) as null. JSON never holds NaN or Infinity."""
    x = units.exact(value)
    if x is None:
        return None
    if x.denominator == 1:
        return int(x) if abs(x) < MAX_JSON_INTEGER else units.scientific(x)
    try:
        f = float(x)
    except OverflowError:
        return units.scientific(x)
    return f if math.isfinite(f) else units.scientific(x)


def metric(expr, values) -> dict:
    return {"expr": str(expr), "value": number(values(expr)) if values.evaluator.active else None}


def _metrics(metrics: dict, values) -> dict:
    return {m: metric(metrics[m], values) for m in METRICS}


def _tensor(t) -> dict:
    return {"name": t.name, "shape": [str(x) for x in t.shape], "dtype": t.dtype.name}


def conventions(analysis) -> dict:
    """Every setting that shaped the numbers, so a number never travels without them."""
    req, env = analysis.request, analysis.env
    dt = env.default_dtype
    return {
        "flops": req.flops,
        "causal": req.causal,
        "recompute": req.recompute,
        "flash_attention": req.flash_attention,
        "tensor_parallel": None if req.tp is None else str(req.tp),
        "sequence_parallel": req.sp,
        "vocab_parallel": req.vocab_parallel if req.tp is not None else None,
        "pipeline_parallel": None if req.pp is None else str(req.pp),
        "pipeline_stage": None if req.pp is None else req.stage,
        "expert_parallel": None if req.ep is None else str(req.ep),
        "other_flops": req.other_flops,
        "embedding_flops": req.embedding_flops,
        "dtype": dt.name,
        "dtype_bytes": int(dt.nbytes) if dt.nbytes.is_Integer else str(dt.nbytes),
        "activations": "bytes of every distinct storage saved for backward, counted once",
        "keep": list(req.keep),
    }


def document(analysis, values) -> dict:
    report = analysis.report
    g, env = report.graph, report.env
    doc = {
        "schema": SCHEMA,
        "model": {"name": g.name, "title": g.title, "file": g.file},
        "phase": g.phase,
        "conventions": conventions(analysis),
        "dims": {
            d.name: {
                "doc": d.doc,
                "definition": None if d.definition is None else str(d.definition),
                "value": number(values(d.symbol)) if values.evaluator.active else None,
            }
            for d in env.dims.values()
        },
        "options": dict(env.options),
        "totals": _metrics(report.totals, values),
        "blocks": [
            {"path": b.path, "block": b.block, "repeat": metric(b.repeat, values),
             "per_instance": _metrics(b.metrics, values)}
            for b in report.blocks
        ],
        "ops": [
            {
                "path": r.node.path,
                "op": r.node.op,
                "line": r.node.loc.line,
                "repeat": metric(r.node.mult, values),
                "inputs": [_tensor(t) for t in r.node.inputs],
                "outputs": [_tensor(t) for t in r.node.outputs],
                "per_instance": _metrics(r.metrics, values),
            }
            for r in report.ops
        ],
    }
    resolved = analysis.config
    if resolved is not None and getattr(resolved, "fields", None) is not None:
        doc["config"] = {"source": resolved.source, "model_type": resolved.model_type,
                         "fields": resolved.fields.as_json(), "null_dims": list(resolved.unset)}
    if analysis.training is not None:
        doc["training"] = training(analysis, values)
    if analysis.summary is not None:
        doc["device"] = device(analysis, values)
    return doc


def training(analysis, values) -> dict:
    st = analysis.training
    out = {
        "precision": st.precision.name,
        "optimizer": st.optimizer,
        "optimizer_states": st.states,
        "zero": st.zero,
        "dp": str(st.dp),
        "bytes_per_param": dict(zip(("weights", "gradients", "optimizer"), st.bytes_per_param)),
    }
    for name, expr in st.fields().items():
        out[name] = {"expr": str(expr), "value": number(values(expr))}
    comm = analysis.dp_comm_bytes
    out["dp_comm_bytes"] = {"expr": str(comm), "value": number(values(comm)) if values.evaluator.active else None}
    return out


def device(analysis, values) -> dict:
    """The device section under its documented names (docs/json.md)."""
    s, rf = analysis.summary, analysis.roofline
    active = values.evaluator.active
    v = s.values(values.evaluator) if active else {}
    ops = []
    for o in rf.ops:
        ov = o.values(values.evaluator) if active else {}
        ops.append({
            "path": o.path, "op": o.op,
            "arithmetic_intensity": {"expr": None if o.intensity is None else str(o.intensity),
                                     "value": number(ov.get("intensity"))},
            "time_lower_bound_s": number(ov.get("total_time")),
            "bound": ov.get("bound", o.bound),
        })
    out = {
        "name": s.device, "dtype": s.dtype,
        "peak_flops_per_s": number(float(s.peak)), "memory_bandwidth": number(float(s.bandwidth)),
        "interconnect_bandwidth": None if s.link_bandwidth is None else number(float(s.link_bandwidth)),
        "phase": s.phase,
        "flops": {"expr": str(s.flops), "value": number(values(s.flops)) if active else None},
        "bytes": {"expr": str(s.bytes), "value": number(values(s.bytes)) if active else None},
        "time_lower_bound_s": {"expr": str(s.time), "value": number(v.get("time"))},
        "bound": v.get("bound"),
        "tokens_per_s": number(v.get("tokens_per_s")),
        "notes": list(s.notes),
        "ops": ops,
    }
    if analysis.mfu is not None:
        out["mfu"] = number(values(analysis.mfu)) if active else None
    return out


def render(analysis, values) -> str:
    return json.dumps(document(analysis, values), indent=2) + "\n"

