"""liaison-bridge end to end: ADT messages over real MLLP sockets, applied by the bridge's own
engine against the real relay, seen by the staff's engines; then the relay's files scanned for
the (synthetic) patients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.bridge import mllp
from app.bridge.config import BridgeConfig, Ward
from app.bridge.ledger import Ledger
from app.bridge.service import Bridge
from app.client.engine import Engine, EngineError
from app.client.events import RoomChanged
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.bridge_support import INS_TEST_OID, IPP_OID, Patient, Sender, adt
from tests.engine_support import Watched, until
from tests.relay_harness import RelayProcess

RPPS = "10001234567"
LEVEQUE = Patient(ipp="830044172", ins="279129912345678", family="LÉVÊQUE", given="Hélène",
                  birth="19791224")
OBRIEN = Patient(ipp="830055283", ins="182037512345611", family="O'BRIAN", given="Gaël",
                 birth="19820307")


@dataclass
class Feed:
    """The bridge's enrolled, online engine and ledger; ``serve`` puts the bridge on MLLP."""

    relay: RelayProcess
    engine: Engine
    ledger: Ledger
    custody: MemoryCustody
    tmp: Path

    async def staff(self, name: str, profession: str = "nurse", *extra: str) -> Watched:
        user_id = self.relay.add_user(name, profession, *extra)
        engine = await Engine.enroll(self.tmp / name, self.relay.url, self.relay.invite(user_id),
                                     self.custody)
        await engine.start()
        return Watched(engine)


@contextlib.asynccontextmanager
async def enrolled_bridge(relay: RelayProcess, tmp: Path) -> AsyncIterator[Feed]:
    custody = MemoryCustody()
    user_id = relay.add_user("Passerelle ADT", "integration")
    engine = await Engine.enroll(tmp / "bridge", relay.url, relay.invite(user_id), custody)
    await engine.start()
    ledger = Ledger.open(tmp / "bridge", custody, engine.device_id)
    try:
        yield Feed(relay, engine, ledger, custody, tmp)
    finally:
        await engine.stop()
        ledger.close()


@contextlib.asynccontextmanager
async def serving(feed: Feed, wards: dict[str, Ward]) -> AsyncIterator[tuple[Bridge, Sender]]:
    """The bridge listening on a free port, and the hospital's ADT system connected to it."""
    bridge = Bridge(feed.engine, feed.ledger, BridgeConfig(wards=wards))

    async def answer(message: bytes) -> bytes:
        return (await bridge.handle(message)).ack

    server = await mllp.serve(answer, "127.0.0.1", 0)
    try:
        async with Sender(server.sockets[0].getsockname()[1]) as hospital:
            yield bridge, hospital
    finally:
        server.close()
        await server.wait_closed()
        await bridge.aclose()


async def patient_room(watched: Watched) -> str:
    while True:
        event = await watched.next(RoomChanged)
        if event.room.kind is RoomKind.PATIENT:
            return event.room.id


def users_in(watched: Watched, room_id: str) -> set[str]:
    return {m.user_id for m in watched.engine.members(room_id)}


@pytest.mark.asyncio
async def test_admission_transfer_and_discharge_reach_the_staff(relay, tmp_path):
    async with enrolled_bridge(relay, tmp_path) as feed:
        physician = await feed.staff("Paul Durand", "physician", "--rpps", RPPS)
        cardio = await feed.staff("Claire Cardio")
        neuro = await feed.staff("Nina Neuro")
        staff = [physician, cardio, neuro]
        # the cardiology ward's team is its service room, which the bridge's account belongs to
        service = await cardio.engine.create_room(RoomKind.SERVICE, "Cardiologie",
                                                  [feed.engine.user_id])
        await until(lambda: service in {r.id for r in feed.engine.rooms()})
        wards = {"CARDIO": Ward(service_room=service),
                 "NEURO": Ward(users=(neuro.engine.user_id,))}
        try:
            async with serving(feed, wards) as (_, hospital):
                admit = adt("A01", "ADM-1", LEVEQUE, ward="CARDIO", room="204", bed="B",
                            rpps=RPPS, visit="VN-2026-01")
                assert await hospital.send(admit) == ("AA", "")
                room_id = await patient_room(physician)
                assert await patient_room(cardio) == room_id
                await until(lambda: len(users_in(physician, room_id)) == 3)
                assert users_in(physician, room_id) == {
                    feed.engine.user_id, physician.engine.user_id, cardio.engine.user_id}
                banner = physician.engine.room_state(room_id).patient
                assert banner is not None and banner.birth_date is not None
                assert (banner.family_name, banner.given_names, banner.birth_date.isoformat()) \
                    == ("LÉVÊQUE", ("Hélène",), "1979-12-24")
                assert {(i.system, i.value) for i in banner.identifiers} == {
                    (f"urn:oid:{INS_TEST_OID}", LEVEQUE.ins),
                    (f"urn:oid:{IPP_OID}", LEVEQUE.ipp)}
                assert (banner.ward, banner.bed) == ("CARDIO", "204 B")
                assert banner.encounter is not None and "VN-2026-01" in banner.encounter
                assert physician.engine.room_state(room_id).name == "LÉVÊQUE Hélène"

                # the same message again (the sender missed our ACK): no second room
                assert await hospital.send(admit) == ("AA", "already applied")
                assert [r.id for r in feed.engine.rooms() if r.kind is RoomKind.PATIENT] \
                    == [room_id]

                transfer = adt("A02", "TRF-1", LEVEQUE, ward="NEURO", room="310", bed="A",
                               visit="VN-2026-01")
                assert await hospital.send(transfer) == ("AA", "")
                assert await patient_room(neuro) == room_id
                await until(lambda: ward_of(physician, room_id) == "NEURO")
                assert physician.engine.room_state(room_id).patient.bed == "310 A"
                assert ward_of(neuro, room_id) == "NEURO"
                # cardiology's team left the room; the physician, not a ward's, stays
                await until(lambda: users_in(physician, room_id) == {
                    feed.engine.user_id, physician.engine.user_id, neuro.engine.user_id})

                await physician.engine.send_text(room_id, "Patiente installée en neuro")
                await until(lambda: any(m.body == "Patiente installée en neuro"
                                        for m in neuro.engine.messages(room_id)))
                assert not any(m.body == "Patiente installée en neuro"
                               for m in cardio.engine.messages(room_id))
                discharge = adt("A03", "DIS-1", LEVEQUE, ward="NEURO", visit="VN-2026-01")
                assert await hospital.send(discharge) == ("AA", "")
                await until(lambda: physician.engine.room_state(room_id).archived)
                with pytest.raises(EngineError, match="archived"):
                    await physician.engine.send_text(room_id, "Encore un mot")
                await until(lambda: neuro.engine.room_state(room_id).archived)
        finally:
            for watched in staff:
                await watched.engine.stop()


@pytest.mark.asyncio
async def test_unapplied_messages_are_answered_kept_and_replayed(relay, tmp_path):
    newcomer_rpps = "10009999999"
    async with enrolled_bridge(relay, tmp_path) as feed:
        physician = await feed.staff("Paul Durand", "physician", "--rpps", RPPS)
        staff = [physician]
        wards = {"CARDIO": Ward(users=(physician.engine.user_id,))}
        try:
            async with serving(feed, wards) as (bridge, hospital):
                code, why = await hospital.send(b"MSH|this is not an ADT message\r")
                assert code == "AR" and "MSH-2" in why

                renamed = Patient(OBRIEN.ipp, OBRIEN.ins, "O'BRIAN-MARTIN", OBRIEN.given,
                                  OBRIEN.birth)
                update = adt("A08", "UPD-1", renamed)
                code, why = await hospital.send(update)
                assert code == "AE" and "no patient room" in why

                admit = adt("A01", "ADM-2", OBRIEN, ward="CARDIO", rpps=newcomer_rpps,
                            visit="VN-2026-02")
                code, why = await hospital.send(admit)
                assert code == "AE" and newcomer_rpps in why
                unknown_ward = adt("A01", "ADM-3", LEVEQUE, ward="PEDIA", visit="VN-2026-03")
                code, why = await hospital.send(unknown_ward)
                assert code == "AE" and "PEDIA" in why

                letters = bridge.dead_letters()
                assert [(d.code, d.control_id) for d in letters] == [
                    ("AR", None), ("AE", "UPD-1"), ("AE", "ADM-2"), ("AE", "ADM-3")]
                assert letters[1].message == update  # kept whole, to be replayed as it came
                assert not [r for r in feed.engine.rooms() if r.kind is RoomKind.PATIENT]

                # the cause fixed (the physician joins the directory), the admission replays
                newcomer = await feed.staff("Zoé Nouvelle", "physician", "--rpps", newcomer_rpps)
                staff.append(newcomer)
                assert (await bridge.replay(letters[2].id)).code.value == "AA"
                room_id = await patient_room(newcomer)
                assert await patient_room(physician) == room_id
                assert (await bridge.replay(letters[1].id)).code.value == "AA"
                await until(lambda: family_of(newcomer, room_id) == "O'BRIAN-MARTIN")
                assert [(d.code, d.control_id) for d in bridge.dead_letters()] == [
                    ("AR", None), ("AE", "ADM-3")]
                again = await bridge.replay(letters[3].id)  # the ward is still unknown
                assert (again.code.value, again.dead_letter) == ("AE", letters[3].id)

                # a merge moves the room to the surviving identity
                survivor = Patient("830099999", OBRIEN.ins, "O'BRIAN", OBRIEN.given,
                                   OBRIEN.birth)
                merge = adt("A40", "MRG-1", survivor, merged_ipp=OBRIEN.ipp)
                assert await hospital.send(merge) == ("AA", "")
                await until(lambda: family_of(newcomer, room_id) == "O'BRIAN")
                context = newcomer.engine.room_state(room_id).patient
                assert context is not None
                assert "830099999" in {i.value for i in context.identifiers}
        finally:
            for watched in staff:
                await watched.engine.stop()
    relay.stop()  # the WAL folded into the database: both scanned
    markers = [value for p in (LEVEQUE, OBRIEN) for value in (
        p.family, p.ins, p.ipp, p.birth, f"{p.birth[:4]}-{p.birth[4:6]}-{p.birth[6:]}")]
    markers += ["O'BRIAN-MARTIN", "830099999", "Hélène", "Gaël"]
    assert (relay.data / "relay.db").exists() and (relay.data / "logs").is_dir()
    assert scan(relay.data, markers) == []
    assert scan(tmp_path / "bridge", markers) == []  # the bridge's ledger and cache: encrypted


def ward_of(watched: Watched, room_id: str) -> str | None:
    patient = watched.engine.room_state(room_id).patient
    return None if patient is None else patient.ward


def family_of(watched: Watched, room_id: str) -> str | None:
    patient = watched.engine.room_state(room_id).patient
    return None if patient is None else patient.family_name


def scan(root: Path, markers: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}: {m}" for m in markers
                     if any(form in data for form in (m.encode(), m.encode("utf-16-le"),
                                                      m.encode("latin-1", "ignore")))]
    return hits
