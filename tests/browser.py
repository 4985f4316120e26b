"""Headless Chromium for the report page tests: Playwright driving the system's chromium, or a visible skip
(a failure under CI=true, where the browser tests must run)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def chromium() -> str | None:
    env = os.environ.get("SYMCOST_CHROMIUM")
    for cand in ([env] if env else [shutil.which("chromium"), "/usr/bin/chromium"]):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def launched():
    """A generator yielding a launched browser (for a fixture), closing it afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Python package 'playwright' is not installed (pip install playwright==1.65.2)")
    exe = chromium()
    if exe is None:
        unavailable("no chromium at $SYMCOST_CHROMIUM, on PATH or at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def keep(shot: Path, name: str) -> None:
    """Copy a screenshot to $SYMCOST_SCREENSHOT_DIR, when set, for review."""
    target = os.environ.get("SYMCOST_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / name)


def watched_page(browser):
    """A new 1280×900 page whose requests, console errors and page errors are logged: (context, page, log)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    log = {"requests": [], "errors": []}
    page.on("request", lambda r: log["requests"].append(r.url))
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    return ctx, page, log
