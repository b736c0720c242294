"""Store of record for shares: one interface, SQLite (embedded default) and PostgreSQL backends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from gateway.shares.store.base import (
    AccessRow,
    OpenedShare,
    SealedToken,
    ShareStore,
    ShareSummary,
    StoreError,
)


def open_store(url: str) -> ShareStore:
    """Build (not yet connect) the store for a ``store`` URL.

    ``sqlite:///relative.db`` / ``sqlite:////absolute.db`` / ``sqlite:///:memory:``
    select SQLite; ``postgresql://user:pass@host:port/db`` selects PostgreSQL.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from gateway.shares.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from gateway.shares.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported store URL scheme {scheme!r}")


@contextlib.asynccontextmanager
async def opened(url: str, *, migrate: bool = True) -> AsyncIterator[ShareStore]:
    """A connected (and, by default, migrated) store for a one-off command; closed afterwards."""
    store = open_store(url)
    await store.open()
    try:
        if migrate:
            await store.migrate()
        yield store
    finally:
        await store.close()


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs.db`` → ``/abs.db``."""
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        raise ValueError("SQLite URLs look like sqlite:///relative.db or sqlite:////absolute.db")
    return rest[3:]


__all__ = [
    "AccessRow",
    "OpenedShare",
    "SealedToken",
    "ShareStore",
    "ShareSummary",
    "StoreError",
    "open_store",
    "opened",
    "sqlite_path",
]
