"""Brute-force resistance: unknown share tokens are rate-limited per identity (or per address).

A guesser is whoever presents share tokens that turn out unknown (revoked or
expired tokens were real links, not guesses): the authenticated caller, or,
for anonymous callers, the client address. After ``limit`` such failures
within ``window`` seconds, every further share token from that guesser that
is not already in this replica's cache is answered 429 with ``Retry-After``
until the window ends, before any lookup, so the answers carry no information
about tokens. Tokens already validated in the cache are served without
consulting the limiter: someone else's guessing never slows a valid link.
Counters live in Redis when configured (shared by every replica), in-process
otherwise, and in-process when Redis fails.
"""

from __future__ import annotations

import time

from cachetools import TTLCache

from gateway.errors import GatewayError
from gateway.models import Caller
from gateway.shares.shared_state import REDIS_ERRORS, SharedState
from gateway.tasks import Background, uncancelled


class TooManyGuesses(GatewayError):
    """429: this guesser presented too many invalid share tokens recently."""

    status = 429
    reason_id = "share_guess_limited"
    public_message = "too many invalid share links; retry later"


def guesser(caller: Caller, peer: str | None) -> str:
    """The key failures are counted under: the identity, else the address."""
    if caller.user_id is not None:
        return "user:" + caller.user_id
    return "addr:" + (peer or "unknown")


class GuessLimiter:
    """Fixed-window failure counters; ``limit`` 0 disables the limiter.

    A failure is counted in-process and in Redis; the Redis increment runs in
    a task tracked by ``background`` (optional) that ``failure()`` waits for
    with ``tasks.uncancelled``, so a guesser who disconnects mid-request is
    still counted on every replica (DESIGN.md "Cancellation-safe").
    """

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        shared: SharedState | None = None,
        background: Background | None = None,
    ) -> None:
        self._tasks = background if background is not None else Background("guesses")
        self._limit = limit
        self._window = window
        self._shared = shared
        self._local: TTLCache[str, tuple[int, float]] = TTLCache(maxsize=100_000, ttl=max(window, 1))

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def _local_state(self, key: str) -> tuple[int, float]:
        count, started = self._local.get(key, (0, time.monotonic()))
        if time.monotonic() - started >= self._window:
            return 0, time.monotonic()
        return count, started

    async def check(self, key: str) -> None:
        """Raise ``TooManyGuesses`` (with ``Retry-After``) if ``key`` is over the limit."""
        if not self.enabled:
            return
        count, started = self._local_state(key)
        retry = self._window - (time.monotonic() - started)
        shared = self._shared
        if count < self._limit and shared is not None and shared.breaker.closed:
            try:
                count, ttl = await shared.guess_failures(key)
                retry = ttl
            except REDIS_ERRORS:
                shared.breaker.failure()
        if count >= self._limit:
            seconds = max(1, int(retry + 0.999))
            raise TooManyGuesses(headers={"Retry-After": str(seconds)})

    async def failure(self, key: str) -> None:
        """Count one invalid token presented by ``key``."""
        if not self.enabled:
            return
        count, started = self._local_state(key)
        self._local[key] = (count + 1, started)
        shared = self._shared
        if shared is not None and shared.breaker.closed:
            await uncancelled(self._tasks.spawn(self._count_shared(shared, key), name="guess-failure"))

    async def _count_shared(self, shared: SharedState, key: str) -> None:
        try:
            await shared.add_guess_failure(key, self._window)
        except REDIS_ERRORS:
            shared.breaker.failure()
