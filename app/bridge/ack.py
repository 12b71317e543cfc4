"""HL7 v2 acknowledgements (original mode): the answer to every message, built sans-I/O.

MSA-1 says what became of the message: AA applied, AE understood but not applied (the reason
in MSA-3 and ERR), AR not understood. The sender's ADT system retries or alerts on anything
but AA, so the explanation is written for the person who will read its error queue.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum

from app.bridge.adt import Header

_CODECS = {"8859/1": "latin-1", "ASCII": "ascii"}  # anything else is answered in UTF-8


class AckCode(StrEnum):
    APPLIED = "AA"
    ERROR = "AE"
    REJECTED = "AR"


class ErrorCode(IntEnum):
    """HL7 table 0357, the few this bridge uses."""

    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNKNOWN_KEY_IDENTIFIER = 204
    APPLICATION_INTERNAL_ERROR = 207


def escape(text: str, header: Header) -> str:
    """``text`` as an HL7 field value: separators and the escape character escaped."""
    esc = header.encoding_characters[2:3] or "\\"
    component, repetition = header.encoding_characters[0:1], header.encoding_characters[1:2]
    subcomponent = header.encoding_characters[3:4]
    out = text.replace(esc, f"{esc}E{esc}")
    for char, code in ((header.field_separator, "F"), (component, "S"), (repetition, "R"),
                       (subcomponent, "T")):
        if char:
            out = out.replace(char, f"{esc}{code}{esc}")
    return out.replace("\r", " ").replace("\n", " ")


def build_ack(
    header: Header,
    code: AckCode,
    *,
    control_id: str,
    now: datetime,
    text: str = "",
    error: ErrorCode | None = None,
) -> bytes:
    """The ACK to a message whose MSH is ``header`` (``Header()`` when not even MSH could be
    read); ``control_id`` is the ACK's own MSH-10."""
    sep, comp = header.field_separator, header.encoding_characters[0:1] or "^"
    trigger = header.message_type.split(comp)
    event = trigger[1] if len(trigger) > 1 else ""
    msh = sep.join([
        "MSH", header.encoding_characters, header.receiving_application,
        header.receiving_facility, header.sending_application, header.sending_facility,
        now.strftime("%Y%m%d%H%M%S"), "",
        comp.join(("ACK", event, "ACK")) if event else "ACK", control_id, header.processing_id,
        header.version, "", "", "", "", "", header.charset,
    ]).rstrip(sep)
    reason = escape(text, header)
    msa = sep.join(["MSA", code.value, escape(header.control_id, header), reason]).rstrip(sep)
    segments = [msh, msa]
    if error is not None:
        error_code = comp.join((str(error.value), _error_name(error), "HL70357"))
        segments.append(sep.join(["ERR", "", "", error_code, "E", "", "", "", reason]))
    return ("\r".join(segments) + "\r").encode(_CODECS.get(header.charset, "utf-8"), "replace")


def _error_name(error: ErrorCode) -> str:
    return error.name.replace("_", " ").capitalize()
