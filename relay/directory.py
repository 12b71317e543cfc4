"""Bulk directory import: a CSV from a spreadsheet, or a FHIR R4 Bundle from the hospital's
practitioner directory (``liaison-relay directory import``).

The whole file is read and checked before anything is written, and written in one
transaction: a bad line or resource leaves the directory as it was. Re-importing is
idempotent: a person is matched by RPPS, or, without one, by exact display name and
profession among the users who have no RPPS. Fields a file does not carry (a CSV column
left out, the roles in FHIR, the status always) keep their current value, so an import
never strips an administrator's role nor re-enables a disabled user.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from pydantic import ValidationError
from sqlalchemy import Row, select

from protocol import rest
from protocol.rest import Profession
from relay.admin import AdminTx, admin_tx, fold, save_user
from relay.config import DataDir
from relay.db import users
from relay.ids import new_id
from relay.routes_accounts import user_model

RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
IDNATPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # "8" + RPPS for RPPS-registered professionals
G15_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
_G15_CODES = {"10": Profession.PHYSICIAN, "21": Profession.PHARMACIST,
              "50": Profession.MIDWIFE, "60": Profession.NURSE,
              "70": Profession.PHYSIOTHERAPIST}
# Folded words (French and English) that name a profession, besides the enum values.
_PROFESSION_WORDS = {p.value: p for p in Profession} | {
    "medecin": Profession.PHYSICIAN, "doctor": Profession.PHYSICIAN,
    "infirmier": Profession.NURSE, "infirmiere": Profession.NURSE,
    "sage-femme": Profession.MIDWIFE, "maieuticien": Profession.MIDWIFE,
    "pharmacien": Profession.PHARMACIST, "pharmacienne": Profession.PHARMACIST,
    "aide-soignant": Profession.CARE_ASSISTANT, "aide-soignante": Profession.CARE_ASSISTANT,
    "kinesitherapeute": Profession.PHYSIOTHERAPIST,
    "masseur-kinesitherapeute": Profession.PHYSIOTHERAPIST,
    "secretaire": Profession.SECRETARY,
}
CSV_COLUMNS = ("name", "profession", "specialty", "services", "sites", "rpps", "roles")
_CSV_REQUIRED = {"name", "profession"}
_CSV_LISTS = {"services", "sites", "roles"}
_RPPS = re.compile(r"\d{11}")
_IDNATPS_RPPS = re.compile(r"8?(\d{11})")


@dataclass(frozen=True)
class Entry:
    """One person read from a file: where (for error messages) and the fields it gives."""

    where: str
    fields: dict[str, Any]

    @property
    def key(self) -> tuple[str, ...]:
        """What identifies the person within one file, to refuse duplicates."""
        rpps = self.fields.get("rpps")
        if rpps:
            return ("rpps", rpps)
        return ("name", self.fields["display_name"], self.fields["profession"].value)


def profession_of(text: str) -> Profession | None:
    """The profession a label names ("Infirmière DE" -> nurse), if any."""
    folded = fold(text)
    for word in (folded, *folded.split()):
        if word in _PROFESSION_WORDS:
            return _PROFESSION_WORDS[word]
    return None


def rpps_number(value: str, where: str) -> str | None:
    value = value.strip()
    if value and not _RPPS.fullmatch(value):
        raise ValueError(f"{where}: RPPS {value!r} is not an 11-digit number")
    return value or None


def _first_error(err: ValidationError, skip: int = 0) -> str:
    """The first problem, its location past ``skip`` leading parts (the Bundle's own)."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"][skip:])
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{field}: {first['msg']}{more}" if field else f"{first['msg']}{more}"


# -- CSV --------------------------------------------------------------------------------------
def read_csv(path: Path) -> list[Entry]:
    """A UTF-8 CSV with a header row; ';' separates the items of list columns."""
    entries = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            _check_header(path, header)
            for row in reader:
                if not row:
                    continue
                where = f"{path.name} line {reader.line_num}"
                if len(row) > len(header):
                    raise ValueError(f"{where}: {len(row)} cells for {len(header)} columns")
                cells = {col: row[i].strip() if i < len(row) else ""
                         for i, col in enumerate(header)}
                entries.append(Entry(where, _csv_fields(cells, where)))
        except csv.Error as e:
            raise ValueError(f"{path.name} line {reader.line_num}: {e}") from None
    return entries


def _check_header(path: Path, header: list[str]) -> None:
    missing = _CSV_REQUIRED - set(header)
    unknown = set(header) - set(CSV_COLUMNS)
    if missing or unknown or len(set(header)) != len(header):
        raise ValueError(f"{path.name} line 1: the header must name each column once, "
                         f"with name and profession, among {', '.join(CSV_COLUMNS)} "
                         f"(missing: {sorted(missing)}, unknown: {sorted(unknown)})")


def _csv_fields(cells: dict[str, str], where: str) -> dict[str, Any]:
    if not cells["name"]:
        raise ValueError(f"{where}: no name")
    fields: dict[str, Any] = {
        "display_name": cells["name"],
        "profession": profession_of(cells["profession"]) or Profession.OTHER}
    for col, cell in cells.items():
        if col in _CSV_LISTS:
            fields[col] = [item.strip() for item in cell.split(";") if item.strip()]
        elif col == "rpps":
            fields["rpps"] = rpps_number(cell, where)
        elif col == "specialty":
            fields["specialty"] = cell or None
    return fields


# -- FHIR -------------------------------------------------------------------------------------
def load_bundle(path: Path) -> Bundle:
    """Parse and validate a FHIR R4 Bundle; errors name the entry and resource at fault."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path.name}: not JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("resourceType") != "Bundle":
        raise ValueError(f'{path.name}: not a FHIR Bundle (resourceType must be "Bundle")')
    entries = raw.get("entry")
    entries = entries if isinstance(entries, list) else []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            try:  # fhir.resources raises a bare KeyError on an unknown type: check first
                get_fhir_model_class(str(resource.get("resourceType")))
            except ValueError:
                raise ValueError(f"{_raw_label(i, entries)}: unknown resourceType") from None
    try:
        return Bundle.model_validate(raw)
    except ValidationError as e:
        loc = e.errors()[0]["loc"]
        if len(loc) >= 2 and loc[0] == "entry" and isinstance(loc[1], int):
            raise ValueError(f"{_raw_label(loc[1], entries)}: invalid "
                             f"{_first_error(e, skip=3)}") from None
        raise ValueError(f"{path.name}: invalid Bundle {_first_error(e)}") from None


def _raw_label(i: int, entries: list[Any]) -> str:
    resource = entries[i].get("resource") if isinstance(entries[i], dict) else None
    if not isinstance(resource, dict):
        return f"Bundle entry {i}"
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')} (entry {i})"


class BundleReader:
    """The practitioners of a validated Bundle, with references resolved inside it."""

    def __init__(self, bundle: Bundle) -> None:
        self.found: dict[str, Any] = {}  # label ("Practitioner/p1") -> resource, in order
        self.refs: dict[str, str] = {}  # reference ("Type/id" or fullUrl) -> label
        for i, entry in enumerate(bundle.entry or []):
            resource = entry.resource
            if resource is None:
                continue
            kind = resource.get_resource_type()
            label = f"{kind}/{resource.id}" if resource.id else f"{kind} (entry {i})"
            if label in self.found:
                raise ValueError(f"{label}: appears twice in the bundle")
            self.found[label] = resource
            if resource.id:
                self.refs[label] = label
            if entry.fullUrl:
                self.refs[entry.fullUrl] = label
        self.roles: dict[str, list[tuple[str, PractitionerRole]]] = defaultdict(list)
        for label, role in self.of_kind("PractitionerRole"):
            practitioner = self.resolve(role.practitioner, "Practitioner", label)
            if practitioner is not None:  # a role without a practitioner is a vacant post
                self.roles[practitioner].append((label, role))

    def of_kind(self, kind: str) -> list[tuple[str, Any]]:
        return [(label, r) for label, r in self.found.items() if r.get_resource_type() == kind]

    def resolve(self, ref: Reference | None, kind: str, where: str) -> str | None:
        """The label of the ``kind`` resource ``ref`` points to; a dangling one is an error."""
        if ref is None or not ref.reference:
            return None
        label = self.refs.get(ref.reference, self.refs.get(
            "/".join(ref.reference.split("/")[-2:])))  # an absolute URL: its Type/id
        if label is None or self.found[label].get_resource_type() != kind:
            raise ValueError(f"{where}: the {kind} {ref.reference} is not in this bundle")
        return label

    def entries(self) -> list[Entry]:
        return [Entry(label, self.fields(label, p))
                for label, p in self.of_kind("Practitioner")]

    def fields(self, label: str, practitioner: Practitioner) -> dict[str, Any]:
        name = display_name(practitioner)
        if not name:
            raise ValueError(f"{label}: no name")
        roles = self.roles[label]
        return {
            "display_name": name,
            "rpps": practitioner_rpps(practitioner, label),
            "profession": next((p for _, r in roles if (p := role_profession(r))),
                               Profession.OTHER),
            "specialty": next((s for _, r in roles for c in r.specialty or ()
                               if (s := concept_text(c))), None),
            "services": _unique(self.service(where, r) for where, r in roles),
            "sites": _unique(loc.display for _, r in roles for loc in r.location or ()),
        }

    def service(self, where: str, role: PractitionerRole) -> str | None:
        """The name of the role's Organization (the ward or department)."""
        label = self.resolve(role.organization, "Organization", where)
        if label is None:
            return None
        if not self.found[label].name:
            raise ValueError(f"{label}: no name (referenced by {where})")
        return self.found[label].name


def display_name(practitioner: Practitioner) -> str | None:
    """Prefix, given names and family ("Dr Alice Martin") of the official, else first, name."""
    names = practitioner.name or []
    name = next((n for n in names if n.use == "official"), names[0] if names else None)
    if name is None:
        return None
    parts = [*(name.prefix or []), *(name.given or []), name.family]
    text = " ".join(p.strip() for p in parts if p and p.strip())
    return text or (name.text or "").strip() or None


def practitioner_rpps(practitioner: Practitioner, label: str) -> str | None:
    """The RPPS number: from the RPPS system, else from an idNatPs of the form "8" + RPPS."""
    idnatps = None
    for ident in practitioner.identifier or ():
        value = (ident.value or "").strip()
        if ident.system == RPPS_SYSTEM and value:
            return rpps_number(value, label)
        if ident.system == IDNATPS_SYSTEM and (m := _IDNATPS_RPPS.fullmatch(value)):
            idnatps = idnatps or m.group(1)
    return idnatps


def role_profession(role: PractitionerRole) -> Profession | None:
    for concept in role.code or ():
        for coding in concept.coding or ():
            if coding.system == G15_SYSTEM and coding.code in _G15_CODES:
                return _G15_CODES[coding.code]
        text = concept_text(concept)
        if text and (profession := profession_of(text)):
            return profession
    return None


def concept_text(concept: CodeableConcept) -> str | None:
    if concept.text:
        return concept.text
    return next((c.display for c in concept.coding or () if c.display), None)


def _unique(items: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def read_bundle(path: Path) -> list[Entry]:
    return BundleReader(load_bundle(path)).entries()


# -- writing ----------------------------------------------------------------------------------
_READERS = {".csv": read_csv, ".json": read_bundle}


async def import_file(data: DataDir, path: Path) -> tuple[int, int]:
    """Import (or re-import) a CSV or a FHIR Bundle; returns (added, updated)."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path.name}: expected a .csv file or a .json FHIR Bundle")
    return await import_entries(data, reader(path))


async def import_entries(data: DataDir, entries: list[Entry]) -> tuple[int, int]:
    """Save people read from any source in one transaction; returns (added, updated)."""
    async with admin_tx(data) as tx:
        added, updated = await save_entries(tx, entries)
        tx.audit("directory_imported", added=added, updated=updated)
    return added, updated


async def save_entries(tx: AdminTx, entries: list[Entry]) -> tuple[int, int]:
    """Add or update each person; an unchanged one is left alone (no audit noise)."""
    rows = (await tx.conn.execute(select(users))).all()
    by_rpps = {r.rpps: r for r in rows if r.rpps}
    by_name: dict[tuple[str, str], list[Row[Any]]] = defaultdict(list)
    for r in rows:
        if not r.rpps:
            by_name[(r.display_name, r.profession)].append(r)
    seen: dict[tuple[str, ...], str] = {}
    added = updated = 0
    for entry in entries:
        row = _match(entry, by_rpps, by_name)
        identity = ("user", row.id) if row is not None else entry.key
        if identity in seen:
            raise ValueError(f"{entry.where}: the same person as {seen[identity]}")
        seen[identity] = entry.where
        current = user_model(row) if row is not None else None
        base = current.model_dump() if current is not None else {"id": new_id("u_")}
        try:
            user = rest.User.model_validate({**base, **entry.fields})
        except ValidationError as e:
            raise ValueError(f"{entry.where}: {_first_error(e)}") from None
        if user == current:
            continue
        await save_user(tx, user)
        if current is None:
            added += 1
        else:
            updated += 1
    return added, updated


def _match(entry: Entry, by_rpps: dict[str, Row[Any]],
           by_name: dict[tuple[str, str], list[Row[Any]]]) -> Row[Any] | None:
    rpps = entry.fields.get("rpps")
    if rpps in by_rpps:
        return by_rpps[rpps]
    name, profession = entry.fields["display_name"], entry.fields["profession"].value
    namesakes = by_name.get((name, profession), [])
    if len(namesakes) > 1:
        raise ValueError(f"{entry.where}: {len(namesakes)} users without RPPS are named "
                         f"{name!r} ({profession}); give this one an RPPS")
    return namesakes[0] if namesakes else None
