"""The web renderer serves decrypted messages: only ever on loopback, whatever asks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.ui.app import NotLoopbackError, web_host


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_served(monkeypatch, host):
    monkeypatch.delenv("FLET_SERVER_IP", raising=False)
    assert web_host(host) == host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "hopital.example.org"])
def test_other_hosts_are_refused(monkeypatch, host):
    monkeypatch.delenv("FLET_SERVER_IP", raising=False)
    with pytest.raises(NotLoopbackError, match="loopback only"):
        web_host(host)


def test_flet_environment_cannot_widen_the_host(monkeypatch):
    monkeypatch.setenv("FLET_SERVER_IP", "0.0.0.0")  # Flet itself would obey this variable
    with pytest.raises(NotLoopbackError, match=r"0\.0\.0\.0"):
        web_host("127.0.0.1")


def test_the_app_refuses_a_public_host_before_starting_anything(tmp_path):
    demo = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "app", "--web", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LIAISON_DEMO_DIR": str(demo)},
    )
    assert done.returncode == 2
    assert "loopback only" in done.stderr
    assert not demo.exists()  # no relay created, nothing seeded
