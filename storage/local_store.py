"""One account's encrypted cache, opened and migrated, with every repository on it.

The engine opens one ``LocalStore`` per signed-in account (the key comes from custody) and
uses it from its storage thread only; switching accounts closes one and opens the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.accounts import AccountStore
from storage.attachments import AttachmentStore
from storage.database import Database
from storage.directory import DirectoryCache
from storage.groups import GroupStore
from storage.key_packages import KeyPackageStore
from storage.members import MemberStore
from storage.messages import MessageStore
from storage.migrations import migrate
from storage.outbox import Outbox
from storage.receipts import ReceiptStore
from storage.rooms import RoomStore
from storage.search import MessageSearch
from storage.settings import Settings


@dataclass(frozen=True, slots=True)
class LocalStore:
    db: Database
    account: AccountStore
    groups: GroupStore
    key_packages: KeyPackageStore
    rooms: RoomStore
    members: MemberStore
    messages: MessageStore
    receipts: ReceiptStore
    attachments: AttachmentStore
    outbox: Outbox
    directory: DirectoryCache
    settings: Settings
    search: MessageSearch

    @classmethod
    def open(cls, path: Path, key: bytes, *, create: bool = False) -> LocalStore:
        """Open the database (see ``Database.open`` for the errors) and bring its schema
        up to date."""
        db = Database.open(path, key, create=create)
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
        return cls(
            db=db,
            account=AccountStore(db),
            groups=GroupStore(db),
            key_packages=KeyPackageStore(db),
            rooms=RoomStore(db),
            members=MemberStore(db),
            messages=MessageStore(db),
            receipts=ReceiptStore(db),
            attachments=AttachmentStore(db),
            outbox=Outbox(db),
            directory=DirectoryCache(db),
            settings=Settings(db),
            search=MessageSearch(db),
        )

    def close(self) -> None:
        self.db.close()
