"""psk_secret.json: external PSKs chained into one psk_secret (RFC 9420 §8.4)."""

from __future__ import annotations

from crypto.psk import PreSharedKeyID, psk_secret
from crypto.vectors.common import Case, case_suite, expect, unhex


def check(case: Case) -> None:
    psks = [(PreSharedKeyID.external(unhex(p["psk_id"]), unhex(p["psk_nonce"])), unhex(p["psk"]))
            for p in case["psks"]]
    expect("psk_secret", psk_secret(case_suite(case), psks), unhex(case["psk_secret"]))
