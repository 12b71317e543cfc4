"""The `liaison` command-line client as a subprocess, against the real relay process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.relay_harness import running_relay

LIAISON = Path(sys.executable).parent / "liaison"
ENV = {**os.environ, "LIAISON_PASSPHRASE": "cli test passphrase",
       "LIAISON_KEY_CUSTODY": "passphrase"}
TEXT = "CLI-MARKER-7f3a bonjour Bob"


def liaison(profile: Path, *args: str) -> str:
    """Run `liaison --profile PROFILE ARGS...`; its stdout, or a failure showing stderr."""
    out = subprocess.run([str(LIAISON), "--profile", str(profile), *args], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"liaison {' '.join(args)}: {out.stderr}"
    return out.stdout


def test_two_users_exchange_a_message_through_the_cli(tmp_path):
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    with running_relay(tmp_path) as relay:
        alice_id = relay.add_user("Alice Martin", "physician")
        bob_id = relay.add_user("Bob Durand", "nurse")
        secret_file = tmp_path / "alice.totp"
        out = liaison(alice, "enroll", "--relay", relay.url, "--code", relay.invite(alice_id),
                      "--totp-secret-out", str(secret_file))
        assert "otpauth://totp/" in out
        secret = secret_file.read_text().strip()
        assert secret and f"secret={secret}" in out and secret_file.stat().st_mode & 0o077 == 0
        liaison(bob, "enroll", "--relay", relay.url, "--code", relay.invite(bob_id))
        assert (alice / "custody").read_text().strip() == "passphrase"

        assert alice_id in liaison(alice, "whoami")
        assert "Bob Durand" in liaison(alice, "directory", "Durand")
        assert "this device" in liaison(bob, "devices")

        created = liaison(alice, "room", "create", "--kind", "group", "--name", "Cardio",
                          "--member", bob_id)
        room = created.split()[-1]
        assert liaison(alice, "send", "--", room, TEXT).split()[0] == "sent"

        liaison(bob, "sync", "--wait", "3")
        assert room in liaison(bob, "room", "list")
        shown = json.loads(liaison(bob, "messages", "--json", "--", room))
        assert [(m["sender"], m["body"]) for m in shown] == [(alice_id, TEXT)]

        urgent = liaison(alice, "send", "--urgent", "--", room, "Lit 12").split()[-1]
        liaison(bob, "sync", "--wait", "2")
        assert liaison(bob, "ack", urgent).split() == ["acknowledged", urgent]
        assert f"{urgent} acknowledged by {bob_id}" in liaison(alice, "sync", "--wait", "2")
        shown = json.loads(liaison(alice, "messages", "--json", "--", room))
        assert [(m["body"], m["status"]) for m in shown] == [
            (TEXT, "delivered"), ("Lit 12", "acknowledged")
        ]

    marker = TEXT.split()[0].encode()
    for profile in (alice, bob):
        for path in profile.rglob("*"):
            assert not path.is_file() or marker not in path.read_bytes(), path


def test_commands_fail_cleanly_without_an_enrolment(tmp_path):
    out = subprocess.run([str(LIAISON), "--profile", str(tmp_path / "none"), "whoami"], env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "enrol first" in out.stderr
