"""The room's rules (app/client/roles.py) as plain values: who may post, add, remove, change."""

from __future__ import annotations

import pytest

from app.client import roles
from app.client.content import RoomState
from storage.members import RoomRole
from storage.rooms import RoomKind

STATE = RoomState(
    kind=RoomKind.GROUP,
    name="Réa",
    roles={"owner": RoomRole.OWNER, "mod": RoomRole.ADMIN, "watcher": RoomRole.OBSERVER},
)
DEVICES = {"o1": "owner", "m1": "mod", "p1": "plain", "p2": "plain", "w1": "watcher"}


def _without(*devices: str) -> dict[str, str]:
    return {d: u for d, u in DEVICES.items() if d not in devices}


def test_roles_default_to_member():
    assert roles.role_of(STATE, "plain") is RoomRole.MEMBER
    assert roles.role_of(STATE, "watcher") is RoomRole.OBSERVER


@pytest.mark.parametrize("user", ["owner", "mod", "plain"])
def test_members_owners_and_moderators_post(user):
    roles.check_send(STATE, user)


def test_observers_do_not_post():
    with pytest.raises(roles.RuleBroken, match="observers"):
        roles.check_send(STATE, "watcher")


@pytest.mark.parametrize("user", ["owner", "mod", "plain"])
def test_nobody_posts_in_an_archived_room(user):
    with pytest.raises(roles.RuleBroken, match="archived"):
        roles.check_send(STATE.model_copy(update={"archived": True}), user)


@pytest.mark.parametrize(("user", "allowed"), [("owner", True), ("mod", True), ("plain", False),
                                               ("watcher", False)])
def test_managing_takes_an_owner_or_moderator(user, allowed):
    if allowed:
        roles.check_manage(STATE, user)
    else:
        with pytest.raises(roles.RuleBroken):
            roles.check_manage(STATE, user)


@pytest.mark.parametrize("committer", ["owner", "mod"])
def test_managers_add_remove_and_change_state(committer):
    renamed = STATE.model_copy(update={"name": "Réanimation", "retention_days": 30})
    added = {**DEVICES, "n1": "newcomer"}
    roles.check_commit(committer, STATE, renamed, DEVICES, added)
    roles.check_commit(committer, STATE, STATE, DEVICES, _without("p1", "p2"))


def test_a_plain_member_may_not_add_remove_or_change_state():
    with pytest.raises(roles.RuleBroken):
        roles.check_commit("plain", STATE, STATE, DEVICES, {**DEVICES, "n1": "newcomer"})
    with pytest.raises(roles.RuleBroken):
        roles.check_commit("plain", STATE, STATE, DEVICES, _without("m1"))
    with pytest.raises(roles.RuleBroken):
        roles.check_commit("plain", STATE, STATE.model_copy(update={"name": "x"}), DEVICES, DEVICES)
    promoted = STATE.model_copy(update={"roles": {**STATE.roles, "plain": RoomRole.ADMIN}})
    with pytest.raises(roles.RuleBroken):
        roles.check_commit("plain", STATE, promoted, DEVICES, DEVICES)


def test_anyone_manages_their_own_devices_and_updates_keys():
    roles.check_commit("plain", STATE, STATE, DEVICES, {**DEVICES, "p3": "plain"})  # linking
    roles.check_commit("watcher", STATE, STATE, DEVICES, _without("w1"))
    roles.check_commit("watcher", STATE, STATE, DEVICES, DEVICES)  # a self-update


def test_anyone_commits_a_member_leaving_by_its_own_proposal():
    roles.check_commit("plain", STATE, STATE, DEVICES, _without("m1"), leaving=frozenset({"m1"}))
    with pytest.raises(roles.RuleBroken):  # leaving covers only the device that asked
        roles.check_commit("plain", STATE, STATE, DEVICES, _without("m1", "o1"),
                           leaving=frozenset({"m1"}))


def test_only_owners_make_or_unmake_owners():
    promoted = STATE.model_copy(update={"roles": {**STATE.roles, "plain": RoomRole.OWNER}})
    with pytest.raises(roles.RuleBroken, match="owner"):
        roles.check_commit("mod", STATE, promoted, DEVICES, DEVICES)
    roles.check_commit("owner", STATE, promoted, DEVICES, DEVICES)
    demoted = STATE.model_copy(update={"roles": {"mod": RoomRole.ADMIN}})
    with pytest.raises(roles.RuleBroken, match="owner"):
        roles.check_commit("mod", STATE, demoted, DEVICES, DEVICES)
    observer = STATE.model_copy(update={"roles": {**STATE.roles, "plain": RoomRole.OBSERVER}})
    roles.check_commit("mod", STATE, observer, DEVICES, DEVICES)


def test_a_room_keeps_its_kind():
    with pytest.raises(roles.RuleBroken, match="kind"):
        roles.check_commit("owner", STATE, STATE.model_copy(update={"kind": RoomKind.PATIENT}),
                           DEVICES, DEVICES)
