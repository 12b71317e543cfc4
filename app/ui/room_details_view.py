"""Room details: members with their roles (managed by owners and moderators only), adding
colleagues, retention, a patient room's patient (changed or unlinked by owners and moderators
only), the shared documents, and leaving after a confirmation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import flet as ft

from app.ui.banner_view import patient_banner
from app.ui.i18n import Translator
from app.ui.patient_form import PatientForm
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
        self._left, self._update = left, update
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
        self._patient = ft.Container()
        self._relink_form = PatientForm(model.picker, t, lambda: run(model.search_patient),
                                        model.choose_patient)
        self._relink = ft.Column(visible=False, controls=[
            self._relink_form.control,
            ft.Row(wrap=True, controls=[
                ft.Button(t("details.patient.link"), icon=ft.Icons.LINK,
                          on_click=lambda _e: run(self._change_patient)),
                ft.TextButton(t("common.cancel"), on_click=lambda _e: self._show_relink(False)),
            ]),
        ])
        self._change = ft.Button(on_click=lambda _e: self._show_relink(True),
                                 icon=ft.Icons.PERSONAL_INJURY)
        self._unlink = ft.TextButton(t("details.patient.unlink"), icon=ft.Icons.LINK_OFF,
                                     on_click=lambda _e: self._confirm(
                                         t("details.patient.unlink"),
                                         t("details.patient.unlink_confirm", name=model.name),
                                         model.unlink_patient))
        self._patient_section = ft.Column(controls=[
            ft.Text(t("details.patient"), size=16), self._patient,
            ft.Row(wrap=True, controls=[self._change, self._unlink]), self._relink,
        ])
        self._documents = ft.Column(spacing=0)
        self._status = ft.Text()
        self._error = ft.Text(color=ft.Colors.RED)
        self.control = ft.ListView(expand=True, spacing=8, padding=8, controls=[
            ft.Row([icon_button(ft.Icons.ARROW_BACK, t("details.back"), lambda _e: back()),
                    self._title]),
            self._status, self._error, self._members_title, self._members, self._manage,
            labelled(t("details.retention"), self._retention), self._patient_section,
            ft.Text(t("details.documents"), size=16), self._documents,
            ft.Button(t("details.leave"), icon=ft.Icons.LOGOUT, color=ft.Colors.RED,
                      on_click=lambda _e: self._confirm(
                          t("details.leave"), t("details.leave_confirm", name=model.name),
                          model.leave)),
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
        self._patient_section.visible = model.kind is RoomKind.PATIENT
        self._patient.content = (patient_banner(model.patient, t) if model.patient
                                 else ft.Text(t("details.patient.none"), italic=True))
        self._change.content = t("details.patient.change" if model.patient
                                 else "details.patient.choose")
        self._change.visible = model.can_change_patient and not self._relink.visible
        self._unlink.visible = model.can_change_patient and model.patient is not None
        self._relink.visible = self._relink.visible and model.can_change_patient
        self._relink_form.redraw()
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

    def _show_relink(self, shown: bool) -> None:
        self._relink.visible = shown
        self.redraw()
        self._update()  # the view's own state: no model change redraws it

    async def _change_patient(self) -> None:
        if await self._model.change_patient():
            self._show_relink(False)

    def _confirm(self, action: str, question: str,
                 work: Callable[[], Awaitable[bool]]) -> None:
        """Ask before an action every member feels (leaving, unlinking the patient)."""
        t, page = self._t, ft.context.page

        def answer(confirmed: bool) -> None:
            page.pop_dialog()
            if confirmed:
                self._run(work)

        page.show_dialog(ft.AlertDialog(
            modal=True, title=ft.Text(action), content=ft.Text(question),
            actions=[ft.TextButton(t("common.cancel"), on_click=lambda _e: answer(False)),
                     ft.TextButton(action, on_click=lambda _e: answer(True))],
        ))


def _retention(t: Translator, days: int | None) -> str:
    return t("details.retention.none") if days is None else t("details.retention.days",
                                                              count=days)
