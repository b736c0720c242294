"""Cancellation safety (DESIGN.md "Cancellation-safe"): callers cancelled at every await point.

aiohttp cancels a handler when its client disconnects, at whatever ``await``
the handler is on. Each test here cancels one operation after 0, 1, 2, …
event-loop yields and after small real delays (so every await point inside
it is hit on some run), then checks that nothing was left half-done: the
store answers a fresh transaction (SQLite's one connection is not inside a
transaction), every single-flight waiter got an answer, nothing is left in
flight, and access rows are neither lost nor counted twice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from gateway.errors import DependencyUnavailable
from gateway.models import Share
from gateway.observe import metrics
from gateway.pipeline import Pipeline
from gateway.shares.access import AccessRecorder
from gateway.shares.cache import ShareCache
from gateway.shares.store import AccessRow, ShareStore, StoreError, open_store
from gateway.shares.store.postgres import PostgresStore
from gateway.shares.store.sqlite import SqliteStore
from gateway.tasks import Background, uncancelled
from tests.conftest import USER, GatewayFactory

# Where to cancel: after n event-loop yields (ints), or after a real delay in seconds (floats).
POINTS: list[int | float] = [*range(31), 0.0001, 0.0003, 0.0006, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.008]
ids = itertools.count()


async def pause(point: int | float) -> None:
    if isinstance(point, int):
        for _ in range(point):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep(point)


async def cancelled_at(coro: Coroutine[Any, Any, Any], point: int | float) -> tuple[str, Any]:
    """Run ``coro`` as a task, cancel it at ``point``: ``("done", result)`` or ``("cancelled", None)``."""
    task = asyncio.ensure_future(coro)
    await pause(point)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert done, f"cancelled at {point}, the call never returned"
    return ("cancelled", None) if task.cancelled() else ("done", task.result())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """SQLite in ``tmp_path``, or PostgreSQL on a fresh schema (the ``pg`` fixture)."""
    return f"sqlite:///{tmp_path}/cancel.db" if request.param == "sqlite" else str(request.getfixturevalue("pg"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ShareStore]:
    s = open_store(store_url)
    await s.open()
    await s.migrate()
    yield s
    await s.close()


def share(share_id: str, session: str = "s1") -> Share:
    return Share(share_id, session, "alice", True, None, "abcdefgh", 100.0)


async def assert_healthy(store: ShareStore) -> None:
    """Nothing in flight, no connection left inside a transaction, and a fresh write transaction works."""
    if isinstance(store, SqliteStore):
        assert store._conn is not None
        assert not store._conn.in_transaction
    if isinstance(store, PostgresStore):
        assert store._pool is not None
        assert store._pool.get_idle_size() == store._pool.get_size()  # every connection back, idle
    assert getattr(store, "operations_in_flight", 0) == 0
    await store.ping()
    probe = f"probe-{next(ids)}"
    assert await store.set_session_owner(probe, "x", 1.0) is True
    assert await store.session_owner(probe) == "x"


async def total_access(store: ShareStore, session: str) -> tuple[int, int]:
    """(viewers, accesses) over every share of ``session``."""
    listed = await store.list_shares(session, "alice")
    return sum(x.viewers for x in listed), sum(x.access_count for x in listed)


# ---------------------------------------------------------------- tasks.py


async def test_uncancelled_lets_the_task_finish_then_raises_the_waiters_cancellation() -> None:
    bg = Background("test")
    finished = asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0.02)
        finished.set()
        return "done"

    task = bg.spawn(work(), name="work")
    waiter = asyncio.ensure_future(uncancelled(task))
    await asyncio.sleep(0.001)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert finished.is_set()  # the waiter returned only once the work was done
    assert task.result() == "done"
    assert len(bg) == 0


async def test_background_logs_unexpected_failures_and_drain_cancels_stragglers() -> None:
    bg = Background("test")

    async def fail(exc: Exception) -> None:
        raise exc

    with structlog.testing.capture_logs() as logs:
        for exc in (StoreError("expected"), RuntimeError("bug")):
            task = bg.spawn(fail(exc), name=type(exc).__name__, expected=(StoreError,))
            with pytest.raises(type(exc)):
                await uncancelled(task)
        slow = bg.spawn(asyncio.sleep(30), name="slow")
        assert await bg.drain(0.05) is False
    assert slow.cancelled()
    assert len(bg) == 0
    failed = [e for e in logs if e["event"] == "background_task_failed"]
    assert [e["task"] for e in failed] == ["test:RuntimeError"]
    assert any(e["event"] == "background_tasks_cancelled" for e in logs)


# ---------------------------------------------------------------- the store


def operations(store: ShareStore) -> list[tuple[str, Callable[[int], Coroutine[Any, Any, Any]]]]:
    """Every store operation, each with fresh arguments per run ``i``."""
    return [
        ("ping", lambda i: store.ping()),
        ("migrate", lambda i: store.migrate()),
        ("create_share", lambda i: store.create_share(share(f"sh_new{i}"), f"h-new{i}")),
        ("share_by_token_hash", lambda i: store.share_by_token_hash("h-base")),
        ("share_by_id", lambda i: store.share_by_id("sh_base")),
        ("token_hash_of", lambda i: store.token_hash_of("sh_base")),
        ("list_shares", lambda i: store.list_shares("s1", "alice")),
        ("revoke", lambda i: store.revoke(f"sh_rev{i}", 150.0)),
        (
            "record_access",
            lambda i: store.record_access(
                [AccessRow(f"sh_acc{i}", "bob", 1.0, 2.0, 3), AccessRow(f"sh_acc{i}", "carol", 1.0, 2.0, 4)]
            ),
        ),
        ("session_owner", lambda i: store.session_owner("s-owned")),
        ("set_session_owner", lambda i: store.set_session_owner(f"s-new{i}", "alice", 1.0)),
        ("session_owners", lambda i: store.session_owners(["s-owned", "s-none"])),
        ("reassign_session_owner", lambda i: store.reassign_session_owner(f"s-re{i}", "bob", 1.0)),
    ]


async def test_every_store_operation_survives_cancellation_at_every_point(store: ShareStore) -> None:
    await store.create_share(share("sh_base"), "h-base")
    await store.set_session_owner("s-owned", "alice", 1.0)
    for name, run in operations(store):
        for point in POINTS:
            i = next(ids)
            if name == "revoke":
                await store.create_share(share(f"sh_rev{i}"), f"h-rev{i}")
            if name == "record_access":
                await store.create_share(share(f"sh_acc{i}", session=f"acc{i}"), f"h-acc{i}")
            outcome, _ = await cancelled_at(run(i), point)
            await assert_healthy(store)
            # The work either completed or rolled back, whole: never half a transaction.
            if name == "record_access":
                assert await total_access(store, f"acc{i}") in ({(0, 0), (2, 7)} if outcome == "cancelled"
                                                                   else {(2, 7)}), (point, outcome)
            if name == "create_share" and outcome == "done":
                assert await store.share_by_id(f"sh_new{i}") == share(f"sh_new{i}")
            if name == "revoke" and outcome == "done":
                revoked = await store.share_by_id(f"sh_rev{i}")
                assert revoked is not None
                assert revoked.revoked_at == 150.0


async def test_sqlite_transaction_recovers_an_abandoned_one(tmp_path: Any) -> None:
    store = SqliteStore(f"{tmp_path}/abandoned.db")
    await store.open()
    await store.migrate()
    try:
        assert store._conn is not None
        await store._conn.execute("BEGIN IMMEDIATE")  # someone left the connection mid-transaction
        with structlog.testing.capture_logs() as logs:
            await store.ping()
        assert [e["event"] for e in logs] == ["sqlite_abandoned_transaction"]
        await assert_healthy(store)
        # The bare transaction() too: cancelled around BEGIN, it still rolls back.
        for point in POINTS[:12]:

            async def write() -> None:
                async with store.transaction(write=True) as tx:
                    await tx.execute("INSERT INTO session_owners VALUES ('never', 'x', 1.0)")
                    await asyncio.sleep(30)

            await cancelled_at(write(), point)
            assert not store._conn.in_transaction
            assert await store.session_owner("never") is None
    finally:
        await store.close()


async def test_close_waits_for_operations_in_flight(store: ShareStore) -> None:
    started = [asyncio.ensure_future(store.create_share(share(f"sh_c{i}"), f"h-c{i}")) for i in range(5)]
    await asyncio.sleep(0)
    for task in started:
        task.cancel()  # the callers go away; their writes must still land before close() returns
    await store.close()
    await asyncio.gather(*started, return_exceptions=True)
    await store.open()
    assert all([await store.share_by_id(f"sh_c{i}") is not None for i in range(5)])


async def test_close_rolls_back_an_operation_that_outlives_close_timeout(store: ShareStore) -> None:
    assert isinstance(store, SqliteStore | PostgresStore)

    async def stuck(tx: Any) -> None:
        await tx.execute("INSERT INTO session_owners (session_id, owner_id, created_at)"
                         " VALUES ('stuck', 'x', 1.0)")
        await asyncio.sleep(30)  # a transaction that never ends on its own

    store.close_timeout = 0.05
    waiter = asyncio.ensure_future(store._atomic("stuck", stuck, write=True))
    await asyncio.sleep(0.02)
    await store.close()
    with pytest.raises(StoreError):  # the caller was not cancelled: it hears that the store went away
        await waiter
    await store.open()
    assert await store.session_owner("stuck") is None  # rolled back
    await assert_healthy(store)


# ---------------------------------------------------------------- the share cache (single flight)


@pytest.mark.parametrize("known", [True, False], ids=["share", "unknown"])
async def test_lookup_single_flight_answers_every_waiter_when_any_is_cancelled(
    store: ShareStore, known: bool
) -> None:
    await store.create_share(share("sh_l"), "h-l")
    digest = "h-l" if known else "h-unknown"
    expected = share("sh_l") if known else None
    for point in POINTS:
        cache = ShareCache(store, ttl=60, negative_ttl=60, size=100)
        lookups = [asyncio.ensure_future(cache.lookup(digest)) for _ in range(4)]
        await pause(point)
        lookups[0].cancel()  # the leader (the first caller) goes away
        lookups[2].cancel()  # and one of the waiters
        results = await asyncio.wait_for(asyncio.gather(*lookups, return_exceptions=True), 10)
        for k, result in enumerate(results):
            if k in (0, 2) and isinstance(result, asyncio.CancelledError):
                continue
            assert result == expected, (point, k, result)
        assert cache._inflight == {}
        assert cache._l1.get(digest, "missing") == expected  # filled by the load itself
        await assert_healthy(store)


class FailingLookups(SqliteStore):
    """A real SQLite store whose share lookups fail after a short wait (the store went away)."""

    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        await asyncio.sleep(0.002)
        raise StoreError("injected")


async def test_lookup_waiters_get_dependency_unavailable_when_the_store_fails(tmp_path: Any) -> None:
    store = FailingLookups(f"{tmp_path}/failing.db")
    await store.open()
    try:
        for point in POINTS[::3]:
            cache = ShareCache(store, ttl=60, negative_ttl=60, size=100)
            lookups = [asyncio.ensure_future(cache.lookup("h")) for _ in range(3)]
            await pause(point)
            lookups[0].cancel()
            results = await asyncio.wait_for(asyncio.gather(*lookups, return_exceptions=True), 10)
            assert isinstance(results[0], asyncio.CancelledError | DependencyUnavailable)
            assert all(isinstance(r, DependencyUnavailable) for r in results[1:]), results
            assert results[1] is not results[2]  # each waiter raises its own error
            assert cache._inflight == {}
    finally:
        await store.close()


# ---------------------------------------------------------------- access recording


def written() -> float:
    return metrics.REGISTRY.get_sample_value("share_gateway_access_records_total", {"result": "written"}) or 0.0


def queue_depth() -> float | None:
    return metrics.REGISTRY.get_sample_value("share_gateway_access_queue_depth")


@pytest.mark.parametrize("method", ["flush", "close"])
async def test_cancelled_flush_or_close_loses_and_doubles_no_row(store: ShareStore, method: str) -> None:
    for point in POINTS:
        session = f"flush{next(ids)}"
        await store.create_share(share(f"sh_{session}", session=session), f"h-{session}")
        recorder = AccessRecorder(store, flush_interval=60, max_pending=1000, batch_size=2)
        if method == "close":
            recorder.start()
        for k in range(10):  # 5 pairs of 2 accesses: 3 batches
            recorder.record(f"sh_{session}", f"u{k % 5}", 100.0 + k)
        before = written()
        outcome, _ = await cancelled_at(getattr(recorder, method)(), point)
        # What a cancelled flush/close did not write is still pending, never gone or doubled.
        viewers, accesses = await total_access(store, session)
        assert viewers + recorder.pending == 5, (point, outcome, viewers, recorder.pending)
        await recorder.close()  # a later close writes the rest
        assert await total_access(store, session) == (5, 10), (point, outcome)
        assert written() - before == 5
        assert recorder.pending == 0
        assert queue_depth() == 0
        await assert_healthy(store)


# ---------------------------------------------------------------- the request handler


@pytest.fixture
async def slow_upstream() -> AsyncIterator[str]:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def in_flight() -> float:
    return metrics.REGISTRY.get_sample_value("share_gateway_requests_in_flight") or 0.0


def counted(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (bounded) for the server to settle; the bound is a hang guard, not a speed check."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert check()


async def test_abandoned_request_is_logged_499_client_closed(
    make_gateway: GatewayFactory, slow_upstream: str
) -> None:
    gw = await make_gateway(upstream=slow_upstream)
    route = {"route": "/api/sessions/{session_id}", "method": "GET", "status_class": "4xx",
             "decision": "as_caller"}
    before = (counted("share_gateway_requests_total", route),
              counted("share_gateway_decisions_total", {"reason_id": "client_closed"}))
    with structlog.testing.capture_logs() as logs:
        async with aiohttp.ClientSession() as http:
            request = asyncio.ensure_future(http.get(gw.url + "/api/sessions/s1", headers={USER: "alice"}))
            await until(lambda: in_flight() >= 1)
            await asyncio.sleep(0.05)
            request.cancel()  # the client goes away while the upstream is still thinking
            with pytest.raises(asyncio.CancelledError):
                await request
        await until(lambda: in_flight() == 0)
    [line] = [e for e in logs if e["event"] == "request"]
    assert (line["status"], line["reason_id"]) == (499, "client_closed")
    assert counted("share_gateway_requests_total", route) == before[0] + 1
    assert counted("share_gateway_decisions_total", {"reason_id": "client_closed"}) == before[1] + 1


async def test_connection_reset_while_writing_is_499_not_500(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await make_gateway()

    async def reset(self: Pipeline, request: web.Request, ex: Any) -> web.StreamResponse:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    monkeypatch.setattr(Pipeline, "_handle", reset)
    before = in_flight()
    with structlog.testing.capture_logs() as logs, pytest.raises(ConnectionResetError):
        await gw.pipeline.handle(make_mocked_request("GET", "/api/sessions/s1"))
    [line] = [e for e in logs if e["event"] == "request"]
    assert (line["status"], line["reason_id"]) == (499, "client_closed")
    assert in_flight() == before

