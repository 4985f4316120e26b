"""Training-state memory (symcost.training): the ZeRO paper's accounting and numbers, and measured AdamW bytes."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import sympy as sp

from symcost.cost.accounting import derive_file
from symcost.errors import SymcostError
from symcost.analysis.evaluate import Evaluator
from symcost.analysis.training import (
    PRECISIONS,
    Precision,
    dp_communication_bytes,
    gigabytes,
    optimizer_states,
    training_state,
    training_state_for,
)

from helpers import REFERENCE, SPECS, same, sym

psi = sym("Psi")
N_d = sym("N_d")


def test_mixed_precision_adam_is_16_bytes_per_parameter():
    # ZeRO §3.1: 2Ψ fp16 weights + 2Ψ fp16 gradients + KΨ optimizer state with K = 12 (fp32 weights, momentum, variance)
    for precision in ("mixed-fp16", "mixed-bf16"):
        st = training_state(psi, precision, "adam")
        assert st.bytes_per_param == (2, 2, 12)
        assert same(st.weight_bytes, 2 * psi) and same(st.gradient_bytes, 2 * psi)
        assert same(st.optimizer_bytes, 12 * psi) and same(st.master_bytes, 4 * psi) and same(st.state_bytes, 8 * psi)
        assert same(st.total, 16 * psi)


def test_zero_stages_symbolic():
    # N_d is the symbol made by make_symbol("N_d") when no degree is given
    totals = [training_state(psi, "mixed-fp16", "adam", zero=z).total for z in range(4)]
    assert same(totals[0], 16 * psi)
    assert same(totals[1], 4 * psi + 12 * psi / N_d)  # P_os
    assert same(totals[2], 2 * psi + 14 * psi / N_d)  # P_os+g
    assert same(totals[3], 16 * psi / N_d)  # P_os+g+p
    st = training_state(psi, "mixed-fp16", "adam", zero=3)
    assert st.dp == N_d and same(st.weight_bytes, 2 * psi / N_d)


def test_zero_paper_figure_7_5b_on_64_devices():
    # ZeRO Figure 1 / §5: Ψ = 7.5B, N_d = 64, K = 12: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB (GB = 1e9 bytes)
    exact = [120_000_000_000, 31_406_250_000, 16_640_625_000, 1_875_000_000]
    shown = [120.0, 31.4, 16.6, 1.9]
    for z in range(4):
        total = training_state(7_500_000_000, "mixed-fp16", "adam", zero=z, dp=64).total
        assert total == exact[z]
        assert gigabytes(total) == shown[z]
        symbolic = training_state(psi, "mixed-fp16", "adam", zero=z).total
        assert symbolic.xreplace({psi: 7_500_000_000, N_d: 64}) == exact[z]


def test_optimizers_and_precisions():
    assert [optimizer_states(o) for o in ("adam", "adamw", "adamw-amsgrad", "sgd-momentum", "sgd", "none")] == [2, 2, 3, 1, 0, 0]
    assert same(training_state(psi, "fp32", "adamw").total, 16 * psi)  # 4 + 4 + 2×4, no master copy
    assert same(training_state(psi, "bf16", "adamw").total, 8 * psi)  # 2 + 2 + 2×2
    assert same(training_state(psi, "mixed-bf16", "sgd-momentum").total, 12 * psi)  # 2 + 2 + (4 + 4)
    assert same(training_state(psi, "mixed-bf16", "sgd").optimizer_bytes, 4 * psi)  # master weights only
    custom = Precision("fp8-mixed", 1, 2, 4, 4, "fp8 weights")
    assert same(training_state(psi, custom, "adam").total, 15 * psi)
    assert set(PRECISIONS) == {"fp32", "mixed-bf16", "mixed-fp16", "bf16", "fp16"}


def _reference():
    return json.loads((REFERENCE / "measured.json").read_text())


TINY = {
    "llama": ("llama.arch", {"h": 64, "L": 2, "a": 4, "kv": 2, "f": 176, "V": 1000}),
    "gpt2": ("gpt2.arch", {"h": 64, "L": 2, "a": 4, "V": 1000, "P": 128}),
}


def test_measured_adamw_bytes():
    # PyTorch AdamW on the tiny fp32 models: param, grad and state bytes (the step counter excluded).
    # The llama entry with three states per parameter is AdamW(amsgrad=True): max_exp_avg_sq is the third.
    seen = set()
    for entry in _reference()["adamw_bytes"]:
        assert entry["dtype"] == "torch.float32"
        spec, dims = TINY[entry["model"]]
        report = derive_file(SPECS / spec, dtype="fp32")
        params = Evaluator(report.env, dims)(report.totals["params"])
        assert params == entry["num_params"]
        optimizer = "adamw-amsgrad" if entry["optimizer_state_bytes_excl_step"] == 3 * entry["param_bytes"] else "adamw"
        seen.add((entry["model"], optimizer))
        st = training_state(params, "fp32", optimizer)
        assert st.weight_bytes == entry["param_bytes"]
        assert st.gradient_bytes == entry["grad_bytes"]
        assert st.optimizer_bytes == entry["optimizer_state_bytes_excl_step"]
        assert Evaluator(report.env, dims)(report.totals["weight_bytes"]) == entry["param_bytes"]
    assert seen == {("llama", "adamw"), ("llama", "adamw-amsgrad"), ("gpt2", "adamw")}


def test_training_state_for_a_report(llama):
    st = training_state_for(llama, precision="mixed-bf16", optimizer="adamw", zero=1, dp=8)
    p = llama.totals["params"]
    assert same(st.total, 4 * p + 12 * p / 8)
    import json

    from symcost import derive
    from symcost.present import render

    a = derive("llama", zero=1, dp=8)
    assert "16 bytes" in render(a) and "ZeRO-1" in render(a)
    llama_2_7b = {"a": 32, "h": 4096, "kv": 32, "f": 11008, "L": 32, "V": 32000}
    ev = Evaluator(llama.env, llama_2_7b)
    assert "GB" in render(a, values=llama_2_7b)
    out = json.loads(render(a, "json", values=llama_2_7b))["training"]
    assert out["total"]["value"] == ev(st.total) and out["bytes_per_param"] == {"weights": 2, "gradients": 2, "optimizer": 12}


def test_data_parallel_communication():
    # all-reduce = reduce-scatter + all-gather: 2Ψ elements at the gradient dtype; ZeRO-3 3Ψ (1.5×)
    for z in (0, 1, 2):
        assert same(dp_communication_bytes(psi, "mixed-bf16", zero=z), 4 * psi)
    assert same(dp_communication_bytes(psi, "mixed-bf16", zero=3), 6 * psi)
    assert same(dp_communication_bytes(psi, "fp32"), 8 * psi)
    assert same(dp_communication_bytes(psi, "mixed-bf16", exact=True), 4 * psi * (N_d - 1) / N_d)
    assert dp_communication_bytes(1000, exact=True, dp=1) == 0


def test_data_parallel_traffic_over_micro_batches():
    # Per step of m micro-batches, Ψ_t = Ψ − frozen trained: stages 0 and 1 exchange the accumulated gradients once
    # (2Ψ_t); stage 2 shards the gradients, so each micro-batch's are reduce-scattered (DeepSpeed's engine:
    # "ZeRO stage >= 2 communicates during non gradient accumulation boundaries as well") and the updated weights
    # gathered once: (m + 1)Ψ_t; stage 3 gathers every weight for the forward and the backward pass and
    # reduce-scatters the gradients, per micro-batch: m(2Ψ + Ψ_t). m = 1 is the ZeRO paper's 2Ψ and 3Ψ (§7).
    m, frozen = sym("m"), sym("F")
    trained = psi - frozen
    expected = {0: 2 * trained, 1: 2 * trained, 2: (m + 1) * trained, 3: m * (2 * psi + trained)}
    for z, elements in expected.items():
        got = dp_communication_bytes(psi, "mixed-bf16", zero=z, frozen=frozen, micro_batches=m)
        assert same(got, 2 * elements)  # 2 bytes an element
        ring = dp_communication_bytes(psi, "mixed-bf16", zero=z, frozen=frozen, micro_batches=m, exact=True)
        assert same(ring, 2 * elements * (N_d - 1) / N_d)
    assert same(dp_communication_bytes(psi, "mixed-bf16", zero=3, micro_batches=1), 6 * psi)
    for bad in (0, -1, True, sp.Rational(1, 2), "2"):
        with pytest.raises(SymcostError, match="micro-batch"):
            dp_communication_bytes(psi, zero=2, micro_batches=bad)


def test_micro_batches_setting(capsys):
    from symcost import derive
    from symcost.cli import main

    a = derive("gpt2", zero=2, dp=8, micro_batches=4, set={"b": 1, "s": 1024, "h": 768, "a": 12, "L": 12,
                                                             "V": 50257, "P": 1024})
    psi_ = a.at()(a.totals["params"])
    assert a.at()(a.dp_comm_bytes) == Fraction(5 * psi_ * 2 * 7, 8)  # (m + 1)Ψ elements, 2 bytes, ring 7/8
    assert main(["derive", "gpt2", "--micro-batches", "4"]) == 0  # implies the training state
    assert "(m = 4 micro-batches)" in capsys.readouterr().out.replace("(ring; m", "(m")
    assert main(["derive", "gpt2", "--phase", "decode", "--micro-batches", "4"]) == 2
    assert "--micro-batches" in capsys.readouterr().err
    assert main(["derive", "gpt2", "--micro-batches", "0"]) == 2


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"optimizer": "adamw_amsgrad"}, "adamw-amsgrad"),
        ({"precision": "mixed_bf16"}, "mixed-bf16"),
        ({"zero": 4}, "ZeRO stage"),
        ({"zero": 1, "dp": 0}, "positive"),
        ({"zero": 1, "dp": sp.Rational(1, 2)}, "positive"),
    ],
)
def test_errors(kwargs, needle):
    with pytest.raises(SymcostError) as e:
        training_state(psi, **kwargs)
    assert needle in str(e.value)


# ---- Whisper: the frozen sinusoidal encoder positions (S·h = 1500·384) are held but not trained ------------------
WHISPER_TINY_PARAMS, WHISPER_TINY_FROZEN = 37_760_640, 1500 * 384  # published count, requires_grad=False table


def test_training_state_names_the_trained_parameters(capsys):
    from symcost.cli import main

    trained = WHISPER_TINY_PARAMS - WHISPER_TINY_FROZEN  # 37,184,640
    assert main(["derive", "whisper", "--preset", "whisper-tiny", "--dp", "4", "--zero", "1", "--set", "b=1",
                 "t=448"]) == 0
    out = capsys.readouterr().out
    # fp32: weights 4Ψ (every parameter), gradients 4Ψ_t, optimizer 8Ψ_t/4 (AdamW's two fp32 states, ZeRO-1 on 4)
    assert 4 * WHISPER_TINY_PARAMS == 151_042_560 and 4 * trained == 148_738_560
    assert "weights    4Ψ " in out and "= 151 MB" in out
    assert "gradients  4Ψ_t" in out and "= 148.7 MB" in out
    assert "optimizer  8Ψ_t/4" in out and "= 74.37 MB" in out
    assert "Ψ_t = Ψ − S·h trained parameters" in out
    # only trained gradients travel: 2Ψ_t elements of 4 bytes, ring 3/4 = 223,107,840 bytes
    assert 2 * trained * 4 * 3 // 4 == 223_107_840
    assert "2Ψ_t·(N_d − 1)/N_d elements" in out and "= 223.1 MB" in out


def test_plan_counts_no_gradient_or_optimizer_state_for_frozen_parameters():
    import numpy as np

    from symcost.analysis.plan import evaluate_train, prepare

    search = prepare("whisper", preset="whisper-tiny", set={"t": 448}, device="h100-sxm", recompute=("none",),
                     zero=(0,))
    one = np.array([1])
    found = evaluate_train(search, one, one, np.array([4]), one, one)
    trained = WHISPER_TINY_PARAMS - WHISPER_TINY_FROZEN
    assert found.parts["weights"][0] == 4 * WHISPER_TINY_PARAMS  # fp32 weights, all of them
    assert found.parts["gradients"][0] == 4 * trained
    assert found.parts["optimizer"][0] == 8 * trained  # AdamW: momentum and variance, fp32
    assert found.parts["dp_comm"][0] * search.link == 2 * trained * 4 * 3 / 4
