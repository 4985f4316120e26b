"""The terminal report: closed forms per block instance and for the whole model, the analyses, the --explain walk."""
from __future__ import annotations

import shutil
import textwrap

import sympy as sp

from symcost.cost.record import METRIC_TITLES, METRIC_UNITS
from symcost.cost.record import shown as shown_metrics
from symcost.model.dims import fmt_shape
from symcost.present import units
from symcost.present.forms import Forms


def forms_for(report) -> Forms:
    """The expression renderer for a report: the spec's dims in declaration order, with their TeX names."""
    env = report.env
    return Forms([d.symbol for d in env.dims.values()], {d.symbol: d.tex for d in env.dims.values()})


CONVENTION_TEXT = {
    "fma": "a multiply-add counts 2 FLOPs",
    "mac": "FLOPs are multiply-accumulates (MACs)",
    "exact": "an [M,K]@[K,N] product counts M·N·(2K−1) FLOPs",
}


def conventions_parts(analysis) -> list[str]:
    """The header line: phase, FLOP convention, dtype, and every non-default setting that changes a number."""
    from symcost.analysis.memory import activations_convention
    from symcost.settings import header_parts

    req = analysis.request
    parts = header_parts(req)
    parts.insert(1, CONVENTION_TEXT[req.flops])
    parts[2:2] = dtype_parts(analysis.env.roles)
    parts.append("activations: " + activations_convention(analysis.report.graph.phase, brief=True))
    if req.reserve is not None or req.reserve_bytes is not None:
        parts.append("memory reserve " + " + ".join(
            ([f"{units.percent(req.reserve)} for fragmentation"] if req.reserve is not None else [])
            + ([f"{units.quantity(req.reserve_bytes, 'B')} for the framework"] if req.reserve_bytes is not None
               else [])))
    for name, what in (("flops_efficiency", "peak FLOP/s"), ("bandwidth_efficiency", "memory bandwidth")):
        if getattr(req, name) is not None:
            parts.append(f"{units.percent(getattr(req, name))} of {what} achieved")
    return parts


def conventions_line(analysis) -> str:
    """The header line, its parts (conventions_parts) joined."""
    return " · ".join(conventions_parts(analysis))


QUANTIZED = {"layers": "the linear layers of repeated blocks", "linear": "every linear layer",
             "matrices": "every parameter matrix"}


def _a(name: str) -> str:
    """A dtype name with its article, as it is read aloud: a bf16, an fp16, an int4, an nf4."""
    return ("an " if name[:1].lower() in "aefhilmnorsx" else "a ") + name


def dtype_parts(roles) -> list[str]:
    """The dtypes in the header: the default, and the activations', quantized weights' and KV cache's when set."""
    def sized(dt) -> str:
        return f"{dt.name} ({units.element_size(dt.nbytes)})"

    parts = [f"default dtype {sized(roles.model)}"]
    if roles.activations_given:
        parts.append(f"activations {sized(roles.activations)}")
    if roles.weights_given:
        w = roles.weights
        size = units.element_size(w.nbytes)
        if w.group is not None:
            extra = f"{_a(w.scale)} scale" + (f" and {_a(w.zero_point)} zero point" if w.zero_point else "")
            size += f": {extra} per {w.group} weights"
        parts.append(f"weights {w.name} ({size}) in {QUANTIZED[roles.quantize]}")
    if roles.kv_given:
        parts.append(f"KV cache {sized(roles.kv)}")
    return parts


class _Writer:
    def __init__(self, width: int):
        self.width = width
        self.lines: list[str] = []

    def row(self, label: str, form: str, value: str = "", indent: int = 2, label_width: int = 24) -> None:
        head = " " * indent + label.ljust(label_width)
        tail = f"   = {value}" if value else ""
        body = textwrap.wrap(form + tail, max(30, self.width - len(head)), break_on_hyphens=False) or [""]
        self.lines.append(head + body[0])
        for more in body[1:]:
            self.lines.append(" " * len(head) + "  " + more)


def show(values, forms: Forms, expr, unit: str, exact: bool = False) -> str:
    """The value of a closed form at the given dims: readable units, or the partly evaluated form."""
    if not values.evaluator.active:
        return ""
    value = values(expr)
    if isinstance(value, int):
        text = units.quantity(value, unit)
        return f"{text} ({units.integer(value)})" if exact and abs(value) >= 1000 else text
    if getattr(value, "is_number", False):
        return units.quantity(value, unit)
    return forms.text(value)


def render(analysis, values, explain: bool = False, width: int | None = None) -> str:
    width = width or max(80, min(shutil.get_terminal_size((100, 24)).columns, 160))
    report = analysis.report
    forms = forms_for(report)
    g = report.graph
    w = _Writer(width)
    title = f"{g.title} ({g.name})" if g.title else g.name
    w.lines += [f"{title} — {g.file}", conventions_line(analysis)]
    if values.evaluator.active:
        w.lines.append("evaluated at " + ", ".join(f"{k}={units.integer(v) if v >= 10**6 else v}"
                                                  for k, v in values.given.items()))
    w.lines.append("")

    def metric_rows(metrics: dict, collect=(), indent=2):
        for m in shown_metrics(metrics):
            value = show(values, forms, metrics[m], METRIC_UNITS[m], exact=m.endswith("params"))
            w.row(METRIC_TITLES[m], forms.text(metrics[m], collect), value, indent)

    if explain:
        _config_fields(analysis, w)
        _explain(report, values, forms, w)
    w.lines.append("Per instance of each block")
    for b in report.blocks:
        rep = forms.text(b.repeat)
        w.lines.append(f"  {b.path}  (× {rep})" if b.repeat != 1 else f"  {b.path}")
        metric_rows(b.metrics, indent=4)
    w.lines.append("")
    w.lines.append("Whole model")
    metric_rows(report.totals, report.repeat_symbols)
    from symcost.present.fit import memory_section, serving_section

    for section in (training_section(analysis, values, forms), memory_section(analysis, values, forms, w.width),
                    device_section(analysis, values, forms), serving_section(analysis, values, forms, w.width)):
        if section:
            w.lines += ["", section.rstrip("\n")]
    return "\n".join(w.lines) + "\n"


def _config_fields(analysis, w: _Writer) -> None:
    """Which fields of the config (a preset or --hf-config) the mapping read, took by default, and ignored."""
    resolved = analysis.config
    if resolved is None or getattr(resolved, "fields", None) is None:
        return
    w.lines.append(f"Config fields ({resolved.source}, the {resolved.model_type} mapping)")
    w.lines += [f"  {line}" for line in resolved.fields.lines()]
    if resolved.unset:
        w.lines.append("  null, the spec's default: " + ", ".join(resolved.unset))
    w.lines.append("")


def _explain(report, values, forms: Forms, w: _Writer) -> None:
    w.lines.append("Derivation, op by op (costs per instance)")
    current = None
    for r in report.ops:
        n = r.node
        block = n.scope
        if block != current:
            current = block
            mult = forms.text(n.mult)
            w.lines.append("")
            w.lines.append(f"  [{block or 'top level'}]" + (f"  × {mult}" if n.mult != 1 else ""))
        ins = ", ".join(f"{t.name} {fmt_shape(t.shape)}" for t in n.inputs if not t.is_param)
        outs = ", ".join(f"{fmt_shape(t.shape)} {t.dtype}" for t in n.outputs)
        w.lines.append(f"    {n.path}    ({n.loc})")
        w.lines.append(f"        {n.statement}")
        w.lines.append(f"        {ins or '—'} → {outs}")
        for p in n.params:
            w.row(f"param {p.name}", f"{fmt_shape(p.shape)} = {forms.text(p.numel)}", indent=8,
                  label_width=18)
        m = r.metrics
        rows = [
            ("parameters", m["params"] if n.params else 0, ""),
            ("matmul FLOPs fwd", m["matmul_flops_fwd"], "FLOP"),
            ("other FLOPs fwd", m["flops_fwd"] - m["matmul_flops_fwd"], "FLOP"),
            ("FLOPs bwd", m["flops_bwd"], "FLOP"),
            ("bytes moved", m["io_bytes"], "B"),
        ]
        for label, expr, unit in rows:
            if expr != 0:
                w.row(label, forms.text(expr), show(values, forms, expr, unit), indent=8, label_width=18)
        for s in r.saved:
            note = "" if s.first else " (already counted)"
            share = "" if s.share == 1 else f" × {forms.text(s.share)}"
            w.row("saves", f"{s.label}: {forms.text(s.nbytes)} bytes{share}{note}", indent=8, label_width=18)
    w.lines.append("")


# ---- analyses ----------------------------------------------------------------------------------------------
def training_section(analysis, values, forms: Forms) -> str:
    """Training-state memory per device: the accounting in words and formulas, numbers when dims are set."""
    st = analysis.training
    if st is None:
        return ""
    from symcost.analysis.training import OPTIMIZERS, STAGE_DOC

    p = st.precision
    w, g, o = st.bytes_per_param
    lines = [
        f"training state: {p.name} ({p.doc}); {st.optimizer} ({OPTIMIZERS[st.optimizer][1]})",
        f"  per parameter, unsharded: {w} (weights) + {g} (gradients) + {o} (optimizer: "
        f"{p.master} master + {st.states}×{p.state} states) = {w + g + o} bytes",
        f"  {STAGE_DOC[st.zero]}",
    ]
    n = sp.sstr(st.dp)
    shards = {"weights": st.zero >= 3, "gradients": st.zero >= 2, "optimizer": st.zero >= 1}
    per = dict(zip(shards, (w, g, o)))
    frozen = st.frozen != 0
    # Ψ: every parameter (the weights); Ψ_t: the trained ones, which alone have gradients and optimizer state
    count = {"weights": "Ψ", "gradients": "Ψ_t" if frozen else "Ψ", "optimizer": "Ψ_t" if frozen else "Ψ"}

    def formula(names) -> str:
        parts = []
        for psi in ("Ψ", "Ψ_t"):
            whole = sum(per[x] for x in names if not shards[x] and count[x] == psi)
            split = sum(per[x] for x in names if shards[x] and count[x] == psi)
            parts += ([f"{whole}{psi}"] if whole else []) + ([f"{split}{psi}/{n}"] if split else [])
        return " + ".join(parts) or "0"

    def term(name: str, text: str, expr) -> str:
        line = f"  {name:<10} {text}"
        if values.evaluator.active:
            value = values(expr)
            shown = forms.text(sp.expand(value)) if isinstance(value, sp.Expr) and not value.is_number \
                else units.quantity(value, "B")
            line = f"{line:<32} = {shown}"
        return line

    lines.append(term("weights", formula(["weights"]), st.weight_bytes))
    lines.append(term("gradients", formula(["gradients"]), st.gradient_bytes))
    lines.append(term("optimizer", formula(["optimizer"]), st.optimizer_bytes))
    lines.append(term("total", formula(list(per)), st.total))
    lines.append(f"  Ψ = {forms.text(sp.expand(st.params))} parameters")
    if frozen:
        lines.append(f"  Ψ_t = Ψ − {forms.text(sp.expand(st.frozen))} trained parameters (the frozen ones have no "
                     "gradient and no optimizer state)")
    lines.append("  (bytes per device; 1 GB = 10^9 bytes; activations, step counters and buffers not included)")
    lines += _dp_lines(analysis, values, forms, frozen)
    return "\n".join(lines) + "\n"


def _dp_lines(analysis, values, forms: Forms, frozen: bool) -> list[str]:
    """The data-parallel traffic per step: its elements (symcost.analysis.training.dp_traffic_form), the ring
    factor, and the bytes."""
    from symcost.analysis.training import dp_communication_bytes, dp_traffic_form

    st, req = analysis.training, analysis.request
    m = req.micro_batches or 1
    form, what = dp_traffic_form(st.zero, m, frozen)
    given = ([f"N_d = {st.dp}"] if st.dp.is_number else []) + ([f"m = {m} micro-batches"] if m != 1 else [])
    comm = analysis.dp_comm_bytes
    value = values(comm) if values.evaluator.active else None
    shown = f" = {units.quantity(value, 'B')}" if value is not None and not isinstance(value, sp.Expr) else ""
    form = form if " + " not in form else f"({form})"
    if st.dp.is_number:
        written = forms.text(comm)
    else:  # the ring factor kept whole rather than expanded over the volume's terms
        volume = dp_communication_bytes(st.params, st.precision, st.zero, st.dp, frozen=st.frozen, micro_batches=m)
        written = f"({forms.text(sp.expand(volume))})·({st.dp} − 1)/{st.dp}"
    return [f"  data-parallel traffic per step: {form}·(N_d − 1)/N_d elements sent per device (ring"
            + "".join(f"; {x}" for x in given) + f"): {what}",
            f"    = {written} bytes{shown}"]


def device_section(analysis, values, forms: Forms) -> str:
    """Lower bounds for the phase on the device: FLOPs, bytes, times and tokens/s; MFU of a measured step."""
    s = analysis.summary
    if s is None:
        return ""
    lines = [f"{s.phase} on {s.device} ({s.dtype} peak {units.rate(s.peak, 'FLOP/s')}, memory "
             f"{units.rate(s.bandwidth, 'B/s')}; ridge {units.plain(s.peak / s.bandwidth)} FLOP/B)"]
    active = values.evaluator.active
    v = s.values(values.evaluator) if active else None
    per_token = _number(values, s.tokens) if active else None

    def amount(expr, unit):
        value = _number(values, expr) if active else None
        if value is None:
            return ""
        text = f"   = {units.quantity(value, unit)}"
        if per_token and per_token != 1:
            text += f"  ({units.quantity(value / per_token, unit)} per token)"
        elif per_token == 1:
            text += "  per token"
        return text

    lines.append(f"  FLOPs            {forms.text(s.flops)}{amount(s.flops, 'FLOP')}")
    if s.bytes != 0:
        lines.append(f"  bytes            {forms.text(s.bytes)}{amount(s.bytes, 'B')}")
    if s.comm_time != 0:
        lines.append(f"  comm bytes       {forms.text(s.comm_bytes)}{amount(s.comm_bytes, 'B')}")
    if v and v["time"] is not None:
        lines.append(f"  compute time  ≥  {units.seconds(v['compute_time'])}")
        if s.bytes != 0:
            lines.append(f"  memory time   ≥  {units.seconds(v['memory_time'])}")
        if s.comm_time != 0:
            lines.append(f"  comm time     ≥  {units.seconds(v['comm_time'])}")
        lines.append(f"  time          ≥  {units.seconds(v['time'])}  ({v['bound']}-bound)")
        if v["tokens_per_s"] is not None:
            lines.append(f"  tokens/s      ≤  {units.plain(v['tokens_per_s'])}")
    else:
        terms = [f"FLOPs / {units.rate(s.peak, 'FLOP/s')}"] + (
            [f"bytes / {units.rate(s.bandwidth, 'B/s')}"] if s.bytes != 0 else []) + (
            [f"comm bytes / {units.rate(s.link_bandwidth, 'B/s')}"] if s.comm_time != 0 else [])
        lines.append(f"  time          ≥  {'max(' + ', '.join(terms) + ')' if len(terms) > 1 else terms[0]}"
                     "  (set every dim for numbers)")
    lines.extend(f"  note: {n}" for n in s.notes)
    if analysis.mfu is not None:
        m = _number(values, analysis.mfu) if active else None
        lines.append(f"  MFU at a measured step of {analysis.request.step_time} s: {units.percent(m)}" if m is not None
                     else "  MFU: set every dimension (--set) to compute it")
    return "\n".join(lines) + "\n"


def _number(values, expr):
    value = values(expr)
    if isinstance(value, (int, float)) or getattr(value, "is_number", False):
        return units.exact(value)
    return None
