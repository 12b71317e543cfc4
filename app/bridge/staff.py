"""Attending physicians found in the relay's directory by RPPS (PV1-7 carries no user id).

One exact lookup per RPPS not met before; a user found is kept, a miss is asked again next
time, so a physician an administrator has just added is found when the dead letter is
replayed.
"""

from __future__ import annotations

from app.client.relay_api import RelayClient
from storage.accounts import Account


class StaffDirectory:
    def __init__(self, account: Account) -> None:
        self._account = account
        self._relay = RelayClient(account.relay_url)
        self._by_rpps: dict[str, str] = {}

    async def user_of(self, rpps: str) -> str | None:
        """The active user with this RPPS, if the directory has one."""
        if rpps not in self._by_rpps:
            if self._relay.token is None:
                await self._relay.login(self._account.device_id,
                                        self._account.signature_private_key)
            page = await self._relay.directory(rpps=rpps, limit=1)
            if not page.users:
                return None
            self._by_rpps[rpps] = page.users[0].id
        return self._by_rpps[rpps]

    async def aclose(self) -> None:
        await self._relay.aclose()
