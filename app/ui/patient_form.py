"""The form that names a room's patient, in the new-conversation screen and in a patient
room's details: the record search and its results when the app has a record, the typed
identity otherwise. Its text fields live as long as the form, so what is typed survives every
redraw."""

from __future__ import annotations

from collections.abc import Callable

import flet as ft

from app.ui.i18n import Translator
from app.ui.viewmodels.patient_picker import Candidate, PatientPicker


class PatientForm:
    """``control`` to place; ``search`` runs the record search, ``choose`` takes a result;
    ``redraw`` after the picker moves."""

    def __init__(self, picker: PatientPicker, t: Translator, search: Callable[[], None],
                 choose: Callable[[Candidate], None]) -> None:
        self._picker, self._t, self._choose = picker, t, choose

        def field(label: str, attribute: str) -> ft.TextField:
            return ft.TextField(label=t(label), dense=True, value=getattr(picker, attribute),
                                on_change=lambda e: setattr(picker, attribute, e.control.value))

        def pair(*fields: ft.TextField) -> ft.Row:
            return ft.Row([ft.Container(f, expand=True) for f in fields])

        self.candidates = ft.Column(spacing=2)
        self.control = ft.Column(spacing=4, controls=[
            pair(field("newroom.record.ins", "record_ins"),
                 field("newroom.record.ipp", "record_ipp")),
            pair(field("newroom.record.family", "record_family"),
                 field("newroom.record.birth", "record_birth_date")),
            ft.Button(t("newroom.record.search"), icon=ft.Icons.SEARCH,
                      on_click=lambda _e: search()),
            self.candidates,
        ] if picker.fhir is not None else [
            field("newroom.patient.family", "patient_family_name"),
            field("newroom.patient.given", "patient_given_names"),
            field("newroom.patient.birth", "patient_birth_date"),
            pair(field("newroom.patient.ins", "patient_ins"),
                 field("newroom.patient.ipp", "patient_ipp")),
        ])

    def redraw(self) -> None:
        self.candidates.controls = [self._candidate(c) for c in self._picker.candidates]

    def _candidate(self, candidate: Candidate) -> ft.Control:
        """Name, birth date, identifiers and where the patient lies: enough to tell apart."""
        t, who, stay = self._t, candidate.patient, candidate.stay
        name = " ".join([(who.family or "").upper(), *who.given])
        about = " · ".join(filter(None, [
            t("newroom.record.born", date=who.birth_date) if who.birth_date else None,
            f"INS {who.ins}" if who.ins else None, f"IPP {who.ipp}" if who.ipp else None,
            ", ".join(filter(None, (stay.ward, stay.bed))) if stay
            else t("newroom.record.not_admitted")]))
        chosen = candidate == self._picker.chosen
        return ft.ListTile(
            leading=ft.Icon(ft.Icons.CHECK_CIRCLE if chosen else ft.Icons.PERSONAL_INJURY,
                            semantics_label=t("newroom.record.chosen", name=name)
                            if chosen else name),
            title=ft.Text(name), subtitle=ft.Text(about), selected=chosen,
            on_click=lambda _e: self._choose(candidate),
        )
