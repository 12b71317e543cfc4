"""Runner for the IETF MLS interoperability test vectors (mlswg/mls-implementations).

Each vector family has a module here whose ``check(case)`` raises on the first mismatch.
A file whose family has no checker counts every runnable case as failed, so a family
nobody has wired up can never look green.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from crypto.cipher_suite import SUITES
from crypto.vectors import (
    crypto_basics,
    deserialization,
    key_schedule,
    message_protection,
    messages,
    passive_client,
    psk_secret,
    secret_tree,
    transcript_hashes,
    tree_math,
    tree_operations,
    tree_validation,
    treekem,
    welcome,
)
from crypto.vectors.common import Case

Check = Callable[[Case], None]

# Vector file stem -> checker. To add a family: write crypto/vectors/<family>.py with
# ``check(case: Case) -> None`` and add one line here.
CHECKERS: dict[str, Check] = {
    "tree-math": tree_math.check,
    "crypto-basics": crypto_basics.check,
    "deserialization": deserialization.check,
    "secret-tree": secret_tree.check,
    "key-schedule": key_schedule.check,
    "psk_secret": psk_secret.check,
    "tree-validation": tree_validation.check,
    "transcript-hashes": transcript_hashes.check,
    "message-protection": message_protection.check,
    "welcome": welcome.check,
    "tree-operations": tree_operations.check,
    "treekem": treekem.check,
    "messages": messages.check,
    "passive-client-welcome": passive_client.check,
    "passive-client-handling-commit": passive_client.check,
    "passive-client-random": passive_client.check,
}


@dataclass
class FileResult:
    """Outcome of one vector file; ``failures`` holds one readable line per failure."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def is_supported(case: Case) -> bool:
    """Cases without a cipher suite are suite-independent and always run."""
    cs = case.get("cipher_suite")
    return cs is None or cs in SUITES


def run_cases(family: str, cases: list[Case]) -> FileResult:
    """Run every case of one family; a failing case never stops the ones after it."""
    result = FileResult()
    runnable = []
    for i, case in enumerate(cases):
        if is_supported(case):
            runnable.append((i, case))
        else:
            result.skipped += 1
    check = CHECKERS.get(family)
    if check is None:
        result.failed = len(runnable)
        result.failures.append(
            f"{family}: no checker registered; {len(runnable)} case(s) counted as failed")
        return result
    for i, case in runnable:
        try:
            check(case)
        except Exception as e:  # report any error as this case's failure and keep going
            result.failed += 1
            result.failures.append(f"{family} case {i}: {type(e).__name__}: {e}")
        else:
            result.passed += 1
    return result


def run_file(path: str | PathLike[str]) -> FileResult:
    """Run a vector file; its stem (``tree-math`` for ``tree-math.json``) picks the checker."""
    path = Path(path)
    return run_cases(path.stem, json.loads(path.read_bytes()))
