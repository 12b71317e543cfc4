"""The key schedule (RFC 9420 §8): from the previous epoch and a commit to this epoch's secrets."""

from __future__ import annotations

from dataclasses import dataclass

from crypto.cipher_suite import CipherSuite


@dataclass(frozen=True)
class EpochSecrets:
    """Every secret an epoch derives; only init_secret survives into the next epoch."""

    joiner_secret: bytes
    welcome_secret: bytes
    epoch_secret: bytes
    sender_data_secret: bytes
    encryption_secret: bytes
    exporter_secret: bytes
    external_secret: bytes
    confirmation_key: bytes
    membership_key: bytes
    resumption_psk: bytes
    epoch_authenticator: bytes
    init_secret: bytes


def joiner_secret(cs: CipherSuite, init_secret: bytes, commit_secret: bytes,
                  group_context: bytes) -> bytes:
    """``group_context`` is the serialized GroupContext of the new epoch."""
    return cs.expand_with_label(cs.extract(init_secret, commit_secret), b"joiner",
                                group_context, cs.nh)


def welcome_secret(cs: CipherSuite, joiner: bytes, psk_secret: bytes) -> bytes:
    return cs.derive_secret(cs.extract(joiner, psk_secret), b"welcome")


def welcome_key_nonce(cs: CipherSuite, welcome: bytes) -> tuple[bytes, bytes]:
    return (cs.expand_with_label(welcome, b"key", b"", cs.nk),
            cs.expand_with_label(welcome, b"nonce", b"", cs.nn))


def from_joiner(cs: CipherSuite, joiner: bytes, psk_secret: bytes,
                group_context: bytes) -> EpochSecrets:
    member = cs.extract(joiner, psk_secret)
    epoch = cs.expand_with_label(member, b"epoch", group_context, cs.nh)

    def d(label: bytes) -> bytes:
        return cs.derive_secret(epoch, label)

    return EpochSecrets(
        joiner_secret=joiner,
        welcome_secret=cs.derive_secret(member, b"welcome"),
        epoch_secret=epoch,
        sender_data_secret=d(b"sender data"),
        encryption_secret=d(b"encryption"),
        exporter_secret=d(b"exporter"),
        external_secret=d(b"external"),
        confirmation_key=d(b"confirm"),
        membership_key=d(b"membership"),
        resumption_psk=d(b"resumption"),
        epoch_authenticator=d(b"authentication"),
        init_secret=d(b"init"),
    )


def derive_epoch(cs: CipherSuite, init_secret: bytes, commit_secret: bytes, psk_secret: bytes,
                 group_context: bytes) -> EpochSecrets:
    return from_joiner(cs, joiner_secret(cs, init_secret, commit_secret, group_context),
                       psk_secret, group_context)


def external_pub(cs: CipherSuite, external_secret: bytes) -> bytes:
    return cs.derive_key_pair(external_secret)[1]


def export_secret(cs: CipherSuite, exporter_secret: bytes, label: bytes, context: bytes,
                  length: int) -> bytes:
    """MLS-Exporter: secrets for the application (e.g. a room's document keys)."""
    return cs.expand_with_label(cs.derive_secret(exporter_secret, label), b"exported",
                                cs.hash(context), length)
