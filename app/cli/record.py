"""The ``liaison`` commands that talk to the hospital's record (FHIR): finding a patient, a
patient room made or linked from the record, and archiving a room's messages to it."""

from __future__ import annotations

import argparse
from datetime import date

from app.cli import commands
from app.client.engine import EngineError
from app.client.patient_rooms import PatientQuery, patient_context, search
from record.client import FhirClient
from record.config import FhirConfig
from record.errors import FhirError
from record.options import add_options, config_from
from storage.messages import MessageKind
from storage.rooms import PatientContext

ARCHIVE_LOOKBACK = 10_000  # messages of the room an archive's message ids are looked up in


def add_fhir_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    add_options(parser, flag="--fhir", required=required)


def add_patient_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """How the patient is named: ``--ins`` for a search, ``--patient-ins`` next to a room."""
    g = parser.add_argument_group("patient (one of)")
    g.add_argument(f"--{prefix}id", dest="patient_id", metavar="Patient/ID",
                   help="the record's id of the patient")
    g.add_argument(f"--{prefix}ins", dest="ins", metavar="INS", help="national identity (INS)")
    g.add_argument(f"--{prefix}ipp", dest="ipp", metavar="IPP",
                   help="the hospital's patient number (needs --ipp-system)")
    g.add_argument(f"--{prefix}family", dest="family", metavar="NAME",
                   help="family name, with the birth date")
    g.add_argument(f"--{prefix}birth-date", dest="birth_date", type=date.fromisoformat,
                   metavar="YYYY-MM-DD")


def _config(args: argparse.Namespace) -> FhirConfig:
    try:
        return config_from(args)
    except ValueError as e:
        raise FhirError(str(e)) from None


def _query(args: argparse.Namespace) -> PatientQuery:
    return PatientQuery(patient_id=args.patient_id, ins=args.ins, ipp=args.ipp,
                        family=args.family, birth_date=args.birth_date)


async def _patient(args: argparse.Namespace) -> PatientContext:
    async with FhirClient(_config(args)) as fhir:
        return await patient_context(fhir, _query(args))


async def patient_search(args: argparse.Namespace) -> int:
    """The record's candidates, one a line, the id last (what `--patient-id` takes)."""
    async with FhirClient(_config(args)) as fhir:
        found = await search(fhir, _query(args))
    for p in found:
        name = " ".join([(p.family or "?").upper(), *p.given])
        ids = "  ".join(f"{label} {value}" for label, value in
                        (("born", p.birth_date), ("INS", p.ins), ("IPP", p.ipp)) if value)
        print(f"{name}  {ids}  Patient/{p.id}")
    if not found:
        print("no patient matches", flush=True)
    return 0


async def room_create(args: argparse.Namespace) -> int:
    """``room create``, with the patient context read from the record when it names one."""
    query = _query(args)
    if args.base is None and query != PatientQuery():
        raise FhirError("a patient is found in the record: add --fhir URL")
    args.patient = await _patient(args) if args.base else None
    return await commands.room_create(args)


async def room_show(args: argparse.Namespace) -> int:
    """The room as its members agree on it, with the patient banner of a patient room."""
    async with commands._engine(args.profile, online=False) as engine:
        state = engine.room_state(args.room)
    print(f"{state.kind.value} room {state.name!r}" + (" (archived)" if state.archived else ""))
    if state.patient is not None:
        print(f"patient: {banner(state.patient)}")
    return 0


def banner(p: PatientContext) -> str:
    """One line naming the patient and the stay, as the app's banner shows them."""
    parts = [" ".join([p.family_name.upper(), *p.given_names])]
    parts += [f"born {p.birth_date.isoformat()}"] if p.birth_date else []
    parts += [f"{i.system}|{i.value}" for i in p.identifiers]
    parts += [x for x in (p.encounter, p.ward, p.bed) if x]
    return "  ".join(parts)


async def room_link_patient(args: argparse.Namespace) -> int:
    """Link the room to the patient (or change the link): a room-state commit every member
    sees, so owners and moderators only."""
    patient = await _patient(args)
    async with commands._engine(args.profile, online=True) as engine:
        await commands._answered(engine.update_room(args.room, patient=patient))
    print(f"linked {args.room}: {banner(patient)}")
    return 0


async def archive(args: argparse.Namespace) -> int:
    """Archive messages of a patient room (all of them by default) to the patient's record."""
    config = _config(args)
    async with commands._engine(args.profile, online=True) as engine:
        shown = [m for m in engine.messages(args.room, ARCHIVE_LOOKBACK)
                 if m.kind is not MessageKind.SYSTEM and m.recalled_at is None]
        if args.message:
            by_id = {m.ref.client_id: m.ref for m in shown}
            missing = [i for i in args.message if i not in by_id]
            if missing:
                raise EngineError(f"no message {', '.join(missing)} to archive in {args.room}")
            refs = [by_id[i] for i in args.message]
        else:
            refs = [m.ref for m in shown]
        stored = await engine.archive_to_record(args.room, refs, config)
        await commands._drained(engine, "the room's archive note")
    again = "" if stored.created else " (already there: stored once)"
    print(f"archived {len(refs)} message(s) to the record{again}: "
          f"{stored.document_reference} {stored.communication}")
    return 0
