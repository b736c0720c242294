"""One contract suite, run unchanged against every store of record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.models import Share
from gateway.shares.store import AccessRow, SealedToken, ShareStore, StoreError, open_store, sqlite_path
from gateway.shares.store.migrations import MIGRATIONS
from gateway.shares.store.postgres import PostgresStore
from gateway.shares.store.sqlite import SqliteStore
from tests.conftest import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """An empty store of record: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/contract.db"
    else:
        async with postgres_schema() as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ShareStore]:
    async with contextlib.AsyncExitStack() as stack:
        s = open_store(store_url)
        await s.open()
        stack.push_async_callback(s.close)
        assert await s.migrate() == [1, 2]
        yield s


def share(sid: str = "sh_1", session: str = "s1", owner: str = "alice", **kw: Any) -> Share:
    return Share(id=sid, session_id=session, owner_id=owner, read_only=kw.pop("read_only", True),
                 label=kw.pop("label", None), token_prefix="abcdefgh", created_at=kw.pop("created_at", 100.0),
                 **kw)


async def test_migrations_are_idempotent(store: ShareStore) -> None:
    assert await store.migrate() == []


async def test_create_and_lookup(store: ShareStore) -> None:
    s = share(label="for bob", expires_at=200.5)
    await store.create_share(s, "hash-1")
    assert await store.share_by_token_hash("hash-1") == s
    assert await store.share_by_id("sh_1") == s
    assert await store.token_hash_of("sh_1") == "hash-1"
    assert await store.share_by_token_hash("nope") is None
    assert await store.share_by_id("nope") is None


async def test_token_hash_is_unique(store: ShareStore) -> None:
    await store.create_share(share("sh_1"), "same")
    with pytest.raises(StoreError):
        await store.create_share(share("sh_2"), "same")


async def test_revoke_once(store: ShareStore) -> None:
    await store.create_share(share(), "h")
    assert await store.revoke("sh_1", 150.0) is True
    assert await store.revoke("sh_1", 160.0) is False
    assert await store.revoke("missing", 160.0) is False
    revoked = await store.share_by_token_hash("h")
    assert revoked is not None
    assert revoked.revoked_at == 150.0
    assert not revoked.usable_at(151.0)


async def test_list_is_scoped_to_owner_and_session_with_stats(store: ShareStore) -> None:
    await store.create_share(share("sh_1", created_at=100.0), "h1")
    await store.create_share(share("sh_2", created_at=200.0, read_only=False), "h2")
    await store.create_share(share("sh_3", session="s2"), "h3")
    await store.create_share(share("sh_4", owner="carol"), "h4")
    await store.record_access([
        AccessRow("sh_1", "bob", 110.0, 120.0, 3),
        AccessRow("sh_1", "dave", 115.0, 130.0, 1),
    ])
    listed = await store.list_shares("s1", "alice")
    assert [x.share.id for x in listed] == ["sh_2", "sh_1"]  # newest first
    assert (listed[1].viewers, listed[1].access_count, listed[1].last_accessed_at) == (2, 4, 130.0)
    assert (listed[0].viewers, listed[0].access_count, listed[0].last_accessed_at) == (0, 0, None)


async def test_access_upsert_coalesces(store: ShareStore) -> None:
    await store.create_share(share(), "h")
    await store.record_access([AccessRow("sh_1", "bob", 110.0, 120.0, 2)])
    await store.record_access([AccessRow("sh_1", "bob", 105.0, 118.0, 5)])
    await store.record_access([AccessRow("unknown-share", "bob", 1.0, 2.0, 1)])  # ignored, no error
    [summary] = await store.list_shares("s1", "alice")
    assert (summary.viewers, summary.access_count, summary.last_accessed_at) == (1, 7, 120.0)


async def test_concurrent_access_writes(store: ShareStore) -> None:
    await store.create_share(share(), "h")
    await asyncio.gather(*(store.record_access([AccessRow("sh_1", f"u{i % 5}", 1.0, 2.0, 1)])
                           for i in range(40)))
    [summary] = await store.list_shares("s1", "alice")
    assert (summary.viewers, summary.access_count) == (5, 40)


async def test_session_owners(store: ShareStore) -> None:
    assert await store.session_owner("s1") is None
    assert await store.set_session_owner("s1", "alice", time.time()) is True
    assert await store.set_session_owner("s1", "mallory", time.time()) is False
    assert await store.session_owner("s1") == "alice"


async def test_ping(store: ShareStore) -> None:
    await store.ping()


async def test_closed_store_raises_store_error(store: ShareStore) -> None:
    await store.close()
    with pytest.raises(StoreError):
        await store.share_by_token_hash("x")
    await store.open()


async def test_unreachable_postgres_is_a_store_error() -> None:
    s = open_store("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError):
        await s.open()


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///rel.db", "rel.db"), ("sqlite:////abs/x.db", "/abs/x.db"), ("sqlite:///:memory:", ":memory:")],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == path


# ---------------------------------------------------------------- sealed tokens (migration 2)

SEALED = SealedToken(key_id="0123456789abcdef", ciphertext="bm9uY2UtYW5kLWNpcGhlcnRleHQ")


async def test_migration_2_adds_nullable_token_columns_to_a_version_1_store(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = open_store(store_url)
    await s.open()
    try:
        monkeypatch.setattr("gateway.shares.store.sql.MIGRATIONS", MIGRATIONS[:1])
        assert await s.migrate() == [1]
        assert isinstance(s, SqliteStore | PostgresStore)
        async with s.transaction(write=True) as tx:  # a share written by the version-1 gateway
            await tx.execute(
                "INSERT INTO shares (id, token_hash, token_prefix, session_id, owner_id, read_only, label,"
                " created_at) VALUES ('sh_old', 'h-old', 'abcdefgh', 's1', 'alice', TRUE, NULL, 100.0)"
            )
        monkeypatch.undo()
        assert await s.migrate() == [2]
        assert await s.share_by_token_hash("h-old") == share("sh_old")
        [summary] = await s.list_shares("s1", "alice")
        assert summary.sealed is None
        await s.create_share(share("sh_new", created_at=200.0), "h-new", SEALED)
        assert [x.sealed for x in await s.list_shares("s1", "alice")] == [SEALED, None]
    finally:
        await s.close()


async def test_sealed_token_is_kept_beside_the_hash_and_revocation_erases_it(store: ShareStore) -> None:
    await store.create_share(share("sh_1"), "h1", SEALED)
    await store.create_share(share("sh_2", created_at=200.0), "h2")
    assert {x.share.id: x.sealed for x in await store.list_shares("s1", "alice")} == {"sh_1": SEALED, "sh_2": None}
    assert await store.share_by_token_hash("h1") == share("sh_1")  # lookups still go by the hash
    assert await store.revoke("sh_1", 150.0) is True
    assert {x.share.id: x.sealed for x in await store.list_shares("s1", "alice")} == {"sh_1": None, "sh_2": None}


async def test_list_live_at_leaves_out_revoked_and_expired_shares(store: ShareStore) -> None:
    await store.create_share(share("sh_live", created_at=100.0), "h1")
    await store.create_share(share("sh_later", created_at=110.0, expires_at=500.0), "h2")
    await store.create_share(share("sh_expired", created_at=120.0, expires_at=300.0), "h3")
    await store.create_share(share("sh_at", created_at=125.0, expires_at=400.0), "h5")  # expires exactly then
    await store.create_share(share("sh_revoked", created_at=130.0), "h4")
    await store.revoke("sh_revoked", 200.0)
    assert [x.share.id for x in await store.list_shares("s1", "alice", live_at=400.0)] == ["sh_later", "sh_live"]
    assert [x.share.id for x in await store.list_shares("s1", "alice")] == [
        "sh_revoked", "sh_at", "sh_expired", "sh_later", "sh_live"]


async def test_shares_opened_by(store: ShareStore) -> None:
    await store.create_share(share("sh_a", session="s1", created_at=100.0), "ha", SEALED)
    await store.create_share(share("sh_b", session="s2", created_at=110.0, read_only=False), "hb")
    await store.create_share(share("sh_expired", session="s3", expires_at=300.0), "hc")
    await store.create_share(share("sh_revoked", session="s1", created_at=120.0), "hd")
    await store.create_share(share("sh_own", session="s9", owner="bob"), "he")
    await store.create_share(share("sh_unopened", session="s1"), "hf")
    await store.record_access([
        AccessRow("sh_a", "bob", 10.0, 20.0, 2),
        AccessRow("sh_b", "bob", 15.0, 40.0, 1),
        AccessRow("sh_expired", "bob", 15.0, 50.0, 1),
        AccessRow("sh_revoked", "bob", 15.0, 60.0, 1),
        AccessRow("sh_own", "bob", 15.0, 70.0, 1),  # bob's own share is not "shared with him"
        AccessRow("sh_a", "carol", 1.0, 2.0, 1),
    ])
    await store.revoke("sh_revoked", 200.0)
    opened = await store.shares_opened_by("bob", now=400.0)
    assert [(o.share.id, o.sealed, o.first_accessed_at, o.last_accessed_at, o.access_count) for o in opened] == [
        ("sh_b", None, 15.0, 40.0, 1),  # most recently opened first
        ("sh_a", SEALED, 10.0, 20.0, 2),
    ]
    assert opened[1].share == share("sh_a", session="s1", created_at=100.0)
    assert [o.share.id for o in await store.shares_opened_by("bob", now=250.0)] == ["sh_expired", "sh_b", "sh_a"]
    assert [o.share.id for o in await store.shares_opened_by("bob", ["s1", "s3"], now=400.0)] == ["sh_a"]
    assert await store.shares_opened_by("bob", [], now=400.0) == []
    assert [o.share.id for o in await store.shares_opened_by("carol")] == ["sh_a"]  # now: the current time
    assert await store.shares_opened_by("nobody") == []
    many = [f"x{i}" for i in range(1200)] + ["s2", "s1"]  # more sessions than one IN list holds
    assert [o.share.id for o in await store.shares_opened_by("bob", many, now=400.0)] == ["sh_b", "sh_a"]


async def test_shares_opened_by_survives_cancellation(store: ShareStore) -> None:
    """Like every store operation (tests/test_cancellation.py): a caller cancelled at any await
    point leaves no transaction open and nothing in flight."""
    await store.create_share(share("sh_a"), "ha", SEALED)
    await store.record_access([AccessRow("sh_a", "bob", 1.0, 2.0, 1)])
    for point in [*range(25), 0.0005, 0.001, 0.002, 0.005]:
        task = asyncio.ensure_future(store.shares_opened_by("bob", ["s1", "s2"]))
        if isinstance(point, int):
            for _ in range(point):
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(point)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        assert done, point
        assert task.cancelled() or [o.share.id for o in task.result()] == ["sh_a"]
        if isinstance(store, SqliteStore):
            assert store._conn is not None and not store._conn.in_transaction
        if isinstance(store, PostgresStore):
            assert store._pool is not None and store._pool.get_idle_size() == store._pool.get_size()
        assert getattr(store, "operations_in_flight", 0) == 0
        assert [o.share.id for o in await store.shares_opened_by("bob")] == ["sh_a"]
