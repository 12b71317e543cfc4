"""The unlock screen: one PIN field; nothing of the profile shows before it is right."""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from app.client.engine import Engine
from app.ui.i18n import Translator
from app.ui.viewmodels.unlock import Unlock


class UnlockView:
    """``control`` is the screen; ``opened(engine)`` is called once the PIN opened it."""

    def __init__(self, model: Unlock, t: Translator, opened: Callable[[Engine], None]) -> None:
        self._model, self._t, self._opened = model, t, opened
        self._pin = ft.TextField(label=t("unlock.pin"), password=True, autofocus=True,
                                 keyboard_type=ft.KeyboardType.NUMBER,
                                 on_submit=lambda _e: self._submit())
        self._error = ft.Text(color=ft.Colors.RED)
        self.control = ft.Column(
            horizontal_alignment=ft.CrossAxisAlignment.CENTER,
            controls=[ft.Text(t("unlock.title"), size=22), self._pin,
                      ft.Button(t("unlock.submit"), on_click=lambda _e: self._submit()),
                      self._error],
        )

    def _submit(self) -> None:
        engine = self._model.submit(self._pin.value)
        if engine is not None:
            self._opened(engine)
            return
        model = self._model
        self._error.value = self._t(model.error_key or "unlock.error.failed",
                                    count=model.remaining, detail=model.error_detail)
