"""Access recording off the request path: coalesced per (share, user), written in batches."""

from __future__ import annotations

import asyncio
import contextlib
import time

from gateway.observe import metrics
from gateway.observe.logging import get_logger
from gateway.shares.store import AccessRow, ShareStore, StoreError

log = get_logger("gateway.access")


class AccessRecorder:
    """Records who opened which share without ever blocking a request.

    ``record()`` is synchronous and O(1): it folds the access into a pending
    row for its ``(share, user)`` pair (first/last time, count). A background
    task flushes pending rows every ``flush_interval`` seconds, ``batch_size``
    rows per transaction. A failed write keeps its rows (merged with newer ones)
    and is retried with exponential backoff up to 30 s. At most ``max_pending``
    distinct pairs are held; accesses for new pairs beyond that are dropped and
    counted (``share_gateway_access_records_total{result="dropped"}``).
    ``close()`` stops the loop and flushes what is left.
    """

    def __init__(
        self, store: ShareStore, *, flush_interval: float, max_pending: int, batch_size: int
    ) -> None:
        self._store = store
        self._interval = flush_interval
        self._max = max_pending
        self._batch = batch_size
        self._pending: dict[tuple[str, str], list[float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._flushing = asyncio.Lock()  # one flush at a time: a returning flush means "all written"

    @property
    def pending(self) -> int:
        """Distinct (share, user) pairs waiting to be written."""
        return len(self._pending)

    def record(self, share_id: str, user_id: str, at: float | None = None) -> None:
        """Note one access; never awaits, never raises."""
        at = time.time() if at is None else at
        key = (share_id, user_id)
        row = self._pending.get(key)
        if row is not None:
            row[0] = min(row[0], at)
            row[1] = max(row[1], at)
            row[2] += 1
        elif len(self._pending) >= self._max:
            metrics.child(metrics.ACCESS_RECORDS, "dropped").inc()
            return
        else:
            self._pending[key] = [at, at, 1]
        metrics.child(metrics.ACCESS_RECORDS, "queued").inc()
        metrics.ACCESS_QUEUE_DEPTH.set(len(self._pending))

    def _merge_back(self, rows: list[AccessRow]) -> None:
        for r in rows:
            key = (r.share_id, r.user_id)
            row = self._pending.get(key)
            if row is None:
                if len(self._pending) >= self._max:
                    metrics.child(metrics.ACCESS_RECORDS, "dropped").inc(r.access_count)
                    continue
                self._pending[key] = [r.first_accessed_at, r.last_accessed_at, r.access_count]
            else:
                row[0] = min(row[0], r.first_accessed_at)
                row[1] = max(row[1], r.last_accessed_at)
                row[2] += r.access_count

    async def flush(self) -> None:
        """Write every row recorded before the call; on failure keep them and raise ``StoreError``."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        taken, self._pending = self._pending, {}
        rows = [AccessRow(s, u, v[0], v[1], int(v[2])) for (s, u), v in taken.items()]
        for start in range(0, len(rows), self._batch):
            batch = rows[start : start + self._batch]
            try:
                await self._store.record_access(batch)
            except StoreError:
                self._merge_back(rows[start:])
                metrics.child(metrics.ACCESS_RECORDS, "retried").inc(len(rows) - start)
                metrics.ACCESS_QUEUE_DEPTH.set(len(self._pending))
                raise
            metrics.child(metrics.ACCESS_RECORDS, "written").inc(len(batch))
        metrics.ACCESS_QUEUE_DEPTH.set(len(self._pending))

    async def _run(self) -> None:
        delay = self._interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            try:
                await self.flush()
                delay = self._interval
            except StoreError as exc:
                delay = min(max(delay * 2, self._interval), 30.0)
                log.warning("access_flush_failed", error=str(exc), retry_in=delay)

    def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="access-writer")

    async def close(self, timeout: float = 10.0) -> None:
        """Stop the writer and flush what is left, retrying until ``timeout`` seconds pass."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        deadline = time.monotonic() + timeout
        while self._pending:
            try:
                await self.flush()
            except StoreError as exc:
                if time.monotonic() >= deadline:
                    log.error("access_records_lost", pairs=len(self._pending), error=str(exc))
                    metrics.child(metrics.ACCESS_RECORDS, "dropped").inc(
                        sum(int(v[2]) for v in self._pending.values())
                    )
                    self._pending.clear()
                    return
                await asyncio.sleep(0.2)
