"""SQLite backend (aiosqlite): the embedded default, one connection, WAL journal."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.observe.logging import get_logger
from gateway.shares.store.base import StoreError
from gateway.shares.store.sql import SqlStore, Tx

log = get_logger("gateway.store")
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _sqlite_sql(sql: str) -> str:
    """``$1`` → ``?1``: SQLite's numbered parameters keep one query text for both dialects."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class _SqliteTx(Tx):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self._conn.execute(_sqlite_sql(sql), args)
        return int(cursor.rowcount)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return list(await self._conn.execute_fetchall(_sqlite_sql(sql), args))


class SqliteStore(SqlStore):
    """SQLite store at ``path`` (``:memory:`` for a private in-memory database).

    Several processes may share one file (WAL, 5 s busy timeout); one
    connection per process, with transactions serialised by an asyncio lock.
    Operations are cancellation-safe (see ``SqlStore``).
    """

    greatest = "max"
    least = "min"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=5.0)
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA busy_timeout=5000")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store: {exc}") from exc
        self._conn = conn

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    @asynccontextmanager
    async def transaction(self, *, write: bool = False) -> AsyncIterator[Tx]:
        """One transaction on the shared connection (``BEGIN IMMEDIATE`` when ``write``).

        Robust on its own, too: ``BEGIN`` is issued inside the block that rolls
        back, so a failure or cancellation at any point (``BEGIN`` included:
        aiosqlite runs statements in order on its thread even when the awaiting
        task is gone) queues a ``ROLLBACK`` behind it; and a connection found
        inside a transaction at the start (a transaction someone abandoned) is
        rolled back first and logged (``sqlite_abandoned_transaction``), where
        it used to fail every later ``BEGIN`` with "cannot start a transaction
        within a transaction". Driver errors are raised as ``StoreError``.
        """
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open")
        async with self._lock:
            try:
                if conn.in_transaction:
                    log.warning("sqlite_abandoned_transaction", action="rolled back")
                    await conn.rollback()
                try:
                    await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    yield _SqliteTx(conn)
                except BaseException:
                    await self._rollback(conn)
                    raise
                await conn.commit()
            except (sqlite3.Error, ValueError) as exc:
                raise StoreError(f"SQLite store error: {exc}") from exc

    @staticmethod
    async def _rollback(conn: aiosqlite.Connection) -> None:
        """Roll back after a failure; a rollback that fails too is logged (the next
        transaction rolls back what is left) and the original error is kept."""
        try:
            await conn.rollback()  # a no-op outside a transaction (e.g. BEGIN itself failed)
        except (sqlite3.Error, ValueError) as exc:
            log.warning("sqlite_rollback_failed", error=str(exc))
