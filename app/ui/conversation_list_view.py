"""The conversation list: search, kind filter, and one tile per room."""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from app.ui.i18n import Translator
from app.ui.viewmodels.conversation_list import ConversationList, RoomRow
from app.ui.widgets import clock
from storage.rooms import RoomKind


class ConversationListView:
    """``control`` is the pane; ``open_room(room_id)`` is called when a tile is tapped;
    ``close`` stops following the model."""

    def __init__(
        self,
        model: ConversationList,
        t: Translator,
        open_room: Callable[[str], None],
        update: Callable[[], None],
    ) -> None:
        self._model, self._t, self._open_room = model, t, open_room
        self._search = ft.TextField(
            label=t("list.search"), prefix_icon=ft.Icons.SEARCH, dense=True,
            on_change=lambda e: model.filter(model.kind, e.control.value),
        )
        self._chips = ft.Row(wrap=True, spacing=4)
        self._tiles = ft.ListView(expand=True, spacing=2)
        # one tile per room for the view's life: a tap on a tile replaced by a redraw (a burst
        # of incoming messages redraws often) would reach a control that is gone
        self._tile_of: dict[str, ft.ListTile] = {}
        self.control = ft.Column(
            expand=True,
            controls=[
                ft.Container(content=self._search, padding=ft.Padding.only(top=8)),
                self._chips,
                self._tiles,
            ],
        )
        self.redraw()
        self.close = model.observe(lambda: (self.redraw(), update()))

    def redraw(self) -> None:
        t, model = self._t, self._model
        self._search.label = t("list.search")
        kinds: list[RoomKind | None] = [None, *RoomKind]
        self._chips.controls = [
            ft.Chip(
                label=t("list.all") if kind is None else t(f"kind.{kind.value}"),
                selected=model.kind is kind,
                on_select=lambda _e, k=kind: model.filter(k),
            )
            for kind in kinds
        ]
        rows = [self._tile(row) for row in model.rows]
        self._tiles.controls = rows or [ft.Text(t("list.empty"), italic=True)]

    def _tile(self, row: RoomRow) -> ft.Control:
        t = self._t
        badges: list[ft.Control] = []
        if row.time is not None:
            badges.append(ft.Text(clock(row.time), size=11))
        if row.urgent:
            badges.append(ft.Icon(ft.Icons.PRIORITY_HIGH, color=ft.Colors.RED, size=18,
                                  semantics_label=t("list.urgent")))
        if row.replaced:  # the subtitle says it in words
            badges.append(ft.Icon(ft.Icons.ARROW_FORWARD, color=ft.Colors.DEEP_ORANGE, size=18))
        elif row.unreadable:
            badges.append(ft.Icon(ft.Icons.WARNING_AMBER, color=ft.Colors.DEEP_ORANGE, size=18,
                                  semantics_label=t("list.unreadable")))
        if row.unread:
            count = str(row.unread) if row.unread < 100 else "99+"
            badges.append(ft.Container(
                content=ft.Text(count, size=11, color=ft.Colors.WHITE),
                bgcolor=ft.Colors.BLUE, border_radius=8,
                padding=ft.Padding.symmetric(horizontal=6),
            ))
        tile = self._tile_of.get(row.room_id)
        if tile is None:
            tile = self._tile_of[row.room_id] = ft.ListTile(
                on_click=lambda _e, room_id=row.room_id: self._open_room(room_id))
        tile.leading = ft.Icon(getattr(ft.Icons, row.icon), semantics_label=t(f"kind.{row.kind}"),
                               color=ft.Colors.RED if row.urgent else None)
        tile.title = ft.Text(row.name, weight=ft.FontWeight.BOLD if row.unread else None)
        tile.subtitle = ft.Text(_preview(row, t), max_lines=1,
                                overflow=ft.TextOverflow.ELLIPSIS)
        tile.trailing = ft.Column(badges, spacing=2, tight=True,
                                  horizontal_alignment=ft.CrossAxisAlignment.END)
        return tile


def _preview(row: RoomRow, t: Translator) -> str:
    """The last message's start, or what matters more: the room was opened again elsewhere."""
    if row.replaced:
        return t("list.replaced")
    if row.time is None:
        return t("list.no_message")
    return row.preview if row.preview is not None else t("message.recalled")
