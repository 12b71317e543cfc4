"""A real FHIR R4 server for tests: ``sekmet-fhir`` (FastAPI + SQLite) started as a process
on 127.0.0.1, or the server named by ``FHIR_BASE_URL``; and synthetic hospital data loaded
through its FHIR API. Every helper makes fresh identifiers, so tests never depend on each
other nor on what a shared server already holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from record.config import FINESS_SYSTEM, INS_TEST_SYSTEM
from tests.relay_harness import free_port

SEKMET = Path(sys.executable).parent / "sekmet"
IPP_SYSTEM = "urn:oid:1.2.250.1.71.4.2.7.1.999"  # the synthetic hospital's IPP system
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
IDNATPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
G15_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BEARER_TOKEN = "jeton-de-test-" + secrets.token_hex(8)
CLIENT_ID, CLIENT_SECRET = "liaison-tests", "secret-" + secrets.token_hex(8)


@contextlib.contextmanager
def sekmet_server(home: Path, **settings: Any) -> Iterator[str]:
    """``sekmet serve`` on a free loopback port until the block ends; yields its FHIR base.
    ``settings`` go to its settings.yaml (JSON is YAML)."""
    if not SEKMET.exists():
        pytest.skip(f"sekmet-fhir is not installed ({SEKMET} missing): pip install -e .[dev]")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "settings.yaml"
    config.write_text(json.dumps({"base_url": base, "data_dir": str(home / "data"),
                                  "simulator": {"enabled": False}, **settings}), "utf-8")
    log = (home / "sekmet.log").open("wb")
    proc = subprocess.Popen([str(SEKMET), "serve", "-c", str(config), "--host", "127.0.0.1",
                             "--port", str(port)], cwd=home, stdout=log, stderr=log)
    try:
        _wait_for_metadata(proc, base, home / "sekmet.log")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_metadata(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sekmet exited with {proc.returncode}: {log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"sekmet did not answer /metadata: {log.read_text()}")


@pytest.fixture(scope="session")
def fhir_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The open FHIR server the tests write to and read from: $FHIR_BASE_URL, else sekmet.
    The local one does not validate what it stores, so tests can plant invalid resources."""
    if os.environ.get("FHIR_BASE_URL"):
        yield os.environ["FHIR_BASE_URL"].rstrip("/")
        return
    with sekmet_server(tmp_path_factory.mktemp("sekmet"),
                       validation={"inbound": "off"}) as base:
        yield base


@pytest.fixture(scope="session")
def secured_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sekmet that demands a static bearer token or an OAuth2 token from its own
    client-credentials endpoint (``/auth/token``); always local, as tests set its secrets."""
    with sekmet_server(tmp_path_factory.mktemp("sekmet-secured"), server_auth={
            "types": ["bearer", "smart"], "tokens": [BEARER_TOKEN],
            "smart_clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                               "scopes": "system/*.read"}]}) as base:
        yield base


def token_url(base: str) -> str:
    return base.removesuffix("/fhir") + "/auth/token"


# -- synthetic data, created through the FHIR API ----------------------------------------------
def unique_digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def create(base: str, resource: dict[str, Any], headers: dict[str, str] | None = None) \
        -> dict[str, Any]:
    """POST a resource; returns it as stored (with the server's id)."""
    r = httpx.post(f"{base}/{resource['resourceType']}", json=resource, timeout=30,
                   headers={"Content-Type": "application/fhir+json",
                            "Accept": "application/fhir+json", **(headers or {})})
    assert r.status_code in (200, 201), r.text
    stored = r.json()
    assert stored.get("id"), stored
    return stored


def patient(base: str, *, family: str = "Lefèvre", given: str = "Hélène",
            birth_date: str = "1948-09-12", ins: str | None = None, ipp: str | None = None,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    identifiers = [{"system": INS_TEST_SYSTEM, "value": ins}] if ins else []
    identifiers += [{"system": IPP_SYSTEM, "value": ipp}] if ipp else []
    return create(base, {"resourceType": "Patient", "identifier": identifiers,
                         "name": [{"use": "official", "family": family, "given": [given]}],
                         "gender": "female", "birthDate": birth_date}, headers)


def location(base: str, name: str, code: str, part_of: str | None = None) -> dict[str, Any]:
    return create(base, {"resourceType": "Location", "name": name, "status": "active",
                         "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": code}]},
                         **({"partOf": {"reference": f"Location/{part_of}"}} if part_of else {})})


def encounter(base: str, patient_id: str, status: str, start: str,
              locations: Sequence[str] = ()) -> dict[str, Any]:
    return create(base, {
        "resourceType": "Encounter", "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient_id}"}, "period": {"start": start},
        "location": [{"location": {"reference": f"Location/{lid}"}, "status": "active"}
                     for lid in locations]})


@dataclass
class Establishment:
    finess: str
    organization: str  # id of the establishment's Organization
    rpps: dict[str, str]  # practitioner display name -> RPPS


def establishment(base: str, staff: list[tuple[str, str, str, str]]) -> Establishment:
    """A hospital (FINESS) with a cardiology service under it, and its staff: (given, family,
    G15 profession code, RPPS or "" ) each as Practitioner + PractitionerRole in the service."""
    finess = unique_digits(9)
    hospital = create(base, {"resourceType": "Organization", "name": "CH Saint-Étienne-du-Test",
                             "identifier": [{"system": FINESS_SYSTEM, "value": finess}]})
    service = create(base, {"resourceType": "Organization", "name": "Cardiologie",
                            "partOf": {"reference": f"Organization/{hospital['id']}"}})
    rpps = {}
    for given, family, g15, number in staff:
        idents = [{"system": RPPS_SYSTEM, "value": number},
                  {"system": IDNATPS_SYSTEM, "value": "8" + number}] if number else []
        doc = create(base, {"resourceType": "Practitioner", "identifier": idents,
                            "name": [{"use": "official", "family": family, "given": [given]}]})
        create(base, {"resourceType": "PractitionerRole",
                      "practitioner": {"reference": f"Practitioner/{doc['id']}"},
                      "organization": {"reference": f"Organization/{service['id']}"},
                      "code": [{"coding": [{"system": G15_SYSTEM, "code": g15}]}]})
        rpps[f"{given} {family}"] = number
    return Establishment(finess, hospital["id"], rpps)


# -- stand-ins for broken servers (what cannot be had from a real FHIR server) -----------------
@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A socket that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/fhir"


@contextlib.contextmanager
def html_server(status: int = 200) -> Iterator[str]:
    """A stand-in for a misconfigured proxy or portal: answers every GET with an HTML page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Portail de connexion</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()

