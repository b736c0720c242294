"""Hardening: token guessing limits, canonical paths, size/depth limits, parser guarantees."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest
from yarl import URL

from tests.conftest import USER, Client, Gateway, GatewayFactory, Upstream, chat


async def test_guessing_is_limited_per_identity_and_valid_links_keep_working(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    c = client_for(await make_gateway(shares__guess_limit="5", shares__guess_window="30"))
    sid, _ = await chat(c, "alice")
    good = (await c.share("alice", sid))["token"]
    for i in range(5):
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="mallory", token=f"guess{i:038d}")
        assert status == 403
    status, body, headers = await c.call("GET", f"/api/sessions/{sid}", user="mallory", token="guess" + "x" * 38)
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 30
    assert body["error"] == "too many invalid share links; retry later"
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="mallory", token=good)
    assert status == 429  # no oracle: a blocked guesser learns nothing, even from a real token
    status, body = await c.rpc("GetTask", {"id": "t"}, user="mallory", token="y" * 43)
    assert (status, body["error"]["message"]) == (429, "too many invalid share links; retry later")
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=good)
    assert status == 200  # someone else's guessing never slows a valid link
    status, _, _ = await c.call("GET", "/api/sessions", user="mallory")
    assert status == 200  # without a token mallory is unaffected


async def test_revoked_links_are_not_counted_as_guesses(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    c = client_for(await make_gateway(shares__guess_limit="2"))
    sid, _ = await chat(c, "alice")
    share = await c.share("alice", sid)
    await c.call("DELETE", f"/api/sessions/{sid}/shares/{share['id']}", user="alice")
    for _ in range(5):
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
        assert status == 403


async def test_anonymous_guessers_are_limited_by_address(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    c = client_for(await make_gateway(shares__guess_limit="3", shares__allow_anonymous="true"))
    sid, _ = await chat(c, "alice")
    for i in range(3):
        await c.call("GET", f"/api/sessions/{sid}", token=f"anon{i:039d}")
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", token="anon" + "z" * 39)
    assert status == 429


async def test_guess_counters_are_shared_through_redis(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], redis_url: str
) -> None:
    import uuid

    common = {"redis": redis_url, "redis_prefix": f"sgtest-{uuid.uuid4().hex[:8]}", "shares__guess_limit": "4"}
    a, b = client_for(await make_gateway(**common)), client_for(await make_gateway(**common))
    sid, _ = await chat(a, "alice")
    for i in range(4):
        await a.call("GET", f"/api/sessions/{sid}", user="mallory", token=f"g{i:042d}")
    status, _, _ = await b.call("GET", f"/api/sessions/{sid}", user="mallory", token="g" * 43)
    assert status == 429  # replica B knows about replica A's failures


@pytest.mark.parametrize(
    "raw",
    [
        "/api/sessions//s1",
        "/api/sessions/s1;jsessionid=x",
        "/api/sessions/s1%3Bx",
        "/api/sessions/%EF%BC%8Fs1",  # U+FF0F fullwidth solidus
        "/api/sessions/s1%EF%BC%8E%EF%BC%8E",  # fullwidth dots
        "/api/sessions/%2e%2e/s1",
        "/api/sessions/.%2e/s1",
        "/api/sessions/s1%23x",
        "/api/sessions/s1%3Fshare=x",
    ],
)
async def test_ambiguous_paths_never_reach_the_upstream(
    gw: Gateway, http: aiohttp.ClientSession, upstream: Upstream, raw: str
) -> None:
    upstream.clear()
    async with http.get(URL(gw.url + raw, encoded=True), headers={USER: "bob"}) as r:
        assert r.status == 400, raw
        assert isinstance((await r.json())["error"], str)
    assert upstream.requests() == []


async def test_trailing_slash_does_not_widen_a_token(
    gw: Gateway, c: Client, upstream: Upstream
) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    upstream.clear()
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/", user="bob", token=token)
    assert status != 200 or [h for r in upstream.requests() for h in r["headers"] if h == ["x-user-id", "alice"]] == []


@pytest.mark.parametrize(
    "session_id",
    ["a" * 300, "s%0Ax", "s%20with%20spaces", "s%22quote"],
)
async def test_session_ids_are_validated(gw: Gateway, c: Client, session_id: str) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    status, _, _ = await c.call("GET", f"/api/sessions/{session_id}", user="bob", token=token)
    assert status == 400


async def test_a2a_ids_are_validated_with_a_token(gw: Gateway, c: Client) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    status, body = await c.rpc("GetTask", {"id": "x" * 500}, user="bob", token=token)
    assert status == 400
    assert body["error"]["code"] == -32602


async def test_deeply_nested_json_is_a_clear_400(gw: Gateway, c: Client) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    deep = '{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t","x":' + "[" * 5000 + "]" * 5000 + "}}"
    status, body, _ = await c.call("POST", "/api/a2a/demo/echo/", user="bob", token=token, data=deep.encode(),
                                   headers={"Content-Type": "application/json"})
    assert status == 400
    assert body["error"]["code"] == -32600


async def test_oversized_bodies_are_413(make_gateway: GatewayFactory, http: aiohttp.ClientSession,
                                        upstream: Upstream) -> None:
    gw = await make_gateway(limits__max_body="4096")
    upstream.clear()
    async with http.post(gw.url + "/api/sessions", data=b"x" * 10_000, headers={USER: "alice"}) as r:
        assert r.status == 413
    assert upstream.requests() == []

    async def chunks():  # no Content-Length: cut off while streaming
        for _ in range(10):
            yield b"y" * 1000

    async with http.post(gw.url + "/api/sessions", data=chunks(), headers={USER: "alice"}) as r:
        assert r.status in (413, 502)  # 413 if the gateway answers before the upstream does


async def raw_exchange(gw: Gateway, data: bytes) -> bytes:
    """Send raw bytes to the gateway and return the start of its answer."""
    reader, writer = await asyncio.open_connection(gw.server.host, gw.server.port)
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(300), 10)
    writer.close()
    return reply


async def test_header_limits(gw: Gateway, upstream: Upstream) -> None:
    upstream.clear()
    many = "".join(f"X-H{i}: v\r\n" for i in range(200))
    huge = "X-Big: " + "a" * 20_000 + "\r\n"
    for extra in (many, huge):
        reply = await raw_exchange(gw, f"GET /api/sessions HTTP/1.1\r\nHost: x\r\n{USER}: alice\r\n{extra}\r\n".encode())
        assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 4"), reply
    assert upstream.requests() == []


async def test_trailers_never_carry_identity(gw: Gateway, upstream: Upstream) -> None:
    upstream.clear()
    request = (
        f"POST /api/sessions HTTP/1.1\r\nHost: x\r\n{USER}: alice\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nTrailer: X-User-Id\r\n\r\n"
    )
    body = json.dumps({"agent_ref": "demo/echo"}).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\nX-User-Id: mallory\r\nX-Share-Token: t\r\n\r\n"
    reply = await raw_exchange(gw, request.encode() + chunked)
    assert reply.startswith(b"HTTP/1.1 201"), reply
    [seen] = upstream.requests()
    assert [v for k, v in seen["headers"] if k == "x-user-id"] == ["alice"]
    assert "mallory" not in json.dumps(seen)


def test_aiohttp_c_parser_is_in_use() -> None:
    from aiohttp import http_parser

    assert http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser"
