"""Read-through share lookup (in-process TTL tier → Redis → store) and task→context bindings."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache, TLRUCache

from gateway.errors import DependencyUnavailable
from gateway.models import Share
from gateway.observe import metrics
from gateway.shares.shared_state import REDIS_ERRORS, SharedState
from gateway.shares.store import ShareStore, StoreError
from gateway.tasks import Background, being_cancelled, uncancelled

if TYPE_CHECKING:
    from gateway.pipeline.live import LiveConnections

_MISSING = object()
_NEVER = float("inf")
REFRESH_AHEAD = 0.8  # reload an in-process entry once this share of its lifetime has passed


class ShareCache:
    """Share lookup by token hash, in three tiers (DESIGN.md "Storage").

    1. in-process TTL cache: ``ttl`` seconds (capped at the share's expiry),
       ``size`` entries; unknown hashes are cached negatively for
       ``negative_ttl`` so a guessing client cannot hammer the store;
    2. Redis (``shared``, optional): the same entries for every replica, kept
       ``redis_ttl`` seconds (capped at expiry); a failure trips its circuit
       breaker and the lookup goes on to the store;
    3. the store of record. Concurrent misses for one hash share one query:
       the load runs in a task tracked by ``background`` (optional; the cache
       keeps its own otherwise) that fills tier 1 itself, and every request
       waits for it with ``tasks.uncancelled``, so a waiter whose client
       disconnects never cuts the load short for the others (DESIGN.md
       "Cancellation-safe").

    Revocation evicts tier 1 here, deletes tier 2 and publishes the hash so
    every replica evicts its tier 1 (``SharedState.listen``). Store failure with
    no cached entry raises ``DependencyUnavailable`` (503): never allow because
    a dependency failed.
    """

    def __init__(
        self,
        store: ShareStore,
        *,
        ttl: float,
        negative_ttl: float,
        size: int,
        shared: SharedState | None = None,
        redis_ttl: float = 60.0,
        live: LiveConnections | None = None,
        background: Background | None = None,
    ) -> None:
        self.live = live  # live connections to end when a share is revoked
        self._store = store
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._shared = shared
        self._redis_ttl = redis_ttl
        self._l1: TLRUCache[str, Share | None] = TLRUCache(
            maxsize=size, ttu=self._time_to_use, timer=time.monotonic
        )
        self._inflight: dict[str, asyncio.Task[Share | None]] = {}
        self._size = size
        self._refresh_at: dict[str, float] = {}  # token hash → when to reload it ahead of expiry
        self._stale: set[str] = set()  # in-flight loads evicted meanwhile (see ``evict``)
        self._loads = background if background is not None else Background("share-cache")

    def _lifetime(self, share: Share | None, ttl: float) -> float:
        if share is None:
            return self._negative_ttl
        if share.expires_at is not None:
            return min(ttl, max(0.0, share.expires_at - time.time()))
        return ttl

    def _time_to_use(self, _key: str, value: Share | None, now: float) -> float:
        return now + self._lifetime(value, self._ttl)

    async def lookup(self, token_hash: str) -> Share | None:
        """The share for ``token_hash`` (possibly revoked/expired: the caller checks), or ``None``.

        Raises ``DependencyUnavailable`` when no tier can answer (the store
        failed, or the load was cancelled by a shutdown drain). Concurrent
        calls for one hash share one load (single flight); each caller gets
        its answer even if another caller, the first included, is cancelled
        meanwhile. A cancelled caller waits for the load to finish, then
        raises its ``CancelledError``.
        """
        found: Any = self._l1.get(token_hash, _MISSING)
        if found is not _MISSING:
            metrics.child(metrics.SHARE_LOOKUPS, "l1", "negative" if found is None else "hit").inc()
            return found  # type: ignore[no-any-return]
        metrics.child(metrics.SHARE_LOOKUPS, "l1", "miss").inc()
        load = self._inflight.get(token_hash) or self._start_load(token_hash)
        try:
            return await uncancelled(load)
        except DependencyUnavailable as exc:
            raise DependencyUnavailable() from exc.__cause__  # one instance per waiter
        except asyncio.CancelledError:
            if load.cancelled() and not being_cancelled():
                raise DependencyUnavailable() from None  # the load was drained, not this request
            raise

    def _start_load(self, token_hash: str) -> asyncio.Task[Share | None]:
        """The single-flight load of one hash, tracked in ``_inflight`` until it lands."""
        load = self._loads.spawn(
            self._fill(token_hash), name="share-lookup", expected=(DependencyUnavailable,)
        )
        self._inflight[token_hash] = load
        load.add_done_callback(functools.partial(self._landed, token_hash))
        return load

    def _landed(self, token_hash: str, load: asyncio.Task[Share | None]) -> None:
        """A load finished (or was cancelled before it ran): no longer in flight."""
        if self._inflight.get(token_hash) is load:
            del self._inflight[token_hash]

    async def _fill(self, token_hash: str) -> Share | None:
        """The single-flight load: look the hash up, fill tier 1, leave ``_inflight``."""
        try:
            share = await self._load(token_hash)
            if token_hash in self._stale:  # evicted while loading: that answer may predate a revocation
                self._stale.discard(token_hash)
                share = await self._load(token_hash)
            self._l1[token_hash] = share
            if share is not None:
                if len(self._refresh_at) >= 2 * self._size:
                    self._refresh_at.clear()
                self._refresh_at[token_hash] = time.monotonic() + REFRESH_AHEAD * self._lifetime(
                    share, self._ttl
                )
            return share
        finally:
            self._stale.discard(token_hash)
            load = asyncio.current_task()
            if load is not None and self._inflight.get(token_hash) is load:
                del self._inflight[token_hash]

    async def _load(self, token_hash: str) -> Share | None:
        shared = self._shared
        if shared is not None and shared.breaker.closed:
            try:
                found, share = await shared.get_share(token_hash)
                shared.breaker.success()
                if found:
                    metrics.child(
                        metrics.SHARE_LOOKUPS, "redis", "negative" if share is None else "hit"
                    ).inc()
                    return share
                metrics.child(metrics.SHARE_LOOKUPS, "redis", "miss").inc()
            except REDIS_ERRORS:
                shared.breaker.failure()
                metrics.child(metrics.SHARE_LOOKUPS, "redis", "error").inc()
        elif shared is not None:
            metrics.child(metrics.SHARE_LOOKUPS, "redis", "bypassed").inc()
        try:
            share = await self._store.share_by_token_hash(token_hash)
        except StoreError as exc:
            metrics.child(metrics.SHARE_LOOKUPS, "store", "error").inc()
            metrics.child(metrics.DEPENDENCY_UP, "store").set(0)
            raise DependencyUnavailable() from exc
        metrics.child(metrics.DEPENDENCY_UP, "store").set(1)
        metrics.child(metrics.SHARE_LOOKUPS, "store", "negative" if share is None else "hit").inc()
        if shared is not None and shared.breaker.closed:
            try:
                await shared.put_share(token_hash, share, self._lifetime(share, self._redis_ttl))
            except REDIS_ERRORS:
                shared.breaker.failure()
        return share

    def cached(self, token_hash: str) -> Share | None:
        """The in-process entry for ``token_hash`` if it is a share (no I/O); counted as an L1 hit.

        Refresh ahead: past ``REFRESH_AHEAD`` of an entry's lifetime, the
        first request to see it starts the single-flight reload in the
        background and is served the entry, which is still within its TTL. A
        token in steady use never falls out of tier 1, so its callers never
        queue behind a load (nor each ask the guess limiter first).
        """
        found = self._l1.get(token_hash)
        if isinstance(found, Share):
            metrics.child(metrics.SHARE_LOOKUPS, "l1", "hit").inc()
            if (
                time.monotonic() >= self._refresh_at.get(token_hash, _NEVER)
                and token_hash not in self._inflight
            ):
                self._refresh_at.pop(token_hash, None)
                self._start_load(token_hash)
            return found
        return None

    def evict(self, token_hash: str) -> None:
        """Forget one in-process entry (a revocation message from any replica). A load of that
        hash in flight now read its answer before the eviction: it will look again."""
        self._l1.pop(token_hash, None)
        self._refresh_at.pop(token_hash, None)
        if token_hash in self._inflight:
            self._stale.add(token_hash)

    def clear(self) -> None:
        """Forget every in-process entry (revocations may have been missed)."""
        self._l1.clear()
        self._refresh_at.clear()
        self._stale.update(self._inflight)

    async def forget(self, token_hash: str) -> None:
        """A new share: drop any negative entry for its hash, here and in Redis."""
        self.evict(token_hash)
        if self._shared is not None:
            try:
                await self._shared.drop_share(token_hash)
            except REDIS_ERRORS:
                self._shared.breaker.failure()

    async def revoked(self, token_hash: str, share: Share) -> None:
        """``share`` was revoked in the store: evict it and end its live connections, here at
        once and on every replica through the Redis revocation channel; Redis keeps the
        revoked share, so no replica can cache it as valid again."""
        self.on_revoked(token_hash, share.id)
        if self._shared is not None:
            await self._shared.revoke(token_hash, share)

    def on_revoked(self, token_hash: str, share_id: str | None) -> None:
        """One revocation, from this replica or a message of any replica (no I/O)."""
        self.evict(token_hash)
        if share_id is not None and self.live is not None:
            self.live.end_share(share_id)


class TaskBindings:
    """Task id → context id, learned from upstream responses (DESIGN.md "A2A").

    An in-process LRU in front of Redis (when configured) so every replica knows
    a binding any replica learned. A task is bound once: a later, different
    context for the same task is ignored (Redis ``SET NX``), so a response
    cannot re-point a task at another session. Redis failures fall back to the
    in-process map; a forgotten binding is re-learned by the ``GetTask``
    fallback.
    """

    def __init__(self, size: int = 200_000, shared: SharedState | None = None) -> None:
        self._map: LRUCache[str, str] = LRUCache(maxsize=size)
        self._shared = shared

    async def context_of(self, task_id: str) -> str | None:
        """The context the task is bound to, or ``None`` if unknown."""
        context = self._map.get(task_id)
        shared = self._shared
        if context is None and shared is not None and shared.breaker.closed:
            try:
                context = await shared.get_binding(task_id)
            except REDIS_ERRORS:
                shared.breaker.failure()
            if context is not None:
                self._map[task_id] = context
        return context

    async def learn(self, pairs: list[tuple[str, str]]) -> None:
        """Record ``(task_id, context_id)`` pairs, first binding wins."""
        shared = self._shared
        for task_id, context_id in pairs:
            if task_id in self._map:
                continue
            if shared is not None and shared.breaker.closed:
                try:
                    context_id = await shared.put_binding(task_id, context_id)
                except REDIS_ERRORS:
                    shared.breaker.failure()
            self._map[task_id] = context_id
