"""Key custody in the OS keyring, refusing keyrings that do not really protect secrets.

``keyring`` picks whatever backend it finds, and some of them keep secrets in a plaintext
file (keyrings.alt's PlaintextKeyring), under weak home-made encryption (its
EncryptedKeyring), or nowhere at all (fail, null). Storing the database key there would
silently undo the database's encryption, so only an allow-list of backends backed by the
operating system's own secret store is accepted: Secret Service (GNOME Keyring, KWallet's
Secret Service API), the macOS Keychain and the Windows Credential Locker. Backends are
matched by exact class name, so a subclass or a look-alike is refused too.
"""

from __future__ import annotations

import keyring
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError

from storage.custody import CustodyError, CustodyUnavailableError, decode_key, encode_key
from storage.custody_passphrase import PASSPHRASE_ENV

SERVICE = "liaison"

SECURE_BACKENDS = {
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "Secret Service (libsecret)",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Locker",
}
_CHAINER = "keyring.backends.chainer.ChainerBackend"
_NO_KEYRING = ("keyring.backends.fail.", "keyring.backends.null.")

FIX = (
    "Fix: install and unlock a Secret Service keyring (e.g. `apt-get install gnome-keyring`, "
    "running and unlocked in your session), or keep the key under a passphrase instead "
    f"(set {PASSPHRASE_ENV} or answer the prompt)."
)


class InsecureKeyringError(CustodyError):
    """The active keyring backend is missing, plaintext or weakly encrypted: not used."""


def _name(backend: KeyringBackend) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _refuse(backend: KeyringBackend, reason: str) -> InsecureKeyringError:
    return InsecureKeyringError(f"keyring backend {_name(backend)} refused: {reason}. {FIX}")


def vet_backend(backend: KeyringBackend) -> KeyringBackend:
    """The backend to keep keys in, or InsecureKeyringError saying why there is none.

    A chain is narrowed to its best secure member, so a plaintext backend in the chain never
    receives or answers for a key.
    """
    name = _name(backend)
    if name == _CHAINER:
        secure = [b for b in backend.backends if _name(b) in SECURE_BACKENDS]
        if not secure:
            members = ", ".join(_name(b) for b in backend.backends) or "nothing"
            raise _refuse(backend, f"it chains no secure backend (only {members})")
        backend, name = secure[0], _name(secure[0])
    if name.startswith(_NO_KEYRING):
        raise _refuse(backend, "no OS keyring is available")
    if name.startswith("keyrings.alt."):
        raise _refuse(backend, "keyrings.alt stores secrets in plaintext or under weak encryption")
    if name not in SECURE_BACKENDS:
        raise _refuse(backend, "it is not a known secure OS keyring")
    try:
        priority = backend.priority
    except Exception as exc:  # keyring's backends report unavailability by raising here
        raise _refuse(backend, f"it is not usable here ({exc})") from exc
    if priority < 1:
        raise _refuse(backend, f"its priority {priority} says it is not recommended")
    return backend


class KeyringCustody:
    """Keys in the OS keyring under service ``liaison`` and the account id, base64-encoded."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self._backend = vet_backend(backend if backend is not None else keyring.get_keyring())
        self.description = f"OS keyring ({SECURE_BACKENDS[_name(self._backend)]})"

    def load(self, account_id: str) -> bytes | None:
        try:
            value = self._backend.get_password(SERVICE, account_id)
        except KeyringError as exc:
            raise CustodyUnavailableError(f"{self.description}: {exc}") from exc
        if value is None:
            return None
        return decode_key(value, f"{self.description}, account {account_id}")

    def store(self, account_id: str, key: bytes) -> None:
        value = encode_key(key)
        try:
            self._backend.set_password(SERVICE, account_id, value)
        except KeyringError as exc:
            raise CustodyUnavailableError(f"{self.description}: {exc}") from exc

    def delete(self, account_id: str) -> bool:
        try:
            self._backend.delete_password(SERVICE, account_id)
        except PasswordDeleteError:
            return False
        except KeyringError as exc:
            raise CustodyUnavailableError(f"{self.description}: {exc}") from exc
        return True
