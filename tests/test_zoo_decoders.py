"""The decoder zoo beyond GPT-2 and Llama: Qwen2, Gemma, OPT, Phi and Falcon.

For each family: the per-layer and whole-model closed forms (compared as SymPy expressions), the published
parameter count of every preset derived through its mapping and `symcost.evaluate.Evaluator`, and
`symcost validate` against transformers for every preset and for the structural variants the presets do not
cover. The validate tests need the torch extra; without it they are skipped with a visible reason — except
under CI (CI=true), where a missing torch is a failure.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from symcost.analysis import validate as V
from symcost.cli import main
from symcost.cost.accounting import derive
from symcost.analysis.evaluate import Evaluator
from symcost.model.builder import build
from symcost.analysis.hf import mappings, preset_config, resolve
from symcost.lang.parse import load

from helpers import validate_preset, block, op, report_for, same, sym

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MEASURED = Path(__file__).resolve().parent / "data" / "reference" / "measured.json"

a, b, s, h, L, V_, P, kv, f, r = (sym(n) for n in ("a", "b", "s", "h", "L", "V", "P", "kv", "f", "r"))
d = h / a  # the head size of every family here except Gemma

# The published parameter counts (transformers' own count of the published configs, tied weights once).
PUBLISHED = {
    "qwen2-7b": 7_615_616_512,
    "qwen2-0.5b": 494_032_768,
    "gemma-2b": 2_506_172_416,
    "gemma-7b": 8_537_680_896,
    "opt-125m": 125_239_296,
    "opt-1.3b": 1_315_758_080,
    "opt-350m": 331_196_416,
    "phi-2": 2_779_683_840,
    "falcon-7b": 6_921_720_704,
}
FAMILY = {"qwen2": "qwen2.arch", "gemma": "gemma.arch", "opt": "opt.arch", "phi": "phi.arch", "falcon": "falcon.arch"}


@pytest.fixture(scope="module")
def zoo():
    return {name: report_for(spec) for name, spec in FAMILY.items()}


def _params(report, path):
    return block(report, path).metrics["params"]


def _mm(report, path):
    return block(report, path).metrics["matmul_flops_fwd"]


# ----------------------------------------------------------------------------- closed forms


def test_qwen2_closed_forms(zoo):
    q = zoo["qwen2"]
    # Q, K, V biases (h + 2·kv·d), none on the output projection
    assert same(_params(q, "layer/grouped_query_attention"), 2 * h**2 + 2 * h * kv * d + h + 2 * kv * d)
    assert same(_params(q, "layer/swiglu_mlp"), 3 * h * f)
    layer = 2 * h**2 + 2 * h * kv * d + 3 * h * f + 3 * h + 2 * kv * d
    assert same(_params(q, "layer"), layer)
    assert same(q.totals["params"], L * layer + 2 * V_ * h + h)  # untied head
    assert same(_mm(q, "layer"), 4 * b * s * h**2 + 4 * b * s * h * kv * d + 4 * b * s**2 * h + 6 * b * s * h * f)
    tied = report_for("qwen2.arch", options={"tied": True})
    assert same(tied.totals["params"], L * layer + V_ * h + h)


def test_gemma_closed_forms_with_a_free_head_size(zoo):
    g = zoo["gemma"]
    dd = sym("d")  # a dim of its own: a·d need not be h
    layer = 2 * a * h * dd + 2 * h * kv * dd + 3 * h * f + 2 * h
    assert same(_params(g, "layer"), layer)
    assert same(_params(g, "layer/geglu_mlp"), 3 * h * f)
    assert same(g.totals["params"], L * layer + V_ * h + h)  # tied head
    assert same(_mm(g, "layer"), 4 * a * b * s * h * dd + 4 * b * s * h * kv * dd + 4 * a * b * s**2 * dd + 6 * b * s * h * f)
    assert dd in g.totals["params"].free_symbols
    # the embedding is multiplied by sqrt(h): one elementwise product per element, no matmul
    scaled = op(g, "x").metrics
    assert same(scaled["flops_fwd"], b * s * h) and scaled["matmul_flops_fwd"] == 0
    # the GeGLU gate goes through gelu (8 FLOPs per element), not silu (4)
    assert same(op(g, "layer/geglu_mlp/act").metrics["flops_fwd"], 8 * b * s * f)


def test_opt_closed_forms(zoo):
    o = zoo["opt"]
    assert same(_params(o, "layer/multi_head_attention"), 4 * h**2 + 4 * h)
    assert same(_params(o, "layer/relu_mlp"), 2 * h * f + f + h)
    layer = 4 * h**2 + 2 * h * f + 9 * h + f
    assert same(_params(o, "layer"), layer)
    # learned positions: P + 2 rows (OPT's offset of 2); a final LayerNorm; tied head
    assert same(o.totals["params"], L * layer + V_ * h + (P + 2) * h + 2 * h)
    assert same(_mm(o, "layer"), 8 * b * s * h**2 + 4 * b * s**2 * h + 4 * b * s * h * f)
    assert same(op(o, "layer/relu_mlp/act").metrics["flops_fwd"], b * s * f)  # ReLU: 1 per element
    post = report_for("opt.arch", options={"pre_ln": False})  # OPT-350m's order: no final LayerNorm
    assert same(_params(post, "layer"), layer)
    assert same(post.totals["params"], L * layer + V_ * h + (P + 2) * h)


def test_phi_closed_forms(zoo):
    p = zoo["phi"]
    attn = 2 * h**2 + 2 * h * kv * d + 2 * h + 2 * kv * d  # biases on q, k, v and dense
    mlp = 2 * h * f + f + h
    assert same(_params(p, "layer/partial_rotary_attention"), attn)
    assert same(_params(p, "layer/gelu_mlp"), mlp)
    assert same(_params(p, "layer"), attn + mlp + 2 * h)  # one shared LayerNorm
    assert same(p.totals["params"], L * (attn + mlp + 2 * h) + 2 * V_ * h + V_ + 2 * h)  # head with a bias
    assert same(_mm(p, "layer"), 4 * b * s * h**2 + 4 * b * s * h * kv * d + 4 * b * s**2 * h + 4 * b * s * h * f)
    # partial rotary: rope only on the first r of each head's d dims
    assert same(op(p, "layer/partial_rotary_attention/qr").metrics["flops_fwd"], 3 * a * b * s * r)
    assert same(op(p, "layer/partial_rotary_attention/kr").metrics["flops_fwd"], 3 * b * kv * s * r)
    tied = report_for("phi.arch", options={"tied": True, "qk_norm": True})
    assert same(tied.totals["params"], L * (attn + mlp + 2 * h + 2 * d + 2 * d) + V_ * h + V_ + 2 * h)


def test_falcon_closed_forms(zoo):
    fa = zoo["falcon"]
    # Falcon-7B: fused QKV for a query heads and one key/value head, dense, a 4h MLP, one LayerNorm
    layer = h * (a + 2) * d + h**2 + 8 * h**2 + 2 * h
    assert same(_params(fa, "layer"), layer)
    assert same(fa.totals["params"], L * layer + V_ * h + 2 * h)
    assert same(_mm(fa, "layer"), 2 * b * s * h * (a + 2) * d + 2 * b * s * h**2 + 16 * b * s * h**2 + 4 * b * s**2 * h)
    new = report_for("falcon.arch", options={"new_arch": True})  # kv heads, a LayerNorm per branch
    assert same(_params(new, "layer"), h * (a + 2 * kv) * d + 9 * h**2 + 4 * h)


def test_llama_and_gpt2_blocks_are_unchanged(gpt2, llama):
    """The shared blocks the zoo generalised still give the published Llama and GPT-2 forms."""
    assert same(block(llama, "layer").metrics["params"], 2 * h**2 + 2 * h * kv * d + 3 * h * f + 2 * h)
    assert same(block(gpt2, "layer").metrics["params"], 12 * h**2 + 13 * h)
    biased = report_for("llama.arch", options={"bias": True})
    assert same(block(biased, "layer/grouped_query_attention").metrics["params"],
                2 * h**2 + 2 * h * kv * d + 2 * h + 2 * kv * d)


# ----------------------------------------------------------------------------- published parameter counts


def _derived_params(name: str) -> int:
    config, source = preset_config(name)
    res = resolve(config, source)
    graph = build(load(res.spec), options=res.options)
    report = derive(graph, "fma")
    return Evaluator(graph.env, {**res.values, "b": 1, "s": 1})(report.totals["params"])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_params_derived(name):
    assert _derived_params(name) == PUBLISHED[name]
    if MEASURED.is_file():  # the independent record, where it has the model
        published = json.loads(MEASURED.read_text())["published_params"]
        if name in published:
            assert PUBLISHED[name] == published[name]["params"]


# ----------------------------------------------------------------------------- tiny rules (no torch)


def test_tiny_rules_keep_each_familys_structure():
    m = mappings()
    gemma2b = V.tiny_config(preset_config("gemma-2b")[0], m["gemma"], "t")
    assert gemma2b["num_key_value_heads"] == 1 and gemma2b["num_attention_heads"] == 4
    assert gemma2b["head_dim"] * gemma2b["num_attention_heads"] != gemma2b["hidden_size"]  # d stays free
    assert V.tiny_config(preset_config("gemma-7b")[0], m["gemma"], "t")["num_key_value_heads"] == 4
    assert V.tiny_config(preset_config("qwen2-7b")[0], m["qwen2"], "t")["num_key_value_heads"] == 2  # GQA
    qwen_small = V.tiny_config(preset_config("qwen2-0.5b")[0], m["qwen2"], "t")
    assert qwen_small["tie_word_embeddings"] is True and qwen_small["use_sliding_window"] is False
    phi = V.tiny_config(preset_config("phi-2")[0], m["phi"], "t")
    assert phi["partial_rotary_factor"] == 0.4 and phi["hidden_size"] // phi["num_attention_heads"] == 80
    falcon = V.tiny_config(preset_config("falcon-7b")[0], m["falcon"], "t")
    assert falcon["multi_query"] is True and falcon["parallel_attn"] is True
    opt = preset_config("opt-1.3b")[0]
    assert V.tiny_config(opt, m["opt"], "t")["word_embed_proj_dim"] == 64
    opt350 = {**opt, "hidden_size": 1024, "word_embed_proj_dim": 512, "do_layer_norm_before": False}
    assert V.tiny_config(opt350, m["opt"], "t")["word_embed_proj_dim"] == 32  # stays below the hidden size


def test_opt_350m_projects_a_narrower_embedding():
    """word_embed_proj_dim e < h: a [V, e] table, project_in [e, h] and project_out [h, e], the head tied to it."""
    r = report_for("opt.arch", options={"project": True, "pre_ln": False})
    plain = report_for("opt.arch", options={"pre_ln": False})
    e, V, h = sym("e"), sym("V"), sym("h")
    # the table shrinks from V·h to V·e, and project_in and project_out add e·h each
    assert same(r.totals["params"] - plain.totals["params"], V * e - V * h + 2 * e * h)
    cfg = preset_config("opt-350m")[0]
    ev = Evaluator(r.env, {**resolve(cfg, "opt-350m").values, "b": 1, "s": 1})
    assert ev(r.totals["params"]) == 331_196_416  # published OPT-350m: 331M


# ----------------------------------------------------------------------------- symcost validate




@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_validate_preset(hf, capsys, name):
    exact = validate_preset(main, capsys, name, PUBLISHED[name])
    assert len(exact) == 2 + 3 * 3  # params full and tiny; fwd, fwd+bwd and the KV cache at three shapes


VARIANTS = [  # structure the presets do not exercise: (name, preset, overrides, tiny dims expected)
    ("qwen2-mqa-tied", "qwen2-7b", {"num_key_value_heads": 1, "tie_word_embeddings": True}, {"kv": 1}),
    ("gemma-untied-bias", "gemma-2b", {"tie_word_embeddings": False, "attention_bias": True}, {"d": 24}),
    ("gemma-gqa", "gemma-7b", {"num_key_value_heads": 4}, {"kv": 2}),
    ("opt-post-ln", "opt-125m", {"do_layer_norm_before": False}, {}),
    ("opt-no-bias-untied", "opt-125m", {"enable_bias": False, "tie_word_embeddings": False, "attention_dropout": 0.1}, {}),
    ("phi-tied-qk-norm-gqa", "phi-2", {"tie_word_embeddings": True, "qk_layernorm": True, "num_key_value_heads": 8,
                                       "embd_pdrop": 0.1, "attention_dropout": 0.1}, {"kv": 2}),
    ("falcon-new-arch", "falcon-7b", {"new_decoder_architecture": True, "num_kv_heads": 8, "num_attention_heads": 128,
                                      "hidden_size": 8192, "num_hidden_layers": 60}, {"kv": 2}),
    ("falcon-mha-sequential", "falcon-7b", {"multi_query": False, "parallel_attn": False, "bias": True,
                                            "hidden_dropout": 0.1}, {}),
]


@pytest.mark.parametrize("case, preset, overrides, tiny", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_validate_structural_variants(hf, case, preset, overrides, tiny):
    config = {**preset_config(preset)[0], **overrides}
    result = V.validate(config, case, None, [(2, 16), (1, 33)], ("params", "flops"), progress=None)
    bad = [(c.quantity, c.b, c.s, c.derived, c.measured) for c in result.checks if not c.ok]
    assert result.ok and not bad, bad
    assert all(result.tiny_dims[k] == v for k, v in tiny.items()), result.tiny_dims


def test_phi_tiny_rotates_r_dims_per_head(hf):
    """The tiny Phi-2 rotates exactly the r = 32 dims per head that the mapping gives symcost."""
    torch, transformers = hf
    plan = V.Plan(preset_config("phi-2")[0], "phi-2", None, need_tiny=True)
    tiny = transformers.PhiConfig.from_dict({k: v for k, v in plan.tiny_config.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = transformers.PhiForCausalLM(tiny)
    assert model.model.layers[0].self_attn.rotary_ndims == plan.tiny.values["r"] == plan.full.values["r"] == 32
