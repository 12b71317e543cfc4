"""Archiving a patient room's messages to the record: the engine's side of it.

The order matters for "nothing half-written": the room's rules are checked, the documents
decrypted and the Bundle built first; the record stores the Bundle atomically; only then does
the room learn, by an encrypted ``archived`` message, what was archived, when and by whom.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.client.content import ArchivedContent, Reference
from record.archive import (
    RPPS_SYSTEM,
    ArchivedDocument,
    ArchivedMessage,
    ArchiveReceipt,
    Author,
    Export,
    receipt,
    transaction,
)
from record.config import FhirConfig
from storage.directory import DirectoryEntry
from storage.messages import Message, MessageKind, MessageRef, NewMessage


def author(entry: DirectoryEntry | None, user_id: str) -> Author:
    """The exporting user as the directory knows them (name, RPPS), else by user id."""
    if entry is None:
        return Author(display=user_id)
    return Author(display=entry.display_name, rpps=entry.rpps)


def archived(message: Message, sender: str, document: bytes | None) -> ArchivedMessage:
    """A cached message as the transcript shows it; ``document`` is its decrypted file."""
    at = message.server_ts if message.server_ts is not None else message.local_ts
    item = message.attachments[0] if message.attachments else None
    return ArchivedMessage(
        ref=f"{message.ref.sender_device}/{message.ref.client_id}", sender=sender,
        sent=datetime.fromtimestamp(at, UTC), text=message.body,
        document=None if item is None or document is None else ArchivedDocument(
            name=item.file_name, media_type=item.media_type, data=document))


async def send_to_record(config: FhirConfig, export: Export) -> ArchiveReceipt:
    """Store the export in the record as one transaction; FhirError if it is not stored."""
    # Imported here: the FHIR models cost the engine's startup half a second otherwise.
    from fhir.resources.R4B.practitioner import Practitioner

    from record.client import FhirClient

    async with FhirClient(config) as fhir:
        if export.author.rpps:
            found = await fhir.search(Practitioner, {
                "identifier": f"{RPPS_SYSTEM}|{export.author.rpps}"})
            if len(found) == 1:
                export = export.model_copy(update={"author": export.author.model_copy(
                    update={"practitioner": f"Practitioner/{found[0].id}"})})
        bundle = transaction(export)
        return receipt(bundle, await fhir.transaction(bundle))


def announcement(stored: ArchiveReceipt, refs: list[MessageRef], documents: int) \
        -> ArchivedContent:
    return ArchivedContent(
        messages=[Reference(device=r.sender_device, id=r.client_id) for r in refs],
        documents=documents, identifier=stored.identifier,
        document_reference=stored.document_reference, communication=stored.communication)


def note(content: ArchivedContent, ref: MessageRef, room_id: str, sender_user: str,
         server_ts: float | None, local_ts: float) -> NewMessage:
    """The room's history line for an archive: a system message every member sees."""
    documents = f", {content.documents} document(s)" if content.documents else ""
    return NewMessage(
        ref=ref, room_id=room_id, sender_user=sender_user, local_ts=local_ts,
        server_ts=server_ts, kind=MessageKind.SYSTEM,
        body=f"archived {len(content.messages)} message(s){documents} to the patient's record:"
             f" {content.document_reference}, {content.communication}")
