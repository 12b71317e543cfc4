"""The audit trail: metadata only, chained, and any edit, deletion or reordering is caught."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess

import pytest

from tests.relay_harness import BIN, cli, new_device, running_relay


@pytest.fixture
def relay_with_history(tmp_path):
    with running_relay(tmp_path) as relay:
        new_device(relay)
        new_device(relay)
    return relay  # stopped: the database is quiet


def _verify(relay) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "audit", "verify", "--data", str(relay.data)],
                          capture_output=True, text=True, timeout=60)


def test_intact_trail_verifies_and_exports_metadata(relay_with_history):
    relay = relay_with_history
    r = _verify(relay)
    assert r.returncode == 0 and "intact" in r.stdout
    lines = cli(relay.data, "audit export").splitlines()
    records = [json.loads(line) for line in lines]
    events = [rec["event"] for rec in records]
    assert events.count("device_enrolled") == 2 and events.count("login") == 2
    assert [rec["seq"] for rec in records] == list(range(1, len(records) + 1))
    assert all(rec["prev_hash"] == prev["hash"] for prev, rec in itertools.pairwise(records))


@pytest.mark.parametrize("tamper", [
    "UPDATE audit SET details = replace(details, 'admin-cli', 'someone') WHERE seq = 2",
    "UPDATE audit SET event = 'login' WHERE seq = 3",
    "DELETE FROM audit WHERE seq = 3",
    "UPDATE audit SET seq = 1000 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; "
    "UPDATE audit SET seq = 3 WHERE seq = 1000",
    "UPDATE audit SET at = at + 1 WHERE seq = 4",
    # the newest records vanish: only the relay's signed head can tell
    "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
])
def test_any_edit_deletion_or_reordering_is_caught(relay_with_history, tamper):
    relay = relay_with_history
    db = sqlite3.connect(relay.data / "relay.db")
    with db:
        db.executescript(tamper)
    db.close()
    r = _verify(relay)
    assert r.returncode == 1, r.stdout
    assert "BROKEN" in r.stdout
