"""The ADT parser and ACK builder of liaison-bridge, on PAM-style messages (synthetic patients)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import hl7
import pytest

from app.bridge.ack import AckCode, ErrorCode, build_ack
from app.bridge.adt import Header, Trigger, Unreadable, parse
from storage.rooms import PatientIdentifier

IPP_OID, VISIT_OID = "1.2.250.1.999.1.1", "1.2.250.1.999.1.2"
INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"


def message(*segments: str) -> bytes:
    return "\r".join(segments).encode("utf-8") + b"\r"


ADMISSION = message(
    "MSH|^~\\&|SIH_CHU|CHU_EXEMPLE|LIAISON|CHU_EXEMPLE|20261128101500||ADT^A01^ADT_A01|"
    "MSG0001|P|2.5^FRA^2.10|||||FRA|UNICODE UTF-8",
    "EVN||20261128101500",
    f"PID|1||123456^^^CHU_EXEMPLE&{IPP_OID}&ISO^PI~248079912345678^^^"
    "ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||MARTIN^Hélène^^^^^D~"
    "LÉVÊQUE^Hélène^Marie Zoé^^^^L||19791224|F",
    "PV1|1|I|CARDIO^204^B^CHU_EXEMPLE||||810001234567^DURAND^Paul^^^^^^"
    "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^L^^^RPPS~99^AUTRE^Jean^^^^^^LOCAL&1.2.3&ISO^L^^^EI|"
    f"|||||||||||VN20260001^^^CHU_EXEMPLE&{VISIT_OID}&ISO^VN",
)


def test_an_admission_gives_the_patient_the_stay_and_the_attending_rpps():
    event = parse(ADMISSION)
    assert event.trigger is Trigger.ADMIT
    assert event.header.control_id == "MSG0001"
    assert event.header.sending_application == "SIH_CHU"
    assert event.patient.identifiers == (
        PatientIdentifier(system=f"urn:oid:{IPP_OID}", value="123456"),
        PatientIdentifier(system=INS_TEST, value="248079912345678"),
    )
    # the legal name (L), not the first repetition (D, the name in use)
    assert event.patient.family_name == "LÉVÊQUE"
    assert event.patient.given_names == ("Hélène", "Marie", "Zoé")
    assert event.patient.birth_date == date(1979, 12, 24)
    assert (event.visit.ward, event.visit.bed) == ("CARDIO", "204 B")
    assert event.visit.attending_rpps == ("10001234567",)  # idNatPs "8" + RPPS; EI ignored
    assert event.visit.encounter == PatientIdentifier(system=f"urn:oid:{VISIT_OID}",
                                                      value="VN20260001")


def test_latin1_messages_are_read_in_their_declared_charset():
    text = ADMISSION.decode("utf-8").replace("UNICODE UTF-8", "8859/1")
    event = parse(text.encode("latin-1"))
    assert event.patient.family_name == "LÉVÊQUE"
    assert event.header.charset == "8859/1"
    with pytest.raises(Unreadable, match="not valid"):
        parse(text.replace("8859/1", "UNICODE UTF-8").encode("latin-1"))


def test_escapes_repetitions_and_line_feeds_are_undone():
    raw = message(
        "MSH|^~\\&|SIH|CHU|||20261128||ADT^A08^ADT_A01|MSG-E|P|2.5",
        "PID|1||77^^^H&1.2.3&ISO^PI||O\\F\\NEIL\\S\\DUPRÉ^Anne\\T\\Lise^^^^^L||20000229",
        "PV1|1|I|",
    ).replace(b"\r", b"\r\n")
    event = parse(raw)
    assert event.trigger is Trigger.UPDATE
    assert event.patient.family_name == "O|NEIL^DUPRÉ"
    assert event.patient.given_names == ("Anne&Lise",)
    assert event.visit.ward is None and event.visit.attending_rpps == ()


def test_a_merge_reads_the_identities_merged_away():
    raw = message(
        "MSH|^~\\&|SIH|CHU|||20261128||ADT^A40^ADT_A39|MSG-M|P|2.5",
        f"PID|1||900^^^H&{IPP_OID}&ISO^PI||NOUVEAU^Jeanne^^^^^L||19500101",
        f"MRG|901^^^H&{IPP_OID}&ISO^PI~902^^^H&{IPP_OID}&ISO^PI",
    )
    event = parse(raw)
    assert event.trigger is Trigger.MERGE
    assert [i.value for i in event.merged] == ["901", "902"]


@pytest.mark.parametrize(("raw", "reason", "has_header", "unsupported"), [
    (b"hello", "MSH", False, False),
    (b"MSH|this is not ADT\r", "separator", False, False),
    (b"MSH|^~\\^|SIH\r", "separator", False, False),
    (message("MSH|^~\\&|SIH|CHU|||20261128||ADT^A01|", "PID|1||1^^^H&1.2&ISO"),
     "MSH-10", True, False),
    (message("MSH|^~\\&|SIH|CHU|||20261128||ORU^R01|M1|P|2.5"), "unsupported", True, True),
    (message("MSH|^~\\&|SIH|CHU|||20261128||ADT^A01|M2|P|2.5", "PV1|1|I|CARDIO"),
     "PID-3", True, False),
    (message("MSH|^~\\&|SIH|CHU|||20261128||ADT^A01|M3|P|2.5",
             "PID|1||1^^^H&1.2&ISO^PI||X^Y^^^^^L||1979-13-45", "PV1|1|I|CARDIO"),
     "PID-7", True, False),
    (message("MSH|^~\\&|SIH|CHU|||20261128||ADT^A01|M4|P|2.5",
             "PID|1||1^^^H&1.2&ISO^PI||X^Y^^^^^L", "PV1|1|I|"), "PV1-3", True, False),
    (message("MSH|^~\\&|SIH|CHU|||20261128||ADT^A01|M5|P|2.5|||||FRA|EBCDIC"),
     "character set", False, False),
])
def test_unreadable_messages_say_why(raw, reason, has_header, unsupported):
    with pytest.raises(Unreadable, match=reason) as caught:
        parse(raw)
    assert (caught.value.header is not None) == has_header
    assert caught.value.unsupported == unsupported


def test_an_ipp_without_an_oid_takes_the_configured_system():
    raw = message("MSH|^~\\&|SIH|CHU|||20261128||ADT^A08|M6|P|2.5",
                  "PID|1||42^^^CHU^PI||X^Y^^^^^L")
    with pytest.raises(Unreadable, match="ipp_system"):
        parse(raw)
    event = parse(raw, ipp_system="urn:oid:1.2.250.1.999.9")
    assert event.patient.identifiers == (PatientIdentifier(system="urn:oid:1.2.250.1.999.9",
                                                           value="42"),)


def test_acks_answer_the_sender_with_the_control_id_and_the_reason():
    header = parse(ADMISSION).header
    now = datetime(2026, 11, 28, 10, 16, 0, tzinfo=UTC)
    applied = hl7.parse(build_ack(header, AckCode.APPLIED, control_id="A1", now=now).decode())
    msh = applied.segment("MSH")
    assert [str(msh[i]) for i in (3, 4, 5, 6, 9, 10)] == [
        "LIAISON", "CHU_EXEMPLE", "SIH_CHU", "CHU_EXEMPLE", "ACK^A01^ACK", "A1"]
    assert str(msh[7]) == "20261128101600"
    assert [str(f) for f in applied.segment("MSA")[1:3]] == ["AA", "MSG0001"]

    reason = "PV1-7: no user with RPPS 10001234567 | ^ & ~ \\"
    raw = build_ack(header, AckCode.ERROR, control_id="A2", now=now, text=reason,
                    error=ErrorCode.UNKNOWN_KEY_IDENTIFIER)
    error = hl7.parse(raw.decode())
    assert str(error.segment("MSA")[1]) == "AE"
    assert error.unescape(str(error.segment("MSA")[3])) == reason
    err = error.segment("ERR")
    assert str(err[3]).split("^")[0] == "204" and str(err[4]) == "E"
    assert error.unescape(str(err[8])) == reason


def test_a_message_without_a_readable_header_still_gets_an_ar():
    raw = build_ack(Header(receiving_application="LIAISON"), AckCode.REJECTED, control_id="A3",
                    now=datetime(2026, 1, 1, tzinfo=UTC), text="not HL7",
                    error=ErrorCode.DATA_TYPE_ERROR)
    ack = hl7.parse(raw.decode())
    assert [str(f) for f in ack.segment("MSA")[1:4]] == ["AR", "", "not HL7"]
    assert str(ack.segment("MSH")[3]) == "LIAISON"
