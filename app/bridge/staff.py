"""Attending physicians found in the relay's directory by RPPS (PV1-7 carries no user id).

The directory is searched by name, not by RPPS, so the bridge reads it whole, page by page,
and keeps the RPPS → user map; a miss reads it again once, so a physician an administrator has
just added is found when the dead letter is replayed.
"""

from __future__ import annotations

from app.client.relay_api import RelayClient
from storage.accounts import Account

PAGE = 100


class StaffDirectory:
    def __init__(self, account: Account) -> None:
        self._account = account
        self._relay = RelayClient(account.relay_url)
        self._by_rpps: dict[str, str] = {}

    async def user_of(self, rpps: str) -> str | None:
        """The active user with this RPPS, if the directory has one."""
        if rpps not in self._by_rpps:
            await self._refresh()
        return self._by_rpps.get(rpps)

    async def _refresh(self) -> None:
        if self._relay.token is None:
            await self._relay.login(self._account.device_id, self._account.signature_private_key)
        found: dict[str, str] = {}
        cursor: str | None = None
        while True:
            page = await self._relay.directory(limit=PAGE, cursor=cursor)
            found |= {user.rpps: user.id for user in page.users if user.rpps}
            cursor = page.next_cursor
            if cursor is None:
                break
        self._by_rpps = found

    async def aclose(self) -> None:
        await self._relay.aclose()
