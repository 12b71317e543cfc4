"""Importing staff from a real FHIR R4 server into a relay's directory with
``liaison-relay directory import-fhir``: scoped by FINESS, idempotent, all or nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fhir_support import establishment, sekmet_server, unique_digits
from tests.relay_harness import BIN, RelayProcess, cli

STAFF = [("Amélie", "Poulain-Dürr", "10", "1"), ("Noël", "Garçon", "60", ""),
         ("Inès", "Da Silva", "50", "1")]  # (given, family, G15 code, RPPS wanted?)


def staff() -> list[tuple[str, str, str, str]]:
    return [(g, f, code, unique_digits(11) if rpps else "") for g, f, code, rpps in STAFF]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    relay = RelayProcess(tmp_path / "relay")
    relay.init()
    return relay.data


def import_fhir(data: Path, base: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "directory", "import-fhir", "--data", str(data),
                           "--base", base, *args], capture_output=True, text=True, timeout=120)


def users(data: Path) -> dict[str, dict]:
    return {u["name"]: u for u in json.loads(cli(data, "user list", "--json"))}


def test_imports_an_establishments_staff_once(fhir_base, data):
    hospital = establishment(fhir_base, staff())
    elsewhere = establishment(fhir_base, [("Zoé", "Autre-Hôpital", "10", unique_digits(11))])
    out = import_fhir(data, fhir_base, "--finess", hospital.finess)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("3 added, 0 updated")
    found = users(data)
    assert "Zoé Autre-Hôpital" not in found and elsewhere.finess != hospital.finess
    assert {name: (u["profession"], u["services"], u["rpps"]) for name, u in found.items()} == {
        "Amélie Poulain-Dürr": ("physician", ["Cardiologie"], hospital.rpps["Amélie Poulain-Dürr"]),
        "Noël Garçon": ("nurse", ["Cardiologie"], None),
        "Inès Da Silva": ("midwife", ["Cardiologie"], hospital.rpps["Inès Da Silva"])}
    again = import_fhir(data, fhir_base, "--finess", hospital.finess)
    assert again.stdout.strip().endswith("0 added, 0 updated"), again.stderr


def test_one_bad_practitioner_imports_nobody(fhir_base, data):
    before = users(data)
    hospital = establishment(fhir_base, [*staff(), ("Paul", "Mauvais-Numéro", "10", "12345")])
    out = import_fhir(data, fhir_base, "--finess", hospital.finess)
    assert out.returncode != 0 and out.stdout == ""
    assert "RPPS '12345' is not an 11-digit number" in out.stderr
    assert "Traceback" not in out.stderr
    assert users(data) == before


def test_server_failures_import_nothing_and_say_why(fhir_base, data):
    unknown = unique_digits(9)
    out = import_fhir(data, fhir_base, "--finess", unknown)
    assert out.returncode != 0
    assert f"nothing imported: no Organization with FINESS {unknown}" in out.stderr
    out = import_fhir(data, "http://127.0.0.1:9/fhir")
    assert out.returncode != 0 and "nothing imported" in out.stderr
    assert "cannot reach http://127.0.0.1:9/fhir" in out.stderr
    out = import_fhir(data, fhir_base, "--auth", "bearer")
    assert out.returncode != 0 and "set LIAISON_FHIR_TOKEN in the environment" in out.stderr
    assert users(data) == {}


def test_without_finess_the_whole_directory_is_imported(tmp_path, data):
    """On a server of its own: the whole directory is whatever that server holds."""
    with sekmet_server(tmp_path / "sekmet") as base:
        first = establishment(base, staff())
        second = establishment(base, [("Zoé", "Lemaître", "60", unique_digits(11))])
        out = import_fhir(data, base)
    assert out.returncode == 0, out.stderr
    assert sorted(users(data)) == sorted([*first.rpps, *second.rpps])
