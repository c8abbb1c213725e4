"""One JupyterLab and one headless Chromium for all the browser tests, stopped at the end.

Skipped, with how to enable them, where Playwright or Chromium is missing.
"""

from __future__ import annotations

import pytest

import browser_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    reason = browser_lab.missing_tools()
    if reason:
        pytest.skip(reason)
    with browser_lab.jupyter_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="session")
def browser(lab):
    with browser_lab.chromium() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def screenshots():
    """One PNG per notebook, kept after the run in build/browser-screenshots (git ignores build/)."""
    folder = browser_lab.REPO / "build" / "browser-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
