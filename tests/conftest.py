"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fhir_support import fhir_base, secured_fhir  # noqa: F401 (FHIR server fixtures)
from tests.relay_harness import RelayProcess, running_relay


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """A real relay process on 127.0.0.1 with its own data directory (modules may override)."""
    with running_relay(tmp_path) as r:
        yield r
