"""TreeKEM (RFC 9420 §7.4-§7.6): path secrets, UpdatePath encryption and decryption."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from crypto import tree_math as tm
from crypto.cipher_suite import CipherSuite, Random
from crypto.codec import OPAQUE, Struct, Vec, struct
from crypto.errors import DecryptError, ValidationError
from crypto.leaf_node import COMMIT, LeafNode
from crypto.ratchet_tree import ParentNode, RatchetTree


@struct
class HPKECiphertext(Struct):
    kem_output: Annotated[bytes, OPAQUE]
    ciphertext: Annotated[bytes, OPAQUE]


@struct
class UpdatePathNode(Struct):
    encryption_key: Annotated[bytes, OPAQUE]
    encrypted_path_secret: Annotated[list[HPKECiphertext], Vec(HPKECiphertext)]


@struct
class UpdatePath(Struct):
    leaf_node: LeafNode
    nodes: Annotated[list[UpdatePathNode], Vec(UpdatePathNode)]


@struct
class PathSecret(Struct):
    path_secret: Annotated[bytes, OPAQUE]


def next_path_secret(cs: CipherSuite, path_secret: bytes) -> bytes:
    return cs.derive_secret(path_secret, b"path")


def node_key_pair(cs: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    return cs.derive_key_pair(cs.derive_secret(path_secret, b"node"))


def derive_path(cs: CipherSuite, first: bytes, length: int) -> tuple[list[bytes], bytes]:
    """Path secrets for ``length`` nodes starting at ``first``, and the commit secret.

    A lone member has no path: the fresh ``first`` is then the commit secret.
    """
    secrets, secret = [], first
    for _ in range(length):
        secrets.append(secret)
        secret = next_path_secret(cs, secret)
    return secrets, secret


@dataclass(frozen=True)
class NewPath:
    """What a committer keeps from the UpdatePath it generated."""

    update_path: UpdatePath
    path_secrets: list[bytes]
    commit_secret: bytes
    leaf_priv: bytes


def create_path(
    cs: CipherSuite,
    tree: RatchetTree,
    sender: int,
    signature_priv: bytes,
    group_id: bytes,
    context_for: Callable[[bytes], bytes],
    exclude: set[int],
    random: Random = os.urandom,
) -> NewPath:
    """Refresh ``sender``'s leaf and path in ``tree`` (in place) and encrypt the path secrets.

    ``context_for`` maps the new tree hash to the serialized provisional GroupContext.
    """
    leaf_priv, leaf_pub = cs.derive_key_pair(random(32))
    secrets, commit_secret = derive_path(cs, random(cs.nh),
                                         len(tree.filtered_direct_path(sender)))
    apply_new_path_keys(tree, sender, [node_key_pair(cs, s)[1] for s in secrets])
    old = tree.leaf(sender)
    assert old is not None
    leaf = dataclasses.replace(
        old, encryption_key=leaf_pub, leaf_node_source=COMMIT, lifetime=None,
        parent_hash=tree.set_path_parent_hashes(sender),
    ).signed(cs, signature_priv, group_id, sender)
    tree.set_leaf(sender, leaf)
    nodes = encrypt_path(cs, tree, sender, secrets, context_for(tree.tree_hash()), exclude,
                         random)
    return NewPath(UpdatePath(leaf, nodes), secrets, commit_secret, leaf_priv)


def apply_new_path_keys(tree: RatchetTree, sender: int, path_pubs: list[bytes]) -> None:
    """Install the committer's new public keys on its filtered direct path (blanking the rest)."""
    fdp = tree.filtered_direct_path(sender)
    if len(fdp) != len(path_pubs):
        raise ValidationError("UpdatePath length differs from the filtered direct path")
    tree.blank_path(sender)
    for (p, _), pub in zip(fdp, path_pubs, strict=True):
        tree.set_parent(p, ParentNode(pub, b"", []))


def encrypt_path(
    cs: CipherSuite,
    tree: RatchetTree,
    sender: int,
    path_secrets: list[bytes],
    group_context: bytes,
    exclude: set[int],
    random: Random = os.urandom,
) -> list[UpdatePathNode]:
    """Encrypt each path secret to the resolution of the copath child, minus new joiners."""
    nodes = []
    for (p, s), secret in zip(tree.filtered_direct_path(sender), path_secrets, strict=True):
        node = tree.parent_node(p)
        assert node is not None
        cts = []
        for r in tree.resolution(s):
            if r % 2 == 0 and r // 2 in exclude:
                continue
            target = tree.nodes[r]
            assert target is not None
            kem, ct = cs.encrypt_with_label(target.encryption_key, b"UpdatePathNode",
                                            group_context, secret, random)
            cts.append(HPKECiphertext(kem, ct))
        nodes.append(UpdatePathNode(node.encryption_key, cts))
    return nodes


def decrypt_path(
    cs: CipherSuite,
    tree: RatchetTree,
    sender: int,
    receiver: int,
    path: UpdatePath,
    group_context: bytes,
    exclude: set[int],
    private_keys: dict[int, bytes],
) -> tuple[int, bytes]:
    """The receiver's path secret: (index in the filtered direct path, secret).

    ``tree`` is the tree before the committer's new keys were installed but after the
    commit's proposals were applied, so resolutions match what the committer saw.
    """
    fdp = tree.filtered_direct_path(sender)
    rx = 2 * receiver
    for i, (_, s) in enumerate(fdp):
        if not tm.is_in_subtree(s, rx):
            continue
        res = [r for r in tree.resolution(s) if not (r % 2 == 0 and r // 2 in exclude)]
        cts = path.nodes[i].encrypted_path_secret
        if len(cts) != len(res):
            raise ValidationError("UpdatePath node has the wrong number of ciphertexts")
        for r, ct in zip(res, cts, strict=True):
            priv = private_keys.get(r)
            if priv is not None:
                try:
                    secret = cs.decrypt_with_label(priv, b"UpdatePathNode", group_context,
                                                   ct.kem_output, ct.ciphertext)
                except DecryptError:
                    raise DecryptError("cannot decrypt the UpdatePath secret") from None
                return i, secret
        raise ValidationError("no private key for the UpdatePath node that covers us")
    raise ValidationError("receiver is not below the committer's filtered direct path")
