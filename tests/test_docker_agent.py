"""docker-agent's API server behind the gateway: per-user sessions, shares, SSE resume,
and the three upstream credential modes, against a stand-in written from its documented API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import HEALTH
from gateway.health import create_admin_app
from tests.conftest import USER, Client, Gateway, GatewayFactory
from tests.docker_agent_standin import StandIn


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    fake = StandIn(ping_interval=0.2, capacity=6)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def da(make_gateway: GatewayFactory, standin: tuple[StandIn, str],
             client_for: Callable[[Gateway], Client]) -> tuple[Client, StandIn, Gateway]:
    fake, url = standin
    gw = await make_gateway(upstream=url, profile="docker-agent")
    return client_for(gw), fake, gw


async def new_session(c: Client, user: str, title: str = "t") -> str:
    status, body, _ = await c.call("POST", "/api/sessions", user=user, json_body={"title": title})
    assert status == 200, body
    return str(body["id"])


async def test_sessions_are_per_user(da: tuple[Client, StandIn, Gateway]) -> None:
    c, fake, _ = da
    mine, theirs = await new_session(c, "alice", "mine"), await new_session(c, "bob", "theirs")
    status, listed, _ = await c.call("GET", "/api/sessions", user="alice")
    assert (status, [s["id"] for s in listed]) == (200, [mine])
    status, body, _ = await c.call("GET", f"/api/sessions/{theirs}", user="alice")
    assert (status, body["message"]) == (404, "session not found")
    fake.requests.clear()
    for method, suffix in (("DELETE", ""), ("GET", "/events"), ("POST", "/steer"), ("PATCH", "/title")):
        status, _, _ = await c.call(method, f"/api/sessions/{theirs}{suffix}", user="alice",
                                    json_body={"messages": [{"content": "x"}]} if method != "GET" else None)
        assert status == 404, (method, suffix)
    assert fake.requests == []  # nothing about bob's session reached docker-agent as alice
    assert theirs in fake.sessions


async def test_batch_operations_touch_only_owned_sessions(da: tuple[Client, StandIn, Gateway]) -> None:
    c, fake, _ = da
    a1, a2, b1 = await new_session(c, "alice"), await new_session(c, "alice"), await new_session(c, "bob")
    for op in ("delete", "export"):
        status, body, _ = await c.call("POST", f"/api/sessions/batch/{op}", user="alice",
                                       json_body={"session_ids": [a1, b1]})
        assert status == 403
        assert "nothing was done" in body["message"]
    assert {a1, a2, b1} <= set(fake.sessions)
    status, body, _ = await c.call("POST", "/api/sessions/batch/export", user="alice",
                                   json_body={"session_ids": [a1, a2]})
    assert (status, body["session_count"]) == (200, 2)
    status, body, _ = await c.call("POST", "/api/sessions/batch/delete", user="alice",
                                   json_body={"session_ids": [a1]})
    assert (status, body["deleted_count"]) == (200, 1)
    status, _, _ = await c.call("POST", "/api/sessions/batch/delete", user="alice", json_body={"ids": [a2]})
    assert status == 400


RUN = {"messages": [{"role": "user", "content": "ahoy"}]}
ROUTES = [  # (method, suffix, body, class)
    ("GET", "", None, "read"),
    ("GET", "/status", None, "read"),
    ("GET", "/status?wait=1s", None, "read"),
    ("GET", "/snapshot", None, "read"),
    ("GET", "/queue", None, "read"),
    ("GET", "/models", None, "read"),
    ("POST", "/agent/pirate", RUN, "write"),
    ("POST", "/agent/pirate/captain", RUN, "write"),
    ("POST", "/resume", {"confirmation": "approve"}, "write"),
    ("POST", "/elicitation", {"action": "accept"}, "write"),
    ("POST", "/steer", RUN, "write"),
    ("POST", "/followup", RUN, "write"),
    ("POST", "/messages", {"message": {"role": "user", "content": "hi"}}, "write"),
    ("PATCH", "/messages/m1", {"message": {}}, "write"),
    ("DELETE", "", None, "owner-only"),
    ("POST", "/fork", {"user_message_index": 0}, "owner-only"),
    ("GET", "/recovery", None, "owner-only"),
    ("POST", "/summaries", {"summary": "s"}, "owner-only"),
    ("POST", "/tools/toggle", None, "owner-only"),
    ("PATCH", "/title", {"title": "x"}, "owner-only"),
    ("PATCH", "/starred", {"starred": True}, "owner-only"),
    ("PATCH", "/permissions", {"permissions": {}}, "owner-only"),
    ("PATCH", "/tokens", {"input_tokens": 1}, "owner-only"),
    ("PATCH", "/safety-policy", {"safety_policy": "strict"}, "owner-only"),
]


@pytest.mark.parametrize("read_only", [True, False])
async def test_every_route_class_with_shares(da: tuple[Client, StandIn, Gateway], read_only: bool) -> None:
    c, fake, _ = da
    for method, suffix, body, kind in ROUTES:
        sid = await new_session(c, "alice")
        token = (await c.share("alice", sid, read_only=read_only))["token"]
        fake.requests.clear()
        status, answer, headers = await c.call(method, f"/api/sessions/{sid}{suffix}", user="bob", token=token,
                                               json_body=body)
        forwarded = bool(fake.requests)
        if kind == "read" or (kind == "write" and not read_only):
            assert 200 <= status < 300, (method, suffix, status, answer)
            assert forwarded
            assert headers["X-Share-Read-Only"] == ("true" if read_only else "false")
        elif kind == "write":
            assert (status, answer["message"]) == (403, "share link is read-only"), (method, suffix)
            assert not forwarded
        else:  # owner-only: the token is ignored and bob owns nothing
            assert status == 404, (method, suffix)
            assert not forwarded
    status, _, _ = await c.call("GET", "/api/sessions", user="bob")
    assert status == 200


async def test_sse_resume_pings_gaps_and_exit_pass_through(da: tuple[Client, StandIn, Gateway],
                                                           http: aiohttp.ClientSession) -> None:
    c, fake, gw = da
    sid = await new_session(c, "alice")
    token = (await c.share("alice", sid))["token"]
    for text in ("one", "two"):  # 6 events in the log (capacity 6)
        status, body, _ = await c.call("POST", f"/api/sessions/{sid}/agent/pirate", user="alice",
                                       json_body={"messages": [{"content": text}]})
        assert status == 200
        assert "agent_choice" in body
    headers = {USER: "bob", "X-Share-Token": token}

    async def read_frames(url: str, extra: dict[str, str], until: bytes) -> bytes:
        async with http.get(url, headers={**headers, **extra}) as r:
            assert r.status == 200
            data = b""
            while until not in data:
                data += await asyncio.wait_for(r.content.readany(), 5)
            return data

    frames = await read_frames(f"{gw.url}/api/sessions/{sid}/events?since=4", {}, b": ping")
    assert frames.startswith(b"id: 5\ndata: ")
    assert b"id: 6\n" in frames
    frames = await read_frames(f"{gw.url}/api/sessions/{sid}/events", {"Last-Event-ID": "5"}, b": ping")
    assert frames.startswith(b"id: 6\n")
    await c.call("POST", f"/api/sessions/{sid}/agent/pirate", user="alice", json_body={"messages": [{"content": "3"}]})
    frames = await read_frames(f"{gw.url}/api/sessions/{sid}/events?since=1", {}, b": ping")
    assert frames.startswith(b'data: {"type":"gap"}\n\n')  # untouched, and before the replay

    async def exit_later() -> None:
        await asyncio.sleep(0.3)
        await c.call("DELETE", f"/api/sessions/{sid}", user="alice")

    deleting = asyncio.ensure_future(exit_later())
    async with http.get(f"{gw.url}/api/sessions/{sid}/events?since=9", headers=headers) as r:
        rest = await asyncio.wait_for(r.content.read(), 5)
    await deleting
    assert b'"type": "session_exited"' in rest


async def test_followup_idempotency_key_and_409_pass_through(da: tuple[Client, StandIn, Gateway],
                                                             http: aiohttp.ClientSession) -> None:
    c, _, gw = da
    sid = await new_session(c, "alice")
    token = (await c.share("alice", sid, read_only=False))["token"]
    answers = []
    for _ in range(2):
        status, body, _ = await c.call("POST", f"/api/sessions/{sid}/followup", user="bob", token=token,
                                       json_body=RUN, headers={"Idempotency-Key": "k-1"})
        answers.append((status, body["status"]))
    assert answers == [(202, "queued_idle"), (202, "duplicate")]
    run = asyncio.ensure_future(c.call("POST", f"/api/sessions/{sid}/agent/pirate", user="alice", json_body=RUN))
    await asyncio.sleep(0.05)
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/messages", user="bob", token=token,
                                   json_body={"message": {"content": "x"}})
    assert (status, body["message"]) == (409, "session is already processing a request")
    assert (await run)[0] == 200


async def test_pre_gateway_sessions_claim_and_default_owner(
    make_gateway: GatewayFactory, standin: tuple[StandIn, str], client_for: Callable[[Gateway], Client]
) -> None:
    fake, url = standin
    async with aiohttp.ClientSession() as http, http.post(url + "/api/sessions", json={}) as r:
        old = (await r.json())["id"]  # created before the gateway: nobody recorded it
    plain = client_for(await make_gateway(upstream=url, profile="docker-agent"))
    assert (await plain.call("GET", f"/api/sessions/{old}", user="alice"))[0] == 404
    adopted = client_for(await make_gateway(upstream=url, profile="docker-agent", default_owner="alice"))
    assert (await adopted.call("GET", f"/api/sessions/{old}", user="alice"))[0] == 200
    assert (await adopted.call("GET", f"/api/sessions/{old}", user="bob"))[0] == 404
    gw = await make_gateway(upstream=url, profile="docker-agent")
    await gw.store.set_session_owner(old, "carol", 0.0)  # what `share-gateway sessions claim` does
    claimed = client_for(gw)
    assert (await claimed.call("GET", f"/api/sessions/{old}", user="carol"))[0] == 200
    _, listed, _ = await claimed.call("GET", "/api/sessions", user="carol")
    assert [s["id"] for s in listed] == [old]


async def test_bearer_mode(make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client],
                           tmp_path: Path) -> None:
    fake = StandIn(token="s3cret-token")
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n")
        gw = await make_gateway(upstream=str(server.make_url("")).rstrip("/"), profile="docker-agent",
                                upstream_auth__mode="bearer", upstream_auth__token_file=str(token_file))
        c = client_for(gw)
        sid = await new_session(c, "alice")
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="alice",
                                    headers={"Authorization": "Bearer client-own-token"})
        assert status == 200
        sent = {r["headers"].get("Authorization") for r in fake.requests}
        assert sent == {"Bearer s3cret-token"}  # the client's own Authorization never travels
        assert all("X-User-Id" not in r["headers"] for r in fake.requests)
        status, _, _ = await c.call("GET", "/api/ping", user="alice")
        assert status == 200
    finally:
        await server.close()


async def test_jwt_assertion_mode(make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]) -> None:
    fake = StandIn()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    gw = await make_gateway(upstream=str(server.make_url("")).rstrip("/"), profile="docker-agent",
                            upstream_auth__mode="jwt-assertion")
    admin = TestServer(create_admin_app(gw.app[HEALTH]), host="127.0.0.1")
    await admin.start_server()
    try:
        fake.jwks_url = str(admin.make_url("/.well-known/jwks.json"))
        c = client_for(gw)
        sid = await new_session(c, "alice")
        assert fake.seen_users[-1] == "alice"
        token = (await c.share("alice", sid, read_only=False))["token"]
        status, body, _ = await c.call("POST", f"/api/sessions/{sid}/agent/pirate", user="bob", token=token,
                                       json_body=RUN)
        assert status == 200
        assert "(for alice)" in body  # docker-agent ran as the owner, on bob's behalf
        assert fake.seen_users[-1] == "alice"
        await c.call("GET", "/api/agents", user="bob")
        assert fake.seen_users[-1] == "bob"
        assert all(r["headers"].get("Authorization", "").count(".") == 2 for r in fake.requests
                   if r["path"] not in ("/health", "/ready"))
    finally:
        await admin.close()
        await server.close()


def test_both_profiles_compile_without_ambiguity() -> None:
    from gateway import profiles
    from gateway.pipeline.routes import RouteTable

    tables = {name: RouteTable(profiles.load(name).rules) for name in ("kagent", "docker-agent")}
    assert tables["docker-agent"].match("POST", "/api/sessions/batch/delete").template == "/api/sessions/batch/delete"
    assert tables["docker-agent"].match("POST", "/api/sessions/s1/steer").action.value == "write"
    assert tables["kagent"].match("POST", "/api/sessions/s1/steer").rule is None
