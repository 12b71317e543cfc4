"""The demonstration relay: `liaison-relay` with its SQLite database in the demo's data
directory, run as a child process on 127.0.0.1."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "liaison-relay"
START_SECONDS = 30.0


class LocalRelayError(RuntimeError):
    pass


class LocalRelay:
    """``data`` holds the relay's directory and the passphrase file of its organisation key
    (demo only: a hospital's relay keeps that passphrase out of its data directory)."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self._passphrase = data.parent / "relay.pass"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, command: str, *args: str) -> str:
        """``liaison-relay COMMAND --data DATA ARGS``'s output; scripts take its last word."""
        done = subprocess.run([str(BIN), *command.split(), "--data", str(self.data), *args],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise LocalRelayError(f"liaison-relay {command}: {done.stderr.strip()}")
        return done.stdout

    def init(self, organisation: str) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self._passphrase.touch(mode=0o600)
        self._passphrase.write_text(secrets.token_urlsafe(24), "utf-8")
        self.cli("init", "--org", organisation, "--passphrase-file", str(self._passphrase),
                 "--kdf", "interactive")

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        log = (self.data.parent / "relay.log").open("ab")
        self._process = subprocess.Popen(
            [str(BIN), "serve", "--data", str(self.data), "--host", "127.0.0.1",
             "--port", str(self.port), "--passphrase-file", str(self._passphrase)],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalRelayError(f"the relay exited; see {self.data.parent / 'relay.log'}")
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise LocalRelayError("the relay did not start in time")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
