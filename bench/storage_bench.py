"""Storage benchmarks: the encrypted cache with the real schema, FTS index and write path.

Every figure is printed as ``figure: NAME = VALUE UNIT`` on a line of its own.

100,000 synthetic French clinical messages over 200 rooms are written the way the sync engine
writes a mailbox drain (500 per transaction, through ``MessageStore.add_incoming``), once into
SQLCipher and once into the stdlib's unencrypted sqlite3 with the same schema, pragmas and code
path: the ratio is the cost of encryption. Then: opening the encrypted database, reading a
room's last 50 messages, and full-text search (warm, 100 queries).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.database import Database, apply_pragmas
from storage.local_store import LocalStore
from storage.messages import MessageRef, MessageStore, NewMessage
from storage.migrations import MIGRATIONS, migrate
from storage.rooms import Room, RoomKind, RoomStore
from storage.search import MessageSearch

ROOMS = 200
BATCH = 500

_NAMES = ["Dupont", "Lefèvre", "Martin", "Moreau", "Girard", "Rousseau", "Lambert", "Faure",
          "Mercier", "Bonnet", "Fontaine", "Chevalier", "Bernard", "Dubois", "Thomas", "Robert",
          "Richard", "Petit", "Durand", "Leroy", "Simon", "Laurent", "Michel", "Garcia", "David",
          "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "André", "Blanc", "Guérin", "Boyer",
          "Garnier", "Chevallier", "François", "Legrand", "Gauthier", "Perrin", "Robin", "Clément",
          "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson", "Marchand",
          "Duval", "Denis", "Dumont", "Marie", "Lemaire", "Noël", "Meyer", "Dufour", "Meunier",
          "Brun", "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet", "Gaillard",
          "Barbier", "Arnaud", "Martinez", "Gérard", "Roche", "Renard", "Schmitt", "Roy",
          "Leroux", "Colin", "Vidal", "Caron", "Picard"]
_LABS = ["hémoglobine", "plaquettes", "créatinine", "kaliémie", "natrémie", "glycémie",
         "CRP", "troponine", "lactates", "INR", "leucocytes", "albumine", "bilirubine", "TSH"]
_VITALS = ["saturation", "température", "tension artérielle", "fréquence cardiaque",
           "fréquence respiratoire", "diurèse", "EVA"]
_TRENDS = ["en baisse", "en hausse", "stable", "à recontrôler", "normalisée", "très élevée",
           "limite basse", "inquiétante", "rassurante"]
_DRUGS = ["amoxicilline", "ceftriaxone", "paracétamol", "morphine", "héparine", "énoxaparine",
          "furosémide", "insuline glargine", "insuline asparte", "bisoprolol", "amlodipine",
          "ramipril", "kardégic", "clopidogrel", "apixaban", "rivaroxaban", "oméprazole",
          "pantoprazole", "ondansétron", "métoclopramide", "tramadol", "néfopam", "kétoprofène",
          "prednisolone", "méthylprednisolone", "salbutamol", "lévothyroxine", "metformine",
          "vancomycine", "gentamicine", "pipéracilline-tazobactam", "métronidazole",
          "fluconazole", "aciclovir", "halopéridol", "lorazépam", "chlorure de potassium"]
_ROUTES = ["per os", "IV", "IVSE", "sous-cutané", "en inhalation"]
_EXAMS = ["scanner thoracique", "scanner cérébral", "IRM lombaire", "radio pulmonaire",
          "échographie abdominale", "échographie cardiaque", "ECG", "EEG", "fibroscopie",
          "coloscopie", "doppler veineux", "gazométrie artérielle", "ponction lombaire",
          "hémocultures", "ECBU", "bilan hépatique", "ionogramme", "NFS", "bilan de coagulation"]
_RESULTS = ["sans particularité", "normal", "anomalie à contrôler", "embolie pulmonaire exclue",
            "épanchement pleural gauche", "pas de saignement", "thrombose veineuse profonde",
            "foyer de condensation basal droit", "à discuter au staff", "positif, germe en cours"]
_SYMPTOMS = ["douleur thoracique", "dyspnée", "fièvre à 39", "confusion", "malaise",
             "vomissements", "céphalées", "désaturation", "chute", "hypotension", "tachycardie",
             "agitation", "méléna", "œdème des membres inférieurs", "douleur abdominale",
             "rétention urinaire", "hyperglycémie", "hypoglycémie", "éruption cutanée",
             "toux productive"]
_ACTIONS = ["merci de prévenir l'interne de garde", "bilan sanguin à refaire demain matin",
            "pansement refait, plaie propre", "perfusion de sérum physiologique posée",
            "transfusion de deux culots prévue", "sonde urinaire retirée ce matin",
            "avis cardiologique demandé", "famille prévenue, visite cet après-midi",
            "retour à domicile envisagé vendredi", "kinésithérapie respiratoire deux fois par jour",
            "surveillance neurologique horaire", "régime sans sel, hydratation à surveiller",
            "transfert en réanimation discuté", "consentement signé pour l'intervention"]
_SENTENCE_START = re.compile(r"(?:^|[.!?] )\w")
_TEMPLATES = [
    "{patient}, chambre {bed} : {lab} à {value}, {trend} ; {action}.",
    "Relève : {patient} ({age} ans), {symptom} depuis {hours} h, {vital} {trend}. {action}.",
    "Peux-tu passer voir {patient} chambre {bed} ? {symptom}, {vital} {trend}.",
    "Prescription pour {patient} : {drug} {dose} mg {route}, {action}.",
    "Résultat {exam} de {patient} : {result}.",
    "Urgent : {patient} chambre {bed}, {symptom}, {vital} {trend}. {action} !",
    "{exam} de {patient} programmé demain à {hours} h, à jeun ; {drug} suspendu.",
]
_QUERIES = ["hemoglobine", "plaquettes basse", "creatinine", "kaliemie", "troponine",
            "scanner thoracique", "echographie", "transfusion", "morphine", "heparine",
            "hemoc", "dupont", "lefevre", "guerin", "noel chambre", "riviere", "gerard",
            "vancomycine", "pipera", "kardegic", "levothyrox", "embolie", "epanchement pleural",
            "thrombose", "meléna", "oedeme", "desaturation", "hypoglycemie", "dyspnee",
            "douleur thoracique", "interne de garde", "reanimation", "consentement",
            "domicile vendredi", "kine", "ionogramme", "coagulation", "ECBU", "IRM", "EEG",
            "insuline glargine", "apixaban", "ondansetron", "fibroscopie", "ponction lombaire",
            "foyer condensation", "staff", "a jeun", "sans sel", "culots"]


def clinical_text(rng: random.Random) -> str:
    text = rng.choice(_TEMPLATES).format(
        patient=f"{rng.choice(['M.', 'Mme'])} {rng.choice(_NAMES)}", bed=rng.randint(1, 40),
        lab=rng.choice(_LABS), value=f"{rng.randint(2, 400) / 10:.1f}".replace(".", ","),
        trend=rng.choice(_TRENDS), action=rng.choice(_ACTIONS), age=rng.randint(18, 99),
        symptom=rng.choice(_SYMPTOMS), hours=rng.randint(1, 23), vital=rng.choice(_VITALS),
        drug=rng.choice(_DRUGS), dose=rng.choice([1, 2, 5, 10, 20, 40, 80, 100, 500, 1000]),
        route=rng.choice(_ROUTES), exam=rng.choice(_EXAMS), result=rng.choice(_RESULTS),
    )
    return _SENTENCE_START.sub(lambda m: m.group(0).upper(), text)


def figure(name: str, value: float, unit: str) -> None:
    print(f"figure: {name} = {value:.2f} {unit}", flush=True)


def messages(count: int, seed: int = 7) -> list[NewMessage]:
    rng = random.Random(seed)
    start = 1_700_000_000.0
    return [
        NewMessage(
            ref=MessageRef(f"dev-{rng.randrange(300)}", f"m{i:07d}"),
            room_id=f"room-{rng.randrange(ROOMS)}",
            sender_user=f"u-{rng.randrange(150)}",
            body=clinical_text(rng),
            local_ts=start + i * 3.0 + 0.2,
            server_ts=start + i * 3.0,
        )
        for i in range(count)
    ]


def fill(db: Database, batch: list[NewMessage]) -> tuple[float, float]:
    """Write the messages as the sync engine does, search index included; return (wall, CPU)
    seconds."""
    rooms = RoomStore(db)
    with db.transaction():
        for r in range(ROOMS):
            rooms.save(Room(id=f"room-{r}", group_id=f"group-{r}".encode(),
                            kind=RoomKind.PATIENT, name=f"Patient {r}", created_at=0.0))
    store, search = MessageStore(db), MessageSearch(db)
    wall, cpu = time.perf_counter(), time.thread_time()
    for i in range(0, len(batch), BATCH):
        with db.transaction():
            for m in batch[i : i + BATCH]:
                store.add_incoming(m)
        search.index_pending()  # the engine indexes each batch soon after: count it here
    return time.perf_counter() - wall, time.thread_time() - cpu


def plain_database(path: Path) -> Database:
    """The stdlib's unencrypted sqlite3 behind the same class and schema, for comparison only.

    sqlcipher3 is a fork of the stdlib module: the two connection types share the DB-API. The
    stdlib's SQLite (3.40 here) predates FTS5's secure-delete option (3.42), which only changes
    deletes, so that one statement is left out; every table, index and trigger is the same.
    """
    connection = sqlite3.connect(str(path), isolation_level=None)
    apply_pragmas(connection)  # type: ignore[arg-type]
    db = Database(connection, path)  # type: ignore[arg-type]
    for step in MIGRATIONS:
        with db.transaction():
            for statement in step.statements:
                if "'secure-delete'" not in statement:
                    db.execute(statement)
    return db


def encrypted_database(path: Path, key: bytes) -> Database:
    db = Database.open(path, key, create=True)
    migrate(db)
    return db


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def p50_ms(samples: list[tuple[float, float]], which: int) -> float:
    return statistics.median(s[which] for s in samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="paired insert runs per engine")
    args = parser.parse_args()
    key = os.urandom(32)
    batch = messages(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.db"
        encrypted: list[tuple[float, float]] = []
        plain: list[tuple[float, float]] = []
        for r in range(args.rounds):  # alternated, so background load hits both alike
            for f in Path(tmp).iterdir():
                f.unlink()
            db = plain_database(Path(tmp) / "plain.db")
            plain.append(fill(db, batch))
            db.close()
            db = encrypted_database(path, key)
            encrypted.append(fill(db, batch))
            db.close()
            print(f"round {r + 1}: sqlcipher {encrypted[-1][0]:.1f} s, "
                  f"sqlite3 {plain[-1][0]:.1f} s (wall)", file=sys.stderr)
        # Each round's pair ran back to back under the same background load: the median of the
        # per-round ratios is steadier than a ratio of two separately chosen runs.
        enc_wall, plain_wall = min(e[0] for e in encrypted), min(p[0] for p in plain)
        figure("insert_sqlcipher", enc_wall, "s")
        figure("insert_sqlcipher_rate", args.messages / enc_wall, "msg/s")
        figure("insert_stdlib_sqlite3", plain_wall, "s")
        pairs = list(zip(encrypted, plain, strict=True))
        figure("insert_ratio_sqlcipher_over_sqlite3",
               statistics.median(e[0] / p[0] for e, p in pairs), "x")
        figure("insert_cpu_ratio_sqlcipher_over_sqlite3",
               statistics.median(e[1] / p[1] for e, p in pairs), "x")
        figure("database_size", path.stat().st_size / 2**20, "MiB")

        opens = [timed(lambda: LocalStore.open(path, key).close()) for _ in range(20)]
        figure("open_p50", p50_ms(opens, 0), "ms")

        store = LocalStore.open(path, key)
        reads = [timed(lambda r=r: store.messages.latest(f"room-{r}", limit=50))
                 for r in range(ROOMS)]
        figure("last_50_messages_p50", p50_ms(reads, 0), "ms")
        # The room list: every room with its latest message and counts, in one query.
        overviews = [timed(lambda: store.rooms.overview("reader")) for _ in range(20)]
        figure(f"room_overview_{ROOMS}_rooms_p50", p50_ms(overviews, 0), "ms")

        search: MessageSearch = store.search
        for q in _QUERIES:  # warm the page cache
            search.search(q)
        rng = random.Random(3)
        queries = [rng.choice(_QUERIES) for _ in range(100)]
        searches = [timed(lambda q=q: search.search(q, limit=20)) for q in queries]
        figure("fts_search_p50", p50_ms(searches, 0), "ms")
        figure("fts_search_cpu_p50", p50_ms(searches, 1), "ms")
        figure("fts_search_p95", statistics.quantiles([s[0] for s in searches], n=20)[-1] * 1000,
               "ms")
        in_room = [timed(lambda q=q: search.search(q, rooms=["room-7"])) for q in queries]
        figure("fts_search_one_room_p50", p50_ms(in_room, 0), "ms")
        matches = [len(search.search(q, limit=args.messages).hits) for q in queries]
        figure("fts_matches_per_query_p50", statistics.median(matches), "messages")
        # The worst case: a word in most messages ("chambre"), every match ranked.
        common = [timed(lambda: search.search("chambre")) for _ in range(9)]
        figure("fts_search_common_word_p50", p50_ms(common, 0), "ms")
        figure("fts_common_word_matches", len(search.search("chambre", limit=args.messages).hits),
               "messages")
        store.close()


if __name__ == "__main__":
    main()
