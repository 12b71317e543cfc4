"""Thin relay server: auth, directory, KeyPackages, MLS delivery, encrypted blobs, audit trail.

Public surface: ``relay.serve()``; the admin command line is ``liaison-relay``.
"""

from __future__ import annotations

from typing import Any


def serve(*args: Any, **kwargs: Any) -> None:
    """Run a relay (see ``relay.server.serve``); imported lazily so admin commands stay quick."""
    from relay.server import serve as _serve

    _serve(*args, **kwargs)
