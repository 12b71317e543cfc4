"""The FHIR transport: authentication against a real secured server, and every way a server
can fail becoming one readable FhirError."""

from __future__ import annotations

import httpx
import pytest
from fhir.resources.R4B.patient import Patient

from record import (
    BearerAuth,
    ClientCredentials,
    FhirClient,
    FhirConfig,
    FhirError,
    auth,
    wire,
)
from record import patients as pt
from tests.fhir_support import (
    BEARER_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    IPP_SYSTEM,
    create,
    html_server,
    patient,
    silent_server,
    token_url,
    unique_digits,
)
from tests.relay_harness import free_port


@pytest.mark.asyncio
async def test_a_missing_resource_reports_the_servers_operation_outcome(fhir_base):
    async with FhirClient(FhirConfig(base_url=fhir_base)) as fhir:
        with pytest.raises(FhirError) as caught:
            await fhir.read(Patient, "absent-" + unique_digits(6))
    assert caught.value.status == 404
    assert "Patient/absent-" in str(caught.value) and "HTTP 404" in str(caught.value)
    assert "not-found" in str(caught.value)  # the issue code of the OperationOutcome


def test_operation_outcome_diagnostics_and_details_are_joined():
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "birthdate: bad date",
         "details": {"text": "Paramètre invalide", "coding": [{"display": "MSG_PARAM_INVALID"}]}},
        {"severity": "warning", "code": "informational"}]}
    with pytest.raises(FhirError) as caught:
        wire.read_json(400, "application/fhir+json", httpx.Response(200, json=outcome).content,
                       "search Patient")
    assert str(caught.value) == ("search Patient: HTTP 400: error invalid: birthdate: bad date; "
                                 "Paramètre invalide; MSG_PARAM_INVALID | warning informational:")


@pytest.mark.asyncio
async def test_an_invalid_resource_from_the_server_is_named(fhir_base):
    ipp = unique_digits(8)
    r = httpx.post(f"{fhir_base}/Patient", timeout=30, json={
        "resourceType": "Patient", "birthDate": "12/09/1948",
        "identifier": [{"system": IPP_SYSTEM, "value": ipp}]})
    if r.status_code >= 400:
        pytest.skip(f"{fhir_base} validates what it stores ({r.status_code})")
    async with FhirClient(FhirConfig(base_url=fhir_base, ipp_system=IPP_SYSTEM)) as fhir:
        with pytest.raises(FhirError, match=rf"invalid Patient/{r.json()['id']} from the "
                                            r"server: birthDate: "):
            await pt.by_ipp(fhir, ipp)


@pytest.mark.asyncio
async def test_a_server_that_never_answers_times_out():
    with silent_server() as base:
        async with FhirClient(FhirConfig(base_url=base, read_timeout=0.5)) as fhir:
            with pytest.raises(FhirError, match=r"did not answer in time .*read 0\.5s") as caught:
                await pt.by_ins(fhir, "248092A001234")
    assert str(caught.value).startswith("search Patient by identifier: ")
    assert "248092A001234" not in str(caught.value)  # messages reach logs: no identifiers


@pytest.mark.asyncio
async def test_no_server_at_all_is_a_connection_error():
    base = f"http://127.0.0.1:{free_port()}/fhir"
    async with FhirClient(FhirConfig(base_url=base)) as fhir:
        with pytest.raises(FhirError, match=f"cannot reach {base}") as caught:
            await fhir.read(Patient, "p1")
    assert caught.value.status is None


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [200, 502])
async def test_an_html_page_is_not_a_fhir_answer(status):
    with html_server(status) as base:
        async with FhirClient(FhirConfig(base_url=base)) as fhir:
            with pytest.raises(FhirError, match="text/html: '<html><body>Portail") as caught:
                await fhir.read(Patient, "p1")
    assert caught.value.status == status


def test_a_wrong_resource_type_is_refused(fhir_base):
    stored = create(fhir_base, {"resourceType": "Location", "name": "Pharmacie"})
    r = httpx.get(f"{fhir_base}/Location/{stored['id']}", timeout=30)
    with pytest.raises(FhirError, match="expected a Patient, got 'Location'"):
        wire.resource(r.json(), Patient, "Patient/x")


def test_a_next_link_to_another_server_is_not_followed():
    page = {"resourceType": "Bundle", "type": "searchset",
            "link": [{"relation": "next", "url": "https://ailleurs.example/fhir/Patient?p=2"}]}
    _, nxt = wire.searchset(page, Patient, "search")
    assert nxt is not None and not wire.same_origin(nxt, "http://127.0.0.1:8080/fhir")
    assert wire.same_origin("http://127.0.0.1:8080/fhir/Patient?_offset=2",
                            "http://127.0.0.1:8080/fhir")


# -- authentication against a sekmet that demands it ---------------------------------------------
@pytest.mark.asyncio
async def test_without_credentials_the_secured_server_refuses(secured_fhir):
    async with FhirClient(FhirConfig(base_url=secured_fhir)) as fhir:
        with pytest.raises(FhirError, match="HTTP 401") as caught:
            await pt.by_ins(fhir, "248092A001234")
    assert caught.value.status == 401


@pytest.mark.asyncio
async def test_a_bearer_token_is_sent(secured_fhir):
    good = FhirConfig(base_url=secured_fhir, auth=BearerAuth(token=BEARER_TOKEN))
    async with FhirClient(good) as fhir:
        assert await pt.by_ins(fhir, "2" + unique_digits(12)) == []
    bad = FhirConfig(base_url=secured_fhir, auth=BearerAuth(token="pas-le-bon"))
    async with FhirClient(bad) as fhir:
        with pytest.raises(FhirError, match="HTTP 401"):
            await pt.by_ins(fhir, "2" + unique_digits(12))
    assert BEARER_TOKEN not in repr(good)  # a secret never shows in a repr or a log line


@pytest.mark.asyncio
async def test_oauth2_client_credentials_token_is_fetched_and_reused(secured_fhir):
    creds = ClientCredentials(token_url=token_url(secured_fhir), client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET, scope="system/Patient.read")
    async with FhirClient(FhirConfig(base_url=secured_fhir, auth=creds)) as fhir:
        tokens = []
        for _ in range(2):
            assert await pt.by_ins(fhir, "2" + unique_digits(12)) == []
            tokens.append(fhir._token)
    assert tokens[0] is not None and tokens[0] is tokens[1]  # one token, cached


@pytest.mark.asyncio
async def test_oauth2_refusals_are_reported(secured_fhir):
    wrong = ClientCredentials(token_url=token_url(secured_fhir), client_id=CLIENT_ID,
                              client_secret="mauvais-secret")
    async with FhirClient(FhirConfig(base_url=secured_fhir, auth=wrong)) as fhir:
        with pytest.raises(FhirError, match=r"token endpoint refused: HTTP 401: invalid_client"):
            await pt.by_ins(fhir, "248092A001234")
    narrow = ClientCredentials(token_url=token_url(secured_fhir), client_id=CLIENT_ID,
                               client_secret=CLIENT_SECRET, scope="system/Location.read")
    async with FhirClient(FhirConfig(base_url=secured_fhir, auth=narrow)) as fhir:
        with pytest.raises(FhirError, match="HTTP 403"):  # the token does not cover Patient
            await pt.by_ins(fhir, "248092A001234")


def test_a_token_is_renewed_before_it_expires():
    answer = httpx.Response(200, json={"access_token": "t", "token_type": "Bearer",
                                       "expires_in": 120}).content
    token = auth.read_token(200, answer, now=1000.0)
    assert token.usable(1000.0) and token.usable(1000.0 + 120 - auth.EARLY_RENEWAL - 1)
    assert not token.usable(1000.0 + 120 - auth.EARLY_RENEWAL)
    for body, message in ((b"<html>", "not an OAuth2 answer"),
                          (b'{"access_token": "t", "token_type": "mac"}', "not bearer"),
                          (b'{"access_token": "t", "token_type": "bearer", "expires_in": -1}',
                           "invalid expires_in")):
        with pytest.raises(FhirError, match=message):
            auth.read_token(200, body, now=0.0)


@pytest.mark.asyncio
async def test_patients_are_found_with_oauth2(secured_fhir):
    number = "2" + unique_digits(12)
    stored = patient(secured_fhir, ins=number, headers={"Authorization": f"Bearer {BEARER_TOKEN}"})
    creds = ClientCredentials(token_url=token_url(secured_fhir), client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET)
    async with FhirClient(FhirConfig(base_url=secured_fhir, auth=creds)) as fhir:
        assert [p.id for p in await pt.by_ins(fhir, number)] == [stored["id"]]
