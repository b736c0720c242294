"""Live connections (streamed responses, WebSockets) by share: revocation, expiry and drain end them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator

from cachetools import TTLCache

from gateway.errors import GatewayError
from gateway.models import Share
from gateway.observe import metrics
from gateway.observe.logging import get_logger
from gateway.pipeline.decide import INVALID_SHARE_MESSAGE
from gateway.shares.store import ShareStore, StoreError

log = get_logger("gateway.live")

REVOKED = "revoked"
EXPIRED = "expired"
DRAIN = "drain"


class Live:
    """One live connection being relayed.

    ``ended`` is ``None`` while the gateway lets it run, else the reason it
    was ended (``revoked``, ``expired`` or ``drain``). Ending calls ``stop``
    once: for a streamed response it closes the upstream response, and the
    relay then finishes the client's response with a clean end of stream;
    for a WebSocket it closes the socket with the right close code.
    """

    __slots__ = ("_stop", "_timer", "drains", "ended", "share_id")

    def __init__(self, stop: Callable[[str], None], share_id: str | None, drains: bool = True) -> None:
        self.share_id = share_id
        self.drains = drains  # ended by a drain (streams); a pending answer keeps its grace instead
        self.ended: str | None = None
        self._stop = stop
        self._timer: asyncio.TimerHandle | None = None

    def end(self, reason: str) -> None:
        """End the connection (idempotent); counted in ``share_gateway_streams_ended_total``."""
        if self.ended is not None:
            return
        self.ended = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        metrics.child(metrics.STREAMS_ENDED, reason).inc()
        self._stop(reason)


class LiveConnections:
    """Every live connection the gateway relays, those opened through a share indexed by share id.

    DESIGN.md "Revocation reaches live connections": ``end_share`` (called on
    this replica's revocations and on every message of the Redis revocation
    channel) ends every connection opened through that share; a share's
    expiry ends them by a timer set when they open; ``end_all`` ends them all
    on SIGTERM. Nothing here awaits, so the registry is consistent whenever a
    handler is cancelled; ``close`` is called from the relay's ``finally``.
    """

    def __init__(self, remember: float = 300.0) -> None:
        self._open: set[Live] = set()
        self._by_share: dict[str, set[Live]] = {}
        # Shares ended recently: a request that resolved its share just before the
        # revocation and opens its stream just after it is ended as it opens.
        self._ended: TTLCache[str, str] = TTLCache(maxsize=100_000, ttl=remember)
        self.draining = False

    def __len__(self) -> int:
        return len(self._open)

    def open(self, stop: Callable[[str], None], share: Share | None, *, drains: bool = True) -> Live:
        """Register a connection; ``share`` is the share it was opened through, if any.

        A connection opened while draining (unless ``drains`` is false: a
        pending answer), through a share ended in the last ``remember``
        seconds, or through a share that has expired by now, is ended at once.
        """
        live = Live(stop, share.id if share is not None else None, drains)
        self._open.add(live)
        metrics.OPEN_STREAMS.inc()
        if share is not None:
            self._by_share.setdefault(share.id, set()).add(live)
            if share.expires_at is not None:
                delay = max(0.0, share.expires_at - time.time())
                live._timer = asyncio.get_running_loop().call_later(delay, live.end, EXPIRED)
            ended = self._ended.get(share.id)
            if ended is not None:
                live.end(ended)
        if self.draining and drains:
            live.end(DRAIN)
        return live

    @contextlib.contextmanager
    def pending(self, share: Share) -> Iterator[None]:
        """Wait for an answer through ``share`` (a long poll) only while the share lives.

        The waiting request is registered like a stream; if the share is
        revoked or expires before the upstream answers, the wait is cancelled
        (closing the upstream request) and ``GatewayError`` 403 is raised (the
        answer had not started). Drain does not cut it: in-flight requests get
        ``shutdown_grace``. A cancellation of the request itself (its client
        went away) passes through unchanged.
        """
        task = asyncio.current_task()
        assert task is not None
        ended: list[str] = []

        def stop(reason: str) -> None:
            ended.append(reason)
            task.cancel()

        live = self.open(stop, share, drains=False)
        try:
            yield
        except asyncio.CancelledError:
            if ended and task.uncancel() == 0:
                raise GatewayError(INVALID_SHARE_MESSAGE, reason_id=f"share_{ended[0]}_while_waiting",
                                   status=403) from None
            raise
        finally:
            self.close(live)

    def close(self, live: Live) -> None:
        """Forget a connection that finished (idempotent)."""
        if live not in self._open:
            return
        self._open.discard(live)
        metrics.OPEN_STREAMS.dec()
        if live._timer is not None:
            live._timer.cancel()
            live._timer = None
        if live.share_id is not None:
            group = self._by_share.get(live.share_id)
            if group is not None:
                group.discard(live)
                if not group:
                    del self._by_share[live.share_id]

    def end_share(self, share_id: str, reason: str = REVOKED) -> int:
        """End every connection opened through ``share_id``; returns how many were ended."""
        self._ended[share_id] = reason
        group = self._by_share.get(share_id)
        if not group:
            return 0
        ended = 0
        for live in list(group):
            if live.ended is None:
                live.end(reason)
                ended += 1
        if ended:
            log.info("live_connections_ended", share_id=share_id, reason=reason, count=ended)
        return ended

    def end_all(self, reason: str = DRAIN) -> None:
        """End every connection (SIGTERM drain); later ones are ended as they open."""
        self.draining = True
        for live in list(self._open):
            if live.drains:
                live.end(reason)

    def share_ids(self) -> list[str]:
        """The shares that have live connections now."""
        return list(self._by_share)

    def end_unusable(self, shares: Iterable[tuple[str, Share | None]], now: float) -> int:
        """End connections of shares found revoked, expired or deleted in the store of record.

        ``shares`` pairs each share id with what the store holds for it
        (``None``: no such share any more). Used after a missed revocation
        message could have happened (Redis subscription re-established) and by
        the periodic re-check. Returns how many connections were ended.
        """
        ended = 0
        for share_id, share in shares:
            if share is None or share.revoked_at is not None:
                ended += self.end_share(share_id, REVOKED)
            elif not share.usable_at(now):
                ended += self.end_share(share_id, EXPIRED)
        return ended


class LiveShareCheck:
    """Ends live connections whose share the store of record no longer allows.

    Revocations normally reach live connections at once (this replica's own,
    and every other replica's through the Redis channel). This check catches
    what a message cannot: a revocation published while this replica was not
    subscribed (``soon()`` is called on every re-subscription), replicas
    without Redis (worker processes sharing one SQLite file), and a share
    changed in the store directly. Every ``interval`` seconds it reads the
    shares that have live connections (one query per share). A store that
    cannot answer ends nothing: the connections were authorized, and the
    next check tries again.
    """

    def __init__(self, store: ShareStore, live: LiveConnections, interval: float) -> None:
        self._store = store
        self._live = live
        self._interval = interval
        self._wake = asyncio.Event()

    def soon(self) -> None:
        """Run a check now rather than at the next interval."""
        self._wake.set()

    async def check(self) -> int:
        """One check; returns how many connections it ended. Raises ``StoreError``."""
        found = [(sid, await self._store.share_by_id(sid)) for sid in self._live.share_ids()]
        return self._live.end_unusable(found, time.time())

    async def run(self) -> None:
        """Check every ``interval`` seconds (or when ``soon()`` is called) until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.check()
            except StoreError as exc:
                log.warning("live_share_check_failed", error=str(exc))
