"""Helpers for the liaison-bridge tests: synthetic ADT messages and an MLLP sender."""

from __future__ import annotations

from dataclasses import dataclass

import hl7
from hl7.mllp import open_hl7_connection

IPP_OID, VISIT_OID = "1.2.250.1.999.1.1", "1.2.250.1.999.1.2"
INS_TEST_OID = "1.2.250.1.213.1.4.10"  # the INS of test identities: synthetic patients only
_STRUCTURE = {"A01": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03", "A08": "ADT_A01",
              "A40": "ADT_A39"}


@dataclass(frozen=True)
class Patient:
    ipp: str
    ins: str
    family: str
    given: str
    birth: str  # YYYYMMDD


def adt(trigger: str, control_id: str, patient: Patient, *, ward: str = "", room: str = "",
        bed: str = "", rpps: str = "", visit: str = "", merged_ipp: str = "") -> bytes:
    """A PAM-style ADT message (UTF-8) about a synthetic patient."""
    segments = [
        f"MSH|^~\\&|SIH_TEST|CHU_TEST|LIAISON|CHU_TEST|20261128101500||"
        f"ADT^{trigger}^{_STRUCTURE[trigger]}|{control_id}|P|2.5^FRA^2.10|||||FRA|UNICODE UTF-8",
        "EVN||20261128101500",
        f"PID|1||{patient.ipp}^^^CHU_TEST&{IPP_OID}&ISO^PI~{patient.ins}^^^"
        f"ASIP-SANTE-INS-NIR&{INS_TEST_OID}&ISO^INS||{patient.family}^{patient.given}^^^^^L||"
        f"{patient.birth}|F",
    ]
    if merged_ipp:
        segments.append(f"MRG|{merged_ipp}^^^CHU_TEST&{IPP_OID}&ISO^PI")
    attending = (f"8{rpps}^NOM^Prenom^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^L^^^RPPS"
                 if rpps else "")
    number = f"{visit}^^^CHU_TEST&{VISIT_OID}&ISO^VN" if visit else ""
    segments.append(f"PV1|1|I|{ward}^{room}^{bed}^CHU_TEST||||{attending}||||||||||||"
                    f"{number}" if ward or visit else "PV1|1|I")
    return ("\r".join(segments) + "\r").encode("utf-8")


class Sender:
    """The hospital's ADT system: one MLLP connection, a message at a time."""

    def __init__(self, port: int) -> None:
        self._port = port

    async def __aenter__(self) -> Sender:
        self._reader, self._writer = await open_hl7_connection("127.0.0.1", self._port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    async def send(self, message: bytes) -> tuple[str, str]:
        """MSA-1 and MSA-3 (unescaped) of the ACK the bridge answers with."""
        self._writer.writeblock(message)
        await self._writer.drain()
        ack = hl7.parse((await self._reader.readblock()).decode("utf-8"))
        msa = ack.segment("MSA")
        text = str(msa[3]) if len(msa) > 3 else ""
        return str(msa[1]), ack.unescape(text)
