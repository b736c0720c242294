"""Read-through share lookup (in-process TTL tier → store) and task→context bindings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cachetools import LRUCache, TLRUCache

from gateway.errors import DependencyUnavailable
from gateway.models import Share
from gateway.observe import metrics
from gateway.shares.store import ShareStore, StoreError

_MISSING = object()


class ShareCache:
    """Share lookup by token hash: in-process TTL cache in front of the store of record.

    Entries live ``ttl`` seconds (capped at the share's expiry); unknown hashes
    are cached as negative entries for ``negative_ttl`` seconds so a guessing
    client cannot hammer the store. Concurrent misses for one hash share a
    single store query. Store failure with no cached entry raises
    ``DependencyUnavailable`` (503): never allow because a dependency failed.
    """

    def __init__(self, store: ShareStore, *, ttl: float, negative_ttl: float, size: int) -> None:
        self._store = store
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._l1: TLRUCache[str, Share | None] = TLRUCache(
            maxsize=size, ttu=self._time_to_use, timer=time.monotonic
        )
        self._inflight: dict[str, asyncio.Future[Share | None]] = {}

    def _time_to_use(self, _key: str, value: Share | None, now: float) -> float:
        if value is None:
            return now + self._negative_ttl
        ttl = self._ttl
        if value.expires_at is not None:
            ttl = min(ttl, max(0.0, value.expires_at - time.time()))
        return now + ttl

    async def lookup(self, token_hash: str) -> Share | None:
        """The share for ``token_hash`` (possibly revoked/expired: the caller checks), or ``None``."""
        found: Any = self._l1.get(token_hash, _MISSING)
        if found is not _MISSING:
            metrics.SHARE_LOOKUPS.labels("l1", "negative" if found is None else "hit").inc()
            return found  # type: ignore[no-any-return]
        metrics.SHARE_LOOKUPS.labels("l1", "miss").inc()
        pending = self._inflight.get(token_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Share | None] = asyncio.get_running_loop().create_future()
        self._inflight[token_hash] = future
        try:
            share = await self._store.share_by_token_hash(token_hash)
        except StoreError as exc:
            metrics.SHARE_LOOKUPS.labels("store", "error").inc()
            future.set_exception(DependencyUnavailable())
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise DependencyUnavailable() from exc
        finally:
            del self._inflight[token_hash]
        metrics.SHARE_LOOKUPS.labels("store", "negative" if share is None else "hit").inc()
        self._l1[token_hash] = share
        future.set_result(share)
        return share

    def evict(self, token_hash: str) -> None:
        """Forget one entry (after revocation)."""
        self._l1.pop(token_hash, None)

    def clear(self) -> None:
        """Forget everything."""
        self._l1.clear()


class TaskBindings:
    """Task id → context id, learned from upstream responses (DESIGN.md "A2A").

    In-process and bounded (least recently used entries go first; a forgotten
    binding is re-learned through the upstream ``GetTask`` fallback). A task is
    bound once: a later, different context for the same task is ignored, so a
    response cannot re-point a task at another session.
    """

    def __init__(self, size: int = 200_000) -> None:
        self._map: LRUCache[str, str] = LRUCache(maxsize=size)

    async def context_of(self, task_id: str) -> str | None:
        """The context the task is bound to, or ``None`` if unknown."""
        return self._map.get(task_id)

    async def learn(self, pairs: list[tuple[str, str]]) -> None:
        """Record ``(task_id, context_id)`` pairs, first binding wins."""
        for task_id, context_id in pairs:
            if task_id not in self._map:
                self._map[task_id] = context_id
