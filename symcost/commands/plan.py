"""`symcost plan`: search tensor, pipeline and data degrees, micro-batch, ZeRO stage and recomputation."""
from __future__ import annotations

from symcost.commands.args import RAW, add_settings, request_of, set_values, source

SEARCHED = ("phase", "tp", "pp", "stage", "dp", "zero", "recompute", "micro_batches", "step_time")  # what plan chooses
EPILOG = """examples:
  symcost plan llama --preset llama-2-70b --set s=4096 --devices 512 --device h100-sxm --global-batch 1024
  symcost plan llama --preset llama-2-70b --set c=4096 --devices 8 --device h100-sxm --objective decode

the model of each layout is in docs/solve.md (plan): compute at peak, pipeline bubble (p − 1)/m, tensor- and
data-parallel traffic over the device's interconnect, memory = training state + in-flight activations"""


def register(sub, common) -> None:
    p = sub.add_parser(
        "plan", parents=[common], help="search parallel layouts for the fastest training step or decode throughput",
        formatter_class=RAW, epilog=EPILOG,
        description="Search every layout of --devices devices: tensor degree t (dividing the heads, at most "
        "--max-tp), pipeline degree p (dividing the layers), data degree d = N/(t·p), micro-batch b, ZeRO stage and "
        "recomputation; keep those whose memory per device fits the device and print the best by training step "
        "time (or decode tokens/s). The closed forms are derived once with the degrees as symbols and evaluated "
        "over all layouts at once.")
    source(p, "a .arch file or a shipped spec's name; optional with --hf-config/--preset")
    set_values(p)
    add_settings(p, skip=SEARCHED)
    p.add_argument("--devices", type=int, required=True, metavar="N", help="the number of devices")
    p.add_argument("--objective", choices=("train", "decode"), default="train",
                   help="train: minimise the step time (default); decode: maximise generated tokens/s")
    p.add_argument("--global-batch", type=int, metavar="B", help="sequences per optimizer step (train)")
    p.add_argument("--max-tp", type=int, default=8, metavar="T",
                   help="the largest tensor-parallel degree: a node's fast-link domain (default 8)")
    p.add_argument("--max-batch", type=int, default=1024, metavar="B",
                   help="the largest micro-batch searched (default 1024)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="layouts shown (default 5)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")


def run(args) -> str:
    from symcost.analysis.plan import plan
    from symcost.errors import SymcostError
    from symcost.present.plan import render
    from symcost.settings import TABLE

    if args.device is None:
        raise SymcostError("plan needs a device: --device NAME (see `symcost devices`)")
    request_of(args)  # checks every setting as derive does
    settings = {s.name: getattr(args, s.name) for s in TABLE if s.name not in SEARCHED and s.name != "device"
                and hasattr(args, s.name) and getattr(args, s.name) not in (None, [], s.default)}
    result = plan(args.spec, devices=args.devices, device=args.device, global_batch=args.global_batch,
                  objective=args.objective, preset=args.preset, hf_config=args.hf_config, set=args.set,
                  max_tp=args.max_tp, max_batch=args.max_batch, top=args.top, **settings)
    return render(result, args.format)
