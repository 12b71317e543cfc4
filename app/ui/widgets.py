"""Small controls shared by the views, each with the semantic label tests and screen readers
find it by."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import flet as ft
import flet.canvas as cv

from app.ui.qr import qr_matrix

PHONE_MAX_WIDTH = 700  # below: phone layout, one pane; from here: desktop, side by side
QR_MODULE = 5  # pixels per QR module


def icon_button(icon: ft.IconData, label: str, on_click: Any) -> ft.Control:
    """An icon button named by ``label`` (a bare IconButton has no accessible name)."""
    return ft.Semantics(
        label=label, button=True, content=ft.IconButton(icon=icon, on_click=on_click)
    )


def labelled(label: str, control: ft.Control) -> ft.Control:
    """``control`` named by ``label`` (a Dropdown's own label does not name it)."""
    return ft.Semantics(label=label, content=control)


def clock(timestamp: float) -> str:
    """A message's time of day, as a ward clock shows it."""
    return datetime.fromtimestamp(timestamp).strftime("%H:%M")


def qr_code(payload: str | bytes) -> ft.Control:
    """``payload``'s QR code drawn as squares on a canvas (no image library needed)."""
    matrix = qr_matrix(payload)
    size = len(matrix) * QR_MODULE
    dark = ft.Paint(color=ft.Colors.BLACK)
    shapes: list[cv.Shape] = [cv.Rect(0, 0, size, size, paint=ft.Paint(color=ft.Colors.WHITE))]
    shapes += [
        cv.Rect(x * QR_MODULE, y * QR_MODULE, QR_MODULE, QR_MODULE, paint=dark)
        for y, row in enumerate(matrix)
        for x, module in enumerate(row)
        if module
    ]
    return cv.Canvas(shapes=shapes, width=size, height=size)
