"""Session owners recorded by the gateway, for upstreams without users (docker-agent, plain A2A agents)."""

from __future__ import annotations

import time

from cachetools import TTLCache

from gateway.errors import DependencyUnavailable
from gateway.shares.shared_state import REDIS_ERRORS, SharedState
from gateway.shares.store import ShareStore, StoreError
from gateway.tasks import Background, uncancelled


class OwnerDirectory:
    """Who owns a session: the caller whose request created it (docker-agent's
    ``POST /api/sessions``; an A2A message that opened a context).

    Stored in the store of record, cached in Redis (when configured) and
    in-process for ``ttl`` seconds. A session without a record belongs to
    ``default_owner`` (a single operator's sessions from before the gateway),
    or to nobody. Store failures raise ``DependencyUnavailable`` (503): never
    guess an owner. ``record()`` runs to completion in a task tracked by
    ``background`` (optional) even if its caller is cancelled (DESIGN.md
    "Cancellation-safe"): once the upstream created a session, its owner is
    written to the store, this replica's cache and Redis together.
    """

    def __init__(
        self,
        store: ShareStore,
        *,
        default_owner: str | None,
        shared: SharedState | None,
        ttl: float = 60,
        background: Background | None = None,
    ) -> None:
        self._tasks = background if background is not None else Background("owners")
        self._store = store
        self._default = default_owner
        self._shared = shared
        self._cache: TTLCache[str, str] = TTLCache(maxsize=100_000, ttl=ttl)

    async def owner_of(self, session_id: str) -> str | None:
        """The owner of one session (recorded, else ``default_owner``, else ``None``)."""
        owner = self._cache.get(session_id)
        if owner is None:
            owner = await self._shared_get(session_id)
        if owner is None:
            try:
                owner = await self._store.session_owner(session_id)
            except StoreError as exc:
                raise DependencyUnavailable() from exc
            if owner is not None:
                await self._shared_put(session_id, owner)
        if owner is not None:
            self._cache[session_id] = owner
        return owner if owner is not None else self._default

    async def owners_of(self, session_ids: list[str]) -> dict[str, str | None]:
        """Owners of many sessions at once (one store query for the uncached ones)."""
        found: dict[str, str | None] = {s: self._cache.get(s) for s in session_ids}
        missing = [s for s, owner in found.items() if owner is None]
        if missing:
            try:
                recorded = await self._store.session_owners(missing)
            except StoreError as exc:
                raise DependencyUnavailable() from exc
            for session_id, owner in recorded.items():
                self._cache[session_id] = owner
            found.update(recorded)
        return {s: (owner if owner is not None else self._default) for s, owner in found.items()}

    async def owns(self, session_id: str, user_id: str | None) -> bool:
        return user_id is not None and await self.owner_of(session_id) == user_id

    async def record(self, session_id: str, owner: str) -> str:
        """Record the creator of a new session; returns the session's owner of record.

        The first record wins, atomically (the store's insert-unless-present):
        the answer is ``owner`` unless someone else's record came first.
        Raises ``DependencyUnavailable`` if the store cannot take it. A
        cancelled caller waits for the record to complete, then is cancelled.
        """
        write = self._tasks.spawn(
            self._record(session_id, owner), name="record-owner", expected=(DependencyUnavailable,)
        )
        return await uncancelled(write)

    async def adopt(self, session_id: str, user: str) -> bool:
        """Is the session ``user``'s? True if it is (``default_owner`` included), or if it had
        no record and is now recorded as theirs; False if another user's record came first.

        For a session an answer to ``user`` names: one their own request created
        (profile ``a2a``: the context of a new conversation).
        """
        if await self.owner_of(session_id) == user:
            return True
        return await self.record(session_id, user) == user

    async def _record(self, session_id: str, owner: str) -> str:
        try:
            await self._store.set_session_owner(session_id, owner, time.time())
            owner = await self._store.session_owner(session_id) or owner
        except StoreError as exc:
            raise DependencyUnavailable() from exc
        self._cache[session_id] = owner
        await self._shared_put(session_id, owner)
        return owner

    async def _shared_get(self, session_id: str) -> str | None:
        shared = self._shared
        if shared is None or not shared.breaker.closed:
            return None
        try:
            return await shared.get_owner(session_id)
        except REDIS_ERRORS:
            shared.breaker.failure()
            return None

    async def _shared_put(self, session_id: str, owner: str) -> None:
        shared = self._shared
        if shared is None or not shared.breaker.closed:
            return
        try:
            await shared.put_owner(session_id, owner)
        except REDIS_ERRORS:
            shared.breaker.failure()
