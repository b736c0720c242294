"""One contract suite, run unchanged against every store of record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.models import Share
from gateway.shares.store import AccessRow, ShareStore, StoreError, open_store, sqlite_path
from tests.conftest import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[ShareStore]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/contract.db"
        else:
            url = await stack.enter_async_context(postgres_schema())
        s = open_store(url)
        await s.open()
        stack.push_async_callback(s.close)
        assert await s.migrate() == [1]
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
