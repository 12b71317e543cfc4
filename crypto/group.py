"""An MLS group as one member sees it (RFC 9420 §8-§12): the API the client engine drives.

Every operation is computed on copies and only then swapped in, so a message that fails
any check raises a typed error and leaves the group exactly as it was.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from crypto import extensions as ext
from crypto import framing as fr
from crypto import group_state as gs_
from crypto import key_schedule as ks
from crypto import proposals as prop
from crypto import tree_math as tm
from crypto import treekem
from crypto.cipher_suite import CipherSuite, Random, suite
from crypto.codec import Reader, opaque
from crypto.commit import Commit
from crypto.credential import Credential, CredentialValidator
from crypto.errors import (
    MLSError,
    StaleEpochError,
    UnsupportedError,
    ValidationError,
)
from crypto.group_context import GroupContext
from crypto.key_package import KeyPackage
from crypto.leaf_node import COMMIT, KEY_PACKAGE, UPDATE, LeafNode, Lifetime
from crypto.message import MLSMessage
from crypto.past_epochs import DEFAULT_KEPT, PastEpoch, PastEpochs
from crypto.primitives import ed25519_public
from crypto.psk import EXTERNAL, RESUMPTION, USAGE_APPLICATION, PreSharedKeyID, psk_secret
from crypto.ratchet_tree import RatchetTree
from crypto.secret_tree import APPLICATION, NodeSecret, SecretTree
from crypto.welcome import (
    EncryptedGroupSecrets,
    GroupInfo,
    GroupSecrets,
    Welcome,
    open_group_info,
    open_group_secrets,
)

_PATH_REQUIRED = frozenset({prop.UPDATE, prop.REMOVE, prop.EXTERNAL_INIT,
                            prop.GROUP_CONTEXT_EXTENSIONS})
RESUMPTION_PSKS_KEPT = 8
FOREVER = Lifetime(0, 2**64 - 1)


# -- events returned by Group.process --------------------------------------------------------------
@dataclass(frozen=True)
class ApplicationMessage:
    sender: int
    credential: Credential
    data: bytes
    authenticated_data: bytes

    @classmethod
    def of(cls, content: fr.FramedContent, credential: Credential) -> ApplicationMessage:
        assert isinstance(content.content, bytes)
        return cls(content.sender.index, credential, content.content, content.authenticated_data)


@dataclass(frozen=True)
class ProposalReceived:
    sender: fr.Sender
    proposal: prop.Proposal
    ref: bytes


@dataclass(frozen=True)
class CommitApplied:
    sender: fr.Sender
    epoch: int
    added: list[int]
    removed: list[int]
    updated: list[int]
    removed_me: bool


Event = ApplicationMessage | ProposalReceived | CommitApplied


@dataclass
class KeyPackageSecrets:
    """The private half of a KeyPackage the device published."""

    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes


def create_key_package(
    cs: CipherSuite,
    credential: Credential,
    signature_priv: bytes,
    *,
    capabilities: ext.Capabilities | None = None,
    lifetime: Lifetime | None = None,
    extensions: list[ext.Extension] | None = None,
    random: Random = os.urandom,
) -> tuple[KeyPackage, KeyPackageSecrets]:
    init_priv, init_pub = cs.derive_key_pair(random(32))
    enc_priv, enc_pub = cs.derive_key_pair(random(32))
    leaf = LeafNode(enc_pub, ed25519_public(signature_priv), credential,
                    capabilities or default_capabilities(cs, credential), KEY_PACKAGE,
                    lifetime or FOREVER, b"", [], b"").signed(cs, signature_priv)
    unsigned = KeyPackage(ext.PROTOCOL_VERSION_MLS10, cs.id, init_pub, leaf, extensions or [], b"")
    sig = cs.sign_with_label(signature_priv, b"KeyPackageTBS", unsigned.tbs())
    kp = dataclasses.replace(unsigned, signature=sig)
    return kp, KeyPackageSecrets(init_priv, enc_priv, signature_priv)


def default_capabilities(cs: CipherSuite, credential: Credential) -> ext.Capabilities:
    return ext.Capabilities([ext.PROTOCOL_VERSION_MLS10], [cs.id], [ext.LIAISON_ROOM_STATE], [],
                            sorted({credential.credential_type}))


@dataclass
class _Proposed:
    proposal: prop.Proposal
    sender: fr.Sender


@dataclass
class PendingCommit:
    """A commit this member sent; applied only once the relay has accepted it."""

    message: bytes
    welcome: bytes | None
    group_info: GroupInfo
    next_group: Group


@dataclass
class Group:
    cs: CipherSuite
    context: GroupContext
    tree: RatchetTree
    my_leaf: int
    signature_priv: bytes
    private_keys: dict[int, bytes]  # node index -> HPKE private key we know
    secrets: ks.EpochSecrets
    interim_transcript_hash: bytes
    secret_tree: SecretTree
    validator: CredentialValidator
    external_psks: dict[bytes, bytes] = field(default_factory=dict)
    resumption_psks: dict[int, bytes] = field(default_factory=dict)
    proposals: dict[bytes, _Proposed] = field(default_factory=dict)
    own_update_keys: dict[bytes, bytes] = field(default_factory=dict)
    active: bool = True
    max_skip: int = 1000
    past_epochs: PastEpochs = field(default_factory=PastEpochs)
    # (the epoch's fields it was encoded from, the encoding): see _epoch_state
    _encoded_epoch: tuple[tuple[object, ...], bytes] | None = field(
        default=None, init=False, repr=False, compare=False)

    # -- properties ---------------------------------------------------------------------------
    @property
    def group_id(self) -> bytes:
        return self.context.group_id

    @property
    def epoch(self) -> int:
        return self.context.epoch

    @property
    def epoch_authenticator(self) -> bytes:
        return self.secrets.epoch_authenticator

    @property
    def application_messages(self) -> int:
        """Application messages sent and received in this epoch (as far as this member saw):
        what a self-update policy counts, with no counter of its own to keep."""
        return self.secret_tree.generations(APPLICATION)

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return ks.export_secret(self.cs, self.secrets.exporter_secret, label, context, length)

    def members(self) -> list[tuple[int, Credential]]:
        return [(i, leaf.credential) for i, leaf in self.tree.members()]

    @property
    def member_count(self) -> int:
        return sum(node is not None for node in self.tree.nodes[::2])

    def _ctx(self) -> bytes:
        return self.context.serialize()

    def clone(self) -> Group:
        """An independent copy: try an operation on it, keep it only if it succeeds."""
        return dataclasses.replace(
            self, tree=self.tree.copy(), private_keys=dict(self.private_keys),
            secret_tree=self.secret_tree.copy(), proposals=dict(self.proposals),
            own_update_keys=dict(self.own_update_keys),
            resumption_psks=dict(self.resumption_psks), external_psks=dict(self.external_psks),
            past_epochs=self.past_epochs.copy())

    def _left(self) -> PastEpoch:
        """This epoch as a past one, once the group moves on: what its late messages need."""
        return PastEpoch(self.epoch, self._ctx(), self.secrets.sender_data_secret,
                         self.secret_tree, dict(self.tree.members()))

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        cs: CipherSuite,
        group_id: bytes,
        credential: Credential,
        signature_priv: bytes,
        validator: CredentialValidator,
        *,
        extensions: list[ext.Extension] | None = None,
        capabilities: ext.Capabilities | None = None,
        max_past_epochs: int = DEFAULT_KEPT,
        random: Random = os.urandom,
    ) -> Group:
        """A one-member group at epoch 0 (RFC 9420 §11), keeping ``max_past_epochs`` epochs'
        application keys for late messages."""
        sig_pub = ed25519_public(signature_priv)
        validator(credential, sig_pub)
        enc_priv, enc_pub = cs.derive_key_pair(random(32))
        leaf = LeafNode(enc_pub, sig_pub, credential,
                        capabilities or default_capabilities(cs, credential), KEY_PACKAGE,
                        FOREVER, b"", [], b"").signed(cs, signature_priv)
        tree = RatchetTree.with_one_leaf(cs, leaf)
        exts = extensions or []
        ext.check_unique(exts)
        ctx = GroupContext(ext.PROTOCOL_VERSION_MLS10, cs.id, group_id, 0, tree.tree_hash(), b"",
                           exts)
        secrets = ks.from_joiner(cs, random(cs.nh), bytes(cs.nh), ctx.serialize())
        tag = cs.mac(secrets.confirmation_key, b"")
        return cls(cs, ctx, tree, 0, signature_priv, {0: enc_priv}, secrets,
                   cs.hash(opaque(tag)), SecretTree(cs, secrets.encryption_secret, 1),
                   validator, resumption_psks={0: secrets.resumption_psk},
                   past_epochs=PastEpochs(max_past_epochs))

    # -- application messages ----------------------------------------------------------------
    def encrypt(self, data: bytes, authenticated_data: bytes = b"", *, padding: int = 0,
                random: Random = os.urandom) -> bytes:
        self._require_active()
        content = fr.FramedContent(self.group_id, self.epoch, fr.Sender(fr.MEMBER, self.my_leaf),
                                   authenticated_data, data)
        return self._protect(content, private=True, padding=padding, random=random)

    def _protect(self, content: fr.FramedContent, *, private: bool, padding: int = 0,
                 confirmation_tag: bytes | None = None, random: Random = os.urandom) -> bytes:
        wf = fr.PRIVATE_MESSAGE if private else fr.PUBLIC_MESSAGE
        sig = fr.sign(self.cs, self.signature_priv, wf, content, self._ctx())
        ac = fr.AuthenticatedContent(wf, content, fr.AuthData(sig, confirmation_tag))
        return self._frame(ac, padding=padding, random=random)

    def _frame(self, ac: fr.AuthenticatedContent, *, padding: int = 0,
               random: Random = os.urandom) -> bytes:
        if ac.wire_format == fr.PRIVATE_MESSAGE:
            body: fr.PrivateMessage | fr.PublicMessage = fr.protect_private(
                self.cs, ac, self.secret_tree, self.secrets.sender_data_secret, padding, random)
        else:
            body = fr.protect_public(self.cs, ac, self.secrets.membership_key, self._ctx())
        return MLSMessage(body).serialize()

    # -- receiving ---------------------------------------------------------------------------
    def process(self, message: bytes | MLSMessage) -> Event:
        """Verify and apply one message; on any failure the group is unchanged.

        Every refusal is an ``MLSError``; stray exceptions from hostile input are wrapped.
        """
        self._require_active()
        try:
            return self._process(message)
        except MLSError:
            raise
        except (AssertionError, KeyError, IndexError, ValueError, TypeError) as e:
            raise ValidationError(f"message refused: {type(e).__name__}: {e}") from None

    def _process(self, message: bytes | MLSMessage) -> Event:
        msg = message if isinstance(message, MLSMessage) else MLSMessage.deserialize(message)
        body = msg.body
        if not isinstance(body, fr.PublicMessage | fr.PrivateMessage):
            raise ValidationError("not a group message")
        gid = body.group_id if isinstance(body, fr.PrivateMessage) else body.content.group_id
        epoch = body.epoch if isinstance(body, fr.PrivateMessage) else body.content.epoch
        if gid != self.group_id:
            raise ValidationError("message is for another group")
        if epoch != self.epoch:
            past = self.past_epochs.get(epoch) if isinstance(body, fr.PrivateMessage) else None
            if past is None:
                raise StaleEpochError(f"message is for epoch {epoch}, group is at {self.epoch}")
            return ApplicationMessage.of(*past.open(self.cs, body))
        use = None
        if isinstance(body, fr.PrivateMessage):
            ac, use = fr.unprotect_private(self.cs, body, self.secret_tree,
                                           self.secrets.sender_data_secret)
        else:
            if body.content.content_type == fr.APPLICATION_CONTENT:
                raise ValidationError("application data must be sent as a PrivateMessage")
            fr.verify_membership_tag(self.cs, body, self.secrets.membership_key, self._ctx())
            ac = body.authenticated()
        sender_key = self._sender_signature_key(ac.content.sender, ac)
        fr.verify(self.cs, sender_key, ac, self._ctx())
        content = ac.content
        if isinstance(content.content, bytes):
            leaf = self.tree.leaf(content.sender.index)
            assert leaf is not None and use is not None
            self.secret_tree.consume(use)
            return ApplicationMessage.of(content, leaf.credential)
        work = self.clone()
        if isinstance(content.content, prop.Proposal):
            if use is not None:
                work.secret_tree.consume(use)
            event: Event = work._receive_proposal(ac)
        else:
            event = work._apply_commit(ac)
            if work.active:
                work.past_epochs.remember(self._left(), work.epoch)
            else:
                work.past_epochs.limit(0, work.epoch)
        self._adopt(work)
        return event

    def _adopt(self, other: Group) -> None:
        self.__dict__.update(other.__dict__)

    def _sender_signature_key(self, sender: fr.Sender, ac: fr.AuthenticatedContent) -> bytes:
        if sender.sender_type == fr.MEMBER:
            leaf = self.tree.leaf(sender.index)
            if leaf is None:
                raise ValidationError(f"sender leaf {sender.index} is blank or outside the tree")
            return leaf.signature_key
        if sender.sender_type == fr.EXTERNAL:
            senders = self._external_senders()
            if sender.index >= len(senders):
                raise ValidationError("unknown external sender")
            return senders[sender.index][0]
        content = ac.content.content
        if sender.sender_type == fr.NEW_MEMBER_PROPOSAL:
            if not (isinstance(content, prop.Proposal) and content.proposal_type == prop.ADD):
                raise ValidationError("a new member may only propose to add itself")
            body = content.body
            assert isinstance(body, prop.Add)
            return body.key_package.leaf_node.signature_key
        raise UnsupportedError("external commits are not accepted")

    def _external_senders(self) -> list[tuple[bytes, Credential]]:
        data = ext.find(self.context.extensions, ext.EXTERNAL_SENDERS)
        if data is None:
            return []
        r = Reader(data)
        out = r.vector(lambda r: (r.opaque(), Credential.decode_from(r)))
        r.done()
        return out

    def _receive_proposal(self, ac: fr.AuthenticatedContent) -> ProposalReceived:
        p = ac.content.content
        assert isinstance(p, prop.Proposal)
        sender = ac.content.sender
        self._validate_proposal(p, sender)
        ref = ac.proposal_ref(self.cs)
        self.proposals[ref] = _Proposed(p, sender)
        return ProposalReceived(sender, p, ref)

    # -- proposals ---------------------------------------------------------------------------
    def _validate_leaf(self, leaf: LeafNode, *, replacing: int | None = None) -> None:
        """RFC 9420 §7.3 checks for a leaf entering the tree (time checks are the caller's)."""
        self.validator(leaf.credential, leaf.signature_key)
        caps = leaf.capabilities
        self._check_required_capabilities(leaf)
        if leaf.credential.credential_type not in caps.credentials:
            raise ValidationError("leaf's credential type is not in its capabilities")
        if self.cs.id not in caps.cipher_suites or ext.PROTOCOL_VERSION_MLS10 not in caps.versions:
            raise ValidationError("leaf does not support the group's suite or version")
        for e in leaf.extensions:
            if e.extension_type not in caps.extensions:
                raise ValidationError("leaf carries an extension it does not list")
        for i, other in self.tree.members():
            if i == replacing:
                continue
            if leaf.credential.credential_type not in other.capabilities.credentials or \
                    other.credential.credential_type not in caps.credentials:
                raise ValidationError("credential types are not supported by every member")
            if other.encryption_key == leaf.encryption_key or \
                    other.signature_key == leaf.signature_key:
                raise ValidationError("leaf reuses another member's key")

    def _validate_proposal(self, p: prop.Proposal, sender: fr.Sender) -> None:
        t, body = p.proposal_type, p.body
        if sender.sender_type == fr.EXTERNAL and t not in (prop.ADD, prop.REMOVE, prop.PSK,
                                                           prop.REINIT,
                                                           prop.GROUP_CONTEXT_EXTENSIONS):
            raise ValidationError("external senders may not send this proposal")
        if isinstance(body, prop.Add):
            body.key_package.verify(self.cs)
            self._validate_leaf(body.key_package.leaf_node)
        elif isinstance(body, prop.Update):
            if sender.sender_type != fr.MEMBER:
                raise ValidationError("only members send Update proposals")
            leaf = body.leaf_node
            if leaf.leaf_node_source != UPDATE or not leaf.verify_signature(
                    self.cs, self.group_id, sender.index):
                raise ValidationError("Update leaf node is invalid")
            self._validate_leaf(leaf, replacing=sender.index)
        elif isinstance(body, prop.Remove):
            if self.tree.leaf(body.removed) is None:
                raise ValidationError("Remove names a blank or absent leaf")
        elif isinstance(body, prop.PreSharedKey):
            self._psk_value(body.psk)
            if len(body.psk.psk_nonce) != self.cs.nh:
                raise ValidationError("PSK nonce has the wrong length")
        elif isinstance(body, prop.GroupContextExtensions):
            ext.check_unique(body.extensions)
        elif isinstance(body, prop.ReInit | prop.ExternalInit):
            raise UnsupportedError("ReInit and ExternalInit are not supported")

    def _psk_value(self, psk: PreSharedKeyID) -> bytes:
        if psk.psktype == EXTERNAL:
            v = self.external_psks.get(psk.psk_id)
            if v is None:
                raise ValidationError("unknown external PSK")
            return v
        if psk.psktype == RESUMPTION and psk.usage == USAGE_APPLICATION and \
                psk.psk_group_id == self.group_id:
            v = self.resumption_psks.get(psk.psk_epoch)
            if v is None:
                raise ValidationError("resumption PSK for an epoch we no longer hold")
            return v
        raise UnsupportedError("only external and application resumption PSKs are supported")

    def _propose(self, body: object, *, private: bool = True) -> bytes:
        self._require_active()
        p = prop.Proposal.of(body)  # type: ignore[arg-type]
        sender = fr.Sender(fr.MEMBER, self.my_leaf)
        self._validate_proposal(p, sender)
        content = fr.FramedContent(self.group_id, self.epoch, sender, b"", p)
        wf = fr.PRIVATE_MESSAGE if private else fr.PUBLIC_MESSAGE
        sig = fr.sign(self.cs, self.signature_priv, wf, content, self._ctx())
        ac = fr.AuthenticatedContent(wf, content, fr.AuthData(sig))
        self.proposals[ac.proposal_ref(self.cs)] = _Proposed(p, sender)
        return self._frame(ac)

    def propose_add(self, key_package: KeyPackage) -> bytes:
        return self._propose(prop.Add(key_package))

    def propose_remove(self, leaf: int) -> bytes:
        return self._propose(prop.Remove(leaf))

    def propose_update(self, random: Random = os.urandom) -> bytes:
        priv, pub = self.cs.derive_key_pair(random(32))
        old = self.tree.leaf(self.my_leaf)
        assert old is not None
        leaf = dataclasses.replace(old, encryption_key=pub, leaf_node_source=UPDATE,
                                   lifetime=None, parent_hash=b"").signed(
            self.cs, self.signature_priv, self.group_id, self.my_leaf)
        self.own_update_keys[pub] = priv
        return self._propose(prop.Update(leaf))

    def add_external_psk(self, psk_id: bytes, psk: bytes) -> None:
        self.external_psks[psk_id] = psk

    # -- commits -----------------------------------------------------------------------------
    def commit(
        self,
        *,
        add: list[KeyPackage] = (),  # type: ignore[assignment]
        remove: list[int] = (),  # type: ignore[assignment]
        psks: list[bytes] = (),  # type: ignore[assignment]
        extensions: list[ext.Extension] | None = None,
        force_path: bool = True,
        private: bool = True,
        ratchet_tree_in_welcome: bool = True,
        random: Random = os.urandom,
    ) -> PendingCommit:
        """Commit pending proposals plus these changes; apply with ``apply(pending)``.

        Liaison sends handshake messages as PrivateMessages: a PublicMessage would show the
        relay every proposal, room-state change and credential in clear.
        """
        self._require_active()
        by_value = [prop.Proposal.of(prop.Add(kp)) for kp in add]
        by_value += [prop.Proposal.of(prop.Remove(i)) for i in remove]
        by_value += [prop.Proposal.of(prop.PreSharedKey(
            PreSharedKeyID.external(pid, random(self.cs.nh)))) for pid in psks]
        if extensions is not None:
            by_value.append(prop.Proposal.of(prop.GroupContextExtensions(extensions)))
        me = fr.Sender(fr.MEMBER, self.my_leaf)
        for p in by_value:
            self._validate_proposal(p, me)
        refs = [ref for ref, pr in self.proposals.items()
                if not (pr.proposal.proposal_type in (prop.UPDATE, prop.REMOVE)
                        and _targets(pr, self.my_leaf))]
        listed = [prop.ProposalOrRef(None, r) for r in refs]
        listed += [prop.ProposalOrRef(p, None) for p in by_value]
        work = self.clone()
        resolved = [(self.proposals[r].proposal, self.proposals[r].sender) for r in refs]
        resolved += [(p, me) for p in by_value]
        applied = work._apply_proposals(resolved, committer=self.my_leaf)
        need_path = force_path or not resolved or any(
            p.proposal_type in _PATH_REQUIRED for p, _ in resolved)
        path = None
        commit_secret = bytes(self.cs.nh)
        path_secrets: list[bytes] = []
        new_leaf_priv = b""
        if need_path:
            def provisional(tree_hash: bytes) -> bytes:
                return dataclasses.replace(
                    work.context, epoch=self.epoch + 1, tree_hash=tree_hash,
                    confirmed_transcript_hash=self.context.confirmed_transcript_hash,
                ).serialize()

            new = treekem.create_path(self.cs, work.tree, self.my_leaf, self.signature_priv,
                                      self.group_id, provisional, set(applied.added), random)
            path, path_secrets = new.update_path, new.path_secrets
            commit_secret, new_leaf_priv = new.commit_secret, new.leaf_priv
        commit = Commit(listed, path)
        content = fr.FramedContent(self.group_id, self.epoch, me, b"", commit)
        wf = fr.PRIVATE_MESSAGE if private else fr.PUBLIC_MESSAGE
        sig = fr.sign(self.cs, self.signature_priv, wf, content, self._ctx())
        partial = fr.AuthenticatedContent(wf, content, fr.AuthData(sig, b""))
        psk_list = applied.psks
        work._advance_epoch(partial, commit_secret, psk_list)
        tag = work.cs.mac(work.secrets.confirmation_key, work.context.confirmed_transcript_hash)
        ac = fr.AuthenticatedContent(wf, content, fr.AuthData(sig, tag))
        work.interim_transcript_hash = self.cs.hash(
            work.context.confirmed_transcript_hash + opaque(tag))
        message = self._frame(ac, random=random)
        # private keys of the committer after the commit
        work.private_keys = {2 * self.my_leaf: new_leaf_priv} if need_path else {
            k: v for k, v in work.private_keys.items() if work.tree.nodes[k] is not None}
        for (p, _), s in zip(work.tree.filtered_direct_path(self.my_leaf), path_secrets,
                             strict=False):
            work.private_keys[p] = treekem.node_key_pair(self.cs, s)[0]
        work.proposals = {}
        work.own_update_keys = {}
        group_info = work._group_info(ratchet_tree_in_welcome)
        welcome = None
        if applied.added:
            welcome = work._welcome(applied, group_info, path_secrets, psk_list, random)
        return PendingCommit(message, welcome, group_info, work)

    def apply(self, pending: PendingCommit) -> None:
        """The relay accepted our commit: move to the new epoch."""
        if pending.next_group.epoch != self.epoch + 1:
            raise StaleEpochError("pending commit was built for another epoch")
        nxt = pending.next_group
        nxt.past_epochs = self.past_epochs
        nxt.past_epochs.remember(self._left(), nxt.epoch)
        self._adopt(nxt)

    @dataclass
    class _Applied:
        added: list[int]
        removed: list[int]
        updated: list[int]
        psks: list[tuple[PreSharedKeyID, bytes]]
        added_key_packages: list[tuple[int, KeyPackage]]

    def _apply_proposals(self, resolved: list[tuple[prop.Proposal, fr.Sender]],
                         committer: int | None) -> Group._Applied:
        """Validate a commit's proposal list (RFC 9420 §12.2) and apply it to self.tree."""
        seen_removed: set[int] = set()
        updated: dict[int, LeafNode] = {}
        keys: set[bytes] = set()
        psk_ids: set[bytes] = set()
        gce = [p for p, _ in resolved if p.proposal_type == prop.GROUP_CONTEXT_EXTENSIONS]
        if len(gce) > 1:
            raise ValidationError("more than one GroupContextExtensions proposal")
        for p, sender in resolved:
            t, body = p.proposal_type, p.body
            if t in (prop.REINIT, prop.EXTERNAL_INIT):
                raise UnsupportedError("ReInit and ExternalInit are not supported")
            if isinstance(body, prop.Update):
                if sender.sender_type != fr.MEMBER or sender.index == committer:
                    raise ValidationError("committer cannot commit its own Update")
                if sender.index in updated:
                    raise ValidationError("two Updates for one leaf")
                updated[sender.index] = body.leaf_node
            elif isinstance(body, prop.Remove):
                if body.removed == committer:
                    raise ValidationError("committer cannot remove itself")
                if body.removed in seen_removed:
                    raise ValidationError("leaf removed twice")
                seen_removed.add(body.removed)
            elif isinstance(body, prop.Add):
                k = body.key_package.leaf_node.signature_key
                if k in keys:
                    raise ValidationError("two Adds for one signature key")
                keys.add(k)
            elif isinstance(body, prop.PreSharedKey):
                pid = body.psk.serialize()
                if pid in psk_ids:
                    raise ValidationError("PSK named twice")
                psk_ids.add(pid)
        if set(updated) & seen_removed:
            raise ValidationError("a leaf is both updated and removed")
        tree = self.tree
        for p, _ in resolved:
            if isinstance(p.body, prop.GroupContextExtensions):
                self.context = dataclasses.replace(self.context, extensions=p.body.extensions)
        for i, leaf in updated.items():
            if tree.leaf(i) is None:
                raise ValidationError("Update from a blank leaf")
            tree.set_leaf(i, leaf)
            tree.blank_path(i)
            if i == self.my_leaf:
                priv = self.own_update_keys.get(leaf.encryption_key)
                if priv is None:
                    raise ValidationError("our own Update was committed but its key is unknown")
                self.private_keys[2 * i] = priv
        for i in seen_removed:
            if tree.leaf(i) is None:
                raise ValidationError("Remove names a blank leaf")
            tree.remove_leaf(i)
            tree.truncate()
        added: list[int] = []
        added_kps: list[tuple[int, KeyPackage]] = []
        for p, _ in resolved:
            if isinstance(p.body, prop.Add):
                kp = p.body.key_package
                idx = tree.add_leaf(kp.leaf_node)
                added.append(idx)
                added_kps.append((idx, kp))
        for i in list(self.private_keys):
            if i >= len(tree.nodes) or tree.nodes[i] is None:
                del self.private_keys[i]
        if gce:
            for _, leaf in tree.members():
                self._check_required_capabilities(leaf)
        psks = [(p.body.psk, self._psk_value(p.body.psk)) for p, _ in resolved
                if isinstance(p.body, prop.PreSharedKey)]
        return Group._Applied(added, sorted(seen_removed), sorted(updated), psks, added_kps)

    def _check_required_capabilities(self, leaf: LeafNode) -> None:
        """The leaf supports the group's required_capabilities (default types need no listing)."""
        req = ext.find(self.context.extensions, ext.REQUIRED_CAPABILITIES)
        if req is None:
            return
        rc = ext.RequiredCapabilities.deserialize(req)
        caps = leaf.capabilities
        if not (set(rc.extension_types) <= set(caps.extensions) | ext.DEFAULT_EXTENSIONS
                and set(rc.proposal_types) <= set(caps.proposals) | prop.DEFAULT_PROPOSALS
                and set(rc.credential_types) <= set(caps.credentials)):
            raise ValidationError("a member does not support the group's required capabilities")

    def _advance_epoch(self, ac: fr.AuthenticatedContent, commit_secret: bytes,
                       psks: list[tuple[PreSharedKeyID, bytes]]) -> None:
        """New GroupContext, key schedule and secret tree from a commit (tag not yet known)."""
        confirmed = self.cs.hash(self.interim_transcript_hash + ac.confirmed_transcript_input())
        self.context = dataclasses.replace(self.context, epoch=self.context.epoch + 1,
                                           tree_hash=self.tree.tree_hash(),
                                           confirmed_transcript_hash=confirmed)
        old_init = self.secrets.init_secret
        self.secrets = ks.derive_epoch(self.cs, old_init, commit_secret,
                                       psk_secret(self.cs, psks), self.context.serialize())
        self.secret_tree = SecretTree(self.cs, self.secrets.encryption_secret,
                                      self.tree.n_leaves, self.max_skip)
        self.resumption_psks[self.epoch] = self.secrets.resumption_psk
        for e in [e for e in self.resumption_psks if e <= self.epoch - RESUMPTION_PSKS_KEPT]:
            del self.resumption_psks[e]

    def _apply_commit(self, ac: fr.AuthenticatedContent) -> CommitApplied:
        commit = ac.content.content
        assert isinstance(commit, Commit)
        sender = ac.content.sender
        if sender.sender_type != fr.MEMBER:
            raise UnsupportedError("only members may commit (no external commits)")
        committer = sender.index
        if committer == self.my_leaf:
            raise ValidationError("our own commit comes back: apply the pending commit instead")
        resolved: list[tuple[prop.Proposal, fr.Sender]] = []
        for por in commit.proposals:
            if por.proposal is not None:
                self._validate_proposal(por.proposal, sender)
                resolved.append((por.proposal, sender))
            else:
                assert por.reference is not None
                pr = self.proposals.get(por.reference)
                if pr is None:
                    raise ValidationError("commit references an unknown proposal")
                resolved.append((pr.proposal, pr.sender))
        applied = self._apply_proposals(resolved, committer)
        removed_me = self.my_leaf in applied.removed
        need_path = not resolved or any(p.proposal_type in _PATH_REQUIRED for p, _ in resolved)
        if need_path and commit.path is None:
            raise ValidationError("commit lacks a required UpdatePath")
        if removed_me:
            # we cannot derive the next epoch, and need not: we are out of the group
            self.active = False
            self.proposals = {}
            return CommitApplied(sender, self.epoch + 1, applied.added, applied.removed,
                                 applied.updated, True)
        commit_secret = bytes(self.cs.nh)
        if commit.path is not None:
            commit_secret = self._apply_path(commit.path, committer, applied)
        self._advance_epoch(ac, commit_secret, applied.psks)
        tag = ac.auth.confirmation_tag
        assert tag is not None
        if not self.cs.verify_mac(self.secrets.confirmation_key,
                                  self.context.confirmed_transcript_hash, tag):
            raise ValidationError("confirmation tag does not match: commit refused")
        self.interim_transcript_hash = self.cs.hash(
            self.context.confirmed_transcript_hash + opaque(tag))
        self.proposals = {}
        self.own_update_keys = {}
        return CommitApplied(sender, self.epoch, applied.added, applied.removed, applied.updated,
                             False)

    def _apply_path(self, path: treekem.UpdatePath, committer: int,
                    applied: Group._Applied) -> bytes:
        cs, tree = self.cs, self.tree
        leaf = path.leaf_node
        if leaf.leaf_node_source != COMMIT:
            raise ValidationError("UpdatePath leaf source is not commit")
        if not leaf.verify_signature(cs, self.group_id, committer):
            raise ValidationError("UpdatePath leaf signature is invalid")
        self._validate_leaf(leaf, replacing=committer)
        fdp = tree.filtered_direct_path(committer)
        if len(fdp) != len(path.nodes):
            raise ValidationError("UpdatePath length differs from the filtered direct path")
        pubs = [n.encryption_key for n in path.nodes]
        if len(set(pubs) | {leaf.encryption_key}) != len(pubs) + 1:
            raise ValidationError("UpdatePath repeats an encryption key")
        decrypt_tree = tree.copy()
        treekem.apply_new_path_keys(tree, committer, pubs)
        ph = tree.set_path_parent_hashes(committer)
        if ph != leaf.parent_hash:
            raise ValidationError("UpdatePath parent hash does not match the leaf")
        tree.set_leaf(committer, leaf)
        for k in [k for k in self.private_keys if k % 2 == 1 and
                  (k >= len(tree.nodes) or k in {p for p, _ in fdp} or tree.nodes[k] is None)]:
            del self.private_keys[k]
        provisional = dataclasses.replace(
            self.context, epoch=self.epoch + 1, tree_hash=tree.tree_hash()).serialize()
        i, secret = treekem.decrypt_path(cs, decrypt_tree, committer, self.my_leaf, path,
                                         provisional, set(applied.added), self.private_keys)
        secrets, commit_secret = treekem.derive_path(cs, secret, len(fdp) - i)
        for (p, _), s in zip(fdp[i:], secrets, strict=True):
            priv, pub = treekem.node_key_pair(cs, s)
            node = tree.parent_node(p)
            assert node is not None
            if node.encryption_key != pub:
                raise ValidationError("UpdatePath public key does not match its path secret")
            self.private_keys[p] = priv
        return commit_secret

    # -- welcome -----------------------------------------------------------------------------
    def _group_info(self, with_tree: bool) -> GroupInfo:
        exts = [ext.Extension(ext.EXTERNAL_PUB,
                              opaque(ks.external_pub(self.cs, self.secrets.external_secret)))]
        if with_tree:
            exts.insert(0, ext.Extension(ext.RATCHET_TREE, self.tree.to_wire()))
        tag = self.cs.mac(self.secrets.confirmation_key, self.context.confirmed_transcript_hash)
        unsigned = GroupInfo(self.context, exts, tag, self.my_leaf, b"")
        sig = self.cs.sign_with_label(self.signature_priv, b"GroupInfoTBS", unsigned.tbs())
        return dataclasses.replace(unsigned, signature=sig)

    def _welcome(self, applied: Group._Applied, group_info: GroupInfo, path_secrets: list[bytes],
                 psks: list[tuple[PreSharedKeyID, bytes]], random: Random) -> bytes:
        cs = self.cs
        key, nonce = ks.welcome_key_nonce(cs, self.secrets.welcome_secret)
        egi = cs.aead.seal(key, nonce, b"", group_info.serialize())
        fdp = [p for p, _ in self.tree.filtered_direct_path(self.my_leaf)]
        secrets = []
        for idx, kp in applied.added_key_packages:
            path_secret = None
            if path_secrets:
                lca = tm.common_ancestor(2 * idx, 2 * self.my_leaf)
                path_secret = treekem.PathSecret(path_secrets[fdp.index(lca)])
            gs = GroupSecrets(self.secrets.joiner_secret, path_secret, [p for p, _ in psks])
            kem, ct = cs.encrypt_with_label(kp.init_key, b"Welcome", egi, gs.serialize(), random)
            secrets.append(EncryptedGroupSecrets(kp.ref(), treekem.HPKECiphertext(kem, ct)))
        return MLSMessage(Welcome(cs.id, secrets, egi)).serialize()

    @classmethod
    def join(
        cls,
        welcome: bytes | MLSMessage,
        key_package: KeyPackage,
        secrets: KeyPackageSecrets,
        validator: CredentialValidator,
        *,
        ratchet_tree: bytes | None = None,
        external_psks: Mapping[bytes, bytes] | None = None,
        max_past_epochs: int = DEFAULT_KEPT,
    ) -> Group:
        """Join from a Welcome (RFC 9420 §12.4.3.1), checking the tree and every credential."""
        msg = welcome if isinstance(welcome, MLSMessage) else MLSMessage.deserialize(welcome)
        w = msg.body
        if not isinstance(w, Welcome):
            raise ValidationError("not a Welcome message")
        cs = suite(w.cipher_suite)
        if cs.id != key_package.cipher_suite:
            raise ValidationError("Welcome cipher suite differs from the KeyPackage's")
        gs = open_group_secrets(cs, w, key_package.ref(), secrets.init_priv)
        psk_store = dict(external_psks or {})
        psks = []
        for pid in gs.psks:
            if pid.psktype != EXTERNAL or pid.psk_id not in psk_store:
                raise ValidationError("Welcome needs a PSK this device does not have")
            psks.append((pid, psk_store[pid.psk_id]))
        psk = psk_secret(cs, psks)
        gi = open_group_info(cs, w, gs.joiner_secret, psk)
        ctx = gi.group_context
        if ctx.cipher_suite != cs.id or ctx.version != ext.PROTOCOL_VERSION_MLS10:
            raise ValidationError("GroupInfo suite or version mismatch")
        ext.check_unique(gi.extensions)
        tree_data = ext.find(gi.extensions, ext.RATCHET_TREE)
        if tree_data is None:
            tree_data = ratchet_tree
        if tree_data is None:
            raise ValidationError("no ratchet tree in the Welcome and none given")
        tree = RatchetTree.from_wire(cs, tree_data)
        signer = tree.leaf(gi.signer)
        if signer is None:
            raise ValidationError("GroupInfo signer is not a member")
        gi.verify(cs, signer.signature_key)
        tree.validate(ctx.group_id, ctx.tree_hash)
        for _, leaf in tree.members():
            validator(leaf.credential, leaf.signature_key)
        my_leaf = next((i for i, leaf in tree.members() if leaf == key_package.leaf_node), None)
        if my_leaf is None:
            raise ValidationError("our leaf is not in the group's tree")
        private_keys = {2 * my_leaf: secrets.encryption_priv}
        if gs.path_secret is not None:
            fdp = [p for p, _ in tree.filtered_direct_path(gi.signer)]
            lca = tm.common_ancestor(2 * my_leaf, 2 * gi.signer)
            if lca not in fdp:
                raise ValidationError("Welcome path secret is for a node off the path")
            start = fdp.index(lca)
            path, _ = treekem.derive_path(cs, gs.path_secret.path_secret, len(fdp) - start)
            for p, s in zip(fdp[start:], path, strict=True):
                priv, pub = treekem.node_key_pair(cs, s)
                node = tree.parent_node(p)
                if node is None or node.encryption_key != pub:
                    raise ValidationError("Welcome path secret does not match the tree")
                private_keys[p] = priv
        epoch = ks.from_joiner(cs, gs.joiner_secret, psk, ctx.serialize())
        if not cs.verify_mac(epoch.confirmation_key, ctx.confirmed_transcript_hash,
                             gi.confirmation_tag):
            raise ValidationError("GroupInfo confirmation tag is invalid")
        interim = cs.hash(ctx.confirmed_transcript_hash + opaque(gi.confirmation_tag))
        return cls(cs, ctx, tree, my_leaf, secrets.signature_priv, private_keys, epoch, interim,
                   SecretTree(cs, epoch.encryption_secret, tree.n_leaves), validator,
                   external_psks=psk_store, resumption_psks={ctx.epoch: epoch.resumption_psk},
                   past_epochs=PastEpochs(max_past_epochs))

    # -- persistence -------------------------------------------------------------------------
    def export_state(self) -> bytes:
        """Everything needed to resume this member, secrets included: store it encrypted."""
        return gs_.encode(self._epoch_state(), gs_.ProgressState(
            self.secret_tree.to_state(),
            [gs_.Entry(k, v) for k, v in sorted(self.external_psks.items())],
            [gs_.EpochPsk(e, v) for e, v in sorted(self.resumption_psks.items())],
            [gs_.StoredProposal(r, p.proposal, p.sender) for r, p in self.proposals.items()],
            [gs_.Entry(k, v) for k, v in sorted(self.own_update_keys.items())],
            int(self.active)), self.past_epochs.to_state(dict(self.tree.members())))

    def _epoch_state(self) -> bytes:
        """The epoch's part of the state, encoded again only when one of its fields is another
        object: commits replace them (on a clone), messages never touch them."""
        fields = (self.context, self.tree, self.my_leaf, self.signature_priv, self.private_keys,
                  self.secrets, self.interim_transcript_hash)
        cached = self._encoded_epoch
        if cached is not None and all(a is b for a, b in zip(cached[0], fields, strict=True)):
            return cached[1]
        encoded = gs_.EpochState(
            gs_.STATE_VERSION, self.cs.id, self.context, self.tree.to_wire(), self.my_leaf,
            self.signature_priv,
            [NodeSecret(n, k) for n, k in sorted(self.private_keys.items())],
            gs_.secrets_to_list(self.secrets), self.interim_transcript_hash).serialize()
        self._encoded_epoch = (fields, encoded)
        return encoded

    @classmethod
    def import_state(cls, data: bytes, validator: CredentialValidator, *,
                     max_past_epochs: int | None = None) -> Group:
        """Resume a member; ``max_past_epochs`` replaces the number of past epochs kept (a
        version 1 state, saved before past epochs were kept, starts with none)."""
        st, progress, past_state = gs_.decode(data)
        cs = suite(st.cipher_suite)
        tree = RatchetTree.from_wire(cs, st.tree)
        past = PastEpochs() if past_state is None else PastEpochs.from_state(
            cs, past_state, dict(tree.members()))
        if max_past_epochs is not None:
            past.limit(max_past_epochs, st.context.epoch)
        secret_tree = SecretTree.from_state(cs, progress.secret_tree)
        return cls(cs, st.context, tree, st.my_leaf, st.signature_priv,
                   {n.node: n.secret for n in st.private_keys},
                   gs_.secrets_from_list(st.epoch_secrets), st.interim_transcript_hash,
                   secret_tree, validator,
                   external_psks={e.key: e.value for e in progress.external_psks},
                   resumption_psks={e.epoch: e.psk for e in progress.resumption_psks},
                   proposals={p.ref: _Proposed(p.proposal, p.sender)
                              for p in progress.proposals},
                   own_update_keys={e.key: e.value for e in progress.own_update_keys},
                   active=bool(progress.active), max_skip=secret_tree.max_skip,
                   past_epochs=past)

    def _require_active(self) -> None:
        if not self.active:
            raise ValidationError("this member has been removed from the group")


def _targets(pr: _Proposed, leaf: int) -> bool:
    body = pr.proposal.body
    return (isinstance(body, prop.Remove) and body.removed == leaf) or (
        isinstance(body, prop.Update) and pr.sender.index == leaf)


