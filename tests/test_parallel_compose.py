"""Tensor, expert and pipeline parallelism compose: per-device shares add back to the whole model.

The right-hand side is computed from the graph's parameters and their structural marks only (sharded or not,
inside a mixture or not, which stage reads them), never from derive()'s accounting.
"""
from __future__ import annotations

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import SPECS, same, sym
from symcost.cost.accounting import derive
from symcost.cost.parallel import placement
from symcost.errors import SymcostError
from symcost.model.builder import build
from symcost.lang.parse import load

SPECS_WITH_LAYERS = ("gpt2.arch", "llama.arch", "mixtral.arch", "deepseek.arch", "opt.arch", "falcon.arch",
                     "phi.arch", "gemma.arch", "qwen2.arch")
_GRAPHS: dict = {}


def _graph(spec: str):
    if spec not in _GRAPHS:
        _GRAPHS[spec] = build(load(SPECS / spec))
    return _GRAPHS[spec]


def _copies(graph, t, e, p) -> sp.Expr:
    """Σ over parameters of numel × the devices holding a copy of each shard: a tensor-parallel shard is held
    once per tensor group (replicated weights t times), an expert's weight once per expert group (others e
    times), and a declared table by every pipeline stage whose ops read it."""
    place = placement(graph)
    readers: dict[str, set] = {}
    for node in graph.ops:
        for tensor in node.inputs:
            store = graph.storages[tensor.storage]
            if tensor.is_param and store.label == "parameter":
                readers.setdefault(store.creator, set()).add(place[id(node)])
    total = sp.Integer(0)
    for prm in graph.params:
        tp_copies = 1 if prm.sharded else t
        ep_copies = 1 if prm.active_mult is not None else e
        stages = readers.get(prm.path)
        pp_copies = 1 if stages is None else (p if "layers" in stages else len(stages))
        total += prm.numel * prm.mult * tp_copies * ep_copies * pp_copies
    return total.xreplace(graph.env.derived_defs())


degrees = st.sampled_from([1, 2, 4, 8])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(SPECS_WITH_LAYERS), t=degrees, e=degrees, p=st.sampled_from([2, 3, 4]),
       symbolic=st.booleans())
def test_per_device_parameters_add_back_to_the_whole_model(spec, t, e, p, symbolic):
    graph = _graph(spec)
    has_experts = bool(graph.expert_counts)
    e = e if has_experts else 1
    tt, ee, pp = (sym("t"), sym("e"), sym("p")) if symbolic else (sp.Integer(t), sp.Integer(e), sp.Integer(p))
    kw = dict(tp=tt, pp=pp, ep=ee if has_experts else None)
    first, middle, last = (derive(graph, stage=s, **kw).totals["params"] for s in ("first", "middle", "last"))
    devices_per_stage = tt * ee  # each stage's devices: t-way tensor groups, e-way expert groups
    held = devices_per_stage * (first + (pp - 2) * middle + last)
    assert same(held, _copies(graph, tt, ee, pp))
    whole = derive(graph).totals["params"]
    if not symbolic and t == e == 1:  # only the pipeline splits: the stages hold the model, plus shared tables
        assert sp.expand(first + (pp - 2) * middle + last - whole) >= 0


@pytest.mark.parametrize("args, expected", [
    # Llama-3-8B: 32 layers of 218,112,000 (8,192 of them in norms, the rest in sharded projections), an
    # embedding and a head of 525,336,576 each (split by vocabulary under --tp), a final norm of 4,096
    ((), 8_030_261_248),
    (("--pp", "2"), 525_336_576 + 16 * 218_112_000),
    (("--tp", "2"), 525_336_576 + 4_096 + 32 * (8_192 + 218_103_808 // 2)),
    (("--tp", "2", "--no-vocab-parallel"), 2 * 525_336_576 + 4_096 + 32 * (8_192 + 218_103_808 // 2)),
    (("--tp", "2", "--pp", "2"), 525_336_576 // 2 + 16 * (8_192 + 218_103_808 // 2)),
    (("--tp", "4", "--pp", "2"), 525_336_576 // 4 + 16 * (8_192 + 218_103_808 // 4)),
    (("--tp", "4", "--pp", "2", "--stage", "last"), 525_336_576 // 4 + 4_096 + 16 * (8_192 + 218_103_808 // 4)),
    (("--tp", "4", "--pp", "2", "--stage", "last", "--no-vocab-parallel"),
     525_336_576 + 4_096 + 16 * (8_192 + 218_103_808 // 4)),
])
def test_llama3_8b_per_device_parameters(args, expected, capsys):
    import json

    from symcost.cli import main

    assert main(["derive", "--preset", "llama-3-8b", "--format", "json", *args]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["params"]["value"] == expected


def test_mixtral_tensor_and_expert_parallel_compose(capsys):
    import json

    from symcost.cli import main

    def params(*args):
        assert main(["derive", "--preset", "mixtral-8x7b", "--format", "json", *args]) == 0
        return json.loads(capsys.readouterr().out)["totals"]["params"]["value"]

    whole, tp2, ep8, both = params(), params("--tp", "2"), params("--ep", "8"), params("--tp", "2", "--ep", "8")
    # expert weights: 32 layers × 8 experts × 3 × 4096 × 14336
    expert_weights = 32 * 8 * 3 * 4096 * 14336
    assert whole - ep8 == expert_weights - expert_weights // 8
    assert tp2 - both == expert_weights // 2 - expert_weights // 16  # ep divides what tp left


def test_vocabulary_parallel_embedding_and_head_as_megatron():
    """Under --tp the table and the head are split by vocabulary: V·h/t each per device; the lookups'
    partial sums are all-reduced (b·s·h), the head's input gradient too, and a loss over the split
    vocabulary all-reduces three fp32 numbers per token; when generating, the split logits are gathered."""
    b, s, h, V, t = (sym(n) for n in ("b", "s", "h", "V", "t"))
    ring = 2 * (t - 1) / t
    train = derive(build(load(SPECS / "llama.arch")), tp=t)
    ops = {r.node.path: r for r in train.ops}
    assert same(ops["x"].metrics["comm_bytes"], 2 * b * s * h * ring)  # embedding: all-reduce of its output
    assert same(ops["logits"].metrics["params"], V * h / t)
    assert same(ops["logits"].metrics["comm_bytes"], 2 * b * s * h * ring)  # the head's input gradient
    assert same(ops["loss"].metrics["comm_bytes"], 3 * 4 * b * s * ring)
    decode = derive(build(load(SPECS / "llama.arch"), phase="decode"), tp=t)
    assert same({r.node.path: r for r in decode.ops}["logits"].metrics["comm_bytes"], 2 * b * V * (t - 1) / t)
    whole = derive(build(load(SPECS / "llama.arch"), vocab_parallel=False), tp=t)
    assert same(whole.totals["params"] - train.totals["params"], 2 * V * h * (1 - 1 / t))


def test_degrees_that_do_not_divide_are_errors():
    from symcost.cost.parallel import check_divisible

    r = derive(build(load(SPECS / "gpt2.arch")), tp=sp.Integer(8))
    with pytest.raises(SymcostError, match="a = 12, which 8 does not divide"):
        check_divisible(r, dict(a=12, h=768, L=12, V=50304, P=1024, b=1, s=8))
    with pytest.raises(SymcostError, match="V = 50257, which 8 does not divide") as info:
        check_divisible(r, dict(a=16, h=1024, L=12, V=50257, P=1024, b=1, s=8))
    assert "--no-vocab-parallel" in info.value.hint
    check_divisible(r, dict(a=16, h=1024, L=12, V=50304, P=1024, b=1, s=8))  # 16 heads split 8 ways
    m = derive(build(load(SPECS / "mixtral.arch")), ep=sp.Integer(3))
    with pytest.raises(SymcostError, match="E = 8, which 3 does not divide"):
        check_divisible(m, dict(E=8, k=2, a=32, kv=8, h=4096, f=14336, L=32, V=32000, b=1, s=8))


def test_pipeline_needs_repeated_layers(tmp_path):
    spec = tmp_path / "flat.arch"
    spec.write_text("dim b\ndim h\ninput x: [b, h]\ny = linear(x, h)\n")
    with pytest.raises(SymcostError, match="repeats nothing"):
        derive(build(load(spec)), pp=sp.Integer(2))
