"""KeyringCustody against a real Secret Service: GNOME Keyring on a private D-Bus session.

The test runs this same file as a script under ``dbus-run-session``, in a scratch home; the
script starts ``gnome-keyring-daemon --unlock`` (password on stdin), lets keyring discover
the Secret Service on its own, stores, loads and deletes keys through KeyringCustody, checks
the items in the collection directly, and scans every file of the scratch home (the
daemon's ``~/.local/share/keyrings`` included) for the keys in any encoding.

``.ci/run`` installs gnome-keyring and dbus. Without them this test FAILS; a developer
machine may skip it with LIAISON_SKIP_SECRET_SERVICE=1, which CI (CI=true) ignores.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("dbus-run-session", "gnome-keyring-daemon")
SKIP_ENV = "LIAISON_SKIP_SECRET_SERVICE"


def test_keyring_custody_on_a_real_secret_service(tmp_path: Path) -> None:
    if os.environ.get(SKIP_ENV) == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"{SKIP_ENV}=1 (developer machine)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: apt-get install gnome-keyring dbus "
            f"(or set {SKIP_ENV}=1 on a developer machine)"
        )
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "DBUS_", "GNOME_KEYRING", "PYTHON_KEYRING", "LIAISON_"))
    }
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(runtime), PYTHONPATH=str(REPO))
    command = ["dbus-run-session", "--", sys.executable, __file__, str(tmp_path / "accounts")]
    with subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as session:
        try:
            out, err = session.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(session.pid, signal.SIGKILL)
            out, err = session.communicate()
            pytest.fail(f"the Secret Service session hung:\n{err.decode(errors='replace')}")
    assert session.returncode == 0, err.decode(errors="replace")
    result = json.loads(out.decode().strip().splitlines()[-1])

    assert result["backend"] == "keyring.backends.SecretService.Keyring"
    assert result["description"] == "OS keyring (Secret Service)"
    assert result["loaded_by_a_new_custody"] is True
    assert result["items"] == {"u_alice": "base64 key", "u_bob": "base64 key"}
    assert result["keyring_files"], "the daemon wrote no keyring file under ~/.local/share"
    assert result["files_with_a_key"] == []
    assert result["deleted"] == [True, False]
    assert result["after_delete"] == {"u_alice": None, "u_bob": "kept"}
    assert "key in OS keyring (Secret Service)" in result["wipe_deleted"]
    assert result["after_wipe"] is None


# --- the script, run inside dbus-run-session ------------------------------------------------


def _wait_for_secret_service(daemon: subprocess.Popen[bytes]) -> None:
    import secretstorage

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"gnome-keyring-daemon exited: {daemon.stderr.read()!r}")  # type: ignore[union-attr]
        with secretstorage.dbus_init() as bus:
            if secretstorage.check_service_availability(bus):
                collection = secretstorage.get_default_collection(bus)
                if not collection.is_locked():
                    return
        time.sleep(0.1)
    raise SystemExit("the Secret Service did not come up unlocked")


def _items(service: str) -> dict[str, bytes]:
    import secretstorage

    with secretstorage.dbus_init() as bus:
        collection = secretstorage.get_default_collection(bus)
        return {
            item.get_attributes()["username"]: item.get_secret()
            for item in collection.search_items({"service": service})
        }


def _exercise(accounts: Path) -> dict[str, object]:
    from storage.custody_accounts import AccountDirectory
    from storage.custody_keyring import SERVICE, KeyringCustody
    from storage.custody_wipe import wipe_account

    keys = {"u_alice": secrets.token_bytes(32), "u_bob": secrets.token_bytes(32)}
    custody = KeyringCustody()  # keyring's own discovery, then vetting
    for account_id, key in keys.items():
        custody.store(account_id, key)
    items = _items(SERVICE)
    forms = [
        form
        for key in keys.values()
        for form in (key, key.hex().encode(), base64.b64encode(key), base64.urlsafe_b64encode(key))
    ]
    home = Path(os.environ["HOME"])
    files = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink()]
    result: dict[str, object] = {
        "backend": f"{type(custody._backend).__module__}.{type(custody._backend).__qualname__}",
        "description": custody.description,
        "loaded_by_a_new_custody": all(KeyringCustody().load(a) == k for a, k in keys.items()),
        "items": {
            account: "base64 key" if items.get(account) == base64.b64encode(key) else repr(items)
            for account, key in keys.items()
        },
        "keyring_files": [str(p) for p in files if "keyrings" in p.parts],
        "files_with_a_key": [str(p) for p in files if any(f in p.read_bytes() for f in forms)],
        "deleted": [custody.delete("u_alice"), custody.delete("u_alice")],
        "after_delete": {
            "u_alice": custody.load("u_alice"),
            "u_bob": "kept" if custody.load("u_bob") == keys["u_bob"] else "lost",
        },
    }
    report = wipe_account(AccountDirectory(accounts).paths("u_bob"), custody)
    result["wipe_deleted"] = list(report.deleted)
    result["after_wipe"] = custody.load("u_bob")
    return result


def main(accounts: Path) -> None:
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert daemon.stdin is not None
        daemon.stdin.write(b"liaison test keyring password")
        daemon.stdin.close()
        _wait_for_secret_service(daemon)
        result = _exercise(accounts)
    finally:
        daemon.terminate()
        daemon.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
