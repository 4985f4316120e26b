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
    from symcost.analysis.memory import activations_convention

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
        "dtype_bytes": number(dt.nbytes),
        "dtypes": dtypes(env.roles),
        "memory_reserve": {"fraction": number(req.reserve or 0), "bytes": req.reserve_bytes or 0},
        "efficiency": {"flops": number(req.flops_efficiency or 1), "bandwidth": number(req.bandwidth_efficiency or 1)},
        "activations": activations_convention(analysis.report.graph.phase),
        "keep": list(req.keep),
    }


def dtypes(roles) -> dict:
    """The dtype of each role with its bytes per element (a fraction for sub-byte and group-quantized types)."""
    def entry(dt, given: bool) -> dict:
        return {"dtype": dt.name, "bytes": number(dt.nbytes), "bits": number(dt.bits), "given": given}

    weights = entry(roles.weights, roles.weights_given)
    weights.update(quantize=roles.quantize if roles.weights_given else None, group=roles.weights.group,
                   scale=roles.weights.scale, zero_point=roles.weights.zero_point)
    return {"model": entry(roles.model, True), "activations": entry(roles.activations, roles.activations_given),
            "weights": weights, "kv_cache": entry(roles.kv, roles.kv_given)}


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
    from symcost.present.fit import memory_shown

    if memory_shown(analysis):
        doc["memory"] = memory(analysis, values)
    if analysis.summary is not None:
        doc["device"] = device(analysis, values)
    if analysis.serving is not None:
        doc["serving"] = serving(analysis, values)
    return doc


def serving(analysis, values) -> dict:
    """Serving end to end (docs/json.md): closed forms of the decode step in c, their sums, and the times."""
    sv = analysis.serving
    active = values.evaluator.active
    v = sv.values(values.evaluator) if active else None
    sums = sv.work_sums or {}

    def get(key):
        return None if v is None else number(v[key])

    return {
        "generate": sv.generate,
        "decode_steps": sv.steps,
        "cache_range": None if v is None or not sv.steps else [v["first_c"], v["last_c"]],
        "ttft_s": {"expr": str(sv.ttft), "value": get("ttft")},
        "step": {name: {"amount": str(amount), "rate": number(rate),
                        "sum": None if name not in sums else metric(sums[name], values)}
                 for name, (amount, rate) in sv.work.items()},
        "crossovers": [{"terms": list(k), "c": {"expr": str(e), "value": number(values(e)) if active else None}}
                       for k, e in sv.crossovers.items()],
        "regimes": None if v is None else [{"from": a, "to": b, "bound": name} for a, b, name in v["segments"]],
        "decode_time_s": get("decode_time"),
        "tpot_s": None if v is None or v["tpot"] is None else number(v["tpot"]),
        "latency_s": get("latency"),
        "tokens_per_s": get("tokens_per_s"),
        "decode_tokens_per_s": get("decode_tokens_per_s"),
        "tokens_per_s_per_device": get("tokens_per_s_per_device"),
        "kv_cache_end": metric(sv.kv_end, values),
        "memory_end": None if sv.memory_end is None else metric(sv.memory_end, values),
        "notes": list(sv.notes),
    }


def memory(analysis, values) -> dict:
    """Memory per device (docs/json.md): parts, reserve, total, and against the device's capacity."""
    m = analysis.memory
    active = values.evaluator.active
    headroom = m.headroom
    return {
        "parts": {name: metric(expr, values) for name, expr in m.parts.items()},
        "used": metric(m.used, values),
        "reserve_fraction": number(m.reserve_fraction),
        "reserve_bytes": number(m.reserve_bytes),
        "total": metric(m.total, values),
        "capacity": None if m.capacity is None else number(m.capacity),
        "headroom": None if headroom is None else metric(headroom, values),
        "fits": m.fits(values.evaluator) if active else None,
        "notes": list(m.notes),
    }


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
    from symcost.analysis.training import dp_traffic_form

    comm = analysis.dp_comm_bytes
    m = analysis.request.micro_batches or 1
    out["micro_batches"] = m
    out["dp_comm_elements"] = f"{dp_traffic_form(st.zero, m, st.frozen != 0)[0]}·(N_d − 1)/N_d"
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

