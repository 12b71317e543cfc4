"""Settings: for now who is signed in and the language; devices, theme and auto-lock follow."""

from __future__ import annotations

import flet as ft

from app.ui.i18n import CATALOGUES, Translator


def settings(t: Translator, signed_in_as: str) -> ft.Control:
    return ft.Column(
        expand=True,
        controls=[
            ft.Text(t("settings.title"), size=22),
            ft.Text(t("settings.signed_in", name=signed_in_as)),
            ft.Text(t("settings.language"), size=16),
            ft.Row([
                ft.Button(t(f"language.{language}"), disabled=language == t.language,
                          on_click=lambda _e, lang=language: t.switch(lang))
                for language in CATALOGUES
            ]),
        ],
    )
