"""Production state against real Redis and PostgreSQL: replicas, outages, drain, coalescing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.demo.story import free_port, wait_http
from gateway.observe import metrics
from tests.conftest import (
    USER,
    Client,
    Gateway,
    GatewayFactory,
    PrivateRedis,
    TcpCut,
    Upstream,
)


def lookups(tier: str, result: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "share_gateway_share_lookups_total", {"tier": tier, "result": result}) or 0.0


def prefix() -> str:
    return f"sgtest-{uuid.uuid4().hex[:8]}"


async def test_replicas_share_the_redis_tier_and_revocations(
    pg: str, redis_url: str, make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    common = {"store": pg, "redis": redis_url, "redis_prefix": prefix(), "shares__cache_ttl": "30"}
    a, b = await make_gateway(**common), await make_gateway(**common)
    ca, cb = client_for(a), client_for(b)
    sid = await ca.session("alice")
    token = (await ca.share("alice", sid))["token"]
    status, _, _ = await ca.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
    assert status == 200  # A: store → Redis
    redis_hits = lookups("redis", "hit")
    status, _, _ = await cb.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
    assert status == 200
    assert lookups("redis", "hit") == redis_hits + 1  # B found it in Redis, not the store
    status, _, _ = await ca.call("DELETE", f"/api/sessions/{sid}/shares/{token}", user="alice")
    assert status == 200

    async def refused_on_b() -> bool:
        s, _, _ = await cb.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
        return s == 403

    deadline = time.monotonic() + 1
    while not await refused_on_b():
        assert time.monotonic() < deadline, "replica B kept serving a revoked share"
        await asyncio.sleep(0.005)


async def test_task_bindings_are_shared(
    pg: str, redis_url: str, make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client],
    upstream: Upstream,
) -> None:
    common = {"store": pg, "redis": redis_url, "redis_prefix": prefix()}
    a, b = await make_gateway(**common), await make_gateway(**common)
    ca, cb = client_for(a), client_for(b)
    sid = await ca.session("alice")
    _, body = await ca.say("hi", user="alice", context=sid)
    task_id = body["result"]["task"]["id"]
    token = (await ca.share("alice", sid))["token"]
    upstream.clear()
    status, body = await cb.rpc("GetTask", {"id": task_id}, user="bob", token=token)
    assert (status, body["result"]["id"]) == (200, task_id)
    assert len(upstream.requests()) == 1  # B knew the binding from Redis: no GetTask probe


def serve(tmp: Path, name: str, upstream: str, store: str, redis: str, redis_prefix: str,
          **extra: str) -> tuple[subprocess.Popen[str], str, str]:
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARE_GATEWAY_")}
    args = [sys.executable, "-m", "gateway", "serve", "--upstream", upstream,
            "--listen", f"127.0.0.1:{port}", "--admin_listen", f"127.0.0.1:{admin}", "--store", store,
            "--redis", redis, "--redis_prefix", redis_prefix, "--auth.mode", "trusted-header",
            "--auth.trusted_header.name", USER, "--auth.trusted_header.trusted_cidrs", "127.0.0.1/32",
            "--log.level", "warning", "--log.format", "json"]
    for key, value in extra.items():
        args += [f"--{key}", value]
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    log.close()
    wait_http(f"http://127.0.0.1:{admin}/readyz")
    return proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


async def test_a_revocation_through_one_process_reaches_the_other(
    tmp_path: Path, upstream: Upstream, pg: str, redis_url: str
) -> None:
    """Revoke through replica A: replica B, which holds the share in its in-process cache for
    60 s, refuses it within the deadline, every time. (How fast: ``python -m bench.revocation``.)"""
    p = prefix()
    a_proc, a_url, _ = serve(tmp_path, "a", upstream.url, pg, redis_url, p, **{"shares.cache_ttl": "60"})
    b_proc, b_url, _ = serve(tmp_path, "b", upstream.url, pg, redis_url, p, **{"shares.cache_ttl": "60"})
    try:
        async with aiohttp.ClientSession() as http:
            a, b = Client(http, a_url), Client(http, b_url)
            sid = await a.session("alice")
            for _ in range(20):
                share = await a.share("alice", sid)
                status, _, _ = await b.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
                assert status == 200  # B has it cached in-process (TTL 60 s)
                status, _, _ = await a.call("DELETE", f"/api/sessions/{sid}/shares/{share['id']}", user="alice")
                revoked_at = time.perf_counter()
                assert status == 200
                while True:
                    status, _, _ = await b.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
                    if status == 403:
                        break
                    assert status == 200
                    assert time.perf_counter() - revoked_at < 2, "revocation never reached replica B"
    finally:
        assert stop(a_proc) == 0
        assert stop(b_proc) == 0


async def test_redis_stopped_mid_traffic(
    pg: str, private_redis: PrivateRedis, make_gateway: GatewayFactory,
    client_for: Callable[[Gateway], Client],
) -> None:
    gw = await make_gateway(store=pg, redis=private_redis.url, redis_prefix=prefix(), shares__cache_ttl="0.05",
                            timeouts__redis_retry="0.3")
    c = client_for(gw)
    sid = await c.session("alice")
    token = (await c.share("alice", sid))["token"]

    async def traffic(n: int) -> list[int]:
        out = []
        for _ in range(n):
            status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
            out.append(status)
            await asyncio.sleep(0.01)
        return out

    assert set(await traffic(20)) == {200}
    errors, store_hits = lookups("redis", "error") + lookups("redis", "bypassed"), lookups("store", "hit")
    private_redis.kill()
    assert set(await traffic(60)) == {200}  # answered from the store
    assert lookups("redis", "error") + lookups("redis", "bypassed") > errors
    assert lookups("store", "hit") > store_hits
    assert lookups("redis", "bypassed") > 0  # the breaker kept a dead Redis off most requests
    private_redis.start()
    await asyncio.sleep(0.4)  # breaker cooldown
    await traffic(5)
    redis_hits = lookups("redis", "hit")
    assert set(await traffic(20)) == {200}
    assert lookups("redis", "hit") > redis_hits  # recovered: Redis serves again


@pytest.fixture
async def pg_relay() -> AsyncIterator[TcpCut]:
    relay = TcpCut(5432)
    await relay.start()
    yield relay
    if relay.server is not None:
        await relay.cut()


async def test_store_unreachable_is_503_never_200(
    pg: str, pg_relay: TcpCut, make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client],
) -> None:
    """PostgreSQL disappears on the wire (a relay that the test cuts); no cache may answer."""
    relay = pg_relay
    via_relay = pg.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    gw = await make_gateway(store=via_relay, shares__cache_ttl="0", shares__negative_ttl="0")
    c = client_for(gw)
    sid = await c.session("alice")
    token = (await c.share("alice", sid))["token"]
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
    assert status == 200
    await relay.cut()
    statuses = []
    for _ in range(10):
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
        statuses.append(status)
    assert set(statuses) == {503}
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="alice")
    assert status == 200  # no token: not affected
    await relay.restore()
    deadline = time.monotonic() + 10
    while (await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token))[0] != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def access_rows(pg: str) -> dict[tuple[str, str], int]:
    conn = await asyncpg.connect(pg)
    try:
        rows = await conn.fetch("SELECT share_id, user_id, access_count FROM share_access")
    finally:
        await conn.close()
    return {(r["share_id"], r["user_id"]): r["access_count"] for r in rows}


async def test_sigterm_flushes_queued_access_records(tmp_path: Path, upstream: Upstream, pg: str,
                                                     redis_url: str) -> None:
    proc, url, _ = serve(tmp_path, "drain", upstream.url, pg, redis_url, prefix(),
                         **{"access.flush_interval": "3600"})
    try:
        async with aiohttp.ClientSession() as http:
            c = Client(http, url)
            sid = await c.session("alice")
            share = await c.share("alice", sid)
            for i in range(30):
                status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user=f"u{i % 3}", token=share["token"])
                assert status == 200
        assert await access_rows(pg) == {}  # still queued: the flush interval is an hour
    finally:
        assert stop(proc) == 0
    assert await access_rows(pg) == {(share["id"], f"u{i}"): 10 for i in range(3)}


@pytest.fixture
async def fast_upstream() -> AsyncIterator[str]:
    """A minimal kagent stand-in that answers every request at once (the load test's upstream)."""

    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"error": False, "data": {}, "message": ""})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_10000_requests_50_users_5_shares_exact_counts(
    pg: str, redis_url: str, fast_upstream: str, make_gateway: GatewayFactory,
    client_for: Callable[[Gateway], Client],
) -> None:
    gw = await make_gateway(upstream=fast_upstream, store=pg, redis=redis_url, redis_prefix=prefix(),
                            access__flush_interval="0.2", access__batch_size="37")
    c = client_for(gw)
    shares = [await c.share("alice", f"session-{i}") for i in range(5)]
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> int:
        user, share = f"user-{i % 50}", shares[(i // 50) % 5]
        async with sem:
            status, _, _ = await c.call("GET", f"/api/sessions/{share['session_id']}", user=user,
                                        token=share["token"])
        return status

    statuses = await asyncio.gather(*(one(i) for i in range(10_000)))
    assert set(statuses) == {200}
    await gw.flush_access()
    rows = await access_rows(pg)
    assert len(rows) == 250
    assert set(rows.values()) == {40}
    assert sum(rows.values()) == 10_000
    _, listed, _ = await c.call("GET", "/api/sessions/session-0/shares", user="alice")
    assert (listed["data"][0]["viewers"], listed["data"][0]["access_count"]) == (50, 2000)


def test_sentinel_urls_are_understood() -> None:
    from gateway.shares.shared_state import connect

    client = connect("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/mymaster/2", timeout=0.1)
    pool = client.connection_pool
    assert pool.service_name == "mymaster"  # type: ignore[attr-defined]
    assert pool.sentinel_manager.sentinels[1].connection_pool.connection_kwargs["port"] == 26379  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="service"):
        connect("redis+sentinel://10.0.0.1:26379", timeout=0.1)




async def test_lost_subscription_clears_the_in_process_cache(
    pg: str, private_redis: PrivateRedis, make_gateway: GatewayFactory,
    client_for: Callable[[Gateway], Client],
) -> None:
    """A revocation published while this replica was unsubscribed must not be missed for long."""
    gw = await make_gateway(store=pg, redis=private_redis.url, redis_prefix=prefix(), shares__cache_ttl="3600",
                            timeouts__redis_retry="0.2")
    c = client_for(gw)
    sid = await c.session("alice")
    share = await c.share("alice", sid)
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
    assert status == 200  # now in the in-process cache for an hour
    private_redis.kill()
    await gw.store.revoke(share["id"], time.time())  # revoked elsewhere; the publish never arrives
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
    assert status == 200  # stale for now: nothing told this replica
    private_redis.start()
    deadline = time.monotonic() + 10
    while (await c.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"]))[0] != 403:
        assert time.monotonic() < deadline, "re-subscribing did not clear the in-process cache"
        await asyncio.sleep(0.05)
