"""Access recording off the request path: coalesced per (share, user), written in batches."""

from __future__ import annotations

import asyncio
import contextlib
import time

from gateway.observe import metrics
from gateway.observe.logging import get_logger
from gateway.shares.store import AccessRow, ShareStore, StoreError
from gateway.tasks import Background, uncancelled

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

    Cancellation-safe (DESIGN.md "Cancellation-safe"): every batch is written
    by a task tracked by ``background`` (optional; the recorder keeps its own
    otherwise), which ``flush()`` waits for with ``tasks.uncancelled``. A
    cancelled ``flush()`` or ``close()`` thus never abandons a write half-way:
    each row ends up written exactly once, or back in the pending rows.
    """

    def __init__(
        self,
        store: ShareStore,
        *,
        flush_interval: float,
        max_pending: int,
        batch_size: int,
        background: Background | None = None,
    ) -> None:
        self._store = store
        self._interval = flush_interval
        self._max = max_pending
        self._batch = batch_size
        self._pending: dict[tuple[str, str], list[float]] = {}
        self._tasks = background if background is not None else Background("access")
        self._task: asyncio.Task[None] | None = None  # the writer loop
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
            metrics.ACCESS_QUEUE_DEPTH.set(len(self._pending))  # the depth changes only here
        metrics.child(metrics.ACCESS_RECORDS, "queued").inc()

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
        """Write every row recorded before the call; on failure keep them and raise ``StoreError``.

        If the flush is cancelled, the batch being written still completes and
        is counted by its outcome (``written``, or put back when it failed),
        the batches not yet started are put back, and then ``CancelledError``
        is raised: no row is lost or written twice.
        """
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        taken, self._pending = self._pending, {}
        rows = [AccessRow(s, u, v[0], v[1], int(v[2])) for (s, u), v in taken.items()]
        start = 0  # rows before it are written
        try:
            while start < len(rows):
                batch = rows[start : start + self._batch]
                write = self._tasks.spawn(
                    self._store.record_access(batch), name="access-write", expected=(StoreError,)
                )
                try:
                    await uncancelled(write)
                except asyncio.CancelledError:
                    if not write.cancelled() and write.exception() is None:
                        metrics.child(metrics.ACCESS_RECORDS, "written").inc(len(batch))
                        start += len(batch)  # written before the cancellation reached the flush
                    raise
                metrics.child(metrics.ACCESS_RECORDS, "written").inc(len(batch))
                start += len(batch)
        except StoreError:
            self._merge_back(rows[start:])
            metrics.child(metrics.ACCESS_RECORDS, "retried").inc(len(rows) - start)
            raise
        except BaseException:
            self._merge_back(rows[start:])  # cancelled: the next flush writes them
            raise
        finally:
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
            self._task = self._tasks.spawn(self._run(), name="access-writer")

    async def close(self, timeout: float = 10.0) -> None:
        """Stop the writer and flush what is left, retrying until ``timeout`` seconds pass.

        Rows still unwritten then are dropped, logged (``access_records_lost``)
        and counted. Runs in a tracked task: a cancelled ``close()`` still
        finishes (within ``timeout``) before its ``CancelledError`` is raised.
        """
        await uncancelled(self._tasks.spawn(self._close(timeout), name="access-close"))

    async def _close(self, timeout: float) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await uncancelled(self._task)
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
                    metrics.ACCESS_QUEUE_DEPTH.set(0)
                    return
                await asyncio.sleep(0.2)
