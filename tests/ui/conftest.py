"""Fixtures of the UI tests: Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, sync_playwright

from tests.ui.app_process import CHROMIUM, OPEN_PAGES

LOG_LINES = 60  # of each app's log, in the report of a failed browser test


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Fails, never skips, when Chromium is missing: CI installs it (.ci/run)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
    OPEN_PAGES.clear()


@pytest.hookimpl(tryfirst=True)  # marked before ``-m`` selects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives the app in Chromium is marked ``browser``: ``make test`` runs
    them alone, one at a time, after the rest. Beside other tests, each with its Chromium, app
    processes and relay starved this 2-core machine until Flutter dropped clicks or a focus, or
    did not show a received document within two minutes."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed browser test reports what each page showed (its accessibility tree, as text)
    and the end of each app's log: CI keeps only the text of its run."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.failed or "browser" not in item.keywords:
        return
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    for number, page in enumerate(OPEN_PAGES, 1):
        try:
            tree = page.locator("body").aria_snapshot(timeout=10_000)
            if tmp_path:
                page.screenshot(path=str(Path(tmp_path) / f"failed-page-{number}.png"))
        except Error as e:
            tree = f"(no snapshot: {e})"
        report.sections.append((f"page {number}: {page.url}", tree))
    for log in sorted(Path(tmp_path).glob("*.log")) if tmp_path else ():
        lines = log.read_text("utf-8", "replace").splitlines()[-LOG_LINES:]
        report.sections.append((f"end of {log.name}", "\n".join(lines)))
