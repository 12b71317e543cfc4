"""What a modified client could send: commits and posts past its engine's checks, to test
that every receiver enforces the room's rules by itself."""

from __future__ import annotations

import secrets

from pydantic import BaseModel

from crypto import extensions as ext
from protocol import frames as fr
from tests.engine_support import Watched, group_of


async def forced_commit(watched: Watched, room_id: str, **state_changes: object) -> None:
    """What a modified client could do: commit a room-state change without the engine's
    checks. The relay, blind to the room state, accepts it."""
    engine = watched.engine
    group = group_of(engine, room_id)
    state = engine.room_state(room_id).model_copy(update=state_changes)
    pending = group.commit(
        extensions=[ext.Extension(ext.LIAISON_ROOM_STATE, state.model_dump_json().encode())]
    )
    frame = fr.Commit(
        id=secrets.token_urlsafe(16), group_id=group.group_id, epoch=group.epoch,
        payload=pending.message,
    )
    answer = await engine._request(engine._online(), frame, lambda: group.apply(pending))
    assert isinstance(answer, fr.Accepted)


async def forced_post(watched: Watched, room_id: str, content: BaseModel) -> None:
    """A modified client posting without the engine's checks."""
    group = group_of(watched.engine, room_id)
    payload = group.encrypt(content.model_dump_json().encode())
    frame = fr.Send(id=secrets.token_urlsafe(16), group_id=group.group_id, payload=payload)
    await watched.engine._online().send(frame)
