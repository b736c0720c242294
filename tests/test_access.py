"""Access recording: coalescing, batching, retry with data kept, overflow, drain on close."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.models import Share
from gateway.observe import metrics
from gateway.shares.access import AccessRecorder
from gateway.shares.store import AccessRow, StoreError
from gateway.shares.store.sqlite import SqliteStore


class FlakyStore(SqliteStore):
    """A real SQLite store whose access writes fail while ``failing`` is set (fault injection)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.failing = False
        self.batches: list[int] = []

    async def record_access(self, rows: list[AccessRow]) -> None:
        if self.failing:
            raise StoreError("injected failure")
        self.batches.append(len(rows))
        await super().record_access(rows)


@pytest.fixture
async def store(tmp_path: Any) -> AsyncIterator[FlakyStore]:
    s = FlakyStore(f"{tmp_path}/a.db")
    await s.open()
    await s.migrate()
    for i in range(3):
        await s.create_share(Share(f"sh_{i}", "s1", "alice", True, None, "p", 1.0), f"h{i}")
    yield s
    await s.close()


def counter(result: str) -> float:
    return metrics.REGISTRY.get_sample_value("share_gateway_access_records_total", {"result": result}) or 0.0


async def stats(store: FlakyStore) -> dict[str, tuple[int, int]]:
    return {x.share.id: (x.viewers, x.access_count) for x in await store.list_shares("s1", "alice")}


async def test_coalesced_per_share_and_user(store: FlakyStore) -> None:
    rec = AccessRecorder(store, flush_interval=60, max_pending=100, batch_size=2)
    for i in range(30):
        rec.record(f"sh_{i % 3}", f"u{i % 2}", 100.0 + i)
    assert rec.pending == 6
    await rec.flush()
    assert store.batches == [2, 2, 2]
    assert rec.pending == 0
    assert await stats(store) == {"sh_0": (2, 10), "sh_1": (2, 10), "sh_2": (2, 10)}


async def test_failed_writes_are_kept_and_retried(store: FlakyStore) -> None:
    rec = AccessRecorder(store, flush_interval=60, max_pending=100, batch_size=10)
    retried = counter("retried")
    rec.record("sh_0", "bob", 1.0)
    store.failing = True
    with pytest.raises(StoreError):
        await rec.flush()
    rec.record("sh_0", "bob", 2.0)
    assert rec.pending == 1
    assert counter("retried") == retried + 1
    store.failing = False
    await rec.flush()
    [summary] = [x for x in await store.list_shares("s1", "alice") if x.share.id == "sh_0"]
    assert (summary.access_count, summary.last_accessed_at) == (2, 2.0)


async def test_overflow_is_dropped_and_counted(store: FlakyStore) -> None:
    rec = AccessRecorder(store, flush_interval=60, max_pending=2, batch_size=10)
    dropped = counter("dropped")
    rec.record("sh_0", "a")
    rec.record("sh_0", "b")
    rec.record("sh_0", "c")  # a third pair does not fit
    rec.record("sh_0", "a")  # an existing pair still counts
    assert counter("dropped") == dropped + 1
    await rec.flush()
    assert await stats(store) == {"sh_0": (2, 3), "sh_1": (0, 0), "sh_2": (0, 0)}


async def test_close_drains_everything(store: FlakyStore) -> None:
    rec = AccessRecorder(store, flush_interval=60, max_pending=1000, batch_size=7)
    rec.start()
    for i in range(100):
        rec.record("sh_1", f"u{i % 10}", float(i))
    await rec.close()
    assert await stats(store) == {"sh_0": (0, 0), "sh_1": (10, 100), "sh_2": (0, 0)}


async def test_background_writer_flushes_on_its_own(store: FlakyStore) -> None:
    rec = AccessRecorder(store, flush_interval=0.02, max_pending=1000, batch_size=7)
    rec.start()
    rec.record("sh_2", "bob")
    try:
        for _ in range(100):
            if (await stats(store))["sh_2"] == (1, 1):
                break
            import asyncio

            await asyncio.sleep(0.02)
        assert (await stats(store))["sh_2"] == (1, 1)
    finally:
        await rec.close()
