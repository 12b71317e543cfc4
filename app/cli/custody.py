"""Which key custody holds a CLI profile's database key, chosen at enrolment and recorded.

A new profile uses the OS keyring when a secure one exists (storage.custody_keyring), else a
passphrase-wrapped key file in the profile (storage.custody_passphrase); ``LIAISON_KEY_CUSTODY``
(``keyring`` or ``passphrase``) forces the choice. The choice is written to ``<profile>/custody``
so that every later command unlocks the profile the same way.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path

from storage.custody import CustodyError, KeyCustody
from storage.custody_accounts import AccountDirectory
from storage.custody_keyring import InsecureKeyringError, KeyringCustody
from storage.custody_passphrase import PassphraseCustody, PassphraseUnavailableError

CUSTODY_ENV = "LIAISON_KEY_CUSTODY"
CUSTODY_FILE = "custody"
KEYRING = "keyring"
PASSPHRASE = "passphrase"


def new_custody(profile: Path) -> tuple[str, KeyCustody]:
    """The custody for a profile being enrolled, with its name for ``record_custody``."""
    forced = os.environ.get(CUSTODY_ENV, "")
    if forced not in ("", KEYRING, PASSPHRASE):
        raise CustodyError(f"{CUSTODY_ENV} must be {KEYRING!r} or {PASSPHRASE!r}, not {forced!r}")
    if forced != PASSPHRASE:
        try:
            return KEYRING, KeyringCustody()
        except InsecureKeyringError:
            if forced:
                raise
            print("liaison: no secure OS keyring here: the database key is kept under a "
                  "passphrase", file=sys.stderr)
    return PASSPHRASE, _passphrase_custody(profile, confirm=True)


def record_custody(profile: Path, name: str) -> None:
    (profile / CUSTODY_FILE).write_text(name + "\n", "utf-8")


def profile_custody(profile: Path) -> KeyCustody:
    """The custody recorded for an enrolled profile."""
    try:
        name = (profile / CUSTODY_FILE).read_text("utf-8").strip()
    except FileNotFoundError:
        raise CustodyError(f"no account in {profile}: enrol first") from None
    if name == KEYRING:
        return KeyringCustody()
    if name == PASSPHRASE:
        return _passphrase_custody(profile, confirm=False)
    raise CustodyError(f"{profile / CUSTODY_FILE}: unknown key custody {name!r}")


def _passphrase_custody(profile: Path, *, confirm: bool) -> PassphraseCustody:
    return PassphraseCustody(AccountDirectory(profile / "keys"), prompt=_prompt(confirm))


def _prompt(confirm: bool) -> Callable[[], str]:
    """Ask on the terminal (used only when LIAISON_PASSPHRASE is not set)."""

    def ask() -> str:
        passphrase = getpass.getpass("Passphrase for the database key: ")
        if confirm and getpass.getpass("The same passphrase again: ") != passphrase:
            raise PassphraseUnavailableError("the two passphrases differ")
        return passphrase

    return ask
