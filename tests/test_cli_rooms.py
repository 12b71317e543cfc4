"""The `liaison` room, edit, recall, search and directory commands, as subprocesses against the
real relay process."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from app.cli.custody import profile_custody
from app.client.engine import Engine
from tests.engine_support import Watched
from tests.forged_client import forced_commit
from tests.relay_harness import RelayProcess, running_relay
from tests.test_cli_client import ENV, LIAISON, liaison


def failing(profile: Path, *args: str) -> str:
    """Run a command that must fail cleanly; its error message."""
    out = subprocess.run([str(LIAISON), "--profile", str(profile), *args], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    return out.stderr


def shown(profile: Path, room: str) -> dict[str, dict[str, object]]:
    return {m["id"]: m for m in json.loads(liaison(profile, "messages", "--json", "--", room))}


def enrolled(relay: RelayProcess, tmp_path: Path, profession: str) -> dict[Path, str]:
    """Alice, Bob and Carole enrolled through the CLI: each profile and its user id."""
    ids = {}
    for name, full_name in (("alice", "Alice Martin"), ("bob", "Bob Durand"),
                            ("carol", "Carole Lefèvre")):
        profile = tmp_path / name
        ids[profile] = relay.add_user(full_name, profession)
        liaison(profile, "enroll", "--relay", relay.url, "--code", relay.invite(ids[profile]))
    return ids


def test_rooms_edits_recalls_search_and_directory_through_the_cli(tmp_path):
    alice, bob, carol = (tmp_path / name for name in ("alice", "bob", "carol"))
    with running_relay(tmp_path) as relay:
        ids = enrolled(relay, tmp_path, "physician")
        room = liaison(alice, "room", "create", "--kind", "group", "--name", "Réa",
                       "--member", ids[bob]).split()[-1]

        assert liaison(alice, "room", "invite", "--", room, ids[carol]).strip() == (
            f"invited {ids[carol]}")
        liaison(carol, "sync", "--wait", "3")
        assert room in liaison(carol, "room", "list")
        liaison(bob, "sync", "--wait", "3")
        assert "owners and moderators" in failing(bob, "room", "remove", "--", room, ids[carol])
        assert "reads the room" in failing(alice, "room", "reopen", "--", room)  # nothing to repair

        sent = liaison(alice, "send", "--", room, "Lit 3 : VVP posée").split()[-1]
        assert liaison(alice, "edit", sent, "Lit 3 : VVP posée à 14 h").split() == [
            "edited", sent]
        assert f"{sent} changed" in liaison(bob, "sync", "--wait", "3")
        assert "only its sender" in failing(bob, "edit", sent, "Lit 3 : rien")
        message = shown(bob, room)[sent]
        assert (message["body"], message["edited"]) == ("Lit 3 : VVP posée à 14 h", True)
        assert "(1 unread)" in liaison(bob, "room", "list")  # an edit is no new message
        (hit,) = liaison(bob, "search", "vvp", "--room", room).splitlines()
        assert hit.split()[:3] == [room, sent, ids[alice]] and "[VVP]" in hit

        assert liaison(alice, "recall", sent).split() == ["recalled", sent]
        liaison(bob, "sync", "--wait", "3")
        message = shown(bob, room)[sent]
        assert (message["body"], message["recalled"]) == (None, True)
        assert liaison(bob, "search", "vvp").strip() == ""

        liaison(alice, "room", "remove", "--", room, ids[carol])
        liaison(bob, "room", "leave", "--", room)
        assert room not in liaison(bob, "room", "list")
        liaison(alice, "sync", "--wait", "3")
        liaison(carol, "sync", "--wait", "3")
        assert "no longer a member" in failing(carol, "send", "--", room, "encore là ?")

        assert "Bob Durand" in liaison(alice, "directory", "durand")
        relay.stop()
        assert ids[bob] in liaison(alice, "directory", "duran")  # from the cache, offline
        assert "Carole" not in liaison(alice, "directory", "lefevre")  # never looked up


async def _rename_past_the_rules(profile: Path, room: str) -> None:
    """Bob's modified client: a rename a plain member may not make, which the blind relay takes,
    and a message in the epoch it made."""
    watched = Watched(Engine.open(profile, profile_custody(profile)))
    await watched.engine.start()
    try:
        await forced_commit(watched, room, name="Renommée par Bob")
        await watched.engine.send_text(room, "dans l'époque refusée")
    finally:
        await watched.engine.stop()


def test_a_room_nobody_reads_is_opened_again_and_the_old_one_leads_there(tmp_path, monkeypatch):
    monkeypatch.setenv("LIAISON_PASSPHRASE", ENV["LIAISON_PASSPHRASE"])  # Bob's, in process
    alice, bob, carol = (tmp_path / name for name in ("alice", "bob", "carol"))
    with running_relay(tmp_path) as relay:
        ids = enrolled(relay, tmp_path, "nurse")
        room = liaison(alice, "room", "create", "--kind", "group", "--name", "Réa",
                       "--member", ids[bob], "--member", ids[carol]).split()[-1]
        for profile in (bob, carol):
            liaison(profile, "sync", "--wait", "3")
        asyncio.run(_rename_past_the_rules(bob, room))
        for profile in (alice, carol):
            liaison(profile, "sync", "--wait", "3")
        assert "UNREADABLE here: see `room reopen`" in liaison(carol, "room", "list")
        assert "owners and moderators" in failing(carol, "room", "reopen", "--", room)

        new_room = liaison(alice, "room", "reopen", "--", room).split()[-1]
        liaison(carol, "sync", "--wait", "3")
        listed = {line.split()[0]: line for line in liaison(carol, "room", "list").splitlines()}
        assert f"UNREADABLE here: opened again as {new_room}" in listed[room]
        assert "UNREADABLE" not in listed[new_room]
