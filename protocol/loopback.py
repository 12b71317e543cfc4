"""Whether a host name is this machine's loopback: the only place plaintext may be served or
reached over plain http — the relay without TLS, the app's web renderer (DESIGN.md, "The Flet
app and where plaintext lives")."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
