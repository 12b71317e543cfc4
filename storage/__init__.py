"""Device's encrypted cache: SQLCipher database, migrations, repositories, search, keyring."""

from storage.database import Database
from storage.documents import DocumentCache, StagedDocument
from storage.errors import (
    DatabaseCorruptError,
    NotSenderError,
    SchemaTooNewError,
    StorageError,
    WrongKeyError,
)
from storage.local_store import LocalStore

__all__ = [
    "Database",
    "DatabaseCorruptError",
    "DocumentCache",
    "LocalStore",
    "NotSenderError",
    "SchemaTooNewError",
    "StagedDocument",
    "StorageError",
    "WrongKeyError",
]
