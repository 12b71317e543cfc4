"""Banners: the connection's, always on screen, a patient room's patient, and warnings."""

from __future__ import annotations

import flet as ft

from app.ui.i18n import Translator
from app.ui.viewmodels.connection_banner import ConnectionBanner, Link
from app.ui.viewmodels.conversation_patient import PatientBanner

_COLOURS = {
    Link.CONNECTED: ft.Colors.GREEN_100,
    Link.RECONNECTING: ft.Colors.AMBER_100,
    Link.OFFLINE: ft.Colors.RED_100,
}


def banner(model: ConnectionBanner, t: Translator) -> ft.Control:
    text = t(model.text_key, count=model.waiting)
    return ft.Semantics(
        label=text,
        live_region=True,
        content=ft.Container(
            content=ft.Text(text, size=12),
            bgcolor=_COLOURS[model.link],
            padding=ft.Padding.symmetric(horizontal=12, vertical=4),
        ),
    )


def patient_banner(patient: PatientBanner, t: Translator) -> ft.Control:
    """Who a patient room is about, above its messages, so that no one answers in the wrong
    patient's room."""
    facts = [patient.name]
    if patient.birth_date is not None:
        facts.append(t("patient.born", date=patient.birth_date.strftime("%d/%m/%Y")))
    if patient.identifier:
        key = "patient.ins" if patient.identifier_is_ins else "patient.identifier"
        facts.append(t(key, value=patient.identifier))
    if patient.test_identity:
        facts.append(t("patient.test_identity"))
    if patient.ward and patient.bed:
        facts.append(t("patient.ward_bed", ward=patient.ward, bed=patient.bed))
    elif patient.ward or patient.bed:
        facts.append(patient.ward or t("patient.bed", bed=patient.bed))
    text = " · ".join(facts)
    return ft.Semantics(
        label=t("patient.banner", facts=text),
        content=ft.Container(
            content=ft.Row([ft.Icon(ft.Icons.PERSONAL_INJURY, color=ft.Colors.INDIGO),
                            ft.Text(text, weight=ft.FontWeight.BOLD, expand=True)]),
            bgcolor=ft.Colors.INDIGO_50,
            border=ft.Border.all(1, ft.Colors.INDIGO_200),
            border_radius=8,
            padding=ft.Padding.symmetric(horizontal=12, vertical=6),
        ),
    )


def warning_banner(text: str) -> ft.Control:
    """Something the user must act on, above a room's messages (read out when it appears)."""
    return ft.Semantics(
        label=text,
        live_region=True,
        content=ft.Container(
            content=ft.Row([ft.Icon(ft.Icons.WARNING_AMBER, color=ft.Colors.DEEP_ORANGE),
                            ft.Text(text, expand=True)]),
            bgcolor=ft.Colors.DEEP_ORANGE_50,
            border=ft.Border.all(1, ft.Colors.DEEP_ORANGE_200),
            border_radius=8,
            padding=ft.Padding.symmetric(horizontal=12, vertical=6),
        ),
    )
