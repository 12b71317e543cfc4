"""The MLS interoperability vectors, through crypto.vectors, for every registered family.

The vectors are read from the shared folder (never copied into the project); each file is
parsed at most once per session because the large ones run to megabytes.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import cache, reduce
from pathlib import Path

import pytest

from crypto.vectors import CHECKERS, is_supported, run_cases
from crypto.vectors.common import Case

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "mls" / "test-vectors"

# Cases for suites 1 and 3 in each vector file: all of them must pass once registered.
EXPECTED_PASSED = {
    "tree-math": 10,
    "crypto-basics": 2,
    "deserialization": 14,
    "secret-tree": 6,
    "key-schedule": 2,
    "psk_secret": 22,
    "tree-validation": 28,
    "transcript-hashes": 2,
    "message-protection": 2,
    "welcome": 2,
    "tree-operations": 5,
    "treekem": 22,
    "messages": 300,
    "passive-client-handling-commit": 26,
    "passive-client-welcome": 16,
    "passive-client-random": 1,
}

# Path to an expected-output field of a case; a registered family needs one here.
CORRUPT: dict[str, tuple[str | int, ...]] = {
    "tree-math": ("root",),
    "crypto-basics": ("derive_secret", "out"),
    "deserialization": ("length",),
    "secret-tree": ("leaves", 0, 0, "application_nonce"),
    "key-schedule": ("epochs", 1, "resumption_psk"),
    "psk_secret": ("psk_secret",),
    "tree-validation": ("tree_hashes", 0),
    "transcript-hashes": ("interim_transcript_hash_after",),
    "message-protection": ("application",),
    "welcome": ("signer_pub",),
    "tree-operations": ("tree_hash_after",),
    "treekem": ("update_paths", 0, "commit_secret"),
    "messages": ("commit",),
    "passive-client-welcome": ("initial_epoch_authenticator",),
    "passive-client-handling-commit": ("epochs", 0, "epoch_authenticator"),
    "passive-client-random": ("epochs", -1, "epoch_authenticator"),
}

REGISTERED = sorted(CHECKERS)


@pytest.fixture(scope="session")
def vector_cases() -> Callable[[str], list[Case]]:
    """Loader shared by the whole session, so each file is parsed at most once."""
    assert VECTORS.is_dir(), f"MLS test vectors not found at {VECTORS}"

    @cache
    def load(stem: str) -> list[Case]:
        cases: list[Case] = json.loads((VECTORS / f"{stem}.json").read_bytes())
        return cases

    return load


def _cli(directory: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crypto.vectors", str(directory), *flags],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )


def _corrupt(value: str | int) -> str | int:
    """Flip the first hex digit of a hex string; bump an integer."""
    if isinstance(value, int):
        return value + 1
    return f"{int(value[0], 16) ^ 1:x}" + value[1:]


def _line(stem: str, cases: list[Case], passed: int, failed: int) -> str:
    skipped = sum(not is_supported(c) for c in cases)
    return f"{stem}.json: {passed} passed, {failed} failed, {skipped} skipped"


def test_every_vector_file_has_an_expected_count() -> None:
    assert VECTORS.is_dir(), f"MLS test vectors not found at {VECTORS}"
    assert {p.stem for p in VECTORS.glob("*.json")} == set(EXPECTED_PASSED)


@pytest.mark.parametrize("stem", REGISTERED)
def test_registered_family_passes(stem: str, vector_cases: Callable[[str], list[Case]]) -> None:
    result = run_cases(stem, vector_cases(stem))
    assert result.failures == []
    assert (result.passed, result.failed) == (EXPECTED_PASSED[stem], 0)


def test_cli_reports_each_file_and_the_total(
    tmp_path: Path, vector_cases: Callable[[str], list[Case]]
) -> None:
    for stem in REGISTERED:
        shutil.copy(VECTORS / f"{stem}.json", tmp_path)
    proc = _cli(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = sum(EXPECTED_PASSED[stem] for stem in REGISTERED)
    lines = [_line(stem, vector_cases(stem), EXPECTED_PASSED[stem], 0)
             for stem in sorted(REGISTERED, key=lambda s: f"{s}.json")]
    assert proc.stdout.splitlines() == [*lines, f"{total} passed, 0 failed"]


@pytest.mark.parametrize("stem", REGISTERED)
def test_corrupted_expected_value_fails(
    stem: str, tmp_path: Path, vector_cases: Callable[[str], list[Case]]
) -> None:
    assert stem in CORRUPT, f"add a CORRUPT entry naming an expected-output field of {stem}.json"
    cases = list(vector_cases(stem))
    index = next(i for i, c in enumerate(cases) if is_supported(c))
    cases[index] = copy.deepcopy(cases[index])
    *path, key = CORRUPT[stem]
    holder = reduce(lambda node, k: node[k], path, cases[index])
    holder[key] = _corrupt(holder[key])
    (tmp_path / f"{stem}.json").write_text(json.dumps(cases))

    proc = _cli(tmp_path, "--verbose")
    assert proc.returncode == 1, proc.stdout
    passed = EXPECTED_PASSED[stem] - 1
    assert proc.stdout.splitlines() == [
        _line(stem, cases, passed, 1), f"{passed} passed, 1 failed"]
    assert f"{stem} case {index}: " in proc.stderr


def test_unregistered_family_counts_as_failed(tmp_path: Path) -> None:
    cases = [{"cipher_suite": 1}, {"cipher_suite": 2}, {}]
    (tmp_path / "no-such-family.json").write_text(json.dumps(cases))
    proc = _cli(tmp_path, "--verbose")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "no-such-family.json: 0 passed, 2 failed, 1 skipped", "0 passed, 2 failed"]
    assert "no checker registered" in proc.stderr
