"""This device's enrolment: who it is, and the private key that signs for it.

One database holds one account (a shared ward phone keeps one database per account), and the
signature key exists nowhere else on the device: only inside the encrypted database.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, fields

from storage.database import Database


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    user_id: str
    device_id: str
    device_name: str
    relay_url: str
    organisation_name: str
    organisation_key: bytes
    credential: bytes
    signature_private_key: bytes = field(repr=False)
    enrolled_at: float


_NAMES = tuple(f.name for f in fields(Account))
_COLUMNS = ", ".join(_NAMES)


class AccountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self) -> Account | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM account WHERE id = 1").fetchone()
        return None if row is None else Account(**dict(zip(_NAMES, row, strict=True)))

    def enrol(self, account: Account) -> None:
        """Record the enrolment; a database already enrolled refuses a second one."""
        if self.get() is not None:
            raise ValueError("this database already belongs to an account")
        marks = ", ".join("?" * len(_NAMES))
        self._db.execute(
            f"INSERT INTO account (id, {_COLUMNS}) VALUES (1, {marks})", astuple(account)
        )
