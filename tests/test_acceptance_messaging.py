"""Issue 5's acceptance scenario, end to end: the real relay process, real engines, real
SQLCipher profiles, and a network that fails.

Three users: Alice (a phone from the start, a second one linked at the end, which receives
the history), Bob (a phone, and a second one linked before any room exists, later revoked),
Carol (one phone, taken offline, later removed from a room). A group room and a patient room;
text, urgent with acknowledgement, receipts; a 20 MB document through a proxy that cuts the
upload; 100 messages to an offline device; a relay SIGKILLed in the middle of a burst. After
it all, no marker of the scenario is in clear in the relay's data or any device's profile.

Each phase is a function of its own, so that a failure's traceback names the phase.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path

import pytest

from app.client.engine import Engine, EngineError, _devices
from app.client.events import DeviceRevoked, Event, ReceiptReceived, RoomChanged
from relay import totp
from storage.custody import MemoryCustody
from storage.messages import MessageKind, MessageRef
from storage.rooms import PatientContext, PatientIdentifier, RoomKind
from storage.status import MessageStatus
from tests.engine_support import Watched, group_of, until
from tests.relay_harness import RelayProcess, running_relay
from tests.tcp_proxy import TcpProxy

MB = 1024 * 1024
BURST = 100  # messages to an offline device, and per sender around the relay's crash
INS_OID = "urn:oid:1.2.250.1.213.1.4.10"  # the INS test OID: a synthetic patient
TOKEN = secrets.token_hex(6).upper()  # in every marker but the INS: new at every run


@dataclass(frozen=True)
class Markers:
    """Everything the scenario writes that the relay must never see, nor a profile hold in
    clear."""

    text: str = f"Kaliemie 6,8 ACCTEXT{TOKEN}"
    urgent: str = f"Lit 12 desature ACCURGENT{TOKEN}"
    caption: str = f"Scanner thoracique ACCCAPTION{TOKEN}"
    document: str = f"ACCDOCUMENT{TOKEN}"
    file_name: str = f"scanner-ACCFILE{TOKEN}.pdf"
    group_room: str = f"Bloc operatoire ACCGROUP{TOKEN}"
    patient_room: str = f"Chambre 12 ACCPATIENT{TOKEN}"
    family_name: str = f"DURANDACC{TOKEN}"
    given_name: str = f"Josephine{TOKEN}"
    ins: str = f"2{secrets.randbelow(10**12):012d}"  # 13 digits like an INS, made up

    def all(self) -> tuple[str, ...]:
        return astuple(self)


M = Markers()


@dataclass
class Cast:
    """The scenario's devices (Watched engines) and where they keep their profiles."""

    relay: RelayProcess
    proxy: TcpProxy
    tmp: Path
    custody: MemoryCustody = field(default_factory=MemoryCustody)
    devices: dict[str, Watched] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)

    def __getitem__(self, name: str) -> Engine:
        return self.devices[name].engine

    def profile(self, name: str) -> Path:
        return self.tmp / "profiles" / name

    def names(self) -> dict[str, str]:
        return {w.engine.device_id: name for name, w in self.devices.items()}

    def running(self) -> list[Engine]:
        return [w.engine for name, w in self.devices.items() if name not in self.stopped]

    async def enroll(self, name: str, url: str) -> None:
        user_id = self.relay.add_user(name.capitalize())
        engine = await Engine.enroll(self.profile(name), url, self.relay.invite(user_id),
                                     self.custody)
        await engine.start()
        self.devices[name] = Watched(engine)

    async def link(self, name: str, approver: str) -> int:
        """A new device of the approver's user, linked and started, once the approver added
        it to its rooms; returns how many messages of the history it imported."""
        request = await Engine.link(self.profile(name), self.relay.url, self.custody,
                                    device_name=name)
        engine, _ = await asyncio.gather(
            request.complete(timeout=60),
            self[approver].approve_link(request.code, _totp(self[approver]), timeout=60))
        await engine.start()
        self.devices[name] = Watched(engine)
        imported = await engine.receive_history(request, timeout=30)
        assert await engine.receive_history(request, timeout=30) == 0  # exactly once
        return imported

    async def stop(self, name: str) -> None:
        self.stopped.add(name)
        await self[name].stop()

    async def reopen(self, name: str) -> None:
        engine = Engine.open(self.profile(name), self.custody)
        await engine.start()
        self.devices[name] = Watched(engine)
        self.stopped.discard(name)


def _totp(engine: Engine) -> str:
    assert engine.totp_uri is not None
    return totp.code_at(totp.b32_secret(engine.totp_uri), int(time.time() // totp.STEP))


def _refs(engine: Engine, room_id: str) -> list[MessageRef]:
    return [m.ref for m in engine.messages(room_id, limit=100_000)]


def _bodies(engine: Engine, room_id: str) -> list[str | None]:
    return [m.body for m in engine.messages(room_id, limit=100_000)]


def _drain(watched: Watched) -> list[Event]:
    events = []
    while not watched.events.empty():
        events.append(watched.events.get_nowait())
    return events


async def _held(engines: list[Engine], room_id: str, count: int,
                timeout: float) -> dict[str, list[MessageRef]]:
    """Wait until every engine holds ``count`` messages in the room; check that they hold the
    same ones, each once; return each device's timeline."""
    await until(lambda: all(len(_refs(e, room_id)) >= count for e in engines), timeout=timeout)
    timelines = {e.device_id: _refs(e, room_id) for e in engines}
    for device, refs in timelines.items():
        assert len(refs) == count and len(set(refs)) == count, f"{device}: a message twice"
        assert set(refs) == set(timelines[engines[0].device_id]), f"{device}: other messages"
    return timelines


async def _converged(engines: list[Engine], room_id: str, count: int, timeout: float) -> None:
    """As ``_held``, and in the same order everywhere."""
    timelines = await _held(engines, room_id, count, timeout)
    reference = timelines[engines[0].device_id]
    for device, refs in timelines.items():
        assert refs == reference, f"{device} shows the room in another order"


def _order_differs(timelines: dict[str, list[MessageRef]], names: dict[str, str]) -> str | None:
    """Which devices show the room in an order of their own, if any (for the failure
    message: "alice vs bob-tablet+carol")."""
    orders: dict[tuple[MessageRef, ...], list[str]] = {}
    for device, refs in timelines.items():
        orders.setdefault(tuple(refs), []).append(names[device])
    if len(orders) == 1:
        return None
    return " vs ".join(sorted("+".join(sorted(group)) for group in orders.values()))


# -- the phases -------------------------------------------------------------------------------
async def _rooms(cast: Cast) -> tuple[str, str]:
    """Alice opens a group room and a patient room with Bob (both his devices) and Carol."""
    members = [cast["bob"].user_id, cast["carol"].user_id]
    group = await cast["alice"].create_room(RoomKind.GROUP, M.group_room, members)
    patient = PatientContext(
        identifiers=(PatientIdentifier(system=INS_OID, value=M.ins),),
        family_name=M.family_name, given_names=(M.given_name,))
    ward = await cast["alice"].create_room(RoomKind.PATIENT, M.patient_room, members,
                                           patient=patient)
    for name in ("bob", "bob-tablet", "carol"):
        await until(lambda n=name: {r.id for r in cast[n].rooms()} == {group, ward})
    shown = {r.id: r for r in cast["carol"].rooms()}
    assert shown[ward].patient == patient and shown[ward].name == M.patient_room
    assert shown[group].name == M.group_room
    return group, ward


async def _text_urgent_and_receipts(cast: Cast, group: str, ward: str) -> None:
    """A text in the group room, an urgent message in the patient room: Alice sees them
    delivered (to Bob and Carol), read and acknowledged (by Bob)."""
    receipts: set[tuple[MessageRef, str, MessageStatus]] = set()

    def record(event: Event) -> None:
        if isinstance(event, ReceiptReceived):
            receipts.add((event.message_ref, event.user_id, event.kind))

    unsubscribe = cast["alice"].subscribe(record)
    text = await cast["alice"].send_text(group, M.text)
    urgent = await cast["alice"].send_text(ward, M.urgent, urgent=True)
    for name in ("bob", "bob-tablet", "carol"):
        await until(lambda n=name: _bodies(cast[n], group) == [M.text]
                    and _bodies(cast[n], ward) == [M.urgent])
    assert [m.ref for m in cast["bob"].unacknowledged_urgent()] == [urgent]
    bob, carol = cast["bob"].user_id, cast["carol"].user_id
    delivered = {(ref, user, MessageStatus.DELIVERED) for ref in (text, urgent)
                 for user in (bob, carol)}
    await until(lambda: delivered <= receipts)
    assert {m.status for m in cast["alice"].messages(group) + cast["alice"].messages(ward)} == {
        MessageStatus.DELIVERED}
    await cast["bob"].mark_read(group, text)
    await cast["bob"].acknowledge(urgent)
    await until(lambda: {(text, bob, MessageStatus.READ),
                         (urgent, bob, MessageStatus.ACKNOWLEDGED)} <= receipts)
    unsubscribe()
    assert cast["alice"].find_message(text.client_id).status is MessageStatus.READ
    assert cast["alice"].find_message(urgent.client_id).status is MessageStatus.ACKNOWLEDGED
    assert cast["bob"].unacknowledged_urgent() == []


async def _document(cast: Cast, group: str) -> None:
    """20 MB through the proxy, which cuts every connection halfway through the upload: the
    upload resumes, and every other member fetches and verifies the same bytes."""
    size = 20 * MB
    source = cast.tmp / "outside" / M.file_name
    source.parent.mkdir()
    body = b"%PDF-1.7\n" + os.urandom(size // 2) + M.document.encode()
    source.write_bytes(body + os.urandom(size - len(body)))
    cuts, before = cast.proxy.cuts, cast.proxy.uploaded
    cast.proxy.cut_after(size // 2)
    ref = await cast["alice"].send_file(group, source, caption=M.caption)
    assert cast.proxy.cuts == cuts + 1, "the upload was not cut"
    assert size < cast.proxy.uploaded - before < size + size // 4, "the upload started over"
    for name in ("bob", "bob-tablet", "carol"):
        engine = cast[name]
        await until(lambda e=engine: ref in _refs(e, group), timeout=20)
        message = engine.find_message(ref.client_id)
        assert message.kind is MessageKind.DOCUMENT and message.body == M.caption
        (item,) = message.attachments
        assert item.file_name == M.file_name and item.key.plaintext_size == size
        await engine.fetch_file(ref)
        out = cast.tmp / "outside" / f"{name}.pdf"
        assert await engine.export_file(ref, out) == size
        assert out.read_bytes() == source.read_bytes()
        out.unlink()


async def _offline_device(cast: Cast, group: str) -> None:
    """Carol's phone is off while Alice sends 100 messages; back on, it gets all of them."""
    before = len(_refs(cast["alice"], group))
    await cast.stop("carol")
    for i in range(BURST):
        await cast["alice"].send_text(group, f"{M.text} offline {i}")
    await _converged([cast["alice"], cast["bob"], cast["bob-tablet"]], group, before + BURST,
                     timeout=30)
    await cast.reopen("carol")
    await _converged([cast["alice"], cast["carol"]], group, before + BURST, timeout=30)


async def _relay_crash(cast: Cast, rooms: tuple[str, str]) -> None:
    """Alice and Bob send a burst each (into both rooms, interleaved); the relay is SIGKILLed
    halfway, with messages in flight, and restarts while the second half is written. Every
    device ends with every message once, in one order per room."""
    engines = [cast["alice"], cast["bob"], cast["bob-tablet"], cast["carol"]]
    before = {room: len(_refs(cast["alice"], room)) for room in rooms}
    halfway = {"alice": asyncio.Event(), "bob": asyncio.Event()}
    killed = asyncio.Event()

    async def burst(sender: str) -> None:
        for i in range(BURST):
            if i == BURST // 2:
                halfway[sender].set()
                await killed.wait()
            await cast[sender].send_text(rooms[i % 2], f"{M.text} {sender} burst {i}")
            await asyncio.sleep(0)  # the senders take turns

    senders = asyncio.gather(*(burst(sender) for sender in halfway))
    for reached in halfway.values():
        await asyncio.wait_for(reached.wait(), 30)
    await asyncio.to_thread(cast.relay.stop, signal.SIGKILL)  # the engines go on meanwhile
    killed.set()
    await asyncio.to_thread(cast.relay.start)
    await senders
    for room in rooms:
        timelines = await _held(engines, room, before[room] + BURST, timeout=60)
        # the devices that only received agree on the relay's order
        assert timelines[cast["bob-tablet"].device_id] == timelines[cast["carol"].device_id]
        for sender in ("alice", "bob"):  # each sender's messages in the order it sent them
            own = [r for r in timelines[cast[sender].device_id]
                   if r.sender_device == cast[sender].device_id]
            for device, refs in timelines.items():
                assert [r for r in refs if r.sender_device == cast[sender].device_id] == own, (
                    f"{cast.names()[device]} reorders {sender}'s messages")
        differs = _order_differs(timelines, cast.names())
        assert differs is None, f"after the relay's crash, room {room}: {differs}"
    await until(lambda: all(e.unsent() == 0 for e in engines), timeout=30)


async def _removed_member(cast: Cast, rooms: tuple[str, str]) -> None:
    """Carol is removed from the group room: what follows is beyond her keys."""
    group, ward = rooms
    carol = cast.devices["carol"]
    _drain(carol)
    seen = _refs(cast["carol"], group)
    await cast["alice"].remove(group, cast["carol"].user_id)
    removed = await carol.next(RoomChanged)
    assert removed.room.id == group and not removed.active
    assert not group_of(cast["carol"], group).active
    after = await cast["alice"].send_text(group, f"{M.text} after Carol")
    for name in ("bob", "bob-tablet"):
        await until(lambda n=name: after in _refs(cast[n], group))
    # Carol is still in the patient room: a later message there reaching her shows she is
    # online and caught up, so the group room's message would have arrived by now.
    later = await cast["alice"].send_text(ward, f"{M.text} ward")
    await until(lambda: later in _refs(cast["carol"], ward))
    assert _refs(cast["carol"], group) == seen
    with pytest.raises(EngineError, match="no message"):
        cast["carol"].find_message(after.client_id)


async def _revoked_device(cast: Cast, rooms: tuple[str, str]) -> None:
    """Bob revokes his tablet from his phone: the relay cuts it off, the engine refuses to
    work, and the members of its rooms remove its leaf."""
    tablet = cast.devices["bob-tablet"]
    victim = cast["bob-tablet"].device_id
    await cast["bob"].revoke_device(victim)
    await tablet.next(DeviceRevoked, timeout=20)
    with pytest.raises(EngineError, match="revoked"):
        await cast["bob-tablet"].send_text(rooms[0], "still here?")
    with pytest.raises(EngineError, match="revoked"):
        await cast["bob-tablet"].devices()
    members = {rooms[0]: ["alice", "bob"], rooms[1]: ["alice", "bob", "carol"]}
    for room, names in members.items():
        for name in names:
            await until(lambda n=name, r=room: victim not in _devices(group_of(cast[n], r)),
                        timeout=20)
    listed = {d.id: d.revoked for d in await cast["bob"].devices()}
    assert listed[victim] is True and listed[cast["bob"].device_id] is False
    seen = _refs(cast["bob-tablet"], rooms[0])
    after = await cast["alice"].send_text(rooms[0], f"{M.text} after the tablet")
    await until(lambda: after in _refs(cast["bob"], rooms[0]))
    assert _refs(cast["bob-tablet"], rooms[0]) == seen


async def _linked_later(cast: Cast, rooms: tuple[str, str]) -> None:
    """Alice links a new phone: it joins her rooms and gets their history, exactly once."""
    await until(lambda: cast["alice"].unsent() == 0)
    history = {room: _refs(cast["alice"], room) for room in rooms}
    imported = await cast.link("alice-new", "alice")
    new = cast["alice-new"]
    assert {r.id for r in new.rooms()} == set(rooms)
    assert imported == sum(len(refs) for refs in history.values())
    for room in rooms:
        assert _refs(new, room) == history[room]
    after = await cast["bob"].send_text(rooms[0], f"{M.text} for the new phone")
    await until(lambda: after in _refs(new, rooms[0]))
    assert _refs(new, rooms[0]) == [*history[rooms[0]], after]
    # one last comparison across every device still in each room
    for room, names in ((rooms[0], ("alice", "alice-new", "bob")),
                        (rooms[1], ("alice", "alice-new", "bob", "carol"))):
        timelines = await _held([cast[n] for n in names], room, len(_refs(new, room)), 20)
        differs = _order_differs(timelines, cast.names())
        assert differs is None, f"at the end, room {room}: {differs}"


def _in_clear(roots: list[Path]) -> list[str]:
    """Every file under the roots holding a marker, whole or in part (as UTF-8 or UTF-16, in
    any case): the markers but the INS all carry TOKEN, so searching for TOKEN and the INS
    finds any of them, and a scan of the 20 MB copies stays quick."""
    assert all(TOKEN in m for m in M.all() if m != M.ins)
    forms = {TOKEN, TOKEN.lower(), M.ins}
    needles = {n for f in forms for n in (f.encode(), f.encode("utf-16-le"))}
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                hits += [f"{path}: {n!r}" for n in needles if n in data or n in str(path).encode()]
    return hits


@pytest.mark.asyncio
async def test_acceptance_scenario(tmp_path):
    with running_relay(tmp_path) as relay, TcpProxy(relay.port) as proxy:
        cast = Cast(relay, proxy, tmp_path)
        try:
            await cast.enroll("alice", proxy.url)  # Alice's phone goes through the proxy
            await cast.enroll("bob", relay.url)
            await cast.enroll("carol", relay.url)
            assert await cast.link("bob-tablet", "bob") == 0  # no room yet
            rooms = await _rooms(cast)
            group, ward = rooms
            await _text_urgent_and_receipts(cast, group, ward)
            await _document(cast, group)
            await _offline_device(cast, group)
            await _relay_crash(cast, rooms)
            await _removed_member(cast, rooms)
            await _revoked_device(cast, rooms)
            await _linked_later(cast, rooms)
            live = _in_clear([relay.data, tmp_path / "profiles"])
        finally:
            for engine in cast.running():
                await engine.stop()
    assert live == []
    assert (relay.data / "relay.db").exists() and any((relay.data / "blobs").iterdir())
    assert len(list((tmp_path / "profiles").iterdir())) == 5
    assert _in_clear([relay.data, tmp_path / "profiles"]) == []

