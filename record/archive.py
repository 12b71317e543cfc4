"""Archiving a patient room's exchange to the record, without I/O: what is archived in, one
FHIR transaction Bundle out, and the server's transaction-response read back.

The Bundle holds a DocumentReference (the transcript as a PDF), a Binary per shared document
and a Communication carrying the exchange. Each is a conditional create keyed on an identifier
derived from the room and the archived messages, so a retried export is stored once.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from record import pdf
from record.config import INS_SYSTEMS
from record.errors import FhirError
from storage.rooms import PatientContext

EXPORT_SYSTEM = "urn:liaison:export"  # identifier system of everything Liaison archives
LOINC = "http://loinc.org"
NOTE_TYPE = ("11506-3", "Progress note")  # a dated account of the team's exchanges in a stay
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Author(_Frozen):
    """The exporting practitioner: a Practitioner of the record when found by RPPS."""

    display: str = Field(min_length=1)
    rpps: str | None = None
    practitioner: str | None = None  # "Practitioner/{id}", once looked up


class ArchivedDocument(_Frozen):
    name: str
    media_type: str
    data: bytes


class ArchivedMessage(_Frozen):
    """One message of the exchange, as the transcript shows it."""

    ref: str  # "{sender device}/{client id}": names the message across devices
    sender: str  # the sender's display name
    sent: datetime  # timezone-aware
    text: str | None = None
    document: ArchivedDocument | None = None


class Export(_Frozen):
    room_id: str
    room_name: str
    patient: PatientContext
    author: Author
    at: datetime  # timezone-aware: when the export was made
    messages: tuple[ArchivedMessage, ...] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _in_order_sent(cls, value: tuple[ArchivedMessage, ...]) -> tuple[ArchivedMessage, ...]:
        """Chronological whatever order they were picked in: the transcript reads so, and each
        document's identifier (its position) is the same on a retry."""
        return tuple(sorted(value, key=lambda m: (m.sent, m.ref)))


class ArchiveReceipt(_Frozen):
    """What the record holds for an export; ``created`` is False when a retry found it there."""

    identifier: str  # the export's value in EXPORT_SYSTEM
    document_reference: str  # "DocumentReference/{id}"
    communication: str
    binaries: tuple[str, ...]
    created: bool


def export_identifier(room_id: str, message_refs: Sequence[str]) -> str:
    """Stable across retries, whatever the order messages were picked in; reveals nothing of
    the room or messages to the record (a hash)."""
    digest = hashlib.sha256("\n".join([room_id, *sorted(message_refs)]).encode())
    return digest.hexdigest()


def patient_reference(patient: PatientContext) -> dict[str, str]:
    """A conditional reference to the Patient by INS (else the first identifier): the room
    keeps identifiers, not the server's id, and the server resolves it inside the transaction."""
    ids = sorted(patient.identifiers, key=lambda i: i.system not in INS_SYSTEMS)
    if not ids:
        raise FhirError("the room's patient has no identifier to find them in the record by")
    return {"reference": f"Patient?identifier={ids[0].system}|{ids[0].value}",
            "display": patient_name(patient)}


def patient_name(patient: PatientContext) -> str:
    return " ".join([patient.family_name.upper(), *patient.given_names])


def author_reference(author: Author) -> dict[str, Any]:
    if author.practitioner:
        return {"reference": author.practitioner, "display": author.display}
    if author.rpps:
        return {"identifier": {"system": RPPS_SYSTEM, "value": author.rpps},
                "display": author.display}
    return {"display": author.display}


def transcript(export: Export) -> list[str]:
    """The lines of the PDF: a header naming patient, stay and exporter, then the messages."""
    p = export.patient
    header = [
        f"Liaison — {export.room_name}",
        f"Patient : {patient_name(p)}"
        + (f", né(e) le {p.birth_date.strftime('%d/%m/%Y')}" if p.birth_date else ""),
        *(f"{i.system} : {i.value}" for i in p.identifiers),
        *([f"Séjour : {p.encounter}"] if p.encounter else []),
        *([f"Lieu : {', '.join(x for x in (p.ward, p.bed) if x)}"] if p.ward or p.bed else []),
        f"Exporté par {export.author.display} le {_local(export.at)}",
        "",
    ]
    lines = []
    for m in export.messages:
        what = m.text or ""
        if m.document is not None:
            what = f"[document : {m.document.name}, {len(m.document.data)} octets] {what}"
        lines.append(f"{_local(m.sent)}  {m.sender} : {what.strip()}")
    return header + lines


def _local(at: datetime) -> str:
    return at.strftime("%d/%m/%Y %H:%M %Z").strip()


def transaction(export: Export) -> dict[str, Any]:
    """The transaction Bundle archiving ``export``, validated with the R4B models."""
    key = export_identifier(export.room_id, [m.ref for m in export.messages])
    identifier = [{"system": EXPORT_SYSTEM, "value": key}]
    subject = patient_reference(export.patient)
    encounter = {"reference": export.patient.encounter} if export.patient.encounter else None
    author = author_reference(export.author)
    document_url, communication_url = f"urn:uuid:{_uuid(key, 'd')}", f"urn:uuid:{_uuid(key, 'c')}"
    document_reference = {
        "resourceType": "DocumentReference", "status": "current", "identifier": identifier,
        "type": {"coding": [{"system": LOINC, "code": NOTE_TYPE[0], "display": NOTE_TYPE[1]}]},
        "subject": subject, "date": export.at.isoformat(), "author": [author],
        "description": f"Échanges Liaison : {export.room_name}",
        "content": [{"attachment": {
            "contentType": "application/pdf", "language": "fr",
            "data": _b64(pdf.document(transcript(export), export.room_name)),
            "title": f"Liaison {export.room_name}.pdf", "creation": export.at.isoformat()}}],
        **({"context": {"encounter": [encounter]}} if encounter else {}),
    }
    entries = [_create(document_url, document_reference, f"identifier={EXPORT_SYSTEM}|{key}")]
    payload: list[dict[str, Any]] = []
    for n, m in enumerate(export.messages):
        line = f"{m.sender} ({m.sent.isoformat()}) : {m.text or ''}".strip()
        if m.document is None:
            payload.append({"contentString": line})
            continue
        tag = f"{key}.{n}"
        binary_url = f"urn:uuid:{_uuid(tag, 'b')}"
        entries.append(_create(binary_url, {
            "resourceType": "Binary", "contentType": m.document.media_type,
            "meta": {"tag": [{"system": EXPORT_SYSTEM, "code": tag}]},
            "securityContext": {"reference": document_url},
            "data": _b64(m.document.data)}, f"_tag={EXPORT_SYSTEM}|{tag}"))
        payload += [{"contentString": f"{line} [{m.document.name}]"},
                    {"contentReference": {"reference": binary_url, "display": m.document.name}}]
    entries.append(_create(communication_url, {
        "resourceType": "Communication", "status": "completed", "identifier": identifier,
        "subject": subject, **({"encounter": encounter} if encounter else {}),
        "sent": max(m.sent for m in export.messages).isoformat(), "sender": author,
        "topic": {"text": export.room_name}, "payload": payload},
        f"identifier={EXPORT_SYSTEM}|{key}"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    _validate(bundle)
    return bundle


def _create(full_url: str, resource: dict[str, Any], if_none_exist: str) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": if_none_exist}}


def _uuid(key: str, kind: str) -> str:
    h = hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _validate(bundle: dict[str, Any]) -> None:
    """Refuse, before sending, a Bundle the record would: a bug here, not the user's input."""
    from fhir.resources.R4B.bundle import Bundle  # here: the engine imports this module

    try:
        Bundle.model_validate(bundle)
    except ValidationError as e:
        first = e.errors()[0]
        raise FhirError(f"the archive is not valid FHIR: {'.'.join(map(str, first['loc']))}: "
                        f"{first['msg']}") from None


def receipt(bundle: dict[str, Any], answer: dict[str, Any]) -> ArchiveReceipt:
    """What the transaction-response to ``bundle`` says was stored (answers come in the order
    of the request's entries)."""
    answers = answer.get("entry") or []
    if answer.get("type") != "transaction-response" or len(answers) != len(bundle["entry"]):
        raise FhirError("the record's answer to the archive is not its transaction-response")
    stored, created = [], []
    for asked, got in zip(bundle["entry"], answers, strict=True):
        response = got.get("response") or {}
        kind = asked["resource"]["resourceType"]
        location = str(response.get("location") or "").split("/_history")[0].split("/")
        if len(location) < 2 or location[-2] != kind:
            raise FhirError(f"the record did not say where it stored the {kind}")
        stored.append(f"{kind}/{location[-1]}")
        created.append(str(response.get("status", "")).startswith("201"))
    key = bundle["entry"][0]["resource"]["identifier"][0]["value"]
    return ArchiveReceipt(identifier=key, document_reference=stored[0], communication=stored[-1],
                          binaries=tuple(stored[1:-1]), created=any(created))
