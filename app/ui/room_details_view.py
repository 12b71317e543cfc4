"""Room details: members with their roles (managed by owners and moderators only), adding
colleagues, retention, the shared documents, and leaving after a confirmation."""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from app.ui.i18n import Translator
from app.ui.viewmodels.newroom import NewRoom
from app.ui.viewmodels.room_details import DocumentRow, MemberRow, RoomDetails
from app.ui.widgets import clock, icon_button, labelled
from storage.members import RoomRole
from storage.rooms import RoomKind

RETENTION_CHOICES = (None, 7, 30, 90, 365)  # days; None: until the user leaves the room


class RoomDetailsView:
    """``control`` is the pane; ``back`` returns to the conversation, ``left`` once the user
    has left the room; ``close`` stops following the models."""

    def __init__(
        self,
        model: RoomDetails,
        adding: NewRoom,
        t: Translator,
        run: Callable[..., object],
        back: Callable[[], None],
        left: Callable[[], None],
        update: Callable[[], None],
    ) -> None:
        self._model, self._adding, self._t, self._run = model, adding, t, run
        self._left = left
        adding.choose_kind(RoomKind.GROUP)  # picking several colleagues at once
        self._title = ft.Text(size=20, weight=ft.FontWeight.BOLD)
        self._members_title = ft.Text(size=16)
        self._members = ft.Column(spacing=0)
        self._search = ft.TextField(
            label=t("details.add_search"), prefix_icon=ft.Icons.PERSON_ADD, dense=True,
            on_change=lambda e: run(adding.search, e.control.value))
        self._candidates = ft.Column(spacing=0)
        self._add = ft.Button(t("details.add"), icon=ft.Icons.GROUP_ADD,
                              on_click=lambda _e: run(self._add_picked))
        self._manage = ft.Column([self._search, self._candidates, self._add])
        self._retention = ft.Dropdown(
            label=t("details.retention"), dense=True,
            options=[ft.DropdownOption(key=str(days or ""), text=_retention(t, days))
                     for days in RETENTION_CHOICES],
            on_select=lambda e: run(model.set_retention, int(e.control.value or 0) or None))
        self._documents = ft.Column(spacing=0)
        self._status = ft.Text()
        self._error = ft.Text(color=ft.Colors.RED)
        self.control = ft.ListView(expand=True, spacing=8, padding=8, controls=[
            ft.Row([icon_button(ft.Icons.ARROW_BACK, t("details.back"), lambda _e: back()),
                    self._title]),
            self._status, self._error, self._members_title, self._members, self._manage,
            labelled(t("details.retention"), self._retention),
            ft.Text(t("details.documents"), size=16), self._documents,
            ft.Button(t("details.leave"), icon=ft.Icons.LOGOUT, color=ft.Colors.RED,
                      on_click=lambda _e: self._confirm_leave()),
        ])
        self.redraw()
        stop_model = model.observe(lambda: (self.redraw(), update()))
        stop_adding = adding.observe(lambda: (self.redraw(), update()))
        self.close = lambda: (stop_model(), stop_adding(), model.close())

    def redraw(self) -> None:
        t, model = self._t, self._model
        if model.left:
            self._left()
            return
        self._title.value = model.name
        self._status.value = t("details.archived") if model.archived else ""
        self._error.value = (t(model.error_key, detail=model.error_detail)
                             if model.error_key else "")
        self._members_title.value = t("details.members", count=len(model.members))
        self._members.controls = [self._member(row) for row in model.members]
        self._manage.visible = model.can_manage and model.kind is not RoomKind.DIRECT
        present = {row.user_id for row in model.members}
        self._candidates.controls = [
            ft.Checkbox(label=person.name, value=person.user_id in self._adding.picked,
                        on_change=lambda _e, p=person: self._adding.toggle(p))
            for person in self._adding.results if person.user_id not in present
        ]
        self._add.disabled = model.busy or not self._adding.picked
        self._retention.value = str(model.retention_days or "")
        self._retention.disabled = not model.can_manage or model.busy
        self._documents.controls = [self._document(row) for row in model.documents] or [
            ft.Text(t("details.no_documents"), italic=True)]

    def _member(self, row: MemberRow) -> ft.Control:
        t = self._t
        name = t("details.you", name=row.name) if row.me else row.name
        trailing: ft.Control | None = None
        if self._model.can_manage and not row.me:
            trailing = ft.Row(tight=True, controls=[
                labelled(t("details.role_of", name=row.name), ft.Dropdown(
                    label=t("details.role_of", name=row.name), dense=True, width=170,
                    value=row.role.value,
                    options=[ft.DropdownOption(key=role.value, text=t(f"role.{role.value}"))
                             for role in RoomRole],
                    on_select=lambda e, u=row.user_id: self._run(
                        self._model.set_role, u, RoomRole(e.control.value)))),
                icon_button(ft.Icons.PERSON_REMOVE, t("details.remove", name=row.name),
                            lambda _e, u=row.user_id: self._run(self._model.remove, u)),
            ])
        return ft.ListTile(
            title=ft.Text(name),
            subtitle=ft.Text(f"{t(f'profession.{row.profession}')} · {t(f'role.{row.role}')}"),
            trailing=trailing,
        )

    def _document(self, row: DocumentRow) -> ft.Control:
        return ft.ListTile(
            leading=ft.Icon(ft.Icons.DESCRIPTION), title=ft.Text(row.file_name),
            subtitle=ft.Text(self._t("details.document", sender=row.sender_name,
                                     time=clock(row.time))),
        )

    async def _add_picked(self) -> None:
        if await self._model.add(list(self._adding.picked)):
            self._search.value = ""
            self._adding.clear()

    def _confirm_leave(self) -> None:
        t, page = self._t, ft.context.page

        def answer(leave: bool) -> None:
            page.pop_dialog()
            if leave:
                self._run(self._model.leave)

        page.show_dialog(ft.AlertDialog(
            modal=True, title=ft.Text(t("details.leave")),
            content=ft.Text(t("details.leave_confirm", name=self._model.name)),
            actions=[ft.TextButton(t("common.cancel"), on_click=lambda _e: answer(False)),
                     ft.TextButton(t("details.leave"), on_click=lambda _e: answer(True))],
        ))


def _retention(t: Translator, days: int | None) -> str:
    return t("details.retention.none") if days is None else t("details.retention.days",
                                                              count=days)
