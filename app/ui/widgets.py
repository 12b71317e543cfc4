"""Small controls shared by the views, each with the semantic label tests and screen readers
find it by."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import flet as ft

PHONE_MAX_WIDTH = 700  # below: phone layout, one pane; from here: desktop, side by side


def icon_button(icon: ft.IconData, label: str, on_click: Any) -> ft.Control:
    """An icon button named by ``label`` (a bare IconButton has no accessible name)."""
    return ft.Semantics(
        label=label, button=True, content=ft.IconButton(icon=icon, on_click=on_click)
    )


def clock(timestamp: float) -> str:
    """A message's time of day, as a ward clock shows it."""
    return datetime.fromtimestamp(timestamp).strftime("%H:%M")
