"""Share-validation cost figures: in-process cost of a cache hit, and store queries per 1,000
share-validated requests in steady state (through a real gateway, SQLite store, Redis if given).

    python -m bench.lookup_cost [--redis redis://127.0.0.1:6379/0] [--requests 5000]

Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import config
from gateway.app import create_app
from gateway.models import Action, Caller, Share, Target
from gateway.pipeline.decide import decide
from gateway.pipeline.identify import token_hash
from gateway.shares.cache import ShareCache
from gateway.shares.store.sqlite import SqliteStore


class CountingStore(SqliteStore):
    """The real SQLite store, counting share lookups."""

    lookups = 0

    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        CountingStore.lookups += 1
        return await super().share_by_token_hash(token_hash)


async def cache_hit_cost(iterations: int) -> float:
    """Microseconds per validation served from the in-process tier: hash + lookup + decide."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(f"{tmp}/b.db")
        await store.open()
        await store.migrate()
        share = Share("sh_1", "s1", "alice", True, None, "abcdefgh", time.time())
        token = "t" * 43
        await store.create_share(share, token_hash(token))
        cache = ShareCache(store, ttl=3600, negative_ttl=5, size=10_000)
        caller, target = Caller("bob", "jwt"), Target("s1")
        await cache.lookup(token_hash(token))
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(iterations):
                found = await cache.lookup(token_hash(token))
                decide(caller, token_present=True, share=found, action=Action.READ, target=target,
                       now=time.time())
            best = min(best, (time.perf_counter() - start) / iterations)
        await store.close()
    return best * 1e6


async def store_queries_per_1k(requests: int, redis: str | None) -> tuple[float, float]:
    """Store lookups per 1,000 share-validated requests through a gateway; and requests/s."""

    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"error": False, "data": {}})

    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", ok)
    upstream = TestServer(upstream_app, host="127.0.0.1")
    await upstream.start_server()
    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, Any] = {
            "upstream": str(upstream.make_url("")).rstrip("/"), "auth.mode": "trusted-header",
            "auth.trusted_header.trusted_cidrs": "127.0.0.1/32", "store": f"sqlite:///{tmp}/b.db",
            "shares.cache_ttl": "1",
        }
        if redis:
            overrides |= {"redis": redis, "redis_prefix": f"bench-{time.time_ns()}"}
        store = CountingStore(f"{tmp}/b.db")
        gw = TestServer(create_app(config.load(overrides=overrides), store=store), host="127.0.0.1")
        await gw.start_server()
        base = str(gw.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            tokens = []
            for i in range(5):
                async with http.post(f"{base}/api/sessions/s{i}/shares", json={},
                                     headers={"X-Forwarded-User": "alice"}) as r:
                    tokens.append(((await r.json())["data"]["token"], f"s{i}"))
            CountingStore.lookups = 0
            sem = asyncio.Semaphore(20)

            async def one(i: int) -> None:
                token, sid = tokens[i % 5]
                async with sem, http.get(f"{base}/api/sessions/{sid}",
                                         headers={"X-Forwarded-User": f"u{i % 50}", "X-Share-Token": token}) as r:
                    assert r.status == 200
                    await r.read()

            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(requests)))
            elapsed = time.perf_counter() - start
        await gw.close()
    await upstream.close()
    return CountingStore.lookups * 1000 / requests, requests / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--iterations", type=int, default=100_000)
    args = parser.parse_args()
    hit_us = await cache_hit_cost(args.iterations)
    per_1k, rps = await store_queries_per_1k(args.requests, args.redis)
    rows = [
        ("cache-hit share validation (hash + L1 + decide)", f"{hit_us:.2f} µs", "≤ 20 µs"),
        (f"store queries per 1,000 share requests ({args.requests} req, L1 TTL 1 s"
         f"{', Redis' if args.redis else ''})", f"{per_1k:.2f}", "≤ 1"),
        ("in-process run throughput (client shares the cores)", f"{rps:.0f} req/s", "-"),
    ]
    for name, value, target in rows:
        print(f"{name:<82} {value:>12}  target {target}")
    print(json.dumps({"cache_hit_validation_us": round(hit_us, 3),
                      "store_queries_per_1k_share_requests": round(per_1k, 3),
                      "requests": args.requests, "redis": bool(args.redis)}))


if __name__ == "__main__":
    asyncio.run(main())
