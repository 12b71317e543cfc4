"""Onboarding screens: relay and invite code, TOTP setup (QR code and secret), PIN; or linking
this device to another one of the user's (its short code, shown big while waiting)."""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from app.ui.i18n import Translator
from app.ui.viewmodels.onboarding import Onboarding, Step
from app.ui.widgets import qr_code


class OnboardingView:
    """``control`` shows the current step; ``done()`` is called once the PIN is set."""

    def __init__(
        self,
        model: Onboarding,
        t: Translator,
        run: Callable[..., object],
        done: Callable[[], None],
    ) -> None:
        self._model, self._t, self._run, self._done = model, t, run, done
        self._relay = ft.TextField(value=model.relay_url)
        self._invite = ft.TextField()
        self._device_name = ft.TextField(value=model.device_name)
        self._pin = ft.TextField(password=True, keyboard_type=ft.KeyboardType.NUMBER)
        self._again = ft.TextField(password=True, keyboard_type=ft.KeyboardType.NUMBER)
        self.control = ft.Column(expand=True, scroll=ft.ScrollMode.AUTO,
                                 horizontal_alignment=ft.CrossAxisAlignment.CENTER)
        model.observe(self.redraw)
        self.redraw()

    async def _submit_account(self) -> None:
        self._model.relay_url = self._relay.value
        self._model.invite_code = self._invite.value
        await self._model.submit_account()

    async def _submit_link(self) -> None:
        self._model.relay_url = self._relay.value
        self._model.device_name = self._device_name.value
        await self._model.submit_link()

    def _submit_pin(self) -> None:
        self._model.submit_pin(self._pin.value, self._again.value)

    def redraw(self) -> None:
        t, model = self._t, self._model
        if model.step is Step.DONE:
            self._done()
            return
        body = {Step.ACCOUNT: self._account, Step.LINK: self._link, Step.LINK_CODE: self._code,
                Step.HISTORY: self._history, Step.TOTP: self._totp, Step.PIN: self._pin_step}
        controls = [ft.Text(t("onboarding.title"), size=24), *body[model.step]()]
        if model.error_key is not None:
            controls.append(ft.Text(t(model.error_key, detail=model.error_detail),
                                    color=ft.Colors.RED))
        self.control.controls = controls

    def _account(self) -> list[ft.Control]:
        t = self._t
        self._relay.label, self._invite.label = t("onboarding.relay"), t("onboarding.invite")
        return [
            self._relay,
            self._invite,
            ft.Button(t("onboarding.next"), disabled=self._model.busy,
                      on_click=lambda _e: self._run(self._submit_account)),
            ft.TextButton(t("onboarding.link.choose"), icon=ft.Icons.DEVICES,
                          tooltip=t("onboarding.link.choose_tip"), disabled=self._model.busy,
                          on_click=lambda _e: self._model.choose_link()),
        ]

    def _link(self) -> list[ft.Control]:
        t, model = self._t, self._model
        self._relay.label = t("onboarding.relay")
        self._device_name.label = t("onboarding.link.device_name")
        return [
            ft.Text(t("onboarding.link.title"), size=18),
            self._relay,
            self._device_name,
            ft.Button(t("onboarding.link.start"), icon=ft.Icons.LINK, disabled=model.busy,
                      tooltip=t("onboarding.link.start_tip"),
                      on_click=lambda _e: self._run(self._submit_link)),
            ft.TextButton(t("onboarding.link.invite_instead"), icon=ft.Icons.ARROW_BACK,
                          disabled=model.busy, on_click=lambda _e: model.choose_invite()),
        ]

    def _code(self) -> list[ft.Control]:
        """The code big enough to read across a ward desk, and where to type it."""
        t, model = self._t, self._model
        code = model.link_code or ""
        return [
            ft.Text(t("onboarding.link.title"), size=18),
            ft.Text(t("onboarding.link.explain")),
            ft.Semantics(label=t("onboarding.link.code", code=" ".join(code)), live_region=True,
                         content=ft.Text(code, size=44, weight=ft.FontWeight.BOLD,
                                         font_family="monospace", selectable=True)),
            ft.Text(t("onboarding.link.expires", minutes=model.link_minutes), size=12),
            ft.ProgressRing(semantics_label=t("onboarding.link.waiting")),
            ft.Text(t("onboarding.link.waiting")),
            ft.TextButton(t("onboarding.link.cancel"), icon=ft.Icons.CLOSE,
                          tooltip=t("onboarding.link.cancel_tip"),
                          on_click=lambda _e: model.cancel_link()),
        ]

    def _history(self) -> list[ft.Control]:
        text = self._t("onboarding.link.history")
        return [ft.ProgressRing(semantics_label=text), ft.Text(text)]

    def _totp(self) -> list[ft.Control]:
        t, model = self._t, self._model
        return [
            ft.Text(t("onboarding.totp.title"), size=18),
            ft.Text(t("onboarding.totp.explain")),
            qr_code(model.totp_uri or ""),
            ft.Text(t("onboarding.totp.secret"), size=12),
            ft.Text(model.totp_secret, font_family="monospace", size=16),
            ft.Button(t("onboarding.totp.copy"), icon=ft.Icons.COPY,
                      on_click=lambda _e: self._run(ft.Clipboard().set, model.totp_secret)),
            ft.Button(t("onboarding.totp.done"), on_click=lambda _e: model.totp_saved()),
        ]

    def _pin_step(self) -> list[ft.Control]:
        t = self._t
        self._pin.label, self._again.label = t("onboarding.pin.pin"), t("onboarding.pin.again")
        received = self._model.history_count
        linked = [] if received is None else [
            ft.Text(t("onboarding.link.received", count=received), color=ft.Colors.GREEN)]
        return [
            *linked,
            ft.Text(t("onboarding.pin.title"), size=18),
            self._pin,
            self._again,
            ft.Button(t("onboarding.pin.save"), on_click=lambda _e: self._submit_pin()),
        ]

