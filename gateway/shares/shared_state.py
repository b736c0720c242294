"""Redis: the share cache tier every replica shares, revocation fan-out over pub/sub, task bindings.

Keys (``{prefix}`` is ``redis_prefix``): ``{prefix}:share:{sha256(token)}`` → the
share as JSON (``null`` for an unknown hash), TTL capped at the share's expiry;
``{prefix}:task:{task_id}`` → context id; ``{prefix}:owner:{session_id}`` → the
owner the gateway recorded; ``{prefix}:guesses:{user:…|addr:…}`` →
invalid-token count in the current window. Revocations are published on
``{prefix}:revocations`` as ``"<token hash> <share id>"`` (every replica evicts
the hash and ends the live connections opened through the share). Tokens
themselves never reach Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from gateway.models import Share
from gateway.observe import metrics
from gateway.observe.logging import get_logger

log = get_logger("gateway.redis")
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def connect(url: str, *, timeout: float | None) -> Redis:
    """A client for ``redis://``, ``rediss://`` or ``redis+sentinel://`` URLs.

    Sentinel URLs: ``redis+sentinel://[:password@]host:port[,host:port…]/service[/db]``.
    ``timeout`` bounds connecting and every command (seconds; ``None`` for the
    pub/sub connection, which blocks on purpose).
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout or 5.0,
        "health_check_interval": 15,
    }
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        client: Redis = Redis.from_url(url, **options)
        return client
    hosts = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if port.isdigit() else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// URLs name the service: redis+sentinel://host:26379/mymaster")
    password = unquote(parts.password) if parts.password else None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts, sentinel_kwargs={"password": password, **options}, **options
    )
    db = int(path[1]) if len(path) > 1 else 0
    master: Redis = sentinel.master_for(path[0], db=db, password=password)
    return master


class CircuitBreaker:
    """After a Redis failure, skip Redis for ``cooldown`` seconds, so a dead Redis
    does not add its timeout to every request; then let traffic probe it again."""

    def __init__(self, cooldown: float) -> None:
        self._cooldown = cooldown
        self._open_until = 0.0

    @property
    def closed(self) -> bool:
        return time.monotonic() >= self._open_until

    def failure(self) -> None:
        if self.closed:
            log.warning("redis_unavailable", retry_in=self._cooldown)
        self._open_until = time.monotonic() + self._cooldown
        metrics.DEPENDENCY_UP.labels("redis").set(0)

    def success(self) -> None:
        metrics.DEPENDENCY_UP.labels("redis").set(1)


def _share_to_json(share: Share | None) -> str:
    return json.dumps(None if share is None else dataclasses.asdict(share))


def _share_from_json(raw: bytes | str) -> Share | None:
    data = json.loads(raw)
    return None if data is None else Share(**data)


class SharedState:
    """Share cache tier, revocation channel and task bindings in one Redis.

    Every call raises one of ``REDIS_ERRORS`` when Redis cannot answer; callers
    (``ShareCache``, ``TaskBindings``) count it, trip ``breaker`` and fall back.
    """

    def __init__(
        self,
        client: Redis,
        listener: Redis,
        *,
        prefix: str,
        breaker: CircuitBreaker,
        binding_ttl: int = 7 * 24 * 3600,
        revoked_ttl: float = 60.0,
    ) -> None:
        self.client = client
        self._listener = listener
        self.breaker = breaker
        self._share = f"{prefix}:share:"
        self._task = f"{prefix}:task:"
        self._guess = f"{prefix}:guesses:"
        self._owner = f"{prefix}:owner:"
        self.channel = f"{prefix}:revocations"
        self._binding_ttl = binding_ttl
        self._pending: dict[str, Share] = {}  # token hash → revoked share: not yet fanned out
        self._revoked_ttl = revoked_ttl

    async def get_share(self, token_hash: str) -> tuple[bool, Share | None]:
        """``(found, share)``: ``found`` is False on a miss; ``share`` None for a negative entry."""
        raw = await self.client.get(self._share + token_hash)
        if raw is None:
            return False, None
        return True, _share_from_json(raw)

    async def put_share(self, token_hash: str, share: Share | None, ttl: float) -> None:
        """Cache a store answer unless an entry exists (``SET NX``): an answer read from the
        store before a revocation can then never replace the revoked entry written after it."""
        if ttl > 0:
            await self.client.set(
                self._share + token_hash, _share_to_json(share), px=int(ttl * 1000), nx=True
            )

    async def revoke(self, token_hash: str, share: Share) -> None:
        """Replace the cached share with its revoked state and tell every replica to evict it
        and end its live connections. Never raises: a revocation Redis cannot take now is
        retried by the listener loop."""
        self._pending[token_hash] = share
        with contextlib.suppress(*REDIS_ERRORS):
            await self._flush_pending()

    async def _flush_pending(self) -> None:
        for token_hash, share in list(self._pending.items()):
            await self.client.set(
                self._share + token_hash, _share_to_json(share), px=int(self._revoked_ttl * 1000)
            )
            await self.client.publish(self.channel, f"{token_hash} {share.id}")
            self._pending.pop(token_hash, None)

    async def drop_share(self, token_hash: str) -> None:
        await self.client.delete(self._share + token_hash)

    async def get_binding(self, task_id: str) -> str | None:
        raw = await self.client.get(self._task + task_id)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def put_binding(self, task_id: str, context_id: str) -> str:
        """Bind once across all replicas (``SET NX``); returns the binding that holds."""
        if await self.client.set(self._task + task_id, context_id, nx=True, ex=self._binding_ttl):
            return context_id
        return await self.get_binding(task_id) or context_id

    async def get_owner(self, session_id: str) -> str | None:
        raw = await self.client.get(self._owner + session_id)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def put_owner(self, session_id: str, owner: str) -> None:
        await self.client.set(self._owner + session_id, owner, ex=self._binding_ttl)

    async def guess_failures(self, key: str) -> tuple[int, float]:
        """``(failures in the current window, seconds left in it)`` for a guesser key."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self._guess + key)
            pipe.pttl(self._guess + key)
            raw, pttl = await pipe.execute()
        return (int(raw) if raw is not None else 0), max(0.0, (pttl or 0) / 1000)

    async def add_guess_failure(self, key: str, window: float) -> None:
        """Count one failure; the window starts with the first one (``EXPIRE NX``)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.incr(self._guess + key)
            pipe.pexpire(self._guess + key, int(window * 1000), nx=True)
            await pipe.execute()

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except REDIS_ERRORS:
            return False

    async def listen(
        self,
        revoked: Callable[[str, str | None], None],
        resync: Callable[[], None],
        ready: asyncio.Event | None = None,
    ) -> None:
        """Call ``revoked(token_hash, share_id)`` as revocation messages arrive, until cancelled.

        ``share_id`` is ``None`` for a message that carries only a hash (an
        older replica). Whenever the subscription is (re-)established,
        ``resync`` runs: revocations sent while it was down were missed (the
        caller clears its cache and re-checks its live connections). Pending
        revocations of this replica are fanned out then, too.
        """
        delay = 0.1
        while True:
            pubsub = self._listener.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                resync()
                await self._flush_pending()
                delay = 0.1
                if ready is not None:
                    ready.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        token_hash, _, share_id = text.partition(" ")
                        revoked(token_hash, share_id or None)
            except REDIS_ERRORS as exc:
                log.warning("revocation_subscription_lost", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        for client in (self.client, self._listener):
            with contextlib.suppress(*REDIS_ERRORS):
                await client.aclose()
