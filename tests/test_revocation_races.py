"""A revocation racing a lookup never leaves a cache tier serving the revoked share (real Redis, real store)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

from gateway.models import Share
from gateway.shares.cache import REFRESH_AHEAD, ShareCache
from gateway.shares.shared_state import CircuitBreaker, SharedState, connect
from gateway.shares.store.sqlite import SqliteStore

HASH = "ab" * 32


def a_share() -> Share:
    return Share(f"sh_{uuid.uuid4().hex}", "s1", "alice", True, None, "abcdefgh", time.time())


def shared_state(redis_url: str) -> SharedState:
    return SharedState(connect(redis_url, timeout=1.0), connect(redis_url, timeout=None),
                       prefix=f"sgtest-{uuid.uuid4().hex[:8]}", breaker=CircuitBreaker(5.0), revoked_ttl=60.0)


async def test_a_store_answer_read_before_a_revocation_cannot_replace_it_in_redis(redis_url: str) -> None:
    """Replica B read the share from the store just before replica A revoked it, and writes
    its answer to Redis just after: Redis must keep the revoked share."""
    shared = shared_state(redis_url)
    share = a_share()
    try:
        await shared.revoke(HASH, dataclasses.replace(share, revoked_at=time.time()))
        await shared.put_share(HASH, share, 60.0)  # B's stale answer arrives late
        found, cached = await shared.get_share(HASH)
        assert found and cached is not None and cached.revoked_at is not None
    finally:
        await shared.close()


class SlowStore(SqliteStore):
    """The real SQLite store whose token lookups wait for the test's signal after reading."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.read = asyncio.Event()
        self.go_on = asyncio.Event()

    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        share = await super().share_by_token_hash(token_hash)
        self.read.set()
        await self.go_on.wait()
        return share


async def test_a_lookup_in_flight_during_a_revocation_does_not_refill_the_cache(tmp_path: Path) -> None:
    store = SlowStore(str(tmp_path / "s.db"))
    await store.open()
    await store.migrate()
    share = a_share()
    await store.create_share(share, HASH)
    cache = ShareCache(store, ttl=60.0, negative_ttl=5.0, size=100)
    try:
        lookup = asyncio.ensure_future(cache.lookup(HASH))
        await store.read.wait()  # the load has read the share as it was before the revocation
        await store.revoke(share.id, time.time())
        cache.on_revoked(HASH, share.id)  # this replica's revocation, or a message from another
        store.go_on.set()
        await lookup
        cached = cache.cached(HASH)
        assert cached is None or cached.revoked_at is not None
        again = await cache.lookup(HASH)
        assert again is not None and again.revoked_at is not None
    finally:
        await store.close()


class CountingStore(SqliteStore):
    """The real SQLite store, counting token lookups."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.lookups = 0

    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        self.lookups += 1
        return await super().share_by_token_hash(token_hash)


async def test_a_share_in_steady_use_is_reloaded_ahead_of_its_expiry_in_the_background(tmp_path: Path) -> None:
    """Past REFRESH_AHEAD of its lifetime, a hot entry is still served at once while one
    background load (not one per request) refreshes it; the reload sees what the store says
    now, so a revocation this replica never heard of is picked up before the TTL runs out."""
    store = CountingStore(str(tmp_path / "s.db"))
    await store.open()
    await store.migrate()
    share = a_share()
    await store.create_share(share, HASH)
    ttl = 0.5
    cache = ShareCache(store, ttl=ttl, negative_ttl=5.0, size=100)
    try:
        assert await cache.lookup(HASH) == share
        assert store.lookups == 1
        assert cache.cached(HASH) == share  # fresh: no reload
        await asyncio.sleep(REFRESH_AHEAD * ttl + 0.05)
        await store.revoke(share.id, time.time())  # no message reaches this cache
        served = [cache.cached(HASH) for _ in range(50)]  # a burst past the refresh point
        assert served == [share] * 50  # still within its TTL: served, nobody waits
        for _ in range(100):
            await asyncio.sleep(0.01)
            cached = cache.cached(HASH)
            if cached is not None and cached.revoked_at is not None:
                break
        assert cached is not None and cached.revoked_at is not None  # before the TTL ran out
        assert store.lookups == 2  # one reload for the whole burst
    finally:
        await store.close()
