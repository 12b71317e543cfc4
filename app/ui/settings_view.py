"""Settings: who is signed in, language, theme, auto-lock, this user's devices (revoke, approve
a new one), a contact's safety number (digits and QR code), and signing out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import flet as ft

from app.ui.i18n import CATALOGUES, Translator
from app.ui.preferences import LOCK_CHOICES, Theme
from app.ui.viewmodels.people import People
from app.ui.viewmodels.settings import DeviceRow, Settings
from app.ui.widgets import labelled, qr_code

THEME_MODES = {Theme.SYSTEM: ft.ThemeMode.SYSTEM, Theme.LIGHT: ft.ThemeMode.LIGHT,
               Theme.DARK: ft.ThemeMode.DARK}


class SettingsView:
    """``control`` is the pane; ``close`` stops following the model. ``locks``: whether the
    profile has an unlock PIN (without one, auto-lock has nothing to ask)."""

    def __init__(
        self,
        model: Settings,
        people: People,
        t: Translator,
        run: Callable[..., object],
        update: Callable[[], None],
        *,
        locks: bool,
    ) -> None:
        self._model, self._people, self._t, self._run = model, people, t, run
        me = model.user_id
        self._code = ft.TextField(label=t("settings.link_code"), dense=True)
        self._totp = ft.TextField(label=t("settings.link_totp"), dense=True, width=200,
                                  keyboard_type=ft.KeyboardType.NUMBER)
        self._themes = ft.Row(wrap=True)
        self._lock = ft.Dropdown(
            label=t("settings.lock"), dense=True, width=260, disabled=not locks,
            options=[ft.DropdownOption(key=str(m), text=t("settings.lock_minutes", count=m))
                     for m in LOCK_CHOICES],
            on_select=lambda e: model.set_lock_minutes(int(e.control.value)))
        self._devices = ft.Column(spacing=0)
        self._linked = ft.Text(color=ft.Colors.GREEN)
        self._contact = ft.Dropdown(
            label=t("settings.safety_contact"), dense=True, width=320,
            options=[ft.DropdownOption(key=p.user_id, text=p.name)
                     for p in people.everyone() if p.user_id != me],
            on_select=lambda e: run(model.show_safety_number, e.control.value))
        self._safety = ft.Column()
        self._error = ft.Text(color=ft.Colors.RED)
        self.control = ft.ListView(expand=True, spacing=8, controls=[
            ft.Text(t("settings.title"), size=22),
            ft.Text(t("settings.signed_in", name=people.get(me).name)),
            self._error,
            ft.Text(t("settings.language"), size=16),
            ft.Row(wrap=True, controls=[
                ft.Button(t(f"language.{language}"), disabled=language == t.language,
                          on_click=lambda _e, lang=language: t.switch(lang))
                for language in CATALOGUES
            ]),
            ft.Text(t("settings.theme"), size=16), self._themes,
            labelled(t("settings.lock"), self._lock),
            *([] if locks else [ft.Text(t("settings.lock_no_pin"), italic=True, size=12)]),
            ft.Text(t("settings.devices"), size=16), self._devices,
            ft.Text(t("settings.link"), size=16), ft.Text(t("settings.link_explain")),
            ft.Row(wrap=True, controls=[
                self._code, self._totp,
                ft.Button(t("settings.link_approve"), icon=ft.Icons.LINK,
                          on_click=lambda _e: run(model.approve_link, self._code.value or "",
                                                  self._totp.value or "")),
            ]),
            self._linked,
            ft.Text(t("settings.safety"), size=16),
            labelled(t("settings.safety_contact"), self._contact), self._safety,
            ft.Button(t("settings.sign_out"), icon=ft.Icons.LOGOUT, color=ft.Colors.RED,
                      on_click=lambda _e: model.ask_sign_out()),
        ])
        self._dialog: ft.AlertDialog | None = None
        self.redraw()
        self.close = model.observe(lambda: (self.redraw(), update()))
        run(model.load_devices)

    def redraw(self) -> None:
        t, model = self._t, self._model
        page = ft.context.page
        self._error.value = (t(model.error_key, detail=model.error_detail)
                             if model.error_key else "")
        theme = model.preferences.theme
        page.theme_mode = THEME_MODES[theme]
        self._themes.controls = [
            ft.Button(t(f"theme.{choice.value}"), disabled=choice is theme,
                      on_click=lambda _e, c=choice: model.set_theme(c))
            for choice in Theme
        ]
        self._lock.value = str(model.preferences.lock_minutes)
        self._devices.controls = [self._device(row) for row in model.devices]
        self._linked.value = t("settings.linked", name=model.linked) if model.linked else ""
        self._safety.controls = self._safety_number()
        self._confirm_sign_out(page)

    def _device(self, row: DeviceRow) -> ft.Control:
        t = self._t
        key = ("settings.device_this" if row.this_device
               else "settings.device_revoked" if row.revoked else None)
        since = datetime.fromtimestamp(row.created_at).strftime("%d/%m/%Y")
        return ft.ListTile(
            leading=ft.Icon(ft.Icons.DEVICES),
            title=ft.Text(t(key, name=row.name) if key else row.name),
            subtitle=ft.Text(t("settings.device_since", date=since)),
            trailing=None if row.revoked or row.this_device else ft.TextButton(
                t("settings.revoke", name=row.name),
                on_click=lambda _e, d=row.device_id: self._run(self._model.revoke, d)),
        )

    def _safety_number(self) -> list[ft.Control]:
        model, t = self._model, self._t
        if model.safety is None or model.safety_user is None:
            return []
        name = self._people.get(model.safety_user).name
        return [
            ft.Text(t("settings.safety_explain"), size=12),
            ft.Text(model.safety.display(), font_family="monospace", size=18),
            ft.Semantics(label=t("settings.safety_qr", name=name),
                         content=qr_code(model.safety.qr_payload)),
        ]

    def _confirm_sign_out(self, page: ft.Page) -> None:
        model, t = self._model, self._t
        if model.confirming_sign_out == (self._dialog is not None):
            return
        if self._dialog is not None:
            self._dialog = None
            page.pop_dialog()
            return
        self._dialog = ft.AlertDialog(
            modal=True, title=ft.Text(t("settings.sign_out")),
            content=ft.Text(t("settings.sign_out_confirm")),
            actions=[
                ft.TextButton(t("common.cancel"), on_click=lambda _e: model.ask_sign_out(False)),
                ft.TextButton(t("settings.sign_out"), on_click=lambda _e: self._run(
                    model.sign_out)),
            ])
        page.show_dialog(self._dialog)
