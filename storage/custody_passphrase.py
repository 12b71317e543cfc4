"""Key custody under a passphrase, for machines without a secure OS keyring.

Headless tester machines and CI have no Secret Service; a plaintext key file would defeat
the encrypted database. So the key is wrapped with Argon2id (crypto.key_wrap) and only the
wrapped blob is written, in the account's directory. The passphrase comes from the
``LIAISON_PASSPHRASE`` environment variable when set (unattended runs), else from a prompt.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from nacl.pwhash import argon2id

from crypto.key_wrap import unwrap_key, wrap_key
from storage.custody import CustodyError, check_key, replace_durably, write_durably
from storage.custody_accounts import AccountDirectory

PASSPHRASE_ENV = "LIAISON_PASSPHRASE"


class PassphraseUnavailableError(CustodyError):
    """No passphrase was given: neither LIAISON_PASSPHRASE nor a prompt."""


class PassphraseCustody:
    """Keeps each account's key wrapped under one passphrase in ``<account dir>/key.wrapped``.

    A wrong passphrase raises crypto.key_wrap.WrongPassphraseError from ``load``.
    """

    description = "passphrase-wrapped key file"

    def __init__(
        self,
        directory: AccountDirectory,
        prompt: Callable[[], str] | None = None,
        *,
        ops: int = argon2id.OPSLIMIT_MODERATE,
        mem: int = argon2id.MEMLIMIT_MODERATE,
        allow_weak: bool = False,
    ) -> None:
        self._directory = directory
        self._prompt = prompt
        self._ops, self._mem, self._allow_weak = ops, mem, allow_weak

    def _passphrase(self) -> str:
        passphrase = os.environ.get(PASSPHRASE_ENV) or (self._prompt() if self._prompt else "")
        if not passphrase:
            raise PassphraseUnavailableError(
                f"no passphrase for the database key: set {PASSPHRASE_ENV} or enter one"
            )
        return passphrase

    def load(self, account_id: str) -> bytes | None:
        path = self._directory.paths(account_id).wrapped_key
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        return unwrap_key(blob, self._passphrase(), allow_weak=self._allow_weak)

    def store(self, account_id: str, key: bytes) -> None:
        check_key(key)
        blob = wrap_key(
            key, self._passphrase(), ops=self._ops, mem=self._mem, allow_weak=self._allow_weak
        )
        paths = self._directory.create(account_id)
        staged = paths.staged(paths.wrapped_key)
        write_durably(staged, blob)
        replace_durably(staged, paths.wrapped_key)

    def delete(self, account_id: str) -> bool:
        try:
            self._directory.paths(account_id).wrapped_key.unlink()
        except FileNotFoundError:
            return False
        return True
