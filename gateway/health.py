"""The admin listener: ``/healthz``, ``/readyz``, ``/metrics`` and the share API's ``/openapi.json``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from gateway.observe import metrics
from gateway.shares.openapi import document
from gateway.shares.shared_state import SharedState
from gateway.shares.store import ShareStore, StoreError

PROBE_TIMEOUT = 2.0


@dataclass(slots=True)
class Health:
    """Process lifecycle as the probes see it: not ready while starting or draining."""

    ready: bool = False
    draining: bool = False
    store: ShareStore | None = None
    redis: SharedState | None = None
    upstream: str | None = None
    metrics_dir: str | None = None  # prometheus multiprocess directory (``--workers``)
    jwks: dict[str, Any] | None = None  # the gateway's public keys (``upstream_auth.mode: jwt-assertion``)
    last: dict[str, str] = field(default_factory=dict)

    async def _store_ok(self) -> bool:
        if self.store is None:
            return False
        try:
            await asyncio.wait_for(self.store.ping(), PROBE_TIMEOUT)
        except (StoreError, TimeoutError):
            return False
        return True

    async def _upstream_ok(self) -> bool:
        """Any HTTP answer from the upstream's base URL counts as reachable."""
        if self.upstream is None:
            return True
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.upstream + "/", allow_redirects=False) as response,
            ):
                return response.status > 0
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _redis_ok(self) -> bool:
        return True if self.redis is None else await self.redis.ping()

    async def check(self) -> tuple[bool, dict[str, str]]:
        """``(ready, {check: "ok" | "failing" | "degraded" | lifecycle state})``.

        A dead Redis makes the gateway ``degraded``, not unready: lookups go to
        the store, and taking every replica out of rotation would turn a cache
        outage into a full one.
        """
        store_ok, upstream_ok, redis_ok = await asyncio.gather(
            self._store_ok(), self._upstream_ok(), self._redis_ok()
        )
        metrics.DEPENDENCY_UP.labels("store").set(1 if store_ok else 0)
        metrics.DEPENDENCY_UP.labels("upstream").set(1 if upstream_ok else 0)
        checks = {
            "lifecycle": "draining" if self.draining else ("ok" if self.ready else "starting"),
            "store": "ok" if store_ok else "failing",
            "upstream": "ok" if upstream_ok else "failing",
        }
        ready = all(v == "ok" for v in checks.values())
        if self.redis is not None:
            metrics.DEPENDENCY_UP.labels("redis").set(1 if redis_ok else 0)
            checks["redis"] = "ok" if redis_ok else "degraded"
        return ready, checks


HEALTH = web.AppKey("health", Health)


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: started, not draining, store reachable, upstream reachable (200 or 503)."""
    ok, checks = await request.app[HEALTH].check()
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus text exposition of the gateway's registry (every worker's, with ``--workers``)."""
    return web.Response(
        body=metrics.exposition(request.app[HEALTH].metrics_dir),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def jwks(request: web.Request) -> web.Response:
    """The public key(s) the upstream verifies the gateway's user assertions with (RFC 7517)."""
    keys = request.app[HEALTH].jwks
    if keys is None:
        return web.json_response({"error": "no upstream assertions configured"}, status=404)
    return web.json_response(keys, headers={"Cache-Control": "max-age=300"})


async def openapi(_request: web.Request) -> web.Response:
    """The share API's OpenAPI document."""
    return web.json_response(document())


def create_admin_app(health: Health) -> web.Application:
    """The admin listener's application."""
    app = web.Application()
    app[HEALTH] = health
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/.well-known/jwks.json", jwks)
    return app
