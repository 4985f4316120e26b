"""Training-state memory (symcost.training): the ZeRO paper's accounting and numbers, and measured AdamW bytes."""
from __future__ import annotations

import json

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
