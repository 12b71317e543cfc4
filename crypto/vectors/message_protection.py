"""message-protection.json: PublicMessage and PrivateMessage, both directions (RFC 9420 §6).

The vector's messages must unprotect to the raw content; then the raw content is protected
afresh and must unprotect again, so the sending side is checked as well as the receiving.
"""

from __future__ import annotations

from crypto import framing as fr
from crypto.cipher_suite import CipherSuite
from crypto.commit import Commit
from crypto.errors import ValidationError
from crypto.extensions import PROTOCOL_VERSION_MLS10
from crypto.group_context import GroupContext
from crypto.message import MLSMessage
from crypto.proposals import Proposal
from crypto.secret_tree import SecretTree
from crypto.vectors.common import Case, case_suite, expect, unhex

# test-vectors.md: a secret tree of 2 members, whose leaf 1 sends everything.
_N_LEAVES = 2
_SENDER = fr.Sender(fr.MEMBER, 1)


class _Keys:
    """One case's epoch: the keys both protecting and unprotecting need."""

    def __init__(self, case: Case) -> None:
        self.cs: CipherSuite = case_suite(case)
        self.group_id = unhex(case["group_id"])
        self.epoch: int = case["epoch"]
        self.context = GroupContext(PROTOCOL_VERSION_MLS10, self.cs.id, self.group_id,
                                    self.epoch, unhex(case["tree_hash"]),
                                    unhex(case["confirmed_transcript_hash"]), []).serialize()
        self.signature_priv = unhex(case["signature_priv"])
        self.signature_pub = unhex(case["signature_pub"])
        self.encryption_secret = unhex(case["encryption_secret"])
        self.sender_data_secret = unhex(case["sender_data_secret"])
        self.membership_key = unhex(case["membership_key"])

    def secret_tree(self) -> SecretTree:
        """A fresh tree: each one's sender ratchet starts again at generation 0."""
        return SecretTree(self.cs, self.encryption_secret, _N_LEAVES)

    def unprotect(self, data: bytes) -> fr.Content:
        """Open a serialized MLSMessage and verify its tag or decryption and its signature."""
        body = MLSMessage.deserialize(data).body
        if isinstance(body, fr.PublicMessage):
            fr.verify_membership_tag(self.cs, body, self.membership_key, self.context)
            ac = body.authenticated()
        else:
            assert isinstance(body, fr.PrivateMessage)
            # The tree is fresh and thrown away, so the key need not be consumed.
            ac, _ = fr.unprotect_private(self.cs, body, self.secret_tree(),
                                         self.sender_data_secret)
        fr.verify(self.cs, self.signature_pub, ac, self.context)
        expect("sender", ac.content.sender, _SENDER)
        expect("group_id", ac.content.group_id, self.group_id)
        expect("epoch", ac.content.epoch, self.epoch)
        return ac.content.content

    def protect(self, content: fr.Content, wire_format: int) -> bytes:
        """Sign and frame ``content`` from leaf 1 as a serialized MLSMessage."""
        framed = fr.FramedContent(self.group_id, self.epoch, _SENDER, b"", content)
        signature = fr.sign(self.cs, self.signature_priv, wire_format, framed, self.context)
        # The tag is a commit's, checked by the key schedule, not by message protection.
        tag = bytes(self.cs.nh) if isinstance(content, Commit) else None
        ac = fr.AuthenticatedContent(wire_format, framed, fr.AuthData(signature, tag))
        if wire_format == fr.PUBLIC_MESSAGE:
            msg: fr.PublicMessage | fr.PrivateMessage = fr.protect_public(
                self.cs, ac, self.membership_key, self.context)
        else:
            msg = fr.protect_private(self.cs, ac, self.secret_tree(), self.sender_data_secret)
        return MLSMessage(msg).serialize()


def _raw(content: fr.Content) -> bytes:
    return content if isinstance(content, bytes) else content.serialize()


def check(case: Case) -> None:
    keys = _Keys(case)
    raws: dict[str, fr.Content] = {
        "proposal": Proposal.deserialize(unhex(case["proposal"])),
        "commit": Commit.deserialize(unhex(case["commit"])),
        "application": unhex(case["application"]),
    }
    for name, content in raws.items():
        # Application data is only ever sent encrypted, so it has no PublicMessage vector.
        wire_formats = {"priv": fr.PRIVATE_MESSAGE}
        if name != "application":
            wire_formats["pub"] = fr.PUBLIC_MESSAGE
        for suffix, wire_format in wire_formats.items():
            field = f"{name}_{suffix}"
            expect(f"{field} content", _raw(keys.unprotect(unhex(case[field]))), _raw(content))
            expect(f"{field} content, protected afresh",
                   _raw(keys.unprotect(keys.protect(content, wire_format))), _raw(content))
    try:
        keys.protect(raws["application"], fr.PUBLIC_MESSAGE)
    except ValidationError:
        pass
    else:
        raise AssertionError("application data was protected as a PublicMessage")
