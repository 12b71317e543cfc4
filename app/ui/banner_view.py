"""The connection banner, drawn from its view-model; always on screen."""

from __future__ import annotations

import flet as ft

from app.ui.i18n import Translator
from app.ui.viewmodels.connection_banner import ConnectionBanner, Link

_COLOURS = {
    Link.CONNECTED: ft.Colors.GREEN_100,
    Link.RECONNECTING: ft.Colors.AMBER_100,
    Link.OFFLINE: ft.Colors.RED_100,
}


def banner(model: ConnectionBanner, t: Translator) -> ft.Control:
    text = t(model.text_key, count=model.waiting)
    return ft.Semantics(
        label=text,
        live_region=True,
        content=ft.Container(
            content=ft.Text(text, size=12),
            bgcolor=_COLOURS[model.link],
            padding=ft.Padding.symmetric(horizontal=12, vertical=4),
        ),
    )
