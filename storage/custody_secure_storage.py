"""Key custody in the platform's secure storage on Android and iOS, through Flet.

Python's ``keyring`` has no backend on phones. Flet's ``flet-secure-storage`` service (the
``mobile`` extra) reaches the Android Keystore and the iOS Keychain from Python, through an
async API on the app's event loop. The rest of storage is synchronous and runs on worker
threads, so this custody hands each call to the Flet event loop and waits for its answer.

What cannot be tested off a device: that the real Keystore/Keychain keep the value, the
effect of the platform options chosen in ``flet_secure_store`` (device-only, no backup or
iCloud sync), and the error behaviour of the Flutter plugin. The tests here drive this
class through ``MemorySecureStore`` and check the real class's shape and options.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from storage.custody import CustodyError, CustodyUnavailableError, decode_key, encode_key

T = TypeVar("T")


class SecureStore(Protocol):
    """The part of flet_secure_storage.SecureStorage this custody uses: async, string values."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...

    async def remove(self, key: str) -> None: ...


class MemorySecureStore:
    """A SecureStore in a dict, standing in for the device's store in tests."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value

    async def remove(self, key: str) -> None:
        self.values.pop(key, None)


def flet_secure_store() -> SecureStore:
    """Flet's SecureStorage with device-bound options; construct it inside the Flet app.

    - iOS/macOS: readable after the first unlock since boot (urgent messages must be
      received in the background while the phone is locked), never synced to iCloud nor
      restored onto another device from a backup.
    - Android: a Keystore error raises instead of the plugin silently erasing every value
      (``reset_on_error``): losing the key loses the account, and that must be visible.
    """
    from flet_secure_storage import (
        AndroidOptions,
        IOSOptions,
        KeychainAccessibility,
        MacOsOptions,
        SecureStorage,
    )

    device_only = KeychainAccessibility.FIRST_UNLOCK_THIS_DEVICE
    return SecureStorage(
        ios_options=IOSOptions(accessibility=device_only, synchronizable=False),
        macos_options=MacOsOptions(accessibility=device_only, synchronizable=False),
        android_options=AndroidOptions(reset_on_error=False),
    )


class SecureStorageCustody:
    """Keys in a SecureStore under ``liaison.<account id>``, base64-encoded.

    Call it from a worker thread, never from the event loop's own thread: waiting there for
    the loop would deadlock, so that is refused with a CustodyError.
    """

    description = "device secure storage (Android Keystore / iOS Keychain)"

    def __init__(
        self, store: SecureStore, loop: asyncio.AbstractEventLoop, *, timeout: float = 30.0
    ) -> None:
        self._store = store
        self._loop = loop
        self._timeout = timeout

    def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise CustodyError("secure storage must be used from a worker thread, not the loop")

        async def wrapped() -> T:
            return await call()

        future = asyncio.run_coroutine_threadsafe(wrapped(), self._loop)
        try:
            return future.result(self._timeout)
        except TimeoutError as exc:
            future.cancel()
            raise CustodyUnavailableError(f"{self.description}: no answer") from exc
        except Exception as exc:
            raise CustodyUnavailableError(f"{self.description}: {exc}") from exc

    @staticmethod
    def _entry(account_id: str) -> str:
        return f"liaison.{account_id}"

    def load(self, account_id: str) -> bytes | None:
        value = self._run(lambda: self._store.get(self._entry(account_id)))
        if value is None:
            return None
        return decode_key(value, f"{self.description}, account {account_id}")

    def store(self, account_id: str, key: bytes) -> None:
        value = encode_key(key)
        self._run(lambda: self._store.set(self._entry(account_id), value))

    def delete(self, account_id: str) -> bool:
        entry = self._entry(account_id)

        async def remove() -> bool:
            existed = await self._store.get(entry) is not None
            await self._store.remove(entry)
            return existed

        return self._run(remove)
