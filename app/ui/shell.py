"""One app window (or browser tab): the layout around the panes, phone or desktop by width.

Below PHONE_MAX_WIDTH a navigation bar and one pane at a time; from there a navigation rail
with the list and the open conversation side by side. Each window has its own view-models
over the process's one engine, dropped when the window closes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import flet as ft

from app.client.connection import State
from app.client.engine import Engine
from app.ui.banner_view import banner
from app.ui.conversation_list_view import ConversationListView
from app.ui.conversation_view import ConversationView
from app.ui.i18n import Translator
from app.ui.settings_view import settings
from app.ui.viewmodels.connection_banner import ConnectionBanner
from app.ui.viewmodels.conversation import Conversation
from app.ui.viewmodels.conversation_list import ConversationList
from app.ui.viewmodels.people import People
from app.ui.widgets import PHONE_MAX_WIDTH

CONVERSATIONS, SETTINGS = 0, 1


class Shell:
    """Navigation, layout and the open conversation of one window."""

    def __init__(
        self, page: ft.Page, engine: Engine, people: People, t: Translator, state: State
    ) -> None:
        self._page, self._engine, self._people, self._t = page, engine, people, t
        self._banner = ConnectionBanner(engine, state)
        self._list = ConversationList(engine)
        self._conversation: Conversation | None = None
        self._tab = CONVERSATIONS
        self._phone = (page.width or PHONE_MAX_WIDTH) < PHONE_MAX_WIDTH
        self._views: list[ConversationListView | ConversationView] = []
        self._banner.observe(self._redraw_banner)
        t.on_change(self.build)
        page.on_resize = self._resized
        page.on_disconnect = lambda _e: self.close()
        self._banner_slot = ft.Container()
        self.build()

    def run(self, work: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run an async action of a view-model on the page's loop."""
        self._page.run_task(work, *args)

    # -- layout --------------------------------------------------------------------------------
    def _resized(self, event: ft.PageResizeEvent) -> None:
        phone = event.width < PHONE_MAX_WIDTH
        if phone != self._phone:
            self._phone = phone
            self.build()

    def build(self) -> None:
        page, t = self._page, self._t
        page.title = t("app.title")
        for view in self._views:
            view.close()
        list_view = ConversationListView(self._list, t, self._open, page.update)
        self._views = [list_view]
        pane = self._pane(list_view)
        self._redraw_banner(update=False)
        if self._phone:
            page.navigation_bar = ft.NavigationBar(
                selected_index=self._tab, on_change=self._navigate,
                destinations=[
                    ft.NavigationBarDestination(icon=ft.Icons.CHAT, label=t("nav.conversations")),
                    ft.NavigationBarDestination(icon=ft.Icons.SETTINGS, label=t("nav.settings")),
                ],
            )
            body: ft.Control = pane
        else:
            page.navigation_bar = None
            rail = ft.NavigationRail(
                selected_index=self._tab, on_change=self._navigate,
                label_type=ft.NavigationRailLabelType.ALL,
                destinations=[
                    ft.NavigationRailDestination(icon=ft.Icons.CHAT,
                                                 label=t("nav.conversations")),
                    ft.NavigationRailDestination(icon=ft.Icons.SETTINGS,
                                                 label=t("nav.settings")),
                ],
            )
            body = ft.Row([rail, ft.VerticalDivider(width=1), pane], expand=True)
        page.controls = [ft.Column([self._banner_slot, body], expand=True)]
        page.update()

    def _pane(self, list_view: ConversationListView) -> ft.Control:
        t = self._t
        if self._tab == SETTINGS:
            me = self._people.get(self._engine.user_id).name
            return ft.Container(content=settings(t, me), expand=True, padding=12)
        conversation: ft.Control = ft.Container(
            content=ft.Text(t("conversation.choose")), expand=True,
            alignment=ft.Alignment.CENTER,
        )
        if self._conversation is not None:
            back = self._close_conversation if self._phone else None
            view = ConversationView(self._conversation, t, self.run, back, self._page.update)
            self._views.append(view)
            conversation = view.control
        if self._phone:
            return conversation if self._conversation is not None else list_view.control
        return ft.Row(expand=True, controls=[
            ft.Container(content=list_view.control, width=340, padding=8),
            ft.VerticalDivider(width=1),
            ft.Container(content=conversation, expand=True, padding=8),
        ])

    def _redraw_banner(self, update: bool = True) -> None:
        self._banner_slot.content = banner(self._banner, self._t)
        if update:
            self._page.update()

    # -- navigation ----------------------------------------------------------------------------
    def _navigate(self, event: ft.ControlEvent) -> None:
        self._tab = int(event.control.selected_index)
        self.build()

    def _open(self, room_id: str) -> None:
        if self._conversation is not None:
            self._conversation.close()
        conversation = Conversation(self._engine, self._people, room_id)
        conversation.observe(lambda: self.run(conversation.mark_read))
        conversation.observe(self._banner.refresh)
        conversation.observe(self._list.refresh)  # own sends and reads raise no engine event
        self._conversation = conversation
        self.build()
        self.run(conversation.mark_read)

    def _close_conversation(self) -> None:
        if self._conversation is not None:
            self._conversation.close()
        self._conversation = None
        self.build()

    def close(self) -> None:
        for view in self._views:
            view.close()
        for model in (self._banner, self._list, self._conversation):
            if model is not None:
                model.close()
