"""PostgreSQL backend (asyncpg, pooled): the production store of record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from gateway.shares.store.base import StoreError
from gateway.shares.store.sql import SqlStore, Tx

_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)
# Serialises concurrent migrations from several replicas (an arbitrary constant).
_MIGRATION_LOCK = 0x5EA2E


class _PgTx(Tx):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return list(await self._conn.fetch(sql, *args))


class PostgresStore(SqlStore):
    """PostgreSQL store for ``postgresql://user:pass@host:port/db`` (pool of 1 to 10, 5 s timeouts).

    Operations are cancellation-safe (see ``SqlStore``): a transaction is never
    abandoned by a cancelled caller, so no pooled connection goes back to the
    pool mid-transaction or mid-query.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        super().__init__()
        self._url = url
        self._min = min_size
        self._max = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=self._min,
                max_size=self._max,
                timeout=5.0,
                command_timeout=5.0,
            )
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def transaction(self, *, write: bool = False) -> AsyncIterator[Tx]:
        if self._pool is None:
            raise StoreError("store is not open")
        try:
            async with self._pool.acquire(timeout=5.0) as conn, conn.transaction():
                yield _PgTx(conn)
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"PostgreSQL store error: {exc}") from exc

    async def migrate(self) -> list[int]:
        """Apply pending migrations under a session advisory lock (replicas starting
        together migrate one at a time); lock, migration and unlock run as one
        guarded operation, so a cancelled caller never leaves the lock held."""
        return await self._guarded(self._locked_migrate(), "migrate")

    async def _locked_migrate(self) -> list[int]:
        if self._pool is None:
            raise StoreError("store is not open")
        try:
            async with self._pool.acquire(timeout=5.0) as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
                try:
                    return await self._transact(self._migrate, write=True)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"PostgreSQL migration failed: {exc}") from exc
