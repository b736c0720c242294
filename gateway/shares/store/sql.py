"""Queries shared by the SQL backends, written once with ``$n`` placeholders."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from gateway.models import Share
from gateway.shares.store.base import (
    AccessRow,
    OpenedShare,
    SealedToken,
    ShareStore,
    ShareSummary,
    StoreError,
)
from gateway.shares.store.migrations import MIGRATIONS, VERSION_TABLE
from gateway.tasks import Background, being_cancelled, uncancelled

T = TypeVar("T")

_SHARE_COLUMNS = (
    "id, session_id, owner_id, read_only, label, token_prefix, created_at, expires_at, revoked_at"
)
# The share columns of ``s`` (shares joined with share_access ``a``), then its sealed token.
_S_COLUMNS = ", ".join("s." + c.strip() for c in _SHARE_COLUMNS.split(","))
_S_SEALED = "s.token_key_id, s.token_ciphertext"
# Usable at $n (``Share.usable_at``): neither revoked nor expired.
_LIVE = "s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > ${n})"


def _share(row: Sequence[Any]) -> Share:
    return Share(
        id=row[0],
        session_id=row[1],
        owner_id=row[2],
        read_only=bool(row[3]),
        label=row[4],
        token_prefix=row[5],
        created_at=float(row[6]),
        expires_at=None if row[7] is None else float(row[7]),
        revoked_at=None if row[8] is None else float(row[8]),
    )


def _sealed(key_id: Any, ciphertext: Any) -> SealedToken | None:
    if key_id is None or ciphertext is None:
        return None
    return SealedToken(key_id=str(key_id), ciphertext=str(ciphertext))


class Tx(abc.ABC):
    """A transaction handle: the same three calls as the store, inside one transaction."""

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        """Run a query; return its rows."""


class SqlStore(ShareStore):
    """A ``ShareStore`` over any SQL driver that provides ``transaction()``.

    Cancellation-safe (DESIGN.md "Cancellation-safe"): every operation runs its
    whole transaction in a task tracked by the store (``_atomic``), and the
    caller waits for it with ``tasks.uncancelled``. A caller cancelled at any
    ``await`` (aiohttp cancels the handler of a client that disconnects)
    therefore never interrupts a transaction between ``BEGIN`` and
    ``COMMIT``: the work commits, or fails and rolls back, and only then does
    the caller see its ``CancelledError``. ``close()`` waits up to
    ``close_timeout`` seconds for operations in flight, then cancels the rest
    (their transactions roll back) before the connections close.

    ``GREATEST``/``LEAST`` are spelled per dialect (SQLite's are ``max``/``min``).
    """

    greatest = "GREATEST"
    least = "LEAST"
    close_timeout = 5.0  # seconds close() waits for operations in flight

    def __init__(self) -> None:
        self._operations = Background("store")

    @abc.abstractmethod
    def transaction(self, *, write: bool = False) -> AbstractAsyncContextManager[Tx]:
        """A transaction; driver errors inside are raised as ``StoreError``.

        Not cancellation-safe on its own: use it inside ``_atomic``/``_guarded``.
        """

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the driver's connections (``close()`` first waits for operations in flight)."""

    async def close(self) -> None:
        """Wait (up to ``close_timeout`` s) for operations in flight, then release connections."""
        await self._operations.drain(self.close_timeout)
        await self._disconnect()

    @property
    def operations_in_flight(self) -> int:
        """Operations whose transaction is still running (0 once the store is idle)."""
        return len(self._operations)

    async def _guarded(self, work: Coroutine[Any, Any, T], name: str) -> T:
        """Run ``work`` in a tracked task and wait for it even if the caller is cancelled.

        An operation cancelled by ``close()`` (it outlived ``close_timeout``)
        raises ``StoreError`` in callers that were not cancelled themselves.
        """
        task = self._operations.spawn(work, name=name, expected=(StoreError,))
        try:
            return await uncancelled(task)
        except asyncio.CancelledError:
            if task.cancelled() and not being_cancelled():
                raise StoreError(f"store closed while {name} was running") from None
            raise

    async def _transact(self, work: Callable[[Tx], Awaitable[T]], *, write: bool) -> T:
        """``work(tx)`` inside one transaction (not guarded: call it from a guarded task)."""
        async with self.transaction(write=write) as tx:
            return await work(tx)

    async def _atomic(self, name: str, work: Callable[[Tx], Awaitable[T]], *, write: bool = False) -> T:
        """The one place operations run: ``work(tx)`` in one transaction, in a tracked task.

        Returns what ``work`` returns; raises ``StoreError`` when the store
        cannot answer. If the caller is cancelled, the transaction still
        completes (or rolls back) before the caller's ``CancelledError`` is raised.
        """
        return await self._guarded(self._transact(work, write=write), name)

    async def _fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return await self._atomic("fetch", lambda tx: tx.fetch(sql, *args))

    async def migrate(self) -> list[int]:
        return await self._atomic("migrate", self._migrate, write=True)

    async def _migrate(self, tx: Tx) -> list[int]:
        applied: list[int] = []
        await tx.execute(VERSION_TABLE)
        done = {row[0] for row in await tx.fetch("SELECT version FROM share_gateway_schema")}
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            for statement in statements:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO share_gateway_schema (version, applied_at) VALUES ($1, $2)",
                version,
                time.time(),
            )
            applied.append(version)
        return applied

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def create_share(self, share: Share, token_hash: str, sealed: SealedToken | None = None) -> None:
        await self._atomic(
            "create_share",
            lambda tx: tx.execute(
                "INSERT INTO shares (id, token_hash, token_prefix, session_id, owner_id,"
                " read_only, label, created_at, expires_at, revoked_at, token_key_id, token_ciphertext)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                share.id,
                token_hash,
                share.token_prefix,
                share.session_id,
                share.owner_id,
                share.read_only,
                share.label,
                share.created_at,
                share.expires_at,
                share.revoked_at,
                None if sealed is None else sealed.key_id,
                None if sealed is None else sealed.ciphertext,
            ),
            write=True,
        )

    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        rows = await self._fetch(f"SELECT {_SHARE_COLUMNS} FROM shares WHERE token_hash = $1", token_hash)
        return _share(rows[0]) if rows else None

    async def share_by_id(self, share_id: str) -> Share | None:
        rows = await self._fetch(f"SELECT {_SHARE_COLUMNS} FROM shares WHERE id = $1", share_id)
        return _share(rows[0]) if rows else None

    async def token_hash_of(self, share_id: str) -> str | None:
        rows = await self._fetch("SELECT token_hash FROM shares WHERE id = $1", share_id)
        return str(rows[0][0]) if rows else None

    async def list_shares(
        self, session_id: str, owner_id: str, *, live_at: float | None = None
    ) -> list[ShareSummary]:
        args: list[Any] = [session_id, owner_id]
        live = ""
        if live_at is not None:
            args.append(live_at)
            live = " AND " + _LIVE.format(n=3)
        rows = await self._fetch(
            f"SELECT {_S_COLUMNS}, {_S_SEALED},"
            " COUNT(a.user_id), COALESCE(SUM(a.access_count), 0), MAX(a.last_accessed_at)"
            " FROM shares s LEFT JOIN share_access a ON a.share_id = s.id"
            f" WHERE s.session_id = $1 AND s.owner_id = $2{live}"
            " GROUP BY s.id ORDER BY s.created_at DESC, s.id",
            *args,
        )
        return [
            ShareSummary(
                share=_share(row),
                viewers=int(row[11]),
                access_count=int(row[12]),
                last_accessed_at=None if row[13] is None else float(row[13]),
                sealed=_sealed(row[9], row[10]),
            )
            for row in rows
        ]

    async def shares_opened_by(
        self, user_id: str, session_ids: list[str] | None = None, *, now: float | None = None
    ) -> list[OpenedShare]:
        if session_ids is not None and not session_ids:
            return []
        at = time.time() if now is None else now
        base = (
            f"SELECT {_S_COLUMNS}, {_S_SEALED},"
            " a.first_accessed_at, a.last_accessed_at, a.access_count"
            " FROM share_access a JOIN shares s ON s.id = a.share_id"
            f" WHERE a.user_id = $1 AND s.owner_id <> $1 AND {_LIVE.format(n=2)}"
        )
        order = " ORDER BY a.last_accessed_at DESC, s.created_at DESC, s.id"
        # One IN list per 500 sessions, all in one transaction (one snapshot).
        chunks: list[list[str] | None] = [None] if session_ids is None else [
            session_ids[i : i + 500] for i in range(0, len(session_ids), 500)
        ]

        async def work(tx: Tx) -> list[Sequence[Any]]:
            rows: list[Sequence[Any]] = []
            for chunk in chunks:
                if chunk is None:
                    rows.extend(await tx.fetch(base + order, user_id, at))
                    continue
                marks = ", ".join(f"${i + 3}" for i in range(len(chunk)))
                sql = f"{base} AND s.session_id IN ({marks}){order}"
                rows.extend(await tx.fetch(sql, user_id, at, *chunk))
            return rows

        rows = await self._atomic("shares_opened_by", work)
        opened = [
            OpenedShare(
                share=_share(row),
                sealed=_sealed(row[9], row[10]),
                first_accessed_at=float(row[11]),
                last_accessed_at=float(row[12]),
                access_count=int(row[13]),
            )
            for row in rows
        ]
        if len(chunks) > 1:  # each chunk came sorted; merge them
            opened.sort(key=lambda o: (-o.last_accessed_at, -o.share.created_at, o.share.id))
        return opened

    async def revoke(self, share_id: str, at: float) -> bool:
        changed = await self._atomic(
            "revoke",
            lambda tx: tx.execute(
                "UPDATE shares SET revoked_at = $1, token_key_id = NULL, token_ciphertext = NULL"
                " WHERE id = $2 AND revoked_at IS NULL",
                at,
                share_id,
            ),
            write=True,
        )
        return changed > 0

    async def record_access(self, rows: list[AccessRow]) -> None:
        if not rows:
            return
        sql = (
            "INSERT INTO share_access (share_id, user_id, first_accessed_at,"
            " last_accessed_at, access_count) SELECT $1, $2, $3, $4, $5"
            " WHERE EXISTS (SELECT 1 FROM shares WHERE id = $1)"
            " ON CONFLICT (share_id, user_id) DO UPDATE SET"
            f" first_accessed_at = {self.least}(share_access.first_accessed_at,"
            " excluded.first_accessed_at),"
            f" last_accessed_at = {self.greatest}(share_access.last_accessed_at,"
            " excluded.last_accessed_at),"
            " access_count = share_access.access_count + excluded.access_count"
        )

        async def upsert(tx: Tx) -> None:
            for r in rows:
                await tx.execute(
                    sql,
                    r.share_id,
                    r.user_id,
                    r.first_accessed_at,
                    r.last_accessed_at,
                    r.access_count,
                )

        await self._atomic("record_access", upsert, write=True)

    async def session_owner(self, session_id: str) -> str | None:
        rows = await self._fetch("SELECT owner_id FROM session_owners WHERE session_id = $1", session_id)
        return str(rows[0][0]) if rows else None

    async def set_session_owner(self, session_id: str, owner_id: str, at: float) -> bool:
        changed = await self._atomic(
            "set_session_owner",
            lambda tx: tx.execute(
                "INSERT INTO session_owners (session_id, owner_id, created_at)"
                " VALUES ($1, $2, $3) ON CONFLICT (session_id) DO NOTHING",
                session_id,
                owner_id,
                at,
            ),
            write=True,
        )
        return changed > 0

    async def session_owners(self, session_ids: list[str]) -> dict[str, str]:
        owners: dict[str, str] = {}
        for start in range(0, len(session_ids), 500):
            chunk = session_ids[start : start + 500]
            marks = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            rows = await self._fetch(
                f"SELECT session_id, owner_id FROM session_owners WHERE session_id IN ({marks})", *chunk
            )
            owners.update({str(r[0]): str(r[1]) for r in rows})
        return owners

    async def reassign_session_owner(self, session_id: str, owner_id: str, at: float) -> None:
        await self._atomic(
            "reassign_session_owner",
            lambda tx: tx.execute(
                "INSERT INTO session_owners (session_id, owner_id, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (session_id) DO UPDATE SET owner_id = excluded.owner_id",
                session_id,
                owner_id,
                at,
            ),
            write=True,
        )
