"""Full-text search in French: accents and case ignored, ranked, filtered, paginated."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from storage.local_store import LocalStore
from storage.messages import MessageRef
from storage.search import Fragment, SearchHit, snippet
from tests.storage_support import DEVICE, USER, open_store, patient_room, text

BODIES = {
    "hb": "Hémoglobine à 7,2 g/dl ce matin, transfusion à discuter",
    "hb-upper": "HÉMOGLOBINE EN BAISSE CHEZ MME LEFÈVRE",
    "plq": "Plaquettes à 45 000, pas d'héparine",
    "ecg": "ECG fait : rythme sinusal, pas d'élévation du segment ST",
    "oedeme": "Œdème des membres inférieurs, furosémide augmenté",
    "nfd": unicodedata.normalize("NFD", "Créatinine élevée, hydratation renforcée"),
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    s, _ = open_store(tmp_path / "liaison.db")
    s.rooms.save(patient_room())
    s.rooms.save(replace(patient_room(), id="room-s", group_id=b"s", name="Cardiologie"))
    for i, (client, body) in enumerate(BODIES.items()):
        s.messages.add_incoming(text(client, body, at=1000.0 + i))
    yield s
    s.close()


def found(
    store: LocalStore,
    query: str,
    *,
    rooms: Sequence[str] = (),
    since: float | None = None,
    until: float | None = None,
) -> list[str]:
    page = store.search.search(query, rooms=rooms, since=since, until=until)
    return [h.ref.client_id for h in page.hits]


@pytest.mark.parametrize("query", ["hemoglobine", "HEMOGLOBINE", "Hémoglobine", "hÉmOgLoBiNe",
                                   "hemo"])
def test_accents_and_case_are_ignored(store: LocalStore, query: str) -> None:
    assert sorted(found(store, query)) == ["hb", "hb-upper"]


def test_accented_query_finds_plain_text_and_decomposed_accents(store: LocalStore) -> None:
    assert found(store, "créatinine élevée") == ["nfd"]
    assert found(store, "creatinine elevee") == ["nfd"]
    assert found(store, "lefevre") == ["hb-upper"]
    assert found(store, "heparine") == ["plq"]
    assert found(store, "elevation") == ["ecg"]


def test_all_words_must_match_as_prefixes(store: LocalStore) -> None:
    assert found(store, "hemoglobine transfusion") == ["hb"]
    assert found(store, "plaquet hepar") == ["plq"]
    assert found(store, "hemoglobine plaquettes") == []
    assert found(store, "globine") == []  # prefixes, not substrings
    assert found(store, "ST") == ["ecg"]  # short words match whole words only
    assert found(store, "s") == []
    assert found(store, "pas st") == ["ecg"]


def test_query_syntax_is_never_interpreted(store: LocalStore) -> None:
    for query in ['"', "NOT ecg", "body:ecg", "ecg OR plaquettes", "*", "(", "NEAR(ecg)", "  "]:
        store.search.search(query)  # no FTS5 syntax error
    assert found(store, "ecg OR plaquettes") == []  # "or" is a word that must be present
    assert found(store, "ECG:") == ["ecg"]


def test_better_matches_rank_first(store: LocalStore) -> None:
    store.messages.add_incoming(text("noisy", "Transfusion prévue; patient stable, famille "
                                     "prévenue, retour à domicile envisagé, kiné demain matin",
                                     at=2000.0))
    store.messages.add_incoming(text("twice", "Transfusion : deuxième transfusion ce soir",
                                     at=2001.0))
    assert found(store, "transfusion") == ["twice", "hb", "noisy"]


def test_filters_by_room_and_time(store: LocalStore) -> None:
    store.messages.add_incoming(text("elsewhere", "Hémoglobine normale", room_id="room-s",
                                     at=5000.0))
    assert sorted(found(store, "hemoglobine")) == ["elsewhere", "hb", "hb-upper"]
    assert found(store, "hemoglobine", rooms=["room-s"]) == ["elsewhere"]
    assert sorted(found(store, "hemoglobine", rooms=["room-s", "room-p1"])) == [
        "elsewhere", "hb", "hb-upper"]
    assert found(store, "hemoglobine", since=1001.0, until=5000.0) == ["hb-upper"]
    assert found(store, "hemoglobine", since=5000.0) == ["elsewhere"]


def test_pages_cover_every_hit_once(store: LocalStore) -> None:
    for i in range(25):
        store.messages.add_incoming(text(f"k{i}", f"Kaliémie contrôlée n°{i}", at=3000.0 + i))
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = store.search.search("kaliemie", limit=10, offset=offset)
        seen += [h.ref.client_id for h in page.hits]
        offset = page.next_offset
    assert sorted(seen) == sorted(f"k{i}" for i in range(25)) and len(seen) == 25


def test_hits_carry_a_highlighted_snippet(store: LocalStore) -> None:
    [hit] = store.search.search("transfusion hemoglobine").hits
    assert hit == SearchHit(message_id=hit.message_id, ref=MessageRef(DEVICE, "hb"),
                            room_id="room-p1", sender_user=USER, at=1000.0,
                            snippet=hit.snippet)
    assert hit.snippet == (
        Fragment("Hémoglobine", True),
        Fragment(" à 7,2 g/dl ce matin, ", False),
        Fragment("transfusion", True),
        Fragment(" à discuter", False),
    )
    [decomposed] = store.search.search("elevee").hits
    assert [f.text for f in decomposed.snippet if f.match] == [
        unicodedata.normalize("NFD", "élevée")]


def test_long_snippets_are_cut_around_the_first_match() -> None:
    body = " ".join(f"mot{i}" for i in range(40)) + " hémoglobine " + "fin " * 30
    fragments = snippet(body, ["hemoglobine", "fi"])  # "fi" is too short to match "fin"
    assert fragments[0].text.startswith("…mot37 ") and fragments[-1].text.endswith("…")
    assert [f.text for f in fragments if f.match] == ["hémoglobine"]
    assert snippet("", ["x"]) == ()
    assert snippet("pas de correspondance", ["zzz"]) == (Fragment("pas de correspondance", False),)


def test_index_follows_edits_recalls_and_purges(store: LocalStore) -> None:
    ref = MessageRef(DEVICE, "ecg")
    store.messages.edit(ref, edit=MessageRef(DEVICE, "e1"), editor_user=USER,
                        body="ECG : sus-décalage du segment ST en antérieur", at=4000.0)
    assert found(store, "sus decalage") == ["ecg"]
    assert found(store, "sinusal") == []  # the old text is history, not searchable
    store.messages.recall(MessageRef(DEVICE, "plq"), recaller_user=USER, at=4001.0)
    assert found(store, "plaquettes") == []
    store.messages.add_incoming(text("recent", "Hémoglobine remontée", at=1000.0 + 20 * 86400))
    store.messages.purge_expired(now=1000.0 + 31 * 86400)  # the room keeps 30 days
    assert found(store, "hemoglobine") == ["recent"]
    # The index agrees with the table it indexes (FTS5 raises SQLITE_CORRUPT otherwise).
    store.db.execute("INSERT INTO message_fts (message_fts, rank) VALUES ('integrity-check', 1)")


def indexed(store: LocalStore, word: str) -> list[int]:
    """Row ids the FTS index itself holds for ``word``, without the catch-up a search does."""
    return [row[0] for row in store.db.execute(
        "SELECT rowid FROM message_fts WHERE message_fts MATCH ? ORDER BY rowid", (f'"{word}"',))]


def pending(store: LocalStore) -> int:
    (count,) = store.db.execute("SELECT count(*) FROM message_fts_pending").fetchone()
    return int(count)


def test_bodies_are_indexed_in_batches_and_leave_the_queue_with_their_row(
    store: LocalStore,
) -> None:
    # The fixture's bodies wait in the queue; one catch-up indexes them all.
    assert pending(store) == len(BODIES) and indexed(store, "plaquettes") == []
    assert store.search.index_pending() == len(BODIES)
    assert pending(store) == 0 and store.search.index_pending() == 0
    plq = store.messages.get(MessageRef(DEVICE, "plq"))
    assert plq is not None and indexed(store, "plaquettes") == [plq.id]

    # Still queued when edited, recalled or purged: the queue follows, nothing is indexed twice
    # and nothing erased is indexed at all.
    store.messages.add_incoming(text("k1", "Kaliémie à 6,1", at=1100.0))
    store.messages.add_incoming(text("k2", "Kaliémie contrôlée", at=1101.0))
    store.messages.add_incoming(text("k3", "Kaliémie à 3,2", at=1102.0))
    store.messages.edit(MessageRef(DEVICE, "k1"), edit=MessageRef(DEVICE, "k1-e"),
                        editor_user=USER, body="Kaliémie à 6,4 recontrôlée", at=1103.0)
    store.messages.recall(MessageRef(DEVICE, "k2"), recaller_user=USER, at=1104.0)
    assert pending(store) == 2  # k1 (its new text) and k3
    # An indexed body recalled leaves the index at once, without waiting for a batch.
    store.messages.recall(MessageRef(DEVICE, "plq"), recaller_user=USER, at=1105.0)
    assert indexed(store, "plaquettes") == []
    assert store.search.index_pending() == 2
    assert sorted(found(store, "kaliemie")) == ["k1", "k3"]
    assert found(store, "recontrolee") == ["k1"] and found(store, "controlee") == []
    store.messages.add_incoming(text("late", "Hémoglobine recontrôlée", at=1200.0 + 40 * 86400))
    store.messages.purge_expired(now=1000.0 + 31 * 86400)  # indexed and queued rows alike
    assert pending(store) == 1 and indexed(store, "kaliemie") == []
    assert found(store, "recontrolee") == ["late"]  # the search caught up first
    store.db.execute("INSERT INTO message_fts (message_fts, rank) VALUES ('integrity-check', 1)")
