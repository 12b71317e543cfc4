"""The `liaison` command-line client as a subprocess, against the real relay process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.relay_harness import free_port, running_relay

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


def _readme_session() -> str:
    """The first shell block of the README's "Trying Liaison with a local relay", verbatim."""
    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    section = readme.split("## Trying Liaison with a local relay", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_session_works_as_written(tmp_path):
    """Copy-pasted into a shell at the repository's root, the README's session enrols two
    users who exchange a message and a document; only the port changes, to a free one."""
    session = _readme_session()
    assert session.count("8765") >= 3
    port = str(free_port())
    script = "set -eu\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + session.replace("8765", port)
    env = {**ENV, "TMPDIR": str(tmp_path)}  # DEMO=$(mktemp -d) lands in tmp_path
    shell = subprocess.Popen(["bash", "-c", script], cwd=Path(__file__).parents[1], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = shell.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the relay too, whatever happened
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, err
    (demo,) = [p for p in tmp_path.iterdir() if (p / "relay").is_dir()]
    lines = out.splitlines()
    text = "Bonjour Bob, le patient du lit 12 est arrivé"
    assert any("Cardiologie" in line and "1 unread" in line for line in lines)  # room list
    assert sum(line.endswith(f"delivered  {text}") for line in lines) >= 2  # sync, messages
    document = (demo / "cr.pdf").read_bytes()
    assert document.startswith(b"%PDF-1.4\n")
    assert any(f"[cr.pdf, {len(document)} bytes] CR du lit 12" in line for line in lines)
    assert lines[-1] == f"saved {len(document)} bytes to {demo / 'cr-bob.pdf'}"
    assert (demo / "cr-bob.pdf").read_bytes() == document
