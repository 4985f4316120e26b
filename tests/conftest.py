"""Session fixtures: the shipped specs, derived once."""
from __future__ import annotations

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
