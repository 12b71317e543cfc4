"""UI benchmark: startup to a usable conversation list with 10,000 cached messages.

Every figure is printed as ``figure: NAME = VALUE UNIT`` on a line of its own.

A demo organisation (app/ui/demo.py) is set up in a temporary directory and the first demo
user's cache is given 10,000 more messages across the demo's rooms, written straight into the
encrypted cache the way a mailbox drain writes them (faster than sending them through the
relay; the app cannot tell the difference). The relay keeps running, as a hospital's does.

Then, three times each: the app process is started (`python -m app --web`) and Debian's
Chromium, driven by Playwright, opens it until the conversation list shows its rooms (target
≤ 3 s); and the view-model part alone (opening the profile, the conversation list, the
busiest room's conversation) is timed in this process. A one-button Flet app
(bench/flet_minimal.py) started the same way gives the floor: what Flet's web renderer and
Chromium take on this machine before any of Liaison runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright

from app.client.engine import Engine
from app.ui.app import free_port
from app.ui.demo import DATA_ENV, FIRST, ROOMS, Demo
from app.ui.viewmodels.conversation import Conversation
from app.ui.viewmodels.conversation_list import ConversationList
from app.ui.viewmodels.people import People
from storage.messages import MessageRef, NewMessage

CHROMIUM = "/usr/bin/chromium"
ROOM_SHOWN = ROOMS[0][1]  # a room the list must show for the app to count as usable
BATCH = 500
MINIMAL = Path(__file__).resolve().parent / "flet_minimal.py"


async def seed(demo: Demo, count: int) -> str:
    """Add ``count`` messages from colleagues to the first user's cache; the busiest room."""
    profile = demo.profile(FIRST)
    engine = Engine.open(profile.directory, profile.custody)
    store = engine._store  # the benchmark's hook into the cache: the app reads it as usual
    rooms = [room.id for room in engine.rooms()]
    start = time.time() - count * 60
    for first in range(0, count, BATCH):
        with store.db.transaction():
            for i in range(first, min(first + BATCH, count)):
                store.messages.add_incoming(NewMessage(
                    ref=MessageRef("bench-device", f"bench-{i:06}"), room_id=rooms[i % len(rooms)],
                    sender_user="bench-colleague", body=f"Transmission n° {i} : constantes "
                    "stables, bilan à 14h, famille prévenue.", local_ts=start + i * 60,
                    server_ts=start + i * 60))
    await engine.stop()
    return rooms[0]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def app_startup(browser, root: Path, command: list[str] | None = None,  # type: ignore[no-untyped-def]
                button: str = ROOM_SHOWN) -> tuple[float, float, float]:
    """Seconds from starting the app process (or ``command`` + port) to: its web server
    listening, Flutter's page loaded in Chromium, the conversation list (``button``) shown."""
    port = free_port()
    environment = {**os.environ, DATA_ENV: str(root), "LANG": "fr_FR.UTF-8"}
    environment.pop("DISPLAY", None)
    started = time.perf_counter()
    argv = [*command, str(port)] if command else [
        sys.executable, "-m", "app", "--web", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=environment)
    try:
        while not _listening(port):
            if proc.poll() is not None:
                raise RuntimeError("the app exited before serving")
            time.sleep(0.02)
        serving = time.perf_counter() - started
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("flt-semantics-placeholder", state="attached", timeout=60_000)
        loaded = time.perf_counter() - started
        page.dispatch_event("flt-semantics-placeholder", "click")
        page.get_by_role("button", name=re.compile(re.escape(button))).wait_for(timeout=60_000)
        shown = time.perf_counter() - started
        page.close()
        return serving, loaded, shown
    finally:
        proc.terminate()
        proc.wait(30)


async def view_models(demo: Demo, room_id: str) -> tuple[float, float, float]:
    """Seconds to open the profile, to list the rooms, and to open the busiest room."""
    profile = demo.profile(FIRST)
    started = time.perf_counter()
    engine = Engine.open(profile.directory, profile.custody)
    opened = time.perf_counter()
    rows = ConversationList(engine).rows
    listed = time.perf_counter()
    conversation = Conversation(engine, People(engine), room_id)
    assert rows and conversation.timeline, "the seeded cache shows"
    shown = time.perf_counter()
    await engine.stop()
    return opened - started, listed - opened, shown - listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="liaison-ui-bench-") as tmp:
        root = Path(tmp)
        os.environ[DATA_ENV] = str(root)
        demo = Demo(root)
        demo.ensure_relay()
        try:
            asyncio.run(demo.ensure_seeded())
            busiest = asyncio.run(seed(demo, args.messages))
            print(f"figure: ui_cached_messages = {args.messages} messages")
            profile_s, list_s, room_s = zip(*(asyncio.run(view_models(demo, busiest))
                                              for _ in range(args.runs)), strict=True)
            print(f"figure: ui_vm_open_profile = {statistics.median(profile_s) * 1000:.0f} ms")
            print(f"figure: ui_vm_conversation_list = {statistics.median(list_s) * 1000:.1f} ms")
            print(f"figure: ui_vm_open_busiest_room = {statistics.median(room_s) * 1000:.1f} ms")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                serving, loaded, shown = zip(*(app_startup(browser, root)
                                               for _ in range(args.runs)), strict=True)
                minimal_serving, _, minimal = zip(*(
                    app_startup(browser, root, [sys.executable, str(MINIMAL)], "Liaison")
                    for _ in range(args.runs)), strict=True)
                browser.close()
            print(f"figure: ui_startup_to_web_server = {statistics.median(serving):.2f} s")
            print(f"figure: ui_startup_to_page_loaded = {statistics.median(loaded):.2f} s")
            print(f"figure: ui_startup_to_conversation_list = {statistics.median(shown):.2f} s"
                  f" (median of {args.runs}; target ≤ 3 s)")
            print(f"figure: ui_flet_minimal_app_to_web_server = "
                  f"{statistics.median(minimal_serving):.2f} s")
            print(f"figure: ui_flet_minimal_app_startup = {statistics.median(minimal):.2f} s"
                  " (one button, same procedure: Flet and Chromium alone)")
            print(f"figure: ui_startup_over_minimal = "
                  f"{statistics.median(shown) / statistics.median(minimal):.2f} x")
        finally:
            demo.stop()


if __name__ == "__main__":
    main()
