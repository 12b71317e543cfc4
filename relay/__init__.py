"""Thin relay server: auth, directory, KeyPackages, MLS delivery, encrypted blobs, audit trail.

Public surface: ``relay.serve()``; the admin command line is ``liaison-relay``.
"""

from relay.server import serve

__all__ = ["serve"]
