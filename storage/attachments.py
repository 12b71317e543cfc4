"""Documents attached to messages: the blob id, the file's name and type, and its key.

The document key (from the sharing message) is what turns the cached ciphertext back into the
file, so it lives here, inside the encrypted database, never beside the ciphertext.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crypto.document import DocumentKey
from storage.database import Database


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    blob_id: str
    file_name: str
    media_type: str
    key: DocumentKey


_COLUMNS = "blob_id, file_name, media_type, document_key, ciphertext_sha256, plaintext_size"


def _attachment(row: Sequence) -> Attachment:
    blob_id, file_name, media_type, key, sha256, size = row
    return Attachment(
        blob_id=blob_id, file_name=file_name, media_type=media_type,
        key=DocumentKey(key, sha256, size),
    )


class AttachmentStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, message_id: int, attachments: Sequence[Attachment]) -> None:
        self._db.executemany(
            f"INSERT INTO attachments (message_id, position, {_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (message_id, i, a.blob_id, a.file_name, a.media_type, a.key.key,
                 a.key.ciphertext_sha256, a.key.plaintext_size)
                for i, a in enumerate(attachments)
            ],
        )

    def of_messages(self, message_ids: Sequence[int]) -> dict[int, tuple[Attachment, ...]]:
        """Attachments of each message that has some, in the order the sender gave them."""
        found: dict[int, list[Attachment]] = {}
        rows = self._db.execute(
            f"SELECT message_id, {_COLUMNS} FROM attachments"
            " WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY message_id, position",
            (json.dumps(list(message_ids)),),
        )
        for row in rows:
            found.setdefault(row[0], []).append(_attachment(row[1:]))
        return {message_id: tuple(items) for message_id, items in found.items()}

    def unreferenced(self, blob_ids: Iterable[str]) -> set[str]:
        """The blobs no message refers to any more (recalled, purged, room left): the
        document cache may delete them."""
        candidates = set(blob_ids)
        rows = self._db.execute(
            "SELECT DISTINCT blob_id FROM attachments"
            " WHERE blob_id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(candidates)),),
        )
        return candidates - {row[0] for row in rows}
