"""Notices of new messages against real engines and a real relay: how many, urgent or not,
never the text, the sender or the room's name; none for the room the window shows."""

from __future__ import annotations

import pytest

from app.client.events import MessageReceived, MessageSent, RoomChanged
from app.ui.viewmodels.conversation_list import ConversationList
from app.ui.viewmodels.notifications import Notifications
from storage.custody import MemoryCustody
from storage.rooms import RoomKind
from tests.engine_support import enroll


@pytest.mark.asyncio
async def test_a_notice_counts_new_messages_and_tells_nothing_else(relay, tmp_path):
    custody = MemoryCustody()
    alice = await enroll(relay, tmp_path, "Alice Martin", custody)
    bob = await enroll(relay, tmp_path, "Bruno Petit", custody)
    room_id = await alice.engine.create_room(RoomKind.PATIENT, "DURAND Jean",
                                             [bob.engine.user_id])
    await bob.next(RoomChanged)
    shown: list[str | None] = [None]  # the room Bruno's window shows
    now = [0.0]
    notifications = Notifications(bob.engine, lambda: shown[0], lasts=8.0,
                                  clock=lambda: now[0])
    rooms = ConversationList(bob.engine)  # whose ``unread`` the window's title shows
    assert notifications.notice is None and rooms.unread == 0

    await alice.engine.send_text(room_id, "Tension 9/5, je monte.")
    await bob.next(MessageReceived)
    notice = notifications.notice
    assert notice is not None
    assert (notice.room_id, notice.count, notice.urgent, notice.text_key) == (
        room_id, 1, False, "notice.new")
    for secret in ("Tension", "DURAND", "Alice"):  # what a lock screen must not show
        assert secret not in repr(notice)
    assert rooms.unread == 1
    now[0] = 1.0

    await alice.engine.send_text(room_id, "Venez vite.", urgent=True)
    await bob.next(MessageReceived)
    notice = notifications.notice
    assert notice is not None and (notice.count, notice.urgent, notice.text_key) == (
        2, True, "notice.urgent")

    await bob.engine.send_text(room_id, "J'arrive.")  # one's own message: no notice
    await bob.next(MessageSent)
    assert notifications.notice == notice

    now[0] = 9.0  # the notice went away: the next message starts a new one
    await alice.engine.send_text(room_id, "Finalement c'est bon.")
    await bob.next(MessageReceived)
    assert notifications.notice is not None
    assert (notifications.notice.count, notifications.notice.urgent) == (1, False)
    notifications.dismiss(notice)  # an older notice's end leaves the new one alone
    assert notifications.notice is not None

    notifications.dismiss()
    shown[0] = room_id  # Bruno opens the room: its messages need no notice
    await alice.engine.send_text(room_id, "Merci.")
    await bob.next(MessageReceived)
    assert notifications.notice is None

    last = bob.engine.messages(room_id, limit=1)[-1]
    await bob.engine.mark_read(room_id, last.ref)
    rooms.refresh()
    assert rooms.unread == 0 and notifications.notice is None
    notifications.close()
    rooms.close()
