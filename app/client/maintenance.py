"""What keeps a device's keys healthy, decided without I/O: when to renew a room's keys with
an empty commit (post-compromise security), how many KeyPackages to publish, which refusals of
the relay are final.

Self-update. Every commit the engine builds carries a fresh UpdatePath, which gives the room
new epoch secrets and renews the committer's leaf. Two triggers, with a different reset each:
- the room's message count (all members count the same messages) restarts at every commit,
  whoever made it: the first member to reach the threshold commits and the others, processing
  that commit, start again from zero, so one member does it at a time;
- the age of this device's own leaf restarts only at its own commits: a device that never
  commits would otherwise keep the same leaf key for ever, and a leaf stolen from it would
  keep opening the room's path secrets.
An update that loses the race for its epoch is dropped rather than rebuilt (someone else just
gave the room fresh secrets); if it was due by age it stays due, and is tried again later.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.problems import Code, Problem
from storage.room_activity import RoomActivity

WEEK = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class MaintenancePolicy:
    """Thresholds; tests use small ones."""

    update_after_messages: int = 1000
    update_after_seconds: float = WEEK
    key_packages_low: int = 10  # fewer one-time KeyPackages left on the relay: top up…
    key_packages_full: int = 20  # …to this many


def update_due(policy: MaintenancePolicy, activity: RoomActivity, now: float) -> bool:
    """Whether this device should commit a fresh path in the room now."""
    return (
        activity.messages >= policy.update_after_messages
        or now - activity.updated_at >= policy.update_after_seconds
    )


def key_packages_missing(policy: MaintenancePolicy, available: int) -> int:
    """How many one-time KeyPackages to publish when the relay holds ``available``."""
    return policy.key_packages_full - available if available < policy.key_packages_low else 0


TRANSIENT = frozenset({Code.RATE_LIMITED, Code.STALE_EPOCH})


def refusal_is_final(problem: Problem) -> bool:
    """A refused frame goes again later (rate limited, relay trouble) or never (not a member
    any more, malformed, too large): resending the same bytes cannot change those answers."""
    return problem.status < 500 and problem.code not in TRANSIENT
