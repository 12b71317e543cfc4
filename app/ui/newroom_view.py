"""New conversation: the room's kind, the colleagues found in the directory, and the fields a
named or patient room needs (the patient's form is patient_form's). Text fields live as long
as the view, so what is typed survives every redraw."""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from app.ui.i18n import Translator
from app.ui.patient_form import PatientForm
from app.ui.viewmodels.newroom import NewRoom
from app.ui.viewmodels.people import Person
from app.ui.widgets import icon_button
from storage.rooms import RoomKind


class NewRoomView:
    """``control`` is the pane; ``opened(room_id)`` once the room exists; ``cancel`` goes back;
    ``close`` stops following the model."""

    def __init__(
        self,
        model: NewRoom,
        t: Translator,
        run: Callable[..., object],
        opened: Callable[[str], None],
        cancel: Callable[[], None],
        update: Callable[[], None],
    ) -> None:
        self._model, self._t, self._run, self._opened = model, t, run, opened

        self._search = ft.TextField(
            label=t("newroom.search"), prefix_icon=ft.Icons.PERSON_SEARCH, dense=True,
            on_change=lambda e: run(model.search, e.control.value))
        self._name = ft.TextField(label=t("newroom.name"), dense=True,
                                  on_change=lambda e: setattr(model, "name", e.control.value))
        self._patient = PatientForm(model.picker, t, lambda: run(model.search_patient),
                                    model.choose_patient)
        self._kinds = ft.Row(wrap=True, spacing=4)
        self._picked = ft.Text(italic=True)
        self._results = ft.ListView(expand=True, spacing=2)
        self._error = ft.Text(color=ft.Colors.RED)
        self._create = ft.Button(t("newroom.create"), icon=ft.Icons.CHECK,
                                 on_click=lambda _e: run(self._submit))
        self.control = ft.Column(expand=True, controls=[
            ft.Row([icon_button(ft.Icons.ARROW_BACK, t("common.cancel"), lambda _e: cancel()),
                    ft.Text(t("newroom.title"), size=20, weight=ft.FontWeight.BOLD)]),
            self._kinds, self._name, self._patient.control, self._search, self._picked,
            self._results, self._error, self._create,
        ])
        self.redraw()
        self.close = model.observe(lambda: (self.redraw(), update()))

    async def _submit(self) -> None:
        room_id = await self._model.create()
        if room_id is not None:
            self._opened(room_id)

    def redraw(self) -> None:
        t, model = self._t, self._model
        self._kinds.controls = [
            ft.Chip(label=t(f"kind.{kind.value}"), selected=model.kind is kind,
                    on_select=lambda _e, k=kind: model.choose_kind(k))
            for kind in RoomKind
        ]
        self._name.visible = model.kind is not RoomKind.DIRECT
        self._patient.control.visible = model.kind is RoomKind.PATIENT
        self._name.value = model.name  # choosing a patient names the room
        self._patient.redraw()
        names = ", ".join(p.name for p in model.picked.values())
        self._picked.value = t("newroom.picked", names=names) if names else ""
        tiles = [self._tile(person) for person in model.results]
        if not tiles and model.query.strip():
            tiles = [ft.Text(t("newroom.no_result"), italic=True)]
        self._results.controls = tiles
        self._error.value = (t(model.error_key, detail=model.error_detail)
                             if model.error_key else "")
        self._create.disabled = model.busy

    def _tile(self, person: Person) -> ft.Control:
        t = self._t
        about = " · ".join([t(f"profession.{person.profession}"), *person.services])
        picked = person.user_id in self._model.picked
        return ft.ListTile(
            leading=ft.Icon(ft.Icons.CHECK_CIRCLE if picked else ft.Icons.PERSON_OUTLINE),
            title=ft.Text(person.name), subtitle=ft.Text(about), selected=picked,
            on_click=lambda _e: self._model.toggle(person),
        )
