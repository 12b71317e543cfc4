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
from app.ui.newroom_view import NewRoomView
from app.ui.preferences import Preferences
from app.ui.profile import Profile
from app.ui.room_details_view import RoomDetailsView
from app.ui.screen_lock import ScreenLock
from app.ui.settings_view import THEME_MODES, SettingsView
from app.ui.viewmodels.connection_banner import ConnectionBanner
from app.ui.viewmodels.conversation import Conversation
from app.ui.viewmodels.conversation_list import ConversationList
from app.ui.viewmodels.newroom import NewRoom
from app.ui.viewmodels.notifications import NOTICE_SECONDS, Notice, Notifications
from app.ui.viewmodels.people import People
from app.ui.viewmodels.room_details import RoomDetails
from app.ui.viewmodels.settings import Settings, SignOut
from app.ui.widgets import PHONE_MAX_WIDTH, icon_button

CONVERSATIONS, SETTINGS = 0, 1
NEW_ROOM, DETAILS = "new", "details"  # what the conversation pane shows instead of the room
View = (ConversationListView | ConversationView | NewRoomView | RoomDetailsView
        | SettingsView)


class Shell:
    """Navigation, layout and the open conversation of one window."""

    def __init__(
        self, page: ft.Page, engine: Engine, people: People, t: Translator, state: State,
        *, profile: Profile, sign_out: SignOut, signed_out: Callable[[], None],
    ) -> None:
        """``sign_out`` wipes the profile; ``signed_out`` then takes the window over."""
        self._page, self._engine, self._people, self._t = page, engine, people, t
        self._profile, self._sign_out, self._signed_out = profile, sign_out, signed_out
        self._lock = ScreenLock(page, profile, engine, t, self.build)
        self._overlay: str | None = None  # NEW_ROOM or DETAILS
        self._banner = ConnectionBanner(engine, state)
        self._list = ConversationList(engine)
        self._conversation: Conversation | None = None
        self._tab = CONVERSATIONS
        self._phone = (page.width or PHONE_MAX_WIDTH) < PHONE_MAX_WIDTH
        self._views: list[View] = []
        self._banner.observe(self._redraw_banner)
        self._notifications = Notifications(engine, self._looking_at)
        self._shown: Notice | None = None  # the notice on screen, not shown twice
        self._snack: ft.SnackBar | None = None
        self._notifications.observe(self._notify)
        self._list.observe(lambda: self._notify(update=False))  # the title; the list's view
        t.on_change(self.build)
        page.on_resize = self._resized
        page.on_disconnect = lambda _e: self.close()
        self._banner_slot = ft.Container()
        self.build()

    def run(self, work: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run an async action of a view-model on the page's loop."""
        self._lock.touch()
        self._page.run_task(work, *args)

    # -- layout --------------------------------------------------------------------------------
    def _resized(self, event: ft.PageResizeEvent) -> None:
        phone = event.width < PHONE_MAX_WIDTH
        if phone != self._phone:
            self._phone = phone
            self.build()

    def build(self) -> None:
        page, t = self._page, self._t
        if self._lock.locked:  # nothing shows before the PIN
            return
        self._lock.touch()
        self._notify(update=False)
        page.theme_mode = THEME_MODES[Preferences.load(self._profile.directory).theme]
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
        top: ft.Control = self._banner_slot
        if self._lock.enabled:  # leaving the ward's desktop, handing the phone over
            top = ft.Row(spacing=0, controls=[
                ft.Container(self._banner_slot, expand=True),
                icon_button(ft.Icons.LOCK, t("lock.now"), lambda _e: self._lock.lock())])
        page.controls = [ft.Column([top, body], expand=True)]
        page.update()

    def _pane(self, list_view: ConversationListView) -> ft.Control:
        t = self._t
        if self._tab == SETTINGS:
            return ft.Container(content=self._settings(), expand=True, padding=12)
        conversation: ft.Control = ft.Container(
            content=ft.Text(t("conversation.choose")), expand=True,
            alignment=ft.Alignment.CENTER,
        )
        if self._overlay is not None:
            conversation = self._overlay_view()
        elif self._conversation is not None:
            back = self._close_conversation if self._phone else None
            view = ConversationView(self._conversation, t, self.run, back, self._page.update,
                                    self._open)
            self._views.append(view)
            details = icon_button(ft.Icons.INFO_OUTLINE, t("details.open"),
                                  lambda _e: self._show(DETAILS))
            conversation = ft.Column(expand=True, spacing=0, controls=[
                ft.Row([details], alignment=ft.MainAxisAlignment.END), view.control])
        listing = ft.Column(expand=True, controls=[
            ft.Button(t("nav.new"), icon=ft.Icons.ADD_COMMENT,
                      on_click=lambda _e: self._show(NEW_ROOM)),
            list_view.control,
        ])
        if self._phone:
            shown = self._conversation is not None or self._overlay is not None
            return conversation if shown else listing
        return ft.Row(expand=True, controls=[
            ft.Container(content=listing, width=340, padding=8),
            ft.VerticalDivider(width=1),
            ft.Container(content=conversation, expand=True, padding=8),
        ])

    def _overlay_view(self) -> ft.Control:
        """The new-conversation or room-details pane, in place of the conversation."""
        t, page = self._t, self._page
        if self._overlay == NEW_ROOM:
            view: View = NewRoomView(NewRoom(self._engine, self._people), t, self.run,
                                     self._open, lambda: self._show(None), page.update)
        else:
            assert self._conversation is not None, "details are a room's"
            room_id = self._conversation.room_id
            view = RoomDetailsView(RoomDetails(self._engine, self._people, room_id),
                                   NewRoom(self._engine, self._people), t, self.run,
                                   lambda: self._show(None), self._close_conversation,
                                   page.update)
        self._views.append(view)
        return view.control

    def _settings(self) -> ft.Control:
        model = Settings(self._engine, self._profile.directory, self._sign_out)

        def changed() -> None:
            self._lock.timer.minutes = model.preferences.lock_minutes
            if model.signed_out:
                self.close()
                self._page.navigation_bar = None
                self._signed_out()

        model.observe(changed)
        view = SettingsView(model, self._people, self._t, self.run, self._page.update,
                            locks=self._lock.enabled)
        self._views.append(view)
        return view.control

    # -- notices -----------------------------------------------------------------------------
    def _looking_at(self) -> str | None:
        """The room this window shows: its messages need no notice (unless locked)."""
        if self._lock.locked or self._conversation is None or self._overlay is not None:
            return None
        return self._conversation.room_id

    def _notify(self, update: bool = True) -> None:
        """The unread count in the title, and a notice of new messages: how many, urgent or
        not, and nothing else (it shows over the lock screen too)."""
        t, page, notifications = self._t, self._page, self._notifications
        unread = self._list.unread
        page.title = t("app.title_unread", count=unread) if unread else t("app.title")
        notice = notifications.notice
        if notice is None and self._snack is not None and self._snack.open:
            # Seen: its room was opened. With a screen reader on, Flutter never times out a
            # snack bar that has an action, and this one covers the composer.
            self._snack.open = False
        if notice is not None and notice != self._shown:
            self._shown = notice
            if self._snack is not None and self._snack.open:  # replaced, not queued after it
                self._snack.open = False
            self._snack = ft.SnackBar(
                ft.Text(t(notice.text_key, count=notice.count)),
                action=None if self._lock.locked else t("notice.open"),
                on_action=lambda _e: self._open_notice(notice),
                on_dismiss=lambda _e: notifications.dismiss(notice),
                show_close_icon=True,
                duration=ft.Duration(milliseconds=int(NOTICE_SECONDS * 1000)))
            page.show_dialog(self._snack)
        if update:
            page.update()

    def _open_notice(self, notice: Notice) -> None:
        self._tab = CONVERSATIONS
        self._open(notice.room_id)

    def _redraw_banner(self, update: bool = True) -> None:
        self._banner_slot.content = banner(self._banner, self._t)
        if update:
            self._page.update()

    # -- navigation ----------------------------------------------------------------------------
    def _navigate(self, event: ft.ControlEvent) -> None:
        self._tab = int(event.control.selected_index)
        self.build()

    def _show(self, overlay: str | None) -> None:
        self._overlay = overlay
        self.build()

    def _open(self, room_id: str) -> None:
        notice = self._notifications.notice
        if notice is not None and notice.room_id == room_id:
            self._notifications.dismiss()
        if self._conversation is not None:
            self._conversation.close()
        self._overlay = None
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
        self._conversation, self._overlay = None, None
        self.build()

    def close(self) -> None:
        self._lock.close()
        for view in self._views:
            view.close()
        for model in (self._banner, self._list, self._notifications, self._conversation):
            if model is not None:
                model.close()
