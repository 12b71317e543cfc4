"""The relay's state and operations, independent of HTTP: what the REST and WebSocket
handlers and the admin CLI call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from sqlalchemy import delete, exists, insert, select, update

from crypto.primitives import ed25519_sign
from protocol import frames as fr
from protocol.problems import Code
from relay import audit as audit_mod
from relay.blobs import collect as collect_blobs
from relay.config import DataDir, RelayConfig
from relay.db import (
    challenges,
    devices,
    envelopes,
    group_members,
    groups,
    key_packages,
    mailbox,
    make_engine,
    tokens,
    users,
)
from relay.delivery import Closer, Connection, Hub, Sender, deliver_frame, envelope_json
from relay.errors import ProblemError
from relay.ids import token_hash
from relay.orgkey import OrganisationKey
from relay.sqlite_writer import SqliteWriter, sqlite_path
from relay.writer import NewEnvelope, Tx, Writer

log = logging.getLogger("liaison.relay")

REVOKED_FRAME = fr.Revoked().model_dump_json()
# The signed audit head is rewritten at most this often (and when the relay stops): once per
# write batch, the file's rewrite cost the writer a third of its time under load.
AUDIT_HEAD_SECONDS = 0.1


@dataclass(frozen=True)
class AuthDevice:
    device_id: str
    user_id: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class RateLimiter:
    """Failed attempts per key (user, address) in a sliding window."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            q = self._failures.get(key)
            if not q:
                continue
            while q and q[0] < now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                retry = int(q[0] + self.window - now) + 1
                raise ProblemError(429, Code.RATE_LIMITED,
                                   "too many failed attempts; try again later",
                                   retry_after=retry)

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures[key].append(now)


class Relay:
    """One relay process: database, single writer, connected devices, caches."""

    def __init__(self, data: DataDir, config: RelayConfig, org_key: OrganisationKey) -> None:
        self.data = data
        self.config = config
        self.org_key = org_key
        url = data.db_url(config)
        self.engine = make_engine(url, synchronous=config.sqlite_synchronous)
        self.write_engine = make_engine(url, synchronous=config.sqlite_synchronous, writer=True)
        path = sqlite_path(url)
        self.writer = Writer(self.write_engine, message_ttl=config.message_ttl_days * 86_400,
                             sqlite=SqliteWriter(path, config.sqlite_synchronous) if path
                             else None,
                             on_delivered=self._delivered, on_audit_head=self._sign_audit_head)
        self.hub = Hub()
        self.limiter = RateLimiter(config.auth_failures_per_window,
                                   config.auth_failure_window_seconds)
        self.members: dict[bytes, set[str]] = {}
        self.epochs: dict[bytes, int] = {}
        self.device_user: dict[str, str] = {}
        self.totp_key = org_key.derived_key(b"totp")
        self._tasks: list[asyncio.Task[None]] = []
        self.accepting = False
        self._audit_head: tuple[int, bytes] | None = None  # the chain's end, not yet signed
        self._audit_head_timer: asyncio.TimerHandle | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        async with self.engine.connect() as conn:
            for row in await conn.execute(select(groups.c.id, groups.c.epoch)):
                self.epochs[row.id] = row.epoch
                self.members[row.id] = set()
            for row in await conn.execute(select(group_members)):
                self.members.setdefault(row.group_id, set()).add(row.device_id)
            for row in await conn.execute(select(devices.c.id, devices.c.user_id).where(
                    devices.c.revoked_at.is_(None))):
                self.device_user[row.id] = row.user_id
        await self.writer.start()
        self._tasks = [asyncio.create_task(self._maintenance(), name="relay-maintenance")]
        self.accepting = True

    async def stop(self) -> None:
        """Refuse new work, finish what was accepted, close connections, release the DB."""
        self.accepting = False
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.writer.stop()
        if self._audit_head_timer is not None:
            self._audit_head_timer.cancel()
            self._write_audit_head()
        self.hub.close_all()
        await self.engine.dispose()
        await self.write_engine.dispose()

    def _sign_audit_head(self, seq: int, head: bytes) -> None:
        """The chain moved on (after a commit): sign and write its end shortly, once for all
        the batches committed meanwhile."""
        self._audit_head = (seq, head)
        if self._audit_head_timer is None:
            self._audit_head_timer = asyncio.get_running_loop().call_later(
                AUDIT_HEAD_SECONDS, self._write_audit_head)

    def _write_audit_head(self) -> None:
        self._audit_head_timer = None
        if self._audit_head is not None:
            seq, head = self._audit_head
            self._audit_head = None
            sig = ed25519_sign(self.org_key.seed, audit_mod.head_message(seq, head))
            audit_mod.write_head(self.data.audit_head_file, seq, head, sig)

    def _delivered(self, envs: list[NewEnvelope]) -> None:
        self.hub.deliver(envs)

    # -- authentication ---------------------------------------------------------------------
    async def authenticate(self, token: str | None) -> AuthDevice:
        if not token:
            raise ProblemError(401, Code.UNAUTHENTICATED, "missing bearer token")
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(devices.c.id, devices.c.user_id, devices.c.revoked_at, users.c.status,
                       users.c.roles, tokens.c.expires_at)
                .select_from(tokens.join(devices, devices.c.id == tokens.c.device_id)
                             .join(users, users.c.id == devices.c.user_id))
                .where(tokens.c.token_hash == token_hash(token)))).first()
        if row is None or row.expires_at < time.time():
            raise ProblemError(401, Code.UNAUTHENTICATED, "token unknown or expired")
        if row.revoked_at is not None:
            raise ProblemError(401, Code.DEVICE_REVOKED, "this device was revoked")
        if row.status != "active":
            raise ProblemError(403, Code.USER_DISABLED, "this user is disabled")
        return AuthDevice(row.id, row.user_id, tuple(json.loads(row.roles)))

    def audit_only(self, event: str, **fields: object) -> None:
        """Record an event on its own (e.g. a refusal, whose own operation rolled back)."""

        async def op(tx: Tx) -> None:
            tx.audit(event, **fields)  # type: ignore[arg-type]

        self.writer.submit(op, fast=True)

    # -- messages ---------------------------------------------------------------------------
    def _member_of(self, group_id: bytes, device: str) -> set[str]:
        members = self.members.get(group_id)
        if members is None or device not in members:
            raise ProblemError(403, Code.NOT_A_MEMBER, "this device is not a member of the group")
        return members

    def submit_send(self, device: AuthDevice, frame: fr.Send) -> asyncio.Future[fr.Accepted]:
        key = (device.device_id, frame.id)

        async def op(tx: Tx) -> fr.Accepted:
            stored = tx.seen(key)
            if stored is not None:
                return fr.Accepted(id=frame.id, sent_at=stored.sent_at)
            members = self._member_of(frame.group_id, device.device_id)
            recipients = [d for d in members if d != device.device_id]
            env = tx.enqueue(NewEnvelope(device.device_id, frame.id, frame.group_id,
                                         frame.kind.value, None, frame.payload, recipients))
            tx.audit("message_accepted", user_id=device.user_id, device_id=device.device_id,
                     group_id=frame.group_id, kind=frame.kind.value, size=len(frame.payload),
                     recipients=len(recipients))
            return fr.Accepted(id=frame.id, sent_at=env.sent_at)

        return self.writer.submit(op, fast=True, dedupe=key)

    def submit_commit(self, device: AuthDevice, frame: fr.Commit) -> asyncio.Future[fr.Accepted]:
        key = (device.device_id, frame.id)
        gid = frame.group_id

        async def op(tx: Tx) -> fr.Accepted:
            stored = tx.seen(key)
            if stored is not None:
                return fr.Accepted(id=frame.id, epoch=stored.epoch, sent_at=stored.sent_at)
            members = self._member_of(gid, device.device_id)
            current = self.epochs[gid]
            if frame.epoch != current:
                raise ProblemError(409, Code.STALE_EPOCH,
                                   f"the group is at epoch {current}: process the commits "
                                   "you missed, then commit again", epoch=current)
            add, remove = set(frame.add_devices) - members, set(frame.remove_devices)
            if device.device_id in remove:
                raise ProblemError(422, Code.VALIDATION, "a committer cannot remove itself")
            if not remove <= members:
                raise ProblemError(422, Code.VALIDATION, "removing a device that is not a member")
            if add:
                found = {r.id for r in await tx.conn.execute(select(devices.c.id).where(
                    devices.c.id.in_(add), devices.c.revoked_at.is_(None)))}
                if found != add:
                    raise ProblemError(422, Code.VALIDATION,
                                       "added devices must exist and not be revoked")
            if frame.welcome is not None and not add:
                raise ProblemError(422, Code.VALIDATION, "a Welcome needs added devices")
            await tx.conn.execute(update(groups).where(groups.c.id == gid)
                                  .values(epoch=current + 1))
            if add:
                await tx.conn.execute(insert(group_members),
                                      [{"group_id": gid, "device_id": d} for d in sorted(add)])
            if remove:
                await tx.conn.execute(delete(group_members).where(
                    group_members.c.group_id == gid, group_members.c.device_id.in_(remove)))
            tx.enqueue(NewEnvelope(device.device_id, frame.id, gid, fr.Kind.COMMIT.value,
                                   current, frame.payload,
                                   [d for d in members if d != device.device_id]))
            if frame.welcome is not None:
                tx.enqueue(NewEnvelope(device.device_id, None, gid, fr.Kind.WELCOME.value,
                                       current + 1, frame.welcome, sorted(add)))
            tx.audit("commit_accepted", user_id=device.user_id, device_id=device.device_id,
                     group_id=gid, epoch=current + 1, size=len(frame.payload),
                     welcome_size=len(frame.welcome or b""))
            if add or remove:
                tx.audit("membership_changed", device_id=device.device_id, group_id=gid,
                         epoch=current + 1, added=sorted(add), removed=sorted(remove))
            old = set(members)
            self.epochs[gid] = current + 1
            self.members[gid] = (members | add) - remove

            def undo() -> None:
                self.epochs[gid] = current
                self.members[gid] = old

            tx.on_rollback(undo)
            return fr.Accepted(id=frame.id, epoch=current + 1)

        return self.writer.submit(op, dedupe=key)

    def submit_ack(self, device: AuthDevice, seqs: list[int]) -> None:
        async def op(tx: Tx) -> None:
            tx.ack(device.device_id, seqs)

        self.writer.submit(op, fast=True)

    async def backlog(self, device_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        q = (select(mailbox.c.seq, envelopes).select_from(
            mailbox.join(envelopes, envelopes.c.id == mailbox.c.envelope_id))
            .where(mailbox.c.device_id == device_id, mailbox.c.seq > after)
            .order_by(mailbox.c.seq).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            env = NewEnvelope(r.sender_device, r.client_id, r.group_id, r.kind, r.epoch,
                              r.payload, [], id=r.id)
            out.append((r.seq, deliver_frame(r.seq, envelope_json(env, r.created_at,
                                                                  r.client_id))))
        return out

    def connection(self, device_id: str, send: Sender, close: Closer) -> Connection:
        conn = Connection(device_id, send, close, limit=self.config.send_queue_limit)
        self.hub.attach(conn)
        return conn

    # -- groups -----------------------------------------------------------------------------
    async def create_group(self, device: AuthDevice, group_id: bytes) -> int:
        if not 1 <= len(group_id) <= 64:
            raise ProblemError(422, Code.VALIDATION, "group id must be 1 to 64 bytes")

        async def op(tx: Tx) -> int:
            if group_id in self.epochs:
                raise ProblemError(409, Code.GROUP_EXISTS, "a group with this id exists")
            await tx.conn.execute(insert(groups).values(id=group_id, epoch=0, created_at=tx.now,
                                                        created_by=device.device_id))
            await tx.conn.execute(insert(group_members).values(group_id=group_id,
                                                               device_id=device.device_id))
            tx.audit("group_created", user_id=device.user_id, device_id=device.device_id,
                     group_id=group_id)
            self.epochs[group_id] = 0
            self.members[group_id] = {device.device_id}

            def undo() -> None:
                self.epochs.pop(group_id, None)
                self.members.pop(group_id, None)

            tx.on_rollback(undo)
            return 0

        return await self.writer.run(op)

    # -- revocation -------------------------------------------------------------------------
    async def revoke_device(self, device_id: str, *, by: AuthDevice | None) -> None:
        """Mark revoked and cut the device off at once (also used for CLI revocations)."""

        async def op(tx: Tx) -> None:
            row = (await tx.conn.execute(select(devices.c.user_id, devices.c.revoked_at,
                                                devices.c.revocation_handled)
                                         .where(devices.c.id == device_id))).first()
            if row is None:
                raise ProblemError(404, Code.NOT_FOUND, "no such device")
            if by is not None and not by.is_admin and by.user_id != row.user_id:
                raise ProblemError(403, Code.FORBIDDEN, "only the device's user or an admin")
            if row.revocation_handled:
                return
            await self._cut_off(tx, device_id, row.user_id, by)

        await self.writer.run(op)

    async def _cut_off(self, tx: Tx, device_id: str, user_id: str,
                       by: AuthDevice | None) -> None:
        await tx.conn.execute(update(devices).where(devices.c.id == device_id).values(
            revoked_at=tx.now, revocation_handled=True))
        await tx.conn.execute(delete(tokens).where(tokens.c.device_id == device_id))
        await tx.conn.execute(delete(key_packages).where(key_packages.c.device_id == device_id))
        await tx.conn.execute(delete(mailbox).where(mailbox.c.device_id == device_id))
        await tx.conn.execute(delete(group_members).where(group_members.c.device_id == device_id))
        notice = json.dumps({"event": "device_revoked", "device_id": device_id,
                             "user_id": user_id}).encode()
        touched = {g: m for g, m in self.members.items() if device_id in m}
        for gid, members in touched.items():
            tx.enqueue(NewEnvelope(None, None, gid, fr.Kind.NOTICE.value, self.epochs.get(gid),
                                   notice, sorted(members - {device_id})))
        tx.audit("device_revoked", user_id=user_id, device_id=device_id,
                 by_device=by.device_id if by else "admin-cli", groups=len(touched))
        for members in touched.values():
            members.discard(device_id)
        self.device_user.pop(device_id, None)

        def undo() -> None:
            for members in touched.values():
                members.add(device_id)
            self.device_user[device_id] = user_id

        tx.on_rollback(undo)
        tx.on_commit(lambda: self.hub.disconnect(device_id, 4003, "device revoked",
                                                 REVOKED_FRAME))

    async def _handle_cli_revocations(self) -> None:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(devices.c.id).where(
                devices.c.revoked_at.is_not(None),
                devices.c.revocation_handled.is_(False)))).all()
        for r in rows:
            await self.revoke_device(r.id, by=None)

    # -- maintenance ------------------------------------------------------------------------
    async def _maintenance(self) -> None:
        """Revocations made by the admin CLI, expiry and garbage collection."""
        tick = 0
        while True:
            try:
                await self._handle_cli_revocations()
                if tick % 10 == 0:
                    await self.writer.run(self._expire)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("maintenance failed")
            tick += 1
            await asyncio.sleep(1.0)

    async def _expire(self, tx: Tx) -> None:
        now = tx.now
        expired = select(envelopes.c.id).where(envelopes.c.expires_at < now)
        await tx.conn.execute(delete(mailbox).where(mailbox.c.envelope_id.in_(expired)))
        orphans = select(envelopes.c.id).where(~exists().where(
            mailbox.c.envelope_id == envelopes.c.id)).limit(5000)
        await tx.conn.execute(delete(envelopes).where(envelopes.c.id.in_(orphans)))
        await tx.conn.execute(delete(tokens).where(tokens.c.expires_at < now))
        await tx.conn.execute(delete(challenges).where(challenges.c.expires_at < now))
        await collect_blobs(self, tx)

