"""The one exception every FHIR failure becomes, so callers show one readable message."""

from __future__ import annotations


class FhirError(Exception):
    """The record could not be queried: unreachable, refused, slow, or answered nonsense.

    ``status`` is the HTTP status when the server answered, None for transport failures.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
