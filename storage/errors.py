"""Typed errors of the device's encrypted cache, so the app can branch on the class."""


class StorageError(Exception):
    """Base of every error raised by ``storage``."""


class WrongKeyError(StorageError):
    """The database key does not open this file (or its first page is damaged beyond telling).

    SQLCipher cannot tell a wrong key from a destroyed first page: both fail the page's HMAC.
    """


class DatabaseCorruptError(StorageError):
    """The file is not a Liaison database, or a page failed its integrity check."""


class SchemaTooNewError(StorageError):
    """The database was migrated by a newer Liaison: this build must not touch it."""


class NotSenderError(StorageError):
    """An edit or recall came from someone other than the message's sender."""
