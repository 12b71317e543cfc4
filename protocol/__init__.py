"""The wire contract between Liaison devices and the relay: versioned pydantic models.

Imported by both sides; imports nothing of theirs.
"""

PROTOCOL_VERSION = 1
