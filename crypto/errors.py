"""Typed errors for the cryptographic core.

Callers branch on the class, never on message text: a ``DecodeError`` means the peer sent
garbage, a ``ValidationError`` means it sent well-formed bytes that break a protocol rule,
and a ``CryptoError`` means a primitive refused its input.
"""


class MLSError(Exception):
    """Base of every error raised by ``crypto``, so callers can catch one type."""


class CryptoError(MLSError):
    """A primitive rejected its input (bad key, low-order point, exhausted nonce space)."""


class DecryptError(CryptoError):
    """Authenticated decryption failed: wrong key, or the ciphertext or AAD was altered."""


class DecodeError(MLSError):
    """Bytes are malformed: truncated, trailing data, out-of-range values."""


class ValidationError(MLSError):
    """Well-formed input violates a protocol rule."""


class ReplayError(ValidationError):
    """A message (generation, nonce or key package) was already consumed."""


class StaleEpochError(ValidationError):
    """A message belongs to an epoch this member no longer (or not yet) holds keys for."""


class CredentialError(ValidationError):
    """A credential or signature key is not acceptable for the claimed identity."""


class UnsupportedError(MLSError):
    """The peer asked for a version, cipher suite or extension this build does not implement."""
