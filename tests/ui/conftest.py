"""Fixtures of the UI tests: Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.ui.app_process import CHROMIUM


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Fails, never skips, when Chromium is missing: CI installs it (.ci/run)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
