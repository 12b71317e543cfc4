"""The app process: one enrolled profile, one engine, as many windows as are open.

The engine is opened and started by the first window, on Flet's event loop, and shared by
the others (a browser tab reloaded, a second tab). The web renderer runs the Python part,
which holds decrypted messages, in this process: it is only ever served on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
import sys
from pathlib import Path

import flet as ft

from app.client.connection import State
from app.client.engine import Engine
from app.client.events import ConnectionChanged, Event
from app.client.linking import LinkRequest
from app.client.relay_api import RelayError, RelayUnavailable
from app.ui.conversation_files import remove_uploads, upload_directory
from app.ui.i18n import Translator
from app.ui.onboarding_view import OnboardingView
from app.ui.profile import Profile
from app.ui.shell import Shell
from app.ui.unlock_view import UnlockView
from app.ui.viewmodels.onboarding import Onboarding
from app.ui.viewmodels.people import People
from app.ui.viewmodels.unlock import Unlock
from protocol.loopback import is_loopback
from storage.custody_wipe import WipeReport

log = logging.getLogger("liaison.ui")

ASSETS = Path(__file__).resolve().parents[2] / "assets"


class NotLoopbackError(ValueError):
    """The web renderer was asked to listen beyond this machine."""


class AppProcess:
    """Opens the profile in the first window: onboarding when it holds no account yet, the
    unlock screen when a PIN guards it; later windows find the engine running."""

    def __init__(self, profile: Profile, language: str | None = None, relay_url: str = ""
                 ) -> None:
        self._profile = profile
        self._language = language
        self._relay_url = relay_url
        self._engine: Engine | None = None
        self._people: People | None = None
        self._opening = asyncio.Lock()
        self._state = State.OFFLINE  # the engine's connection, for windows opened later
        self._connecting: asyncio.Task[None] | None = None

    async def _online(self, engine: Engine) -> None:
        """Take ``engine`` as the process's; it goes online while the window shows the cache."""
        async with self._opening:
            if self._engine is not None:  # another window opened it meanwhile
                await engine.stop()
                return
            people = People(engine)  # the cached directory: names show at once, offline too
            self._engine, self._people = engine, people
            engine.subscribe(self._track)
            self._connecting = asyncio.get_running_loop().create_task(
                self._connect(engine, people))

    @staticmethod
    async def _connect(engine: Engine, people: People) -> None:
        """Log in, open the WebSocket, then sync the directory: nothing here is needed to read
        the cached rooms, so none of it delays the first window."""
        try:
            await engine.start()
        except (RelayError, RelayUnavailable) as e:  # the cache still opens, offline
            log.warning("relay unavailable, offline: %s", e)
            return
        try:
            await people.refresh()
        except (RelayError, RelayUnavailable) as e:  # names come back when online
            log.warning("directory unavailable: %s", e)

    def _track(self, event: Event) -> None:
        if isinstance(event, ConnectionChanged):
            self._state = event.state

    async def window(self, page: ft.Page) -> None:
        """Flet's entry point for each window or browser tab."""
        t = Translator(self._language)
        page.title = t("app.title")
        if self._engine is not None:
            return self._shell(page, t)
        account_id = self._profile.account_id()
        if account_id is None:
            self._onboard(page, t)
        elif self._profile.pin_lock().is_enabled(account_id):
            unlock = UnlockView(Unlock(self._profile, account_id), t,
                                lambda engine: page.run_task(self._open, page, t, engine))
            page.controls = [unlock.control]
            page.update()
        else:
            await self._open(page, t, Engine.open(self._profile.directory, self._profile.custody))

    def _onboard(self, page: ft.Page, t: Translator) -> None:
        profile = self._profile

        async def enroll(url: str, code: str) -> Engine:
            return await Engine.enroll(profile.directory, url, code, profile.custody)

        async def link(url: str, device_name: str) -> LinkRequest:
            return await Engine.link(profile.directory, url, profile.custody,
                                     device_name=device_name)

        def set_pin(engine: Engine, pin: str) -> None:
            profile.pin_lock().enable(engine.device_id, pin)

        def enrolled() -> None:
            assert model.engine is not None, "onboarding ends enrolled"
            page.run_task(self._open, page, t, model.engine)

        model = Onboarding(enroll, link, set_pin, self._relay_url,
                           device_name=platform.node() or "Liaison")
        view = OnboardingView(model, t, page.run_task, enrolled)
        model.observe(page.update)
        page.controls = [view.control]
        page.update()

    async def _open(self, page: ft.Page, t: Translator, engine: Engine) -> None:
        page.controls = [ft.ProgressRing()]
        page.update()
        await self._online(engine)
        self._shell(page, t)

    def _shell(self, page: ft.Page, t: Translator) -> None:
        assert self._engine is not None and self._people is not None
        page.controls.clear()
        Shell(page, self._engine, self._people, t, self._state, profile=self._profile,
              sign_out=self._sign_out, signed_out=lambda: self._onboard(page, t))

    async def _sign_out(self, engine: Engine) -> WipeReport:
        """Wipe the profile (the engine stops first); the next window starts onboarding."""
        self._engine = self._people = None
        return await engine.sign_out(self._profile.custody)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web_host(host: str) -> str:
    """The host the web renderer will really bind: Flet lets FLET_SERVER_IP override it."""
    effective = os.environ.get("FLET_SERVER_IP") or host
    if not is_loopback(effective):
        raise NotLoopbackError(
            f"the web renderer serves decrypted messages: it listens on loopback only, "
            f"not on {effective!r}"
        )
    return effective


def desktop_client_available() -> bool:
    """A display and the Flet desktop client (cached, or fetched now)."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        return False
    try:
        import flet_desktop

        flet_desktop.ensure_client_cached()
    except Exception as e:  # no network, no build for this system: the web renderer it is
        log.warning("no Flet desktop client: %s", e)
        return False
    return True


def run(process: AppProcess, *, web: bool, host: str = "127.0.0.1", port: int = 0) -> None:
    """Open the desktop window, or serve the web renderer on loopback and print its URL."""
    if not web and desktop_client_available():
        ft.run(process.window, view=ft.AppView.FLET_APP, assets_dir=str(ASSETS))
        return
    host = web_host(host)
    port = port or free_port()
    print(f"Liaison (web renderer): http://{host}:{port}/", flush=True)
    try:  # documents picked in the browser reach this process through the upload directory
        ft.run(process.window, view=ft.AppView.WEB_BROWSER, host=host, port=port, no_cdn=True,
               assets_dir=str(ASSETS), upload_dir=str(upload_directory()))
    finally:
        remove_uploads()
