"""The demonstration organisation behind `make run`: a local relay, a dozen synthetic staff
enrolled into one profile each, and a few rooms with a first exchange.

Everything here is synthetic: names, the patient, and the patient's INS, which uses the INS
test OID so that it can never be mistaken for a real national identity. The demo profiles'
database keys are wrapped under a passphrase (LIAISON_PASSPHRASE, else the well-known demo
passphrase printed at start): fine for synthetic data, never for a real account.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import platformdirs
from nacl.pwhash import argon2id

from app.cli.custody import PASSPHRASE, record_custody
from app.client.engine import Engine, EngineError
from app.client.relay_api import RelayError, RelayUnavailable
from app.ui.app import free_port
from app.ui.local_relay import LocalRelay, LocalRelayError
from app.ui.profile import Profile
from storage.custody import CustodyError
from storage.custody_accounts import AccountDirectory
from storage.custody_passphrase import PASSPHRASE_ENV, PassphraseCustody
from storage.rooms import PatientContext, PatientIdentifier, RoomKind

ORGANISATION = "CHU Démo (données fictives)"
DEMO_PASSPHRASE = "liaison-demo"  # synthetic data only; LIAISON_PASSPHRASE overrides it
DATA_ENV = "LIAISON_DEMO_DIR"  # where the demo lives; default: the user's data directory
INS_TEST_OID = "urn:oid:1.2.250.1.213.1.4.10"


@dataclass(frozen=True, slots=True)
class Staff:
    slug: str  # the profile's directory name, and what `--as` takes
    name: str
    profession: str
    service: str
    specialty: str | None = None


STAFF = (
    Staff("helene", "Hélène Dubois", "physician", "Cardiologie", "cardiologie"),
    Staff("chloe", "Chloé Bernard", "nurse", "Cardiologie"),
    Staff("julien", "Julien Moreau", "nurse", "Cardiologie"),
    Staff("lea", "Léa Fontaine", "care_assistant", "Cardiologie"),
    Staff("karim", "Karim Benali", "physician", "Urgences", "médecine d'urgence"),
    Staff("amina", "Amina Diallo", "nurse", "Urgences"),
    Staff("sophie", "Sophie Laurent", "physician", "Médecine interne", "médecine interne"),
    Staff("thomas", "Thomas Petit", "nurse", "Médecine interne"),
    Staff("marc", "Marc Girard", "pharmacist", "Pharmacie"),
    Staff("nathalie", "Nathalie Roux", "administrative", "Direction"),
    Staff("emilie", "Émilie Faure", "midwife", "Maternité"),
    Staff("paul", "Paul Lemaire", "physiotherapist", "Rééducation"),
)
FIRST, SECOND = "helene", "chloe"  # `make run` and `make run-second`

PATIENT = PatientContext(  # synthetic: an INS under the test OID is never a real person
    identifiers=(PatientIdentifier(system=INS_TEST_OID, value="148037512345678"),),
    family_name="Durand", given_names=("Jean",), birth_date=date(1948, 3, 2),
    ward="Cardiologie", bed="12",
)
ROOMS = (  # created by FIRST: (kind, name, members, opening messages as (text, urgent), patient)
    (RoomKind.SERVICE, "Cardiologie — 3e étage", ("chloe", "julien", "lea"),
     (("Bonjour à tous, staff à 8h30 en salle de réunion.", False),), None),
    (RoomKind.PATIENT, "DURAND Jean", ("chloe", "marc"),
     (("Entrée ce matin pour décompensation cardiaque. Contexte fictif de démonstration.",
       False),
      ("Kaliémie à 5,9 ce matin : contrôle à 14h et ECG.", True)), PATIENT),
    (RoomKind.GROUP, "Garde de nuit", ("karim", "amina", "thomas"),
     (("Relève à 19h, deux entrées prévues aux urgences.", False),), None),
    (RoomKind.PROJECT, "Qualité — circuit du médicament", ("marc", "nathalie", "sophie"),
     (("Réunion jeudi 14h : audit des armoires à pharmacie.", False),), None),
)


class DemoError(RuntimeError):
    """The demo could not be set up; the message says what to do."""


@dataclass
class DemoState:
    """demo.json: the relay's port and who is enrolled (no secret)."""

    port: int
    seeded: bool = False


class Demo:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(
            os.environ.get(DATA_ENV) or platformdirs.user_data_path("liaison-demo", False))
        self._state_file = self.root / "demo.json"
        state = self._read()
        self.relay = LocalRelay(self.root / "relay", state.port if state else free_port())
        self._relay_started = False

    def _read(self) -> DemoState | None:
        try:
            return DemoState(**json.loads(self._state_file.read_text("utf-8")))
        except FileNotFoundError:
            return None

    def _write(self, state: DemoState) -> None:
        self._state_file.write_text(json.dumps(asdict(state)), "utf-8")

    @staticmethod
    def passphrase() -> str:
        """LIAISON_PASSPHRASE for the demo profiles, set to the demo's when absent."""
        return os.environ.setdefault(PASSPHRASE_ENV, DEMO_PASSPHRASE)

    def profile(self, slug: str) -> Profile:
        self.passphrase()
        directory = self.root / "profiles" / slug
        custody = PassphraseCustody(AccountDirectory(directory / "keys"),
                                    ops=argon2id.OPSLIMIT_INTERACTIVE,
                                    mem=argon2id.MEMLIMIT_INTERACTIVE)
        return Profile(directory, custody)

    def ensure_relay(self) -> None:
        """Use the demo relay if it already runs (another instance started it), else start it,
        creating it on the very first run."""
        state = self._read()
        if state is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self.relay.init(ORGANISATION)
            self._write(DemoState(port=self.relay.port))
        if not self.relay.healthy():
            self.relay.start()
            self._relay_started = True

    async def ensure_seeded(self) -> None:
        """Enrol every demo account and open the rooms, once."""
        state = self._read()
        assert state is not None, "ensure_relay first"
        if state.seeded:
            return
        engines: dict[str, Engine] = {}
        try:
            await self._seed(engines)
        except (EngineError, RelayError, RelayUnavailable, LocalRelayError, CustodyError) as e:
            raise DemoError(f"seeding the demo failed ({e}); remove {self.root} and run again"
                            ) from e
        finally:
            for engine in engines.values():
                await engine.stop()
        state.seeded = True
        self._write(state)

    async def _seed(self, engines: dict[str, Engine]) -> None:
        for staff in STAFF:
            engines[staff.slug] = await self._enroll(staff)
        first = engines[FIRST]
        await first.start()
        for kind, name, members, messages, patient in ROOMS:
            room_id = await first.create_room(kind, name, [engines[m].user_id for m in members],
                                              patient=patient)
            for text, urgent in messages:
                await first.send_text(room_id, text, urgent=urgent)

    async def _enroll(self, staff: Staff) -> Engine:
        extra = ["--service", staff.service]
        if staff.specialty:
            extra += ["--specialty", staff.specialty]
        user_id = self.relay.cli("user add", "--name", staff.name, "--profession",
                                 staff.profession, *extra).split()[-1]
        code = self.relay.cli("invite", user_id).split()[-1]
        profile = self.profile(staff.slug)
        engine = await Engine.enroll(profile.directory, self.relay.url, code, profile.custody,
                                     device_name="Liaison démo")
        record_custody(profile.directory, PASSPHRASE)  # so that `liaison --profile` opens it
        return engine

    def stop(self) -> None:
        """Stop the relay if this instance started it."""
        if self._relay_started:
            self.relay.stop()

    def describe(self) -> str:
        lines = [f"Relay: {self.relay.url}  (data: {self.relay.data})", "Demo accounts:"]
        lines += [f"  {s.slug:<9} {s.name} — {s.profession}, {s.service}" for s in STAFF]
        lines.append(f"Profiles: {self.root / 'profiles'} (key under the passphrase in "
                     f"{PASSPHRASE_ENV}, '{DEMO_PASSPHRASE}' unless set)")
        return "\n".join(lines)
