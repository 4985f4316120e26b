"""Plans of `symcost plan` as text and as JSON (schema symcost.plan/1, docs/json.md)."""
from __future__ import annotations

import json

from symcost.present import units

SCHEMA = "symcost.plan/1"


def _header(plan) -> list[str]:
    from symcost.present.text import conventions_line

    s = plan.search
    a = s.analysis
    g = a.graph
    dev = a.device
    given = ", ".join(f"{k}={v}" for k, v in a.values.items())
    what = (f"training step of a global batch of {plan.global_batch} sequences" if s.objective == "train"
            else "decode throughput")
    return [
        f"{g.title or g.name} ({g.name}) — {g.file}",
        conventions_line(a),
        f"given {given}" if given else "no dims given",
        f"plan: {what} on {plan.devices} × {dev.name} ({a.env.default_dtype.name} peak "
        f"{units.rate(s.peak, 'FLOP/s')}, {units.rate(s.bandwidth, 'B/s')}, "
        f"{units.quantity(s.capacity, 'B', binary=True)}; {dev.interconnect.kind} {units.rate(s.link, 'B/s')} per direction)",
    ]


def _counts(plan) -> list[str]:
    rate = plan.evaluated / plan.seconds if plan.seconds > 0 else float("inf")
    shapes = len(plan.shapes)
    valid = sum(1 for *_, r in plan.shapes if r is None)
    lines = [f"searched {units.integer(plan.evaluated)} layouts ({valid} of {shapes} degree shapes t·p·d = "
             f"{plan.devices}) in {units.seconds(plan.seconds)} ({units.plain(round(rate))} layouts/s; derivation "
             f"and compilation {units.seconds(plan.search.derive_seconds)}, total {units.seconds(plan.total_seconds)})",
             f"{units.integer(plan.fitting)} fit in memory"]
    from symcost.analysis.plan import OVER_MEMORY

    for reason, n in plan.rejected.items():
        unit = ("layout" if reason == OVER_MEMORY else "shape") + ("s" if n != 1 else "")
        lines.append(f"  rejected {units.integer(n)} {unit}: {reason}")
    return lines


def text(plan) -> str:
    lines = _header(plan) + [""] + _counts(plan) + [""]
    train = plan.search.objective == "train"
    if not plan.best:
        lines.append("no layout fits in memory")
        return "\n".join(lines) + "\n"
    if train:
        head = (f"{'#':>2} {'t':>3} {'p':>3} {'d':>5} {'b':>4} {'m':>5} {'ZeRO':>4} {'recompute':>9}  {'step time':>10} "
                f"{'compute':>10} {'bubble':>10} {'TP comm':>10} {'DP comm':>10} {'memory':>9}  {'MFU ≤':>6}")
    else:
        head = (f"{'#':>2} {'t':>3} {'p':>3} {'d':>5} {'b':>5}  {'tokens/s ≤':>11} {'step ≥':>10} {'compute':>10} "
                f"{'memory t.':>10} {'TP comm':>10} {'memory':>9}")
    lines.append(head)
    for i, r in enumerate(plan.best, 1):
        if train:
            lines.append(f"{i:>2} {r['t']:>3} {r['p']:>3} {r['d']:>5} {r['b']:>4} {r['m']:>5} {r['zero']:>4} "
                         f"{r['recompute']:>9}  {_s(r['time']):>10} {_s(r['compute']):>10} {_s(r['bubble']):>10} "
                         f"{_s(r['tp_comm']):>10} {_s(r['dp_comm']):>10} {_b(r['memory']):>9}  "
                         f"{units.percent(r['mfu']):>6}")
        else:
            lines.append(f"{i:>2} {r['t']:>3} {r['p']:>3} {r['d']:>5} {r['b']:>5}  {units.plain(round(r['tokens_per_s'])):>11} "
                         f"{_s(r['time']):>10} {_s(r['compute']):>10} {_s(r['memory_time']):>10} "
                         f"{_s(r['tp_comm']):>10} {_b(r['memory']):>9}")
    lines += [""] + (_best_train(plan) if train else _best_decode(plan))
    return "\n".join(lines) + "\n"


def _s(x) -> str:
    return units.seconds(x) if x > 0 else "0"


def _b(x) -> str:
    return units.quantity(x, "B")


def _best_train(plan) -> list[str]:
    r = plan.best[0]
    mb = r["compute"] / r["m"] + r["tp_comm"] / r["m"]
    out = [f"best: t={r['t']} (tensor) × p={r['p']} (pipeline) × d={r['d']} (data), micro-batch b={r['b']}, "
           f"m={r['m']} micro-batches per step, ZeRO {r['zero']}, {r['recompute']} recomputation",
           f"  step time ≥ {_s(r['time'])}: {units.plain(round(r['tokens_per_s']))} tokens/s, MFU ≤ "
           f"{units.percent(r['mfu'])}",
           f"    compute     {_s(r['compute']):>10}   m × stage FLOPs per micro-batch / peak",
           f"    TP comm     {_s(r['tp_comm']):>10}   m × stage comm_bytes per micro-batch / link",
           f"    bubble      {_s(r['bubble']):>10}   (p − 1) × {_s(mb)} per micro-batch: (p − 1)/m = "
           f"{units.percent((r['p'] - 1) / r['m'])} of the pipeline time",
           f"    DP comm     {_s(r['dp_comm']):>10}   {_dp_text(plan, r)}",
           f"  memory per device {_b(r['memory'])} of {_b(plan.search.capacity)}"
           + (f" (the {r['stage']} stage)" if r["p"] > 1 else ""),
           f"    weights     {_b(r['weights']):>10}",
           f"    gradients   {_b(r['gradients']):>10}",
           f"    optimizer   {_b(r['optimizer']):>10}",
           f"    activations {_b(r['activations']):>10}   {int(r['inflight'])} micro-batch"
           f"{'es' if r['inflight'] > 1 else ''} in flight"] + (
           [f"    recomputed  {_b(r['recomputed']):>10}   one layer's tensors rebuilt for its backward pass"]
           if r["recomputed"] else []) + _reserve_line(plan, r)
    return out + _check_lines(plan) + _notes(plan)


def _reserve_line(plan, r) -> list[str]:
    s = plan.search
    if not s.reserve_fraction and not s.reserve_bytes:
        return []
    held = ([f"{units.percent(s.reserve_fraction)} for fragmentation"] if s.reserve_fraction else []) + (
        [f"{_b(s.reserve_bytes)} for the framework"] if s.reserve_bytes else [])
    return [f"    reserve     {_b(r['reserve']):>10}   {', '.join(held)}"]


def _dp_text(plan, r) -> str:
    """The data-parallel bytes of the layout in words, as derive states them (dp_traffic_form)."""
    from symcost.analysis.training import dp_traffic_form

    form, what = dp_traffic_form(r["zero"], r["m"], plan.search.analysis.report.frozen_params != 0)
    form = form if " + " not in form else f"({form})"
    return f"{form}·(d − 1)/d elements (ring): {what} / link"


def _best_decode(plan) -> list[str]:
    r = plan.best[0]
    out = [f"best: t={r['t']} (tensor) × p={r['p']} (pipeline) × d={r['d']} replicas, b={r['b']} sequences per "
           f"micro-batch, {r['p']} in flight per replica",
           f"  tokens/s ≤ {units.plain(round(r['tokens_per_s']))} over {plan.devices} devices (a stage step ≥ "
           f"{_s(r['time'])}: max of compute {_s(r['compute'])}, memory {_s(r['memory_time'])}, TP comm "
           f"{_s(r['tp_comm'])})",
           f"  memory per device {_b(r['memory'])} of {_b(plan.search.capacity)}"
           + (f" (the {r['stage']} stage)" if r["p"] > 1 else ""),
           f"    weights     {_b(r['weights']):>10}",
           f"    KV cache    {_b(r['kv_cache']):>10}   {r['p']} × {r['b']} sequences of c tokens"
           if r["p"] > 1 else f"    KV cache    {_b(r['kv_cache']):>10}   {r['b']} sequences of c tokens",
           f"    activations {_b(r['activations']):>10}   live tensors of one step (a bound, as derive's)"
           ] + _reserve_line(plan, r)
    return out + _check_lines(plan) + _notes(plan)


def _check_lines(plan) -> list[str]:
    if not plan.checks:
        return []
    bad = [c for c in plan.checks if not c[-1]]
    if not bad:
        return [f"  checked: {len(plan.checks)} compiled values of the best layout equal a derivation with its "
                "numeric degrees, evaluated exactly"]
    return [f"  CHECK FAILED: {stage} {name}: exact {exact}, compiled {got}" for stage, name, exact, got, _ in bad]


def _notes(plan) -> list[str]:
    if plan.search.objective == "train":
        return ["  note: times at peak rates, no overlap of compute and communication, every link the device's "
                "interconnect (one direction): a lower bound for the layout",
                "  note: memory: training state (ZeRO over d) + activations of the micro-batches in flight (1F1B: "
                "min(p, m) on the first stage) + one layer rebuilt under recomputation" + _reserve_note(plan)]
    return ["  note: a stage step ≥ max(FLOPs/peak, (weights + KV cache read)/bandwidth, comm/link); memory: weights "
            "+ KV cache of the micro-batches in flight + live activations of one step (as derive --phase decode "
            "counts them)" + _reserve_note(plan)]


def _reserve_note(plan) -> str:
    s = plan.search
    if not s.reserve_fraction and not s.reserve_bytes:
        return "; no reserve (--reserve, --reserve-bytes)"
    return "; total = used / (1 − reserve) + reserve bytes"


def document(plan) -> dict:
    from symcost.present.json import conventions

    s = plan.search
    a = s.analysis
    return {
        "schema": SCHEMA,
        "model": {"name": a.graph.name, "title": a.graph.title, "file": a.graph.file},
        "objective": s.objective,
        "conventions": conventions(a),
        "given": dict(a.values),
        "device": {"name": a.device.name, "peak_flops": s.peak, "memory_bandwidth": s.bandwidth,
                   "memory_bytes": s.capacity, "link_bytes_per_s": s.link},
        "devices": plan.devices,
        "global_batch": plan.global_batch,
        "searched": {"layouts": plan.evaluated, "fit": plan.fitting, "rejected": plan.rejected,
                     "shapes": [{"t": t, "p": p, "d": d, "rejected": r} for t, p, d, r in plan.shapes],
                     "seconds": plan.seconds, "derive_seconds": s.derive_seconds,
                     "total_seconds": plan.total_seconds},
        "best": plan.best,
        "checked": [{"stage": st, "quantity": n, "exact": float(e), "compiled": g, "agrees": ok}
                    for st, n, e, g, ok in plan.checks],
    }


def render(plan, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(document(plan), indent=2) + "\n"
    return text(plan)
