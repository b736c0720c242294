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

from gateway.shares.store.base import StoreError
from gateway.shares.store.sql import SqlStore, Tx

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
    connection per process, with writes serialised by an asyncio lock.
    """

    greatest = "max"
    least = "min"

    def __init__(self, path: str) -> None:
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

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @asynccontextmanager
    async def transaction(self, *, write: bool = False) -> AsyncIterator[Tx]:
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open")
        async with self._lock:
            try:
                await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _SqliteTx(conn)
                except BaseException:
                    await conn.rollback()
                    raise
                await conn.commit()
            except (sqlite3.Error, ValueError) as exc:
                raise StoreError(f"SQLite store error: {exc}") from exc
