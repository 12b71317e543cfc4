"""One conversation: bubbles with sender, time and status, and the composer.

The composer's controls live as long as the view, so that a message being typed survives
every redraw of the timeline.
"""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from app.ui.i18n import Translator
from app.ui.viewmodels.conversation import Bubble, Conversation, DaySeparator
from app.ui.widgets import clock, icon_button


class ConversationView:
    """``control`` is the pane; ``back`` (phone layout only) returns to the list; ``close``
    stops following the model."""

    def __init__(
        self,
        model: Conversation,
        t: Translator,
        run: Callable[..., object],
        back: Callable[[], None] | None,
        update: Callable[[], None],
    ) -> None:
        self._model, self._t, self._run, self._update = model, t, run, update
        self._title = ft.Text(size=18, weight=ft.FontWeight.BOLD, expand=True)
        self._timeline = ft.ListView(expand=True, spacing=6, auto_scroll=True,
                                     padding=ft.Padding.symmetric(horizontal=8))
        self._error = ft.Text(color=ft.Colors.RED, visible=False)
        self._send_button = ft.Button(on_click=lambda _e: run(self._send),
                                      icon=ft.Icons.SEND)
        self._composer = ft.Row()
        self._draft, self._urgent = self._new_composer()
        header: list[ft.Control] = [self._title]
        if back is not None:
            header.insert(0, icon_button(ft.Icons.ARROW_BACK, t("conversation.back"),
                                         lambda _e: back()))
        self.control = ft.Column(
            expand=True,
            controls=[
                ft.Row(header),
                self._timeline,
                self._error,
                self._composer,
            ],
        )
        self.redraw()
        self.close = model.observe(lambda: (self.redraw(), update()))

    def _new_composer(self) -> tuple[ft.TextField, ft.Switch]:
        """Fresh composer controls showing the model's draft: Flet 1.0.5 does not send a
        control's return to its default value (empty text, switch off) to the renderer, so
        after a send the controls are replaced rather than reset."""
        draft = ft.TextField(
            value=self._model.draft, label=self._t("composer.label"), multiline=True,
            min_lines=1, max_lines=5, expand=True, shift_enter=True, on_change=self._typed,
            on_submit=lambda _e: self._run(self._send),
        )
        urgent = ft.Switch(value=self._model.urgent, label=self._t("composer.urgent"),
                           on_change=self._toggled)
        self._composer.controls = [draft, urgent, self._send_button]
        return draft, urgent

    def _typed(self, event: ft.ControlEvent) -> None:
        self._model.draft = event.control.value

    def _toggled(self, event: ft.ControlEvent) -> None:
        self._model.urgent = event.control.value

    async def _send(self) -> None:
        self._model.draft = self._draft.value
        if await self._model.send():
            self._draft, self._urgent = self._new_composer()
            self._update()
            await self._draft.focus()

    def redraw(self) -> None:
        t, model = self._t, self._model
        self._title.value = model.room_name
        self._send_button.content = t("composer.send")
        self._error.value, self._error.visible = model.error or "", model.error is not None
        items: list[ft.Control] = []
        if model.has_older:
            items.append(ft.TextButton(t("conversation.older"),
                                       on_click=lambda _e: model.load_older()))
        for item in model.timeline:
            if isinstance(item, DaySeparator):
                items.append(ft.Text(item.day.strftime("%d/%m/%Y"), size=11,
                                     text_align=ft.TextAlign.CENTER))
            else:
                items.append(self._bubble(item))
        self._timeline.controls = items

    def _bubble(self, bubble: Bubble) -> ft.Control:
        t = self._t
        sender = t("message.you") if bubble.mine else (
            f"{bubble.sender_name} · {t(f'profession.{bubble.profession}')}")
        lines: list[ft.Control] = [ft.Text(sender, size=11, weight=ft.FontWeight.BOLD)]
        if bubble.urgent:
            lines.append(ft.Text(t("message.urgent"), color=ft.Colors.RED,
                                 weight=ft.FontWeight.BOLD, size=11))
        lines.append(ft.Text(t("message.recalled") if bubble.recalled else bubble.body or "",
                             italic=bubble.recalled))
        footer = clock(bubble.time)
        if bubble.edited:
            footer += f" · {t('message.edited')}"
        if bubble.mine:
            footer += f" · {t(f'status.{bubble.status.value}')}"
        lines.append(ft.Text(footer, size=10))
        if bubble.can_acknowledge:
            lines.append(ft.Button(
                t("message.acknowledge"), icon=ft.Icons.CHECK_CIRCLE,
                on_click=lambda _e, ref=bubble.ref: self._run(self._model.acknowledge, ref),
            ))
        colour = ft.Colors.BLUE_50 if bubble.mine else ft.Colors.GREY_100
        row = ft.Row(
            alignment=ft.MainAxisAlignment.END if bubble.mine else ft.MainAxisAlignment.START,
            controls=[ft.Container(
                content=ft.Column(lines, spacing=2, tight=True),
                bgcolor=ft.Colors.RED_50 if bubble.urgent else colour,
                border=ft.Border.all(2, ft.Colors.RED) if bubble.urgent else None,
                border_radius=12, padding=10, width=420,
            )],
        )
        return ft.Semantics(container=True, content=row)  # read out one message at a time
