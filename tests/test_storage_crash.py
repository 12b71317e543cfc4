"""A writer killed with SIGKILL mid-burst leaves a database that opens, whole and consistent.

The writer is this file run as a script: it caches outgoing messages (each with its outbox
row) and prints a message's client id only once its transaction has committed. Whatever was
printed must be there exactly once with its outbox row; whatever was not may be there, but
only whole: never a message without its outbox row, never part of a batch.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from storage.local_store import LocalStore
from storage.messages import MessageRef
from storage.outbox import OutboundEnvelope
from tests.storage_support import DEVICE, open_store, patient_room, text

REPO = Path(__file__).resolve().parents[1]
BODY = "Relève de nuit : constantes stables, hémoglobine à recontrôler. " * 30  # ~2 KB


def write_burst(path: Path, key: bytes, batch: int) -> None:
    """The child: write messages until killed, ``batch`` per transaction."""
    store = LocalStore.open(path, key)
    for start in range(0, 1_000_000, batch):
        ids = [f"m{i:07d}" for i in range(start, start + batch)]
        with store.db.transaction():
            for client_id in ids:
                message = replace(text(client_id, f"{client_id} {BODY}"), server_ts=None)
                envelope = OutboundEnvelope(client_id=client_id, group_id=b"room-p1",
                                            frame=f"frame of {client_id}".encode())
                store.messages.add_outgoing(message, envelope)
        print(" ".join(ids), flush=True)


def run_and_kill(path: Path, key: bytes, *, batch: int, after: int, delay: float) -> set[str]:
    """Start a writer, SIGKILL it ``delay`` s after ``after`` batches committed; return the
    client ids it reported committed."""
    child = subprocess.Popen(
        [sys.executable, __file__, str(path), str(batch)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "LIAISON_TEST_KEY": key.hex()},
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    reported: set[str] = set()
    try:
        for _ in range(after):
            reported.update(child.stdout.readline().split())
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
        reported.update(child.stdout.read().split())
    finally:
        child.kill()
        child.stdout.close()
    return reported


def check_consistent(path: Path, key: bytes, reported: set[str], batch: int) -> set[str]:
    store = LocalStore.open(path, key)
    try:
        assert store.db.integrity_problems() == []
        store.search.index_pending()  # as the next search would, then the index must agree
        store.db.execute(
            "INSERT INTO message_fts (message_fts, rank) VALUES ('integrity-check', 1)")
        messages = [row[0] for row in store.db.execute("SELECT client_id FROM messages")]
        outbox = [row[0] for row in store.db.execute(
            "SELECT m.client_id FROM outbox o JOIN messages m ON m.id = o.message_id"
            " WHERE o.client_id = m.client_id")]
        (orphans,) = store.db.execute(
            "SELECT count(*) FROM outbox WHERE message_id IS NULL").fetchone()
        assert len(messages) == len(set(messages))  # exactly once
        assert sorted(outbox) == sorted(messages) and orphans == 0  # each with its row
        assert reported <= set(messages)  # nothing committed is lost
        numbers = sorted(int(m[1:]) for m in messages)
        assert numbers == list(range(len(numbers)))  # no gap: writes landed in order
        assert len(numbers) % batch == 0  # whole transactions only
        for client_id in random.sample(messages, min(20, len(messages))):
            message = store.messages.get(MessageRef(DEVICE, client_id))
            assert message is not None and message.body == f"{client_id} {BODY}"
        return set(messages)
    finally:
        store.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("batch", "after", "delay"),
    [(1, 1, 0.0), (1, 40, 0.013), (1, 400, 0.1), (25, 3, 0.0), (25, 30, 0.05), (100, 12, 0.2)],
)
def test_sigkill_mid_burst(tmp_path: Path, batch: int, after: int, delay: float) -> None:
    store, key = open_store(tmp_path / "liaison.db")
    store.rooms.save(patient_room())
    store.close()
    reported = run_and_kill(tmp_path / "liaison.db", key, batch=batch, after=after, delay=delay)
    assert len(reported) >= after * batch
    present = check_consistent(tmp_path / "liaison.db", key, reported, batch)
    assert present  # and the database keeps working after recovery
    store = LocalStore.open(tmp_path / "liaison.db", key)
    store.messages.add_incoming(text("after-crash", "Toujours là"))
    store.close()


if __name__ == "__main__":
    write_burst(Path(sys.argv[1]), bytes.fromhex(os.environ["LIAISON_TEST_KEY"]),
                int(sys.argv[2]))
