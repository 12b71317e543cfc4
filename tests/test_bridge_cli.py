"""`liaison-bridge` as an administrator runs it: a profile enrolled with `liaison enroll`, the
service as a process on a real MLLP port, then the dead letters listed and replayed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.bridge_support import Patient, Sender, adt
from tests.relay_harness import free_port

LIAISON = Path(sys.executable).parent / "liaison"
BRIDGE = [sys.executable, "-m", "app.bridge.cli"]
ENV = {**os.environ, "LIAISON_PASSPHRASE": "bridge test passphrase",
       "LIAISON_KEY_CUSTODY": "passphrase"}
DUBOIS = Patient(ipp="830066394", ins="160056912345622", family="DUBOIS", given="Marc",
                 birth="19600515")
RPPS = "10007654321"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)


def wait_for_port(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("liaison-bridge did not start listening")


async def send_all(port: int, messages: list[bytes]) -> list[tuple[str, str]]:
    async with Sender(port) as hospital:
        return [await hospital.send(m) for m in messages]


def test_serve_then_list_and_replay_dead_letters(relay, tmp_path):
    profile, physician = tmp_path / "bridge", tmp_path / "physician"
    bridge_id = relay.add_user("Passerelle ADT", "integration")
    physician_id = relay.add_user("Anne Lemaire", "physician", "--rpps", RPPS)
    for path, user in ((profile, bridge_id), (physician, physician_id)):
        out = run(str(LIAISON), "--profile", str(path), "enroll", "--relay", relay.url,
                  "--code", relay.invite(user))
        assert out.returncode == 0, out.stderr
    config = tmp_path / "bridge.json"
    config.write_text(json.dumps({"facility": "CHU_TEST",
                                  "wards": {"CARDIO": {"users": [physician_id]}}}))
    port = free_port()
    serve = subprocess.Popen([*BRIDGE, "serve", "--profile", str(profile), "--config",
                              str(config), "--listen", f"127.0.0.1:{port}"],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, serve)
        update = adt("A08", "UPD-9", DUBOIS)
        admit = adt("A01", "ADM-9", DUBOIS, ward="CARDIO", rpps=RPPS, visit="VN-9")
        answers = asyncio.run(send_all(port, [update, admit]))
        assert [code for code, _ in answers] == ["AE", "AA"]
        busy = run(*BRIDGE, "dead-letters", "replay-all", "--profile", str(profile),
                   "--config", str(config))
        assert busy.returncode == 1 and "stop it first" in busy.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        _, log = serve.communicate(timeout=60)
    assert serve.returncode == 0, log
    assert "DUBOIS" not in log and DUBOIS.ipp not in log  # the log names no patient

    listed = run(*BRIDGE, "dead-letters", "list", "--profile", str(profile))
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(row[2], row[3]) for row in rows] == [("AE", "UPD-9")]
    assert "no patient room" in rows[0][4]

    replayed = run(*BRIDGE, "dead-letters", "replay-all", "--profile", str(profile),
                   "--config", str(config))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.split() == [rows[0][0], "AA", "applied"]
    assert run(*BRIDGE, "dead-letters", "list", "--profile", str(profile)).stdout == ""

    out = run(str(LIAISON), "--profile", str(physician), "sync", "--wait", "3")
    assert out.returncode == 0, out.stderr
    rooms = run(str(LIAISON), "--profile", str(physician), "room", "list")
    assert "DUBOIS Marc" in rooms.stdout
