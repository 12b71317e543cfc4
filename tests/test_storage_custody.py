"""Key custody backends: memory, passphrase file, OS keyring vetting, Flet secure storage."""

from __future__ import annotations

import asyncio
import base64
import inspect
import stat
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import SecretService, chainer, fail, null
from keyring.errors import KeyringLocked, PasswordDeleteError
from nacl.pwhash import argon2id

from crypto.key_wrap import WrongPassphraseError
from storage.custody import (
    CustodyError,
    CustodyUnavailableError,
    MemoryCustody,
    decode_key,
    encode_key,
    load_or_create_key,
)
from storage.custody_accounts import AccountDirectory
from storage.custody_keyring import SERVICE, InsecureKeyringError, KeyringCustody, vet_backend
from storage.custody_passphrase import (
    PASSPHRASE_ENV,
    PassphraseCustody,
    PassphraseUnavailableError,
)
from storage.custody_secure_storage import (
    MemorySecureStore,
    SecureStorageCustody,
    flet_secure_store,
)

KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(32))
FAST = {"ops": argon2id.OPSLIMIT_MIN, "mem": argon2id.MEMLIMIT_MIN, "allow_weak": True}


def key_forms(key: bytes) -> list[bytes]:
    """The ways a key could leak into a file: raw, hex, base64."""
    return [key, key.hex().encode(), base64.b64encode(key), base64.urlsafe_b64encode(key)]


# --- memory custody and the shared helpers -------------------------------------------------


def test_memory_custody_store_load_delete() -> None:
    custody = MemoryCustody()
    assert custody.load("u_a") is None
    custody.store("u_a", KEY)
    custody.store("u_b", OTHER_KEY)
    assert (custody.load("u_a"), custody.load("u_b")) == (KEY, OTHER_KEY)
    assert custody.delete("u_a") is True
    assert custody.delete("u_a") is False
    assert custody.load("u_a") is None
    assert custody.load("u_b") == OTHER_KEY


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "x" * 32])
def test_custody_stores_only_32_byte_keys(bad: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MemoryCustody().store("u_a", bad)


def test_load_or_create_key_makes_one_random_key_and_keeps_it() -> None:
    custody = MemoryCustody()
    key = load_or_create_key(custody, "u_a")
    assert len(key) == 32
    assert custody.load("u_a") == key
    assert load_or_create_key(custody, "u_a") == key
    assert load_or_create_key(custody, "u_b") != key


def test_text_form_of_keys_round_trips_and_refuses_damage() -> None:
    assert decode_key(encode_key(KEY), "here") == KEY
    for damaged in ["not base64!", base64.b64encode(KEY[:31]).decode(), ""]:
        with pytest.raises(CustodyError, match="here: the stored key is corrupt"):
            decode_key(damaged, "here")


# --- passphrase custody ------------------------------------------------------------------


@pytest.fixture
def directory(tmp_path: Path) -> AccountDirectory:
    return AccountDirectory(tmp_path / "accounts")


def test_passphrase_custody_keeps_only_the_wrapped_key(
    directory: AccountDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery")
    custody = PassphraseCustody(directory, **FAST)
    assert custody.load("u_a") is None
    custody.store("u_a", KEY)
    path = directory.paths("u_a").wrapped_key
    data = path.read_bytes()
    assert data.startswith(b"LKW1")
    for form in key_forms(KEY):
        assert form not in data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["key.wrapped"]  # no staged copy left
    assert PassphraseCustody(directory, **FAST).load("u_a") == KEY  # survives a restart
    assert custody.delete("u_a") is True
    assert custody.delete("u_a") is False
    assert custody.load("u_a") is None


def test_passphrase_custody_wrong_passphrase_is_a_typed_error(
    directory: AccountDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    PassphraseCustody(directory, lambda: "the right one", **FAST).store("u_a", KEY)
    with pytest.raises(WrongPassphraseError):
        PassphraseCustody(directory, lambda: "the wrong one", **FAST).load("u_a")
    assert PassphraseCustody(directory, lambda: "the right one", **FAST).load("u_a") == KEY


def test_passphrase_comes_from_env_first_then_prompt_else_typed_error(
    directory: AccountDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def prompt() -> str:
        prompts.append("asked")
        return "typed at the prompt"

    monkeypatch.setenv(PASSPHRASE_ENV, "from the environment")
    PassphraseCustody(directory, prompt, **FAST).store("u_a", KEY)
    assert prompts == []
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(WrongPassphraseError):
        PassphraseCustody(directory, prompt, **FAST).load("u_a")
    assert prompts == ["asked"]
    with pytest.raises(PassphraseUnavailableError, match=PASSPHRASE_ENV):
        PassphraseCustody(directory, **FAST).load("u_a")
    with pytest.raises(PassphraseUnavailableError):
        PassphraseCustody(directory, lambda: "", **FAST).store("u_b", KEY)
    assert not directory.paths("u_b").wrapped_key.exists()


def test_passphrase_custody_defaults_to_moderate_argon2(
    directory: AccountDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "pw")
    PassphraseCustody(directory).store("u_a", KEY)
    blob = directory.paths("u_a").wrapped_key.read_bytes()
    assert struct.unpack(">II", blob[5:13]) == (
        argon2id.OPSLIMIT_MODERATE,
        argon2id.MEMLIMIT_MODERATE,
    )


# --- OS keyring: refusing insecure backends ------------------------------------------------


def named(module: str, qualname: str, base: type, **attrs: object) -> type:
    """A backend class that carries another class's name: stands in for keyrings.alt's
    classes without installing keyrings.alt (it must never be in this environment)."""
    cls = type(base)(qualname, (base,), {"__module__": module, "__qualname__": qualname, **attrs})
    KeyringBackend._classes.discard(cls)  # never offered by keyring's own backend discovery
    return cls


class DictBackend(KeyringBackend):
    """Keyring backend in a dict; given a secure backend's name by ``named``."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.values.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


KeyringBackend._classes.discard(DictBackend)
FakeSecretService = named("keyring.backends.SecretService", "Keyring", DictBackend)


def plaintext_keyring() -> KeyringBackend:
    return named("keyrings.alt.file", "PlaintextKeyring", DictBackend, priority=0.5)()


def encrypted_file_keyring() -> KeyringBackend:
    return named("keyrings.alt.file", "EncryptedKeyring", DictBackend, priority=0.6)()


def assert_refused(backend: KeyringBackend | None, reason: str) -> None:
    with pytest.raises(InsecureKeyringError, match=reason) as caught:
        KeyringCustody(backend)
    message = str(caught.value)
    assert "gnome-keyring" in message and PASSPHRASE_ENV in message  # names the fix


def test_fail_and_null_backends_are_refused() -> None:
    assert_refused(fail.Keyring(), "no OS keyring is available")
    assert_refused(null.Keyring(), "no OS keyring is available")


def test_keyrings_alt_backends_are_refused() -> None:
    assert_refused(plaintext_keyring(), "keyrings.alt.file.PlaintextKeyring refused: .*plaintext")
    assert_refused(encrypted_file_keyring(), "EncryptedKeyring refused: .*weak encryption")


def test_unknown_and_look_alike_backends_are_refused() -> None:
    assert_refused(DictBackend(), "not a known secure OS keyring")
    look_alike = named(__name__, "Keyring", SecretService.Keyring)
    assert_refused(look_alike(), "not a known secure OS keyring")


def test_secure_backend_that_cannot_run_here_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/liaison-bus")
    assert_refused(SecretService.Keyring(), "not usable here")
    low = named("keyring.backends.SecretService", "Keyring", DictBackend, priority=0.5)
    assert_refused(low(), "priority 0.5 says it is not recommended")


def test_chain_with_nothing_secure_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    members = [plaintext_keyring(), fail.Keyring()]
    monkeypatch.setattr(chainer.ChainerBackend, "backends", members)
    assert_refused(chainer.ChainerBackend(), "chains no secure backend .*PlaintextKeyring")
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    assert_refused(chainer.ChainerBackend(), "only nothing")


def test_chain_is_narrowed_to_its_secure_member(monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext, secure = plaintext_keyring(), FakeSecretService()
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [plaintext, secure])
    assert vet_backend(chainer.ChainerBackend()) is secure
    KeyringCustody(chainer.ChainerBackend()).store("u_a", KEY)
    assert plaintext.values == {}  # the plaintext member never saw the key
    assert secure.values == {(SERVICE, "u_a"): base64.b64encode(KEY).decode()}


def test_default_backend_is_the_one_keyring_picks_and_is_vetted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keyring, "get_keyring", plaintext_keyring)
    assert_refused(None, "PlaintextKeyring")
    secure = FakeSecretService()
    monkeypatch.setattr(keyring, "get_keyring", lambda: secure)
    KeyringCustody().store("u_a", KEY)
    assert (SERVICE, "u_a") in secure.values


# --- OS keyring: storing keys ------------------------------------------------------------


def test_keyring_custody_stores_base64_under_liaison_and_account_id() -> None:
    backend = FakeSecretService()
    custody = KeyringCustody(backend)
    assert custody.description == "OS keyring (Secret Service)"
    assert custody.load("u_a") is None
    custody.store("u_a", KEY)
    custody.store("u_b", OTHER_KEY)
    assert backend.values[(SERVICE, "u_a")] == base64.b64encode(KEY).decode()
    assert (custody.load("u_a"), custody.load("u_b")) == (KEY, OTHER_KEY)
    assert custody.delete("u_a") is True
    assert custody.delete("u_a") is False
    assert custody.load("u_a") is None


def test_keyring_custody_errors_are_typed() -> None:
    backend = FakeSecretService()
    custody = KeyringCustody(backend)
    backend.values[(SERVICE, "u_a")] = "garbage!"
    with pytest.raises(CustodyError, match="account u_a: the stored key is corrupt"):
        custody.load("u_a")

    def locked(*_args: object) -> None:
        raise KeyringLocked("collection is locked")

    backend.get_password = backend.set_password = backend.delete_password = locked  # type: ignore[method-assign]
    with pytest.raises(CustodyUnavailableError, match="locked"):
        custody.load("u_a")
    with pytest.raises(CustodyUnavailableError, match="locked"):
        custody.store("u_a", KEY)
    with pytest.raises(CustodyUnavailableError, match="locked"):
        custody.delete("u_a")


# --- Flet secure storage (Android Keystore / iOS Keychain) ---------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop on its own thread, like Flet's, while the test calls from another."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_secure_storage_custody_round_trip(loop: asyncio.AbstractEventLoop) -> None:
    store = MemorySecureStore()
    custody = SecureStorageCustody(store, loop)
    assert custody.load("u_a") is None
    custody.store("u_a", KEY)
    assert store.values == {"liaison.u_a": base64.b64encode(KEY).decode()}
    assert custody.load("u_a") == KEY
    assert custody.delete("u_a") is True
    assert custody.delete("u_a") is False
    assert store.values == {}


def test_secure_storage_custody_refuses_the_loop_thread(loop: asyncio.AbstractEventLoop) -> None:
    custody = SecureStorageCustody(MemorySecureStore(), loop)

    async def from_the_loop() -> bytes | None:
        return custody.load("u_a")

    with pytest.raises(CustodyError, match="worker thread"):
        asyncio.run_coroutine_threadsafe(from_the_loop(), loop).result(5)


def test_secure_storage_failures_are_typed(loop: asyncio.AbstractEventLoop) -> None:
    class Broken(MemorySecureStore):
        async def set(self, key: str, value: str) -> None:
            raise RuntimeError("Keystore unavailable")

        async def get(self, key: str) -> str | None:
            await asyncio.Event().wait()  # the platform never answers
            return None

    custody = SecureStorageCustody(Broken(), loop, timeout=0.2)
    with pytest.raises(CustodyUnavailableError, match="Keystore unavailable"):
        custody.store("u_a", KEY)
    with pytest.raises(CustodyUnavailableError, match="no answer"):
        custody.load("u_a")


def test_flet_secure_storage_fits_the_adapter_with_device_bound_options() -> None:
    from flet_secure_storage import KeychainAccessibility, SecureStorage

    store = flet_secure_store()
    assert isinstance(store, SecureStorage)
    for options in (store.ios_options, store.macos_options):
        assert options.accessibility is KeychainAccessibility.FIRST_UNLOCK_THIS_DEVICE
        assert options.synchronizable is False
    assert store.android_options.reset_on_error is False
    for name, positional in (("get", ["key"]), ("set", ["key", "value"]), ("remove", ["key"])):
        method = getattr(SecureStorage, name)
        assert inspect.iscoroutinefunction(method)
        params = list(inspect.signature(method).parameters.values())[1:]
        assert [p.name for p in params[: len(positional)]] == positional
        assert all(p.default is None for p in params[len(positional) :])  # platform options
