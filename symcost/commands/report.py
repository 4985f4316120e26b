"""`symcost report`: one self-contained HTML page with typeset closed forms, live inputs and inline charts."""
from __future__ import annotations

from symcost.commands.args import RAW, add_settings, request_of, set_values, source

START = {"s": 2048, "c": 2048}  # sequence dims not given start here on the page; every other dim at 1


def register(sub, common) -> None:
    r = sub.add_parser(
        "report", parents=[common], formatter_class=RAW,
        help="write an interactive HTML report (closed forms, live inputs, roofline, memory)",
        description="Write one self-contained HTML file that works offline: the closed forms typeset with KaTeX, "
        "the per-block and per-op derivation, the memory per device and the roofline as inline SVG, and an input "
        "and a slider for every dim; changing one re-evaluates every number on the page exactly, from the closed "
        "forms, in the browser. Every shipped device can be chosen on the page (--device picks the first shown and "
        "adds a device file). Dims start at the preset's and --set's values; s and c otherwise start at 2048, "
        "every other dim at 1.",
        epilog="examples:\n"
        "  symcost report specs/llama.arch --preset llama-2-7b -o llama.html\n"
        "  symcost report llama --preset llama-3-8b --phase decode --device h100-sxm --set b=8 c=8192 -o decode.html",
    )
    source(r, "a .arch file or a spec name (optional with --hf-config/--preset)")
    set_values(r, "start values of dims (b=8 s=4096 ...) and options (tied=false)")
    add_settings(r)
    r.add_argument("--title", help="the page's title (default: the model's)")
    r.add_argument("-o", "--output", metavar="FILE", required=True, help="the HTML file to write")


def run(args) -> str:
    from symcost.api import run as derive
    from symcost.present.html.data import page_data
    from symcost.present.html.page import render

    analysis = derive(request_of(args))
    devices, left_out = shipped_devices(analysis)
    free = [d.name for d in analysis.env.dims.values() if d.definition is None and d.name not in analysis.env.fixed]
    starts = {n: START.get(n, 1) for n in free if n not in analysis.values}
    values = {**starts, **analysis.values}
    chosen = analysis.device.name if analysis.device is not None else _default(devices)
    data = page_data(analysis, values, devices, chosen, title=args.title)
    if starts:
        data["conventions"].append("not given, starting at " + " ".join(f"{k}={v}" for k, v in starts.items()))
    if left_out:
        data["conventions"].append(f"devices without a {analysis.env.default_dtype.name} peak left out: "
                                   + ", ".join(left_out))
    return render(data)


def shipped_devices(analysis) -> tuple[list, list]:
    """Every device on the search path (and --device's file) that has a peak for the report's dtype."""
    from symcost.analysis.hardware import list_devices, load_device
    from symcost.errors import SymcostError

    dtype = analysis.env.default_dtype.name
    devices = [load_device(name) for name in list_devices()]
    if analysis.device is not None and analysis.device.name not in {d.name for d in devices}:
        devices.insert(0, analysis.device)
    kept, left_out = [], []
    for d in devices:
        try:
            d.peak(dtype)
            kept.append(d)
        except SymcostError:
            left_out.append(d.name)
    if analysis.device is not None and analysis.device.name in left_out:
        analysis.device.peak(dtype)  # the error that names the dtypes it has
    return kept, left_out


def _default(devices) -> str | None:
    names = [d.name for d in devices]
    return "h100-sxm" if "h100-sxm" in names else (names[0] if names else None)
