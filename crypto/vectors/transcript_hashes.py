"""transcript-hashes.json: confirmed and interim transcript hashes of a commit (RFC 9420 §8.2)."""

from __future__ import annotations

from crypto.codec import opaque
from crypto.commit import Commit
from crypto.framing import AuthenticatedContent
from crypto.vectors.common import Case, case_suite, expect, unhex


def check(case: Case) -> None:
    cs = case_suite(case)
    ac = AuthenticatedContent.deserialize(unhex(case["authenticated_content"]))
    expect("content is a Commit", isinstance(ac.content.content, Commit), True)
    tag = ac.auth.confirmation_tag
    assert tag is not None
    confirmed = cs.hash(unhex(case["interim_transcript_hash_before"])
                        + ac.confirmed_transcript_input())
    expect("confirmed_transcript_hash_after", confirmed,
           unhex(case["confirmed_transcript_hash_after"]))
    expect("confirmation_tag", cs.mac(unhex(case["confirmation_key"]), confirmed), tag)
    expect("interim_transcript_hash_after", cs.hash(confirmed + opaque(tag)),
           unhex(case["interim_transcript_hash_after"]))
