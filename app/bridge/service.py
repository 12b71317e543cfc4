"""The bridge proper: each ADT message applied to patient rooms through the bridge's own engine.

An admission opens the stay's patient room (the attending physician and the ward's team as
members, the patient in the encrypted room state); a transfer moves the banner, brings the
new ward's team and takes the previous ward's out; a discharge archives the room; an update
or a merge rewrites the patient context. Every message is answered (see app/bridge/ack.py)
and none is lost: what cannot be applied goes to the ledger's dead letters, to be replayed
once its cause is fixed. Messages are applied one at a time, in the order they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from app.bridge import adt
from app.bridge.ack import AckCode, ErrorCode, build_ack
from app.bridge.adt import AdtEvent, Trigger, Unreadable
from app.bridge.config import BridgeConfig
from app.bridge.ledger import DeadLetter, Ledger, Stay
from app.bridge.staff import StaffDirectory
from app.client.engine import Engine, EngineError
from app.client.relay_api import RelayError, RelayUnavailable
from storage.rooms import PatientContext, PatientIdentifier, RoomKind

log = logging.getLogger("liaison.bridge")


class BridgeError(Exception):
    """An administrator's request the bridge cannot carry out."""


class NotApplicable(Exception):
    """A readable message the bridge cannot apply (AE); the message is for the sender's
    operators, so it names codes and fields, never the patient."""

    def __init__(self, error: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Outcome:
    code: AckCode
    ack: bytes  # the ACK message, without MLLP framing
    reason: str = ""
    dead_letter: int | None = None  # the dead letter's id when not applied


class Bridge:
    def __init__(self, engine: Engine, ledger: Ledger, config: BridgeConfig) -> None:
        self._engine = engine
        self._ledger = ledger
        self._config = config
        self._staff = StaffDirectory(engine.account)
        self._one_at_a_time = asyncio.Lock()

    async def aclose(self) -> None:
        await self._staff.aclose()

    async def handle(self, raw: bytes) -> Outcome:
        """Apply one message (an MLLP block's content) and say how, with the ACK to send."""
        async with self._one_at_a_time:
            return await self._handle(raw)

    def dead_letters(self) -> list[DeadLetter]:
        return self._ledger.dead_letters()

    async def replay(self, letter_id: int) -> Outcome:
        """Apply a dead letter again: once applied, it leaves the dead letters."""
        letter = self._ledger.dead_letter(letter_id)
        if letter is None:
            raise BridgeError(f"no dead letter {letter_id}")
        outcome = await self.handle(letter.message)
        if outcome.dead_letter != letter_id:  # applied, or kept anew (an unreadable one)
            self._ledger.forget_dead_letter(letter_id)
        return outcome

    async def _handle(self, raw: bytes) -> Outcome:
        try:
            event = adt.parse(raw, ipp_system=self._config.ipp_system)
        except Unreadable as e:
            error = (ErrorCode.UNSUPPORTED_MESSAGE_TYPE if e.unsupported
                     else ErrorCode.DATA_TYPE_ERROR)
            return self._not_applied(raw, e.header, AckCode.REJECTED, error, e.reason)
        sender, control_id = _sender(event.header), event.header.control_id
        if self._ledger.applied(sender, control_id):
            log.info("message %s was already applied", control_id)
            return self._applied(event, "already applied")
        try:
            await self._apply(event)
        except NotApplicable as e:
            return self._not_applied(raw, event.header, AckCode.ERROR, e.error, e.reason)
        except (EngineError, RelayError, RelayUnavailable) as e:
            return self._not_applied(raw, event.header, AckCode.ERROR,
                                     ErrorCode.APPLICATION_INTERNAL_ERROR,
                                     f"could not update the room: {e}")
        self._ledger.mark_applied(sender, control_id)
        log.info("message %s (%s) applied", control_id, event.trigger.value)
        return self._applied(event)

    def _applied(self, event: AdtEvent, text: str = "") -> Outcome:
        return Outcome(AckCode.APPLIED, self._ack(event.header, AckCode.APPLIED, text, None))

    def _not_applied(
        self, raw: bytes, header: adt.Header | None, code: AckCode, error: ErrorCode, reason: str
    ) -> Outcome:
        """Keep the message as a dead letter (by its sender's control id when it has one)."""
        sender = "" if header is None else _sender(header)
        control_id = None if header is None else header.control_id or None
        letter = self._ledger.keep_dead_letter(sender, control_id, raw, code.value, reason)
        log.warning("message %s not applied (%s), dead letter %d: %s", control_id, code.value,
                    letter, reason)
        return Outcome(code, self._ack(header, code, reason, error), reason, letter)

    def _ack(
        self, header: adt.Header | None, code: AckCode, text: str, error: ErrorCode | None
    ) -> bytes:
        """Answered as the application the sender addressed, or as configured."""
        header = header or adt.Header()
        header = header.model_copy(update={
            "receiving_application": header.receiving_application or self._config.application,
            "receiving_facility": header.receiving_facility or self._config.facility,
        })
        return build_ack(header, code, control_id=secrets.token_hex(10), now=datetime.now(UTC),
                         text=text, error=error)

    # -- the events --------------------------------------------------------------------------
    async def _apply(self, event: AdtEvent) -> None:
        match event.trigger:
            case Trigger.ADMIT:
                await self._admit(event)
            case Trigger.TRANSFER:
                await self._transfer(event)
            case Trigger.DISCHARGE:
                await self._discharge(event)
            case Trigger.UPDATE:
                await self._update(event, self._stays(event.patient.identifiers, event))
            case Trigger.MERGE:
                await self._update(event, self._stays(event.merged, event))

    async def _admit(self, event: AdtEvent) -> None:
        encounter = _encounter_key(event)
        if encounter is not None and self._ledger.stay_of_encounter(encounter) is not None:
            await self._transfer(event)  # the same stay admitted again: bring it up to date
            return
        members = await self._team(event)
        room_id = await self._engine.create_room(
            RoomKind.PATIENT,
            _room_name(event.patient),
            members,
            patient=_context(event, None),
        )
        self._ledger.save_stay(Stay(room_id, _key(event.patient.identifiers[0]), encounter,
                                    discharged=False))

    async def _transfer(self, event: AdtEvent) -> None:
        """The new ward's team joins first, so that the room is never without its carers; then
        the previous ward's team leaves (need to know), unless the configuration keeps it;
        the banner moves last, so that a replay after a failure still knows the previous
        ward."""
        stay = self._stays(event.patient.identifiers, event)[0]
        members = await self._team(event)
        await self._engine.invite(stay.room_id, members)
        previous = self._engine.room_state(stay.room_id).patient
        if (self._config.previous_ward_leaves and previous is not None
                and previous.ward and previous.ward != event.visit.ward):
            await self._release(stay.room_id, previous.ward, keep=set(members))
        await self._set_context(stay, event)

    async def _release(self, room_id: str, ward_code: str, *, keep: set[str]) -> None:
        """Remove the members of the room who are the previous ward's team as configured now,
        save those the new team keeps; a ward no longer configured removes no one."""
        if ward_code not in self._config.wards:
            log.info("ward %r is no longer configured: its team stays in the room", ward_code)
            return
        present = {m.user_id for m in self._engine.members(room_id)}
        leaving = (set(self._ward_users(ward_code)) & present) - keep - {self._engine.user_id}
        for user_id in sorted(leaving):
            await self._engine.remove(room_id, user_id)

    async def _discharge(self, event: AdtEvent) -> None:
        stay = self._stays(event.patient.identifiers, event)[0]
        if not self._engine.room_state(stay.room_id).archived:
            await self._engine.update_room(stay.room_id, archived=True)
        self._ledger.save_stay(Stay(stay.room_id, stay.patient, stay.encounter, discharged=True))

    async def _update(self, event: AdtEvent, stays: list[Stay]) -> None:
        for stay in stays:
            await self._set_context(stay, event)

    async def _set_context(self, stay: Stay, event: AdtEvent) -> None:
        """The room's banner and name from the event; the stay now belongs to its patient."""
        before = self._engine.room_state(stay.room_id).patient
        after = _context(event, before)
        if after != before:
            await self._engine.update_room(
                stay.room_id, patient=after, name=_room_name(event.patient)
            )
        self._ledger.save_stay(
            Stay(stay.room_id, _key(event.patient.identifiers[0]), stay.encounter,
                 stay.discharged)
        )

    def _stays(self, identifiers: tuple[PatientIdentifier, ...], event: AdtEvent) -> list[Stay]:
        """The event's stay when it names one (PV1-19), else the patient's stays, open first."""
        encounter = _encounter_key(event)
        stay = None if encounter is None else self._ledger.stay_of_encounter(encounter)
        if stay is not None and event.trigger is not Trigger.MERGE:
            return [stay]
        stays = self._ledger.stays_of([_key(i) for i in identifiers])
        if not stays:
            raise NotApplicable(
                ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                f"{event.trigger.value}: no patient room for this patient"
                + (" (MRG-1)" if event.trigger is Trigger.MERGE else "")
                + ": the admission (A01) was not received or not applied",
            )
        return stays

    async def _team(self, event: AdtEvent) -> list[str]:
        """The users of the patient's ward (configured) and the attending physician(s)."""
        ward_code = event.visit.ward or ""
        if ward_code not in self._config.wards:
            raise NotApplicable(ErrorCode.TABLE_VALUE_NOT_FOUND,
                                f"PV1-3: ward {ward_code!r} is not in the bridge configuration")
        users = self._ward_users(ward_code)
        for rpps in event.visit.attending_rpps:
            user_id = await self._staff.user_of(rpps)
            if user_id is None:
                raise NotApplicable(ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                                    f"PV1-7: no active user with RPPS {rpps} in the directory")
            users.append(user_id)
        return [u for u in dict.fromkeys(users) if u != self._engine.user_id]

    def _ward_users(self, ward_code: str) -> list[str]:
        """A configured ward's team: its listed users and its service room's members."""
        ward = self._config.wards[ward_code]
        users = list(ward.users)
        if ward.service_room is not None:
            if ward.service_room not in {room.id for room in self._engine.rooms()}:
                raise NotApplicable(
                    ErrorCode.TABLE_VALUE_NOT_FOUND,
                    f"ward {ward_code!r}: the bridge is not a member of its service room",
                )
            users += [m.user_id for m in self._engine.members(ward.service_room)]
        return users


def _sender(header: adt.Header) -> str:
    """Whose control ids these are (MSH-10 is unique per sending application)."""
    return f"{header.sending_application}|{header.sending_facility}"


def _key(identifier: PatientIdentifier) -> str:
    return f"{identifier.system}|{identifier.value}"


def _encounter_key(event: AdtEvent) -> str | None:
    encounter = event.visit.encounter
    return None if encounter is None else _key(encounter)


def _room_name(patient: adt.Patient) -> str:
    return " ".join((patient.family_name.upper(), *patient.given_names))


def _context(event: AdtEvent, before: PatientContext | None) -> PatientContext:
    """The patient context after the event: its patient, and the stay and place it gives
    (a message that leaves PV1 out keeps the ones the room had)."""
    patient, visit = event.patient, event.visit
    encounter = visit.encounter
    moved = visit.ward is not None
    return PatientContext(
        identifiers=patient.identifiers,
        family_name=patient.family_name,
        given_names=patient.given_names,
        birth_date=patient.birth_date,
        encounter=(
            f"Encounter?identifier={encounter.system}|{encounter.value}"
            if encounter is not None else None if before is None else before.encounter
        ),
        ward=visit.ward if moved or before is None else before.ward,
        bed=visit.bed if moved or before is None else before.bed,
    )
