"""Who may do what in a room: the rules every member checks, the sender and each receiver alike.

Roles live in the room state inside the encrypted group, so the relay cannot check them: a
member's device is the only place they can be enforced. The sender checks so that the user
gets a clear refusal; every receiver checks again, because a modified client could skip that,
and does not take a commit or message that breaks them. Sans-I/O: plain values in, a
``RuleBroken`` out.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.client.content import RoomState
from storage.members import RoomRole

MANAGERS = frozenset({RoomRole.OWNER, RoomRole.ADMIN})


class RuleBroken(Exception):
    """A change or message the room's rules do not allow; the message says why, for the UI."""


def role_of(state: RoomState, user_id: str) -> RoomRole:
    """A user's role in the room; users the state does not name are plain members."""
    return state.roles.get(user_id, RoomRole.MEMBER)


def manages(state: RoomState, user_id: str) -> bool:
    """Whether the user is an owner or a moderator of the room (for a UI to offer what
    ``check_manage`` allows)."""
    return role_of(state, user_id) in MANAGERS


def check_manage(state: RoomState, user_id: str) -> None:
    """Adding or removing other users and changing the room's state take an owner or a
    moderator."""
    if not manages(state, user_id):
        raise RuleBroken("only the room's owners and moderators may do that")


def check_send(state: RoomState, user_id: str) -> None:
    """Posting (a message, an edit, a recall); receipts are not posts and are always allowed."""
    if state.archived:
        raise RuleBroken("the room is archived: it is read-only")
    if role_of(state, user_id) is RoomRole.OBSERVER:
        raise RuleBroken("observers of a room cannot post in it")


def check_commit(
    committer: str,
    before: RoomState,
    after: RoomState,
    devices_before: Mapping[str, str],
    devices_after: Mapping[str, str],
    leaving: frozenset[str] = frozenset(),
) -> None:
    """A commit by ``committer`` (a user id) moving the room from ``before`` to ``after``.

    ``devices_*`` map device ids to their users; ``leaving`` are devices whose own user asked
    to be removed, which any member may commit. Anyone may add or remove their own user's
    devices (linking a device, leaving) and commit nothing but fresh keys.
    """
    if after.kind is not before.kind:
        raise RuleBroken("a room's kind cannot change")
    others_added = {u for d, u in devices_after.items() if d not in devices_before} - {committer}
    others_removed = {
        u for d, u in devices_before.items() if d not in devices_after and d not in leaving
    } - {committer}
    if after != before or others_added or others_removed:
        check_manage(before, committer)
    if _owners_changed(before, after) and role_of(before, committer) is not RoomRole.OWNER:
        raise RuleBroken("only an owner may make or unmake owners")


def _owners_changed(before: RoomState, after: RoomState) -> bool:
    def owners(state: RoomState) -> set[str]:
        return {u for u, role in state.roles.items() if role is RoomRole.OWNER}

    return owners(before) != owners(after)
