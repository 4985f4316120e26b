"""Session fixtures: the shipped specs, derived once."""
from __future__ import annotations

import importlib
import os

import pytest
from browser import launched
from helpers import report_for, require_torch


@pytest.fixture(scope="session")
def gpt2():
    return report_for("gpt2.arch")


@pytest.fixture(scope="session")
def llama():
    return report_for("llama.arch")


@pytest.fixture(scope="module")
def hf():
    """torch and transformers for the validation tests (skipped without them, a failure under CI=true)."""
    return require_torch()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium, launched once (skipped without it, a failure under CI=true)."""
    yield from launched()


@pytest.fixture
def matplotlib_present():
    """Skip (with the reason) without matplotlib, except under CI=true, where its absence is a failure."""
    try:
        importlib.import_module("matplotlib")
    except ImportError as e:
        reason = f"charts need the plot extra (pip install 'symcost[plot]'): {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
