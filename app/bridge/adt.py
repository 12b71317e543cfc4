"""ADT messages of the French IHE PAM profile, read from bytes into typed events (sans-I/O).

Only what a patient room needs is read: the patient's identities (PID-3: the INS and the local
IPP), name (PID-5), birth date (PID-7), the stay (PV1-19), where the patient lies (PV1-3) and
the attending physician's RPPS (PV1-7), plus, for a merge (A40), the identities that disappear
(MRG-1). A message that cannot be read raises ``Unreadable``, which the bridge answers with AR.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

import hl7
from pydantic import BaseModel, ConfigDict

from storage.rooms import PatientIdentifier

INS_OIDS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.10")  # INS-NIR, INS-NIR of test identities
RPPS_OID = "1.2.250.1.71.4.2.1"  # the national directory of health professionals (idNatPs)
_CHARSETS = {"": "utf-8", "UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii"}
_RPPS = re.compile(r"8?(\d{11})")  # an idNatPs is "8" + the 11-digit RPPS
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_SEPARATORS = re.compile(r"MSH([^\w\s])([^\w\s]{4})\1")  # MSH-1, MSH-2, then MSH-3


class Unreadable(Exception):
    """Not an ADT message this bridge can read; ``header`` is what could be read of MSH."""

    def __init__(
        self, reason: str, header: Header | None = None, *, unsupported: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.header = header
        self.unsupported = unsupported  # readable, but not a message type this bridge takes


class Trigger(StrEnum):
    ADMIT = "A01"
    TRANSFER = "A02"
    DISCHARGE = "A03"
    UPDATE = "A08"
    MERGE = "A40"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Header(_Model):
    """MSH: who sent the message, its control id (MSH-10) and how to answer it."""

    field_separator: str = "|"
    encoding_characters: str = "^~\\&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_type: str = ""  # MSH-9 as sent, e.g. "ADT^A01^ADT_A01"
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5"
    charset: str = ""  # MSH-18, "" meaning the default (here UTF-8)


class Patient(_Model):
    identifiers: tuple[PatientIdentifier, ...]  # the IPP first, then the INS if sent
    family_name: str
    given_names: tuple[str, ...] = ()
    birth_date: date | None = None


class Visit(_Model):
    encounter: PatientIdentifier | None = None  # PV1-19, the stay's number
    ward: str | None = None  # PV1-3.1 point of care
    bed: str | None = None  # PV1-3.2 room and PV1-3.3 bed, as the banner shows them
    attending_rpps: tuple[str, ...] = ()  # PV1-7 repetitions that carry an RPPS


class AdtEvent(_Model):
    header: Header
    trigger: Trigger
    patient: Patient
    visit: Visit
    merged: tuple[PatientIdentifier, ...] = ()  # A40: MRG-1, the identities merged away


def charset_of(raw: bytes) -> str:
    """The Python codec for MSH-18, read from the bytes (MSH itself is ASCII)."""
    first = raw.lstrip().split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not first.startswith(b"MSH") or len(first) < 4:
        raise Unreadable("the message does not start with an MSH segment")
    fields = first.split(first[3:4])
    declared = fields[17].decode("ascii", "replace").strip() if len(fields) > 17 else ""
    try:
        return _CHARSETS[declared.split("~")[0]]
    except KeyError:
        raise Unreadable(f"unsupported character set {declared!r} in MSH-18") from None


def parse(raw: bytes, *, ipp_system: str | None = None) -> AdtEvent:
    """The ADT event in ``raw`` (one message, without MLLP framing).

    ``ipp_system`` names the IPP's identifier system when PID-3 gives no assigning authority
    OID (it is then required).
    """
    try:
        text = raw.decode(charset_of(raw))
    except UnicodeDecodeError as e:
        raise Unreadable(f"the message is not valid in its declared character set: {e}") from None
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip()
    if not _SEPARATORS.match(text) or len(set(text[3:8])) != 5:
        raise Unreadable("MSH-1 and MSH-2 do not give five distinct separator characters")
    try:
        message = hl7.parse(text)
    except Exception as e:  # the hl7 parser raises bare errors on malformed separators
        raise Unreadable(f"not an HL7 v2 message: {e}") from None
    reader = _Reader(message)
    header = reader.header()
    if not header.control_id:
        raise Unreadable("MSH-10 (message control id) is empty", header)
    kind = header.message_type.split(reader.component)
    if kind[0] != "ADT" or len(kind) < 2 or kind[1] not in {t.value for t in Trigger}:
        raise Unreadable(
            f"unsupported message type {header.message_type!r}", header, unsupported=True
        )
    trigger = Trigger(kind[1])
    try:
        patient = reader.patient(ipp_system)
        visit = reader.visit(ipp_system)
        merged = reader.merged(ipp_system) if trigger is Trigger.MERGE else ()
    except Unreadable as e:
        raise Unreadable(e.reason, header) from None
    if trigger is not Trigger.UPDATE and trigger is not Trigger.MERGE and visit.ward is None:
        raise Unreadable("PV1-3 (assigned patient location) is empty", header)
    return AdtEvent(header=header, trigger=trigger, patient=patient, visit=visit, merged=merged)


class _Reader:
    """Fields of a parsed message, split into repetitions and components and unescaped."""

    def __init__(self, message: hl7.Message) -> None:
        self._message = message
        _, self.field_sep, self.repetition, self.component, self.subcomponent = message.separators

    def field(self, segment: str, number: int) -> str:
        """The raw (still escaped) text of a field; "" when absent (in MSH, item 1 is MSH-1,
        the field separator, as in the standard's numbering)."""
        try:
            found = self._message.segment(segment)
        except KeyError:
            return ""
        return str(found[number]) if number < len(found) else ""

    def repetitions(self, segment: str, number: int) -> list[list[list[str]]]:
        """Each repetition of a field, as components of unescaped subcomponents."""
        return [
            [
                [self._message.unescape(sub) for sub in component.split(self.subcomponent)]
                for component in repetition.split(self.component)
            ]
            for repetition in self.field(segment, number).split(self.repetition)
            if repetition
        ]

    def text(self, segment: str, number: int, component: int = 1) -> str:
        """One component of the first repetition, unescaped."""
        reps = self.repetitions(segment, number)
        return _component(reps[0], component) if reps else ""

    def header(self) -> Header:
        msh = self._message.segment("MSH")
        return Header(
            field_separator=self.field_sep,
            encoding_characters=str(msh[2]),
            sending_application=self.field("MSH", 3),
            sending_facility=self.field("MSH", 4),
            receiving_application=self.field("MSH", 5),
            receiving_facility=self.field("MSH", 6),
            message_type=self.field("MSH", 9),
            control_id=self.text("MSH", 10),
            processing_id=self.field("MSH", 11) or "P",
            version=self.field("MSH", 12) or "2.5",
            charset=self.text("MSH", 18),
        )

    def identifiers(self, segment: str, number: int, ipp_system: str | None) -> list[
        PatientIdentifier
    ]:
        """CX repetitions: the INS by its OID, any other as the local IPP (PI)."""
        ipp, ins = [], []
        for rep in self.repetitions(segment, number):
            value, authority = _component(rep, 1), _component_parts(rep, 4)
            oid = authority[1] if len(authority) > 1 else ""
            if not value:
                continue
            if oid in INS_OIDS:
                ins.append(PatientIdentifier(system=f"urn:oid:{oid}", value=value))
            elif oid or ipp_system:
                ipp.append(PatientIdentifier(system=f"urn:oid:{oid}" if oid else ipp_system or "",
                                             value=value))
            else:
                raise Unreadable(f"{segment}-{number}: identifier without an assigning authority "
                                 "OID (set ipp_system in the bridge configuration)")
        return ipp + ins

    def patient(self, ipp_system: str | None) -> Patient:
        identifiers = self.identifiers("PID", 3, ipp_system)
        if not identifiers:
            raise Unreadable("PID-3 (patient identifiers) is empty")
        names = self.repetitions("PID", 5)
        legal = next((n for n in names if _component(n, 7) == "L"), names[0] if names else [])
        family = _component(legal, 1)
        if not family:
            raise Unreadable("PID-5 (patient name) has no family name")
        given = tuple(g for g in (_component(legal, 2), *_component(legal, 3).split(" ")) if g)
        return Patient(identifiers=tuple(identifiers), family_name=family, given_names=given,
                       birth_date=_date(self.text("PID", 7), "PID-7"))

    def visit(self, ipp_system: str | None) -> Visit:
        location = self.repetitions("PV1", 3)
        place = location[0] if location else []
        bed = " ".join(p for p in (_component(place, 2), _component(place, 3)) if p)
        encounter = self.identifiers("PV1", 19, ipp_system)
        rpps = tuple(
            m.group(1)
            for rep in self.repetitions("PV1", 7)
            if (m := _RPPS.fullmatch(_component(rep, 1)))
            and (_component(rep, 13) in ("RPPS", "IDNPS") or RPPS_OID in _component_parts(rep, 9))
        )
        return Visit(encounter=encounter[0] if encounter else None,
                     ward=_component(place, 1) or None, bed=bed or None, attending_rpps=rpps)

    def merged(self, ipp_system: str | None) -> tuple[PatientIdentifier, ...]:
        merged = self.identifiers("MRG", 1, ipp_system)
        if not merged:
            raise Unreadable("MRG-1 (prior patient identifiers) is empty")
        return tuple(merged)


def _component(repetition: list[list[str]], number: int) -> str:
    return repetition[number - 1][0] if len(repetition) >= number else ""


def _component_parts(repetition: list[list[str]], number: int) -> list[str]:
    """A component's subcomponents (an HD: namespace, universal id, its type)."""
    return repetition[number - 1] if len(repetition) >= number else []


def _date(value: str, where: str) -> date | None:
    if not value:
        return None
    found = _DATE.match(value)
    try:
        if found:
            return date(*map(int, found.groups()))
    except ValueError:
        pass
    raise Unreadable(f"{where} is not a date (YYYYMMDD)")  # not quoted: it is patient data
