"""The reverse proxy itself: streaming, hop-by-hop, spoofing, errors, disconnects, redaction, health."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from yarl import URL

from gateway import config
from gateway.health import Health, create_admin_app
from gateway.shares.store import StoreError
from gateway.shares.store.sqlite import SqliteStore
from tests.conftest import USER, Client, Gateway, GatewayFactory, Upstream


@pytest.fixture
async def custom_upstream() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A hand-made upstream for transport behaviour: echo, slow SSE, huge headers, stalls."""
    state: dict[str, Any] = {"stream_closed": asyncio.Event(), "seen": []}

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        state["seen"].append({"headers": list(request.headers.items()), "len": len(body),
                              "method": request.method, "path": request.raw_path})
        return web.json_response(
            {"len": len(body), "method": request.method},
            headers={"Connection": "X-Secret", "X-Secret": "internal", "Keep-Alive": "timeout=5",
                     "X-Public": "ok"},
        )

    async def forever(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i in range(1000):
                await resp.write(f"data: {i}\n\n".encode())
                await asyncio.sleep(0.05)
        finally:
            state["stream_closed"].set()
        return resp

    async def stall(_request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/forever", forever)
    app.router.add_get("/stall", stall)
    app.router.add_route("*", "/{tail:.*}", echo)
    server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), state
    await server.close()


async def test_every_method_and_large_bodies_stream_through(
    make_gateway: GatewayFactory, custom_upstream: tuple[str, dict[str, Any]], http: aiohttp.ClientSession
) -> None:
    url, state = custom_upstream
    gw = await make_gateway(upstream=url)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        async with http.request(method, gw.url + "/anything?q=1", headers={USER: "alice"}) as r:
            assert (r.status, (await r.json())["method"]) == (200, method)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 65536  # 5 MiB, chunked, never buffered by the gateway

    async with http.post(gw.url + "/upload", data=chunks(), headers={USER: "alice"}) as r:
        assert (await r.json())["len"] == 80 * 65536


async def test_hop_by_hop_removed_both_ways(
    make_gateway: GatewayFactory, custom_upstream: tuple[str, dict[str, Any]], http: aiohttp.ClientSession
) -> None:
    url, state = custom_upstream
    gw = await make_gateway(upstream=url)
    async with http.get(gw.url + "/x", headers={USER: "alice", "Connection": "keep-alive, X-Drop",
                                                "X-Drop": "1", "TE": "trailers", "X-Keep": "1"}) as r:
        assert "X-Secret" not in r.headers
        assert r.headers["X-Public"] == "ok"
        assert "Keep-Alive" not in r.headers
    seen = {k.lower() for k, _ in state["seen"][-1]["headers"]}
    assert "x-keep" in seen
    assert not seen & {"x-drop", "te"}
    forwarded = CIMultiDict(state["seen"][-1]["headers"])
    assert forwarded["X-Forwarded-For"] == "127.0.0.1"
    assert forwarded["X-Forwarded-Proto"] == "http"
    assert forwarded["X-Forwarded-Host"].startswith("127.0.0.1:")


async def test_spoofed_identity_in_every_variant(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], upstream: Upstream,
    http: aiohttp.ClientSession,
) -> None:
    gw = await make_gateway()
    c = client_for(gw)
    sid = await c.session("alice")
    token = (await c.share("alice", sid))["token"]
    spoofs = [
        ("X-User-Id", "mallory"), ("x-user-id", "mallory"), ("X_User_Id", "mallory"), ("x_user_id", "mallory"),
        ("X-Share-Accessor", "mallory"), ("X_Share_Accessor", "mallory"), ("X-Share-Id", "sh_evil"),
        ("X-Forwarded-User", "mallory"), ("Connection", "X-Smuggled"), ("X-Smuggled", "mallory"),
    ]
    for path, with_token in ((f"/api/sessions/{sid}", True), ("/api/sessions", False)):
        upstream.clear()
        headers = CIMultiDict(spoofs)
        headers.add(USER, "bob")  # the real identity (last), as the auth proxy would set it
        del headers["X-Forwarded-User"]
        headers.add("X-Forwarded-User", "bob")
        if with_token:
            headers["X-Share-Token"] = token
        async with http.get(gw.url + path, headers=headers) as r:
            assert r.status == 200
        [seen] = upstream.requests()
        pairs = [(k, v) for k, v in seen["headers"]]
        assert [v for k, v in pairs if k == "x-user-id"] == (["alice"] if with_token else ["bob"])
        assert not [k for k, v in pairs if "_" in k]
        assert "mallory" not in json.dumps(seen)
        assert "sh_evil" not in json.dumps(seen)
        assert not [k for k, _ in pairs if k in ("x-smuggled", "x-forwarded-user", "x-share-token")]


async def test_duplicate_identity_header_is_rejected(make_gateway: GatewayFactory,
                                                     http: aiohttp.ClientSession) -> None:
    gw = await make_gateway()
    headers = CIMultiDict([(USER, "alice"), (USER, "bob")])
    async with http.get(gw.url + "/api/sessions", headers=headers) as r:
        assert r.status == 400


async def test_dead_upstream_is_502(make_gateway: GatewayFactory, http: aiohttp.ClientSession) -> None:
    from gateway.demo.story import free_port

    gw = await make_gateway(upstream=f"http://127.0.0.1:{free_port()}", timeouts__connect="1")
    async with http.get(gw.url + "/api/sessions", headers={USER: "alice"}) as r:
        assert r.status == 502
        assert await r.json() == {"error": "upstream unreachable"}
    async with http.post(gw.url + "/api/a2a/ns/a/", json={"jsonrpc": "2.0", "id": 3, "method": "GetTask"},
                         headers={USER: "alice"}) as r:
        assert r.status == 502  # A2A routes answer in JSON-RPC
        assert (await r.json())["error"]["message"] == "upstream unreachable"


async def test_stalled_upstream_is_504(
    make_gateway: GatewayFactory, custom_upstream: tuple[str, dict[str, Any]], http: aiohttp.ClientSession
) -> None:
    url, _ = custom_upstream
    gw = await make_gateway(upstream=url, timeouts__read_idle="0.3")
    async with http.get(gw.url + "/stall", headers={USER: "alice"}) as r:
        assert r.status == 504
        assert (await r.json())["error"] == "upstream timed out"


async def test_client_disconnect_closes_the_upstream_stream(
    make_gateway: GatewayFactory, custom_upstream: tuple[str, dict[str, Any]]
) -> None:
    url, state = custom_upstream
    gw = await make_gateway(upstream=url)
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.url + "/forever", headers={USER: "alice"}) as r:
            first = await r.content.readuntil(b"\n\n")
            assert first == b"data: 0\n\n"
    await asyncio.wait_for(state["stream_closed"].wait(), 5)


class FailingStore(SqliteStore):
    """A real store whose share lookups fail on demand (fault injection)."""

    failing = False

    async def share_by_token_hash(self, token_hash: str) -> Any:
        if self.failing:
            raise StoreError("injected outage")
        return await super().share_by_token_hash(token_hash)


async def test_store_outage_fails_closed(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], tmp_path: Any
) -> None:
    store = FailingStore(f"{tmp_path}/failing.db")
    gw = await make_gateway(inject_store=store, shares__cache_ttl="0", shares__negative_ttl="0")
    c = client_for(gw)
    sid = await c.session("alice")
    token = (await c.share("alice", sid))["token"]
    store.failing = True
    for _ in range(3):
        status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
        assert (status, body["error"]) == (503, "share validation is temporarily unavailable")
        status, body = await c.rpc("GetTask", {"id": "t"}, user="bob", token=token)
        assert status == 503
        assert body["error"]["code"] == -32603
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="alice")
    assert status == 200  # requests without a token keep flowing
    store.failing = False
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
    assert status == 200


async def test_no_token_in_logs_or_upstream_traffic(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], upstream: Upstream
) -> None:
    gw = await make_gateway(shares__allow_anonymous="true")
    c = client_for(gw)
    upstream.clear()
    with structlog.testing.capture_logs() as logs:
        sid = await c.session("alice")
        share = await c.share("alice", sid, read_only=True)
        token = share["token"]
        await c.call("GET", f"/api/sessions/{sid}?share={token}", user="bob")
        await c.call("GET", f"/api/sessions/{sid}", token=token)
        await c.say("write", user="bob", context=sid, token=token)
        await c.rpc("GetTask", {"id": "x"}, user="bob", token=token)
        await c.call("GET", f"/api/sessions/{sid}?share=garbage{token}", user="bob")
        await c.call("DELETE", f"/api/sessions/{sid}/shares/{token}", user="alice")
        await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
    assert token not in json.dumps(upstream.requests())
    assert token not in json.dumps(logs, default=str)
    denials = [e for e in logs if e.get("decision") == "deny"]
    assert denials
    assert all(e["reason_id"] not in (None, "none") for e in denials)
    access = [e for e in logs if e.get("event") == "request"]
    assert {e["route"] for e in access} >= {"/api/sessions/{session_id}", "/api/sessions/{session_id}/shares"}


async def test_request_id_honoured_or_generated(
    make_gateway: GatewayFactory, custom_upstream: tuple[str, dict[str, Any]], http: aiohttp.ClientSession
) -> None:
    url, state = custom_upstream
    gw = await make_gateway(upstream=url)
    async with http.get(gw.url + "/x", headers={USER: "alice", "X-Request-Id": "req-123"}) as r:
        assert r.headers["X-Request-Id"] == "req-123"
    assert CIMultiDict(state["seen"][-1]["headers"]).getall("X-Request-Id") == ["req-123"]
    async with http.get(gw.url + "/x", headers={USER: "alice", "X-Request-Id": "bad id\u00e9"}) as r:
        generated = r.headers["X-Request-Id"]
    assert len(generated) == 32
    assert generated != "bad id"


async def test_ambiguous_paths_are_400(make_gateway: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await make_gateway()
    for raw in ("/api/sessions/a%2Fb", "/api/sessions/%2e%2e/x", "/api/x/../sessions/s1"):
        async with http.get(URL(gw.url + raw, encoded=True), headers={USER: "alice"}) as r:
            assert r.status == 400, raw


async def test_admin_endpoints(tmp_path: Any, upstream: Upstream) -> None:
    store = SqliteStore(f"{tmp_path}/h.db")
    await store.open()
    health = Health(store=store, upstream=upstream.url)
    server = TestServer(create_admin_app(health), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(server.make_url("/healthz")) as r:
                assert r.status == 200
            async with s.get(server.make_url("/readyz")) as r:
                assert r.status == 503  # not started yet
                assert (await r.json())["checks"]["lifecycle"] == "starting"
            health.ready = True
            async with s.get(server.make_url("/readyz")) as r:
                assert r.status == 200
            health.upstream = "http://127.0.0.1:1"
            async with s.get(server.make_url("/readyz")) as r:
                assert (r.status, (await r.json())["checks"]["upstream"]) == (503, "failing")
            health.upstream = upstream.url
            health.draining = True
            async with s.get(server.make_url("/readyz")) as r:
                assert (r.status, (await r.json())["checks"]["lifecycle"]) == (503, "draining")
            async with s.get(server.make_url("/metrics")) as r:
                text = await r.text()
                assert "share_gateway_requests_total" in text
                assert "share_gateway_build_info" in text
    finally:
        await server.close()
        await store.close()


def test_settings_defaults_are_safe() -> None:
    s = config.load()
    assert s.auth.trusted_header.trusted_cidrs == []
    assert s.shares.allow_anonymous is False
    assert s.trusted_proxies == []
