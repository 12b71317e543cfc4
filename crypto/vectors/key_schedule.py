"""key-schedule.json: a chain of epochs through the key schedule (RFC 9420 §8)."""

from __future__ import annotations

from crypto.extensions import PROTOCOL_VERSION_MLS10
from crypto.group_context import GroupContext
from crypto.key_schedule import derive_epoch, export_secret, external_pub
from crypto.vectors.common import Case, case_suite, expect, unhex

_SECRETS = (
    "joiner_secret",
    "welcome_secret",
    "init_secret",
    "sender_data_secret",
    "encryption_secret",
    "exporter_secret",
    "epoch_authenticator",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
)


def check(case: Case) -> None:
    cs = case_suite(case)
    group_id = unhex(case["group_id"])
    init_secret = unhex(case["initial_init_secret"])
    for n, e in enumerate(case["epochs"]):
        context = GroupContext(PROTOCOL_VERSION_MLS10, cs.id, group_id, n, unhex(e["tree_hash"]),
                               unhex(e["confirmed_transcript_hash"]), []).serialize()
        expect(f"epoch {n} group_context", context, unhex(e["group_context"]))
        secrets = derive_epoch(cs, init_secret, unhex(e["commit_secret"]),
                               unhex(e["psk_secret"]), context)
        for name in _SECRETS:
            expect(f"epoch {n} {name}", getattr(secrets, name), unhex(e[name]))
        expect(f"epoch {n} external_pub", external_pub(cs, secrets.external_secret),
               unhex(e["external_pub"]))
        x = e["exporter"]
        # The label is a string (as test-vectors.md says) that merely looks like hex.
        exported = export_secret(cs, secrets.exporter_secret, x["label"].encode(),
                                 unhex(x["context"]), x["length"])
        expect(f"epoch {n} exporter secret", exported, unhex(x["secret"]))
        init_secret = secrets.init_secret
