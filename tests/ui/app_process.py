"""The real app (`python -m app --web`) as a subprocess for browser tests, and a Chromium page
on it with Flutter's accessibility tree switched on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.relay_harness import free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by .ci/run; never `playwright install`
START_SECONDS = 240.0  # the first instance seeds the demo organisation


class AppProcess:
    """``python -m app --web ARGS`` on a free loopback port, in French, its output in a log
    file; ``env`` adds to the environment (LIAISON_DEMO_DIR, LIAISON_PASSPHRASE…)."""

    def __init__(self, log: Path, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        environment = {**os.environ, "LANG": "fr_FR.UTF-8", **env}
        environment.pop("DISPLAY", None)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "--web", "--port", str(self.port), *args],
                stdout=out, stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + START_SECONDS
        while not (self.url in log.read_text("utf-8", "replace") and self._listening()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the app did not start:\n{log.read_text('utf-8')}")
            time.sleep(0.2)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


SEMANTICS_ATTEMPTS = 3
OPEN_PAGES: list[Page] = []  # the pages of the running test, described when it fails


def open_app(browser: Browser, app: AppProcess, width: int = 1280, height: int = 800, *,
             semantics_after: float = 0.0) -> Page:
    """A page on ``app``; the accessibility tree is switched on as soon as Flutter can, or
    ``semantics_after`` seconds later (as by a screen reader started once the app shows)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    OPEN_PAGES.append(page)
    page.goto(app.url)
    placeholder = page.locator("flt-semantics-placeholder")
    placeholder.wait_for(state="attached", timeout=60_000)
    time.sleep(semantics_after)
    for attempt in range(SEMANTICS_ATTEMPTS):  # Flutter removes it once the tree is on
        placeholder.dispatch_event("click")
        try:
            placeholder.wait_for(state="detached", timeout=15_000)
            break
        except PlaywrightTimeoutError:
            if attempt == SEMANTICS_ATTEMPTS - 1:
                raise
    return page


TYPING_ATTEMPTS = 4
# The element that takes a field's keys: the field's own semantics node, or Flutter's hidden
# editing input over it. A field focused before the accessibility tree was switched on (an
# ``autofocus`` one, when the page was quick) keeps that hidden input: clicking the node then
# changes nothing, and the node's value does not follow the text (seen on the unlock screen).
KEYS_TARGET = """field => {
    const active = document.activeElement;
    if (active === field) return field;
    if (!active || !active.classList.contains("flt-text-editing")) return null;
    const f = field.getBoundingClientRect(), e = active.getBoundingClientRect();
    const x = e.left + e.width / 2, y = e.top + e.height / 2;
    return f.left <= x && x <= f.right && f.top <= y && y <= f.bottom ? active : null;
}"""


def type_into(page: Page, label: str, text: str) -> None:
    """Type into the text field named ``label``, replacing its text, once Flutter has given
    it the focus, and check that it holds ``text``. On a busy machine a page still starting
    may drop a click, or the first keys after the focus: then click and type again rather
    than go on with a wrong value (it still fails if the field never takes the text)."""
    field = page.get_by_role("textbox", name=label)
    for attempt in range(TYPING_ATTEMPTS):
        last = attempt == TYPING_ATTEMPTS - 1
        field.click(timeout=60_000)
        try:
            target = page.wait_for_function(KEYS_TARGET, arg=field.element_handle(),
                                            timeout=15_000).as_element()
        except PlaywrightTimeoutError:
            if last:
                raise AssertionError(f"the field {label!r} never took the focus") from None
            continue
        page.keyboard.press("Control+A")
        page.keyboard.type(text, delay=10)
        try:
            page.wait_for_function("([target, text]) => target.value === text",
                                   arg=[target, text], timeout=5_000)
            return
        except PlaywrightTimeoutError:
            if last:
                raise AssertionError(
                    f"the field {label!r} holds {target.input_value()!r}, not {text!r}") from None


def click_until(button: Locator, done: Callable[[], None], *, attempts: int = 3) -> None:
    """Click, then check ``done`` (an ``expect`` of what the click does); a busy machine may
    drop a click, as a phone may miss a tap, and a nurse would tap again. Only for actions
    that are harmless to repeat; it still fails if the action never takes effect."""
    for attempt in range(attempts):
        button.click(timeout=60_000)
        try:
            done()
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise
