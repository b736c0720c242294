"""Fault suite: each scenario starts and stops its own processes on loopback, drives bounded
traffic, and reports requests sent, answered correctly, wrongly allowed (must be 0), 5xx other
than the documented 502/503/504 (must be 0) and access records lost (must be 0)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.demo.story import free_port, wait_http
from gateway.observe import metrics
from gateway.shares.store import StoreError
from gateway.shares.store.sqlite import SqliteStore
from tests.conftest import (
    FAULT_ROWS,
    USER,
    Client,
    Gateway,
    GatewayFactory,
    PrivateRedis,
    TcpCut,
    Upstream,
    chat,
)

DOCUMENTED_5XX = {502, 503, 504}
REFUSED = -1


@dataclass(frozen=True)
class Probe:
    """One kind of request in the mix and the answers that are correct for it."""

    name: str
    method: str
    path: str
    user: str | None
    token: str | None
    correct: frozenset[int]
    must_not_allow: bool = False  # a 2xx answer would be a wrong allow
    body: Any = None


@dataclass
class Tally:
    sent: int = 0
    correct: int = 0
    wrongly_allowed: int = 0
    other_5xx: int = 0
    refused: int = 0  # connections refused once a listener closed: never answered, so never wrong
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, probe: Probe, status: int) -> None:
        if status == REFUSED:
            self.refused += 1
            return
        self.sent += 1
        self.statuses.setdefault(probe.name, {}).setdefault(status, 0)
        self.statuses[probe.name][status] += 1
        if status in probe.correct:
            self.correct += 1
        if probe.must_not_allow and 200 <= status < 300:
            self.wrongly_allowed += 1
        if status >= 500 and status not in DOCUMENTED_5XX:
            self.other_5xx += 1

    def report(self, name: str, lost: int = 0) -> None:
        FAULT_ROWS.append((name, self.sent, self.correct, self.wrongly_allowed, self.other_5xx, lost))
        assert self.wrongly_allowed == 0, self.statuses
        assert self.other_5xx == 0, self.statuses
        assert lost == 0
        assert self.correct == self.sent, self.statuses


async def drive(c: Client, probes: list[Probe], seconds: float,
                events: list[tuple[float, Callable[[], Awaitable[None]]]], concurrency: int = 8) -> Tally:
    """Send the probe mix round-robin from ``concurrency`` clients for ``seconds``, firing
    ``events`` (fault injections) at their offsets; bounded in time and count."""
    tally = Tally()
    start = time.monotonic()
    stop = start + seconds

    async def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < stop and tally.sent < 20_000:
            probe = probes[i % len(probes)]
            i += 1
            try:
                status, _, _ = await c.call(probe.method, probe.path, user=probe.user, token=probe.token,
                                            json_body=probe.body)
            except aiohttp.ClientError:
                status = REFUSED
            tally.add(probe, status)

    async def injector() -> None:
        for at, action in events:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            await action()

    await asyncio.gather(injector(), *(worker(k) for k in range(concurrency)))
    return tally


def share_mix(sid: str, ro: str, revoked: str, *, outage: set[int]) -> list[Probe]:
    """Reads through a read-only link, writes through it, unknown and revoked links, no link."""
    ok = frozenset({200} | outage)
    denied = frozenset({403, 429} | outage)
    return [
        Probe("read via link", "GET", f"/api/sessions/{sid}", "bob", ro, ok),
        Probe("write via read-only link", "POST", f"/api/sessions/{sid}/events", "bob", ro,
              frozenset({403} | outage), must_not_allow=True, body={"data": "{}"}),
        Probe("unknown link", "GET", f"/api/sessions/{sid}", "bob", "u" * 43, denied, must_not_allow=True),
        Probe("revoked link", "GET", f"/api/sessions/{sid}", "bob", revoked, denied, must_not_allow=True),
        Probe("no link, owner", "GET", f"/api/sessions/{sid}", "alice", None, frozenset({200})),
        Probe("no link, stranger", "GET", f"/api/sessions/{sid}", "bob", None, frozenset({404}),
              must_not_allow=True),
    ]


async def prepared(c: Client) -> tuple[str, str, str]:
    sid, _ = await chat(c, "alice")
    ro = (await c.share("alice", sid))["token"]
    revoked = await c.share("alice", sid)
    await c.call("DELETE", f"/api/sessions/{sid}/shares/{revoked['id']}", user="alice")
    return sid, ro, revoked["token"]


async def access_total(pg: str) -> int:
    conn = await asyncpg.connect(pg)
    try:
        return int(await conn.fetchval("SELECT COALESCE(SUM(access_count), 0) FROM share_access"))
    finally:
        await conn.close()


async def test_redis_killed_and_restarted_under_load(
    pg: str, private_redis: PrivateRedis, make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    gw = await make_gateway(store=pg, redis=private_redis.url, redis_prefix=f"f-{uuid.uuid4().hex[:6]}",
                            shares__cache_ttl="0.2", timeouts__redis_retry="0.3", shares__guess_limit="0")
    c = client_for(gw)
    sid, ro, revoked = await prepared(c)

    async def kill() -> None:
        private_redis.kill()

    async def restart() -> None:
        private_redis.start()

    tally = await drive(c, share_mix(sid, ro, revoked, outage=set()), 3.0, [(1.0, kill), (2.0, restart)])
    await gw.flush_access()
    tally.report("Redis killed and restarted under load")


async def test_postgres_unreachable_under_load(
    pg: str, make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    relay = TcpCut(5432)
    await relay.start()
    try:
        gw = await make_gateway(store=pg.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"),
                                shares__cache_ttl="0", shares__negative_ttl="0", shares__guess_limit="0")
        c = client_for(gw)
        sid, ro, revoked = await prepared(c)
        tally = await drive(c, share_mix(sid, ro, revoked, outage={503}), 3.0,
                            [(1.0, relay.cut), (2.0, relay.restore)])
        await gw.flush_access()
        tally.report("PostgreSQL unreachable under load")
    finally:
        if relay.server is not None:
            await relay.cut()


@pytest.fixture
async def killable_upstream() -> AsyncIterator[tuple[str, Callable[[], Awaitable[None]], dict[str, Any]]]:
    """A kagent stand-in the test can kill, and whose streams can stall."""
    state: dict[str, Any] = {"stalled": asyncio.Event()}

    async def session(request: web.Request) -> web.Response:
        if request.headers.get("X-User-Id") != "alice":
            return web.json_response({"error": "Session not found"}, status=404)
        return web.json_response({"error": False, "data": {"id": request.match_info["sid"]}})

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: 1\n\ndata: 2\n\n")
        state["stalled"].set()
        await asyncio.sleep(30)  # stalls mid-stream
        return resp

    app = web.Application()
    app.router.add_get("/api/sessions/{sid}", session)
    app.router.add_get("/stream", stream)
    app.router.add_route("*", "/{tail:.*}", session)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), server.close, state
    await server.close()


async def test_upstream_killed(
    killable_upstream: tuple[str, Callable[[], Awaitable[None]], dict[str, Any]],
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client],
) -> None:
    url, kill, _ = killable_upstream
    gw = await make_gateway(upstream=url, timeouts__connect="0.5", shares__guess_limit="0")
    c = client_for(gw)
    ro = (await c.share("alice", "s1"))["token"]
    probes = [
        Probe("read via link", "GET", "/api/sessions/s1", "bob", ro, frozenset({200, 502})),
        Probe("unknown link", "GET", "/api/sessions/s1", "bob", "u" * 43, frozenset({403}), must_not_allow=True),
        Probe("no link, stranger", "GET", "/api/sessions/s1", "bob", None, frozenset({404, 502}),
              must_not_allow=True),
    ]
    tally = await drive(c, probes, 2.0, [(1.0, kill)])
    assert 502 in tally.statuses["read via link"]  # the outage was seen, and answered as documented
    tally.report("upstream killed")


async def test_upstream_stalls_mid_stream_and_clients_disconnect(
    killable_upstream: tuple[str, Callable[[], Awaitable[None]], dict[str, Any]],
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client],
) -> None:
    url, _, state = killable_upstream
    gw = await make_gateway(upstream=url, timeouts__read_idle="0.5")
    c = client_for(gw)
    fds = len(os.listdir("/proc/self/fd"))
    tally = Tally()
    probe = Probe("stalled stream", "GET", "/stream", "alice", None, frozenset({200}))
    async with aiohttp.ClientSession() as http:
        for _ in range(5):  # the upstream stalls: the stream is cut after read_idle
            async with http.get(gw.url + "/stream", headers={USER: "alice"}) as r:
                tally.add(probe, r.status)
                with pytest.raises(aiohttp.ClientPayloadError):
                    await asyncio.wait_for(r.content.read(), 5)
        for _ in range(20):  # clients that go away mid-stream
            r = await http.get(gw.url + "/stream", headers={USER: "alice"})
            tally.add(probe, r.status)
            await r.content.readuntil(b"\n\n")
            r.close()
        for _ in range(20):  # and mid-request, with half a body sent
            reader, writer = await asyncio.open_connection(gw.server.host, gw.server.port)
            writer.write(f"POST /api/sessions HTTP/1.1\r\nHost: x\r\n{USER}: alice\r\n"
                         "Content-Length: 1000\r\n\r\n{\"partial\":".encode())
            await writer.drain()
            writer.close()
    await asyncio.sleep(1.0)
    normal = Probe("normal request afterwards", "GET", "/api/sessions/s1", "alice", None, frozenset({200}))
    tally.add(normal, (await c.call("GET", "/api/sessions/s1", user="alice"))[0])
    assert metrics.REGISTRY.get_sample_value("share_gateway_open_streams") == 0
    assert len(os.listdir("/proc/self/fd")) <= fds + 5  # nothing leaked
    tally.report("stalled upstream stream, client disconnects")


async def test_sigterm_under_load_loses_no_access_records(pg: str, tmp_path: Path, upstream: Upstream) -> None:
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARE_GATEWAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
         "--admin_listen", f"127.0.0.1:{admin}", "--store", pg, "--auth.mode", "trusted-header",
         "--auth.trusted_header.name", USER, "--auth.trusted_header.trusted_cidrs", "127.0.0.1/32",
         "--access.flush_interval", "3600", "--log.level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{admin}/readyz")
    async with aiohttp.ClientSession() as http:
        c = Client(http, f"http://127.0.0.1:{port}")
        sid, ro, revoked = await prepared(c)
        mix = share_mix(sid, ro, revoked, outage=set())
        async def sigterm() -> None:
            proc.send_signal(signal.SIGTERM)

        tally = await drive(c, mix, 2.0, [(1.0, sigterm)], concurrency=6)
        answered_reads = tally.statuses["read via link"].get(200, 0)
    assert proc.wait(30) == 0
    assert tally.refused > 0  # the load outlived the listener
    lost = answered_reads - await access_total(pg)
    tally.report("SIGTERM under load", lost=lost)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """A store for the gateway: its name and the overrides selecting it (SQLite in tmp_path, or ``pg``)."""
    if request.param == "sqlite":
        return "sqlite", {}
    return "postgresql", {"store": str(request.getfixturevalue("pg"))}


async def test_clients_disconnect_while_hot_cache_entries_expire(
    backend: tuple[str, dict[str, str]], make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client],
) -> None:
    """DESIGN.md "Cancellation-safe", under load: clients drop requests at random points while
    hot cache entries expire every 50 ms (so cancelled requests are often the single-flight
    leader of a store lookup), new links are created, used for the first time and revoked,
    and access flushes are cancelled. Afterwards every uncached lookup still answers (never
    503), nothing is left in flight, and the abandoned requests were logged as 499."""
    name, store = backend
    gw = await make_gateway(shares__cache_ttl="0.05", shares__negative_ttl="0.05", shares__guess_limit="0",
                            access__flush_interval="0.02", **store)
    c = client_for(gw)
    sid, ro, revoked = await prepared(c)
    hot = [ro] + [(await c.share("alice", sid))["token"] for _ in range(3)]
    path = f"/api/sessions/{sid}"
    probes = [Probe("read via hot link", "GET", path, "bob", token, frozenset({200})) for token in hot] + [
        Probe("write via read-only link", "POST", path + "/events", "bob", ro, frozenset({403}),
              must_not_allow=True, body={"data": "{}"}),
        Probe("revoked link", "GET", path, "bob", revoked, frozenset({403}), must_not_allow=True),
        Probe("unknown link", "GET", path, "bob", "u" * 43, frozenset({403}), must_not_allow=True),
    ]
    first_use = Probe("first use of a new link", "GET", path, "bob", None, frozenset({200}))
    rng = random.Random(f"disconnects-{name}")
    tally = Tally()
    churn: list[tuple[str, bool]] = []  # (token, revoked) of links created during the load
    sent_with_link = answered_with_link = disconnected = 0
    stop = time.monotonic() + 2.0

    async def call(probe: Probe, token: str | None, drop: float | None) -> int | None:
        """The probe's status; ``None`` if the client disconnected first (after ``drop`` s)."""
        nonlocal sent_with_link, answered_with_link, disconnected
        sending = asyncio.ensure_future(
            c.call(probe.method, probe.path, user=probe.user, token=token, json_body=probe.body))
        granted = 200 in probe.correct
        sent_with_link += granted
        done, _ = await asyncio.wait({sending}, timeout=drop if drop is not None else 10.0)
        if not done:
            sending.cancel()  # the client goes away (or, without ``drop``, never got an answer)
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await sending
            if drop is None:
                return 0  # no answer in 10 s: counted as wrong
            disconnected += 1
            return None
        try:
            status = sending.result()[0]
        except aiohttp.ClientError:
            return REFUSED
        answered_with_link += granted and status == 200
        return status

    async def client(offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            probe = probes[i % len(probes)]
            i += 1
            drop = rng.uniform(0, 0.006) if rng.random() < 0.5 else None
            status = await call(probe, probe.token, drop)
            if status is not None:
                tally.add(probe, status)

    async def share_api() -> None:
        """Create links (a quarter of the creations abandoned), use each for the first time
        from clients that disconnect, revoke half of them."""
        while time.monotonic() < stop:
            creating = asyncio.ensure_future(c.share("alice", sid))
            if rng.random() < 0.25:
                await asyncio.wait({creating}, timeout=rng.uniform(0, 0.004))
                if not creating.done():
                    creating.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                        await creating
                    continue
            created = await creating
            for _ in range(3):
                status = await call(first_use, created["token"], rng.uniform(0, 0.006))
                if status is not None:
                    tally.add(first_use, status)
            gone = rng.random() < 0.5
            if gone:
                status, body, _ = await c.call("DELETE", f"{path}/shares/{created['id']}", user="alice")
                assert status == 200, body
            churn.append((created["token"], gone))

    async def flusher() -> None:
        """Access flushes, cancelled at random points."""
        while time.monotonic() < stop:
            flushing = asyncio.ensure_future(gw.flush_access())
            await asyncio.wait({flushing}, timeout=rng.uniform(0, 0.004))
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await flushing

    def in_flight() -> float:
        return metrics.REGISTRY.get_sample_value("share_gateway_requests_in_flight") or 0.0

    with structlog.testing.capture_logs() as logs:
        await asyncio.gather(flusher(), share_api(), *(client(k) for k in range(6)))
        deadline = time.monotonic() + 10  # a hang guard for the cancelled handlers, not a speed check
        while in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert in_flight() == 0
        await asyncio.sleep(0.1)  # every cache entry expired: each lookup below goes to the store
        after = [Probe("uncached lookup after the load", "GET", path, "bob", t, frozenset({200})) for t in hot]
        after += [Probe("uncached lookup after the load", "GET", path, "bob", t,
                        frozenset({403}) if gone else frozenset({200}), must_not_allow=gone)
                  for t, gone in churn]
        after += [Probe("revoked link after the load", "GET", path, "bob", revoked, frozenset({403}),
                        must_not_allow=True)]
        for probe in after:
            tally.add(probe, (await c.call("GET", path, user="bob", token=probe.token))[0])
            answered_with_link += probe.correct == frozenset({200})
            sent_with_link += probe.correct == frozenset({200})
        await gw.flush_access()
    assert disconnected > 0
    assert len(churn) > 3
    lines = [e for e in logs if e["event"] == "request"]
    assert {e["status"] for e in lines} <= {200, 201, 403, 499}, {e["status"] for e in lines}
    assert any(e["status"] == 499 and e["reason_id"] == "client_closed" for e in lines)
    assert not any(e["reason_id"] == "store_unavailable" for e in lines)
    assert gw.pipeline.cache._inflight == {}
    if isinstance(gw.store, SqliteStore):
        assert gw.store._conn is not None
        assert not gw.store._conn.in_transaction
    recorded = sum(x.access_count for x in await gw.store.list_shares(sid, "alice"))
    assert recorded <= sent_with_link  # an access is recorded once, never twice
    tally.report(f"clients disconnect while hot cache entries expire ({name})",
                 lost=max(0, answered_with_link - recorded))
