"""docker-agent's API server behind the gateway: per-user sessions (created or forked), every
upstream route classified, shares, SSE resume, and the three upstream credential modes, against a
stand-in written from docker-agent's current source (tests/docker_agent_standin.py)."""

from __future__ import annotations

import asyncio
import io
import json
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
    fake = StandIn(ping_interval=0.2, capacity=6, step=0.01)
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


RUN = {"messages": [{"role": "user", "content": "ahoy"}]}


async def new_session(c: Client, user: str, title: str = "t", *, run: bool = False) -> str:
    """A session created through the gateway; ``run``: also run the agent once (docker-agent
    gives a session its runtime on its first run; steer, followup, status… need one)."""
    status, body, _ = await c.call("POST", "/api/sessions", user=user, json_body={"title": title})
    assert status == 200, body
    sid = str(body["id"])
    if run:
        status, body, _ = await c.call("POST", f"/api/sessions/{sid}/agent/pirate", user=user, json_body=RUN)
        assert status == 200, body
    return sid


async def listed(c: Client, user: str) -> list[str]:
    status, body, _ = await c.call("GET", "/api/sessions", user=user)
    assert status == 200, body
    return [s["id"] for s in body]


async def test_sessions_are_per_user(da: tuple[Client, StandIn, Gateway]) -> None:
    c, fake, _ = da
    mine, theirs = await new_session(c, "alice", "mine"), await new_session(c, "bob", "theirs")
    assert await listed(c, "alice") == [mine]
    status, body, _ = await c.call("GET", f"/api/sessions/{theirs}", user="alice")
    assert (status, body["error"]) == (404, "session not found")
    fake.requests.clear()
    for method, suffix in (("DELETE", ""), ("GET", "/events"), ("GET", "/snapshot"), ("POST", "/steer"),
                           ("PATCH", "/title"), ("POST", "/fork")):
        status, _, _ = await c.call(method, f"/api/sessions/{theirs}{suffix}", user="alice",
                                    json_body={"messages": [{"content": "x"}]} if method != "GET" else None)
        assert status == 404, (method, suffix)
    assert fake.requests == []  # nothing about bob's session reached docker-agent as alice
    assert theirs in fake.sessions


async def test_fork_is_owned_listed_and_shareable_by_its_forker(da: tuple[Client, StandIn, Gateway]) -> None:
    """POST /api/sessions/{id}/fork creates a session (server.go forkSession answers its
    api.SessionResponse, the new id in "id"): the gateway records the forker as its owner
    before the answer reaches them, exactly as for POST /api/sessions."""
    c, fake, _ = da
    parent = await new_session(c, "alice", "plan", run=True)
    status, fork, _ = await c.call("POST", f"/api/sessions/{parent}/fork", user="alice",
                                   json_body={"user_message_index": 0})
    assert status == 200, fork
    forked = fork["id"]
    assert (forked != parent, forked in fake.sessions, fork["title"]) == (True, True, "plan (fork 1)")
    assert (await c.call("GET", f"/api/sessions/{forked}", user="alice"))[0] == 200
    status, body, _ = await c.call("GET", f"/api/sessions/{forked}", user="bob")
    assert (status, body["error"]) == (404, "session not found")
    assert set(await listed(c, "alice")) == {parent, forked}
    assert await listed(c, "bob") == []
    token = (await c.share("alice", forked))["token"]
    status, body, headers = await c.call("GET", f"/api/sessions/{forked}", user="bob", token=token)
    assert (status, body["id"], headers["X-Share-Read-Only"]) == (200, forked, "true")
    # bob cannot fork alice's session, not even with a share of it: a fork is owner-only
    token = (await c.share("alice", parent, read_only=False))["token"]
    fake.requests.clear()
    status, _, _ = await c.call("POST", f"/api/sessions/{parent}/fork", user="bob", token=token,
                                json_body={"user_message_index": 0})
    assert (status, fake.requests) == (404, [])


async def test_a_large_fork_answer_is_relayed_whole_and_owned(da: tuple[Client, StandIn, Gateway]) -> None:
    """A fork's answer carries the copied history; the gateway reads it to its end (not one
    network chunk) before recording the owner, and relays it unchanged."""
    c, fake, _ = da
    parent = await new_session(c, "alice", "long", run=True)
    fake.sessions[parent].messages[:0] = [{"message": {"role": "assistant", "content": "x" * 1000}}] * 400
    status, fork, _ = await c.call("POST", f"/api/sessions/{parent}/fork", user="alice",
                                   json_body={"user_message_index": 0})
    assert status == 200, str(fork)[:200]
    assert len(fork["messages"]) == 400
    assert (await c.call("GET", f"/api/sessions/{fork['id']}", user="alice"))[0] == 200


async def test_answers_over_the_cap_are_never_relayed_unrecorded_or_unfiltered(
    make_gateway: GatewayFactory, standin: tuple[StandIn, str], client_for: Callable[[Gateway], Client]
) -> None:
    """A listing larger than limits.max_learned_response cannot be filtered: 502, not a cut,
    unfiltered prefix naming other users' sessions. A fork answer that large cannot be
    recorded: 502 too (the fork exists upstream; `share-gateway sessions claim` adopts it)."""
    fake, url = standin
    c = client_for(await make_gateway(upstream=url, profile="docker-agent", limits__max_learned_response=4096))
    mine = await new_session(c, "alice", run=True)
    for n in range(40):
        await new_session(c, "bob", f"bob's plan number {n} " + "-" * 100)
    theirs = [s for s in fake.sessions if s != mine]
    status, body, _ = await c.call("GET", "/api/sessions", user="alice")
    assert status == 502
    assert not any(sid in str(body) for sid in theirs)
    fake.sessions[mine].messages[:0] = [{"message": {"role": "assistant", "content": "y" * 8192}}]
    status, body, _ = await c.call("POST", f"/api/sessions/{mine}/fork", user="alice",
                                   json_body={"user_message_index": 0})
    assert (status, body["error"]) == (502, "upstream answer too large for the gateway to read")


async def test_batch_operations_touch_only_owned_sessions(da: tuple[Client, StandIn, Gateway]) -> None:
    c, fake, _ = da
    a1, a2, b1 = await new_session(c, "alice"), await new_session(c, "alice"), await new_session(c, "bob")
    for op in ("delete", "export"):
        status, body, _ = await c.call("POST", f"/api/sessions/batch/{op}", user="alice",
                                       json_body={"session_ids": [a1, b1]})
        assert status == 403
        assert "nothing was done" in body["error"]
    assert {a1, a2, b1} <= set(fake.sessions)
    status, body, _ = await c.call("POST", "/api/sessions/batch/export", user="alice",
                                   json_body={"session_ids": [a1, a2]})
    assert (status, body["session_count"]) == (200, 2)
    status, body, _ = await c.call("POST", "/api/sessions/batch/delete", user="alice",
                                   json_body={"session_ids": [a1]})
    assert (status, body["deleted_count"]) == (200, 1)
    status, _, _ = await c.call("POST", "/api/sessions/batch/delete", user="alice", json_body={"ids": [a2]})
    assert status == 400


# Every route docker-agent's pkg/server/server.go registers (registerRoutes), with the class the
# profile gives it. Paths use "s1" for a session id.
UPSTREAM_ROUTES = [
    ("GET", "/health", "owner-only"),
    ("GET", "/ready", "owner-only"),
    ("GET", "/api/agents", "owner-only"),
    ("GET", "/api/agents/pirate", "owner-only"),
    ("GET", "/api/agents/pirate/root/tools/count", "owner-only"),
    ("GET", "/api/sessions", "owner-only"),
    ("POST", "/api/sessions", "owner-only"),
    ("GET", "/api/sessions/s1", "read"),
    ("GET", "/api/sessions/s1/status", "read"),
    ("GET", "/api/sessions/s1/snapshot", "read"),
    ("POST", "/api/sessions/s1/resume", "write"),
    ("POST", "/api/sessions/s1/tools/toggle", "owner-only"),
    ("PATCH", "/api/sessions/s1/safety-policy", "owner-only"),
    ("PATCH", "/api/sessions/s1/permissions", "owner-only"),
    ("PATCH", "/api/sessions/s1/title", "owner-only"),
    ("PATCH", "/api/sessions/s1/tokens", "owner-only"),
    ("PATCH", "/api/sessions/s1/starred", "owner-only"),
    ("GET", "/api/sessions/s1/models", "read"),
    ("POST", "/api/sessions/s1/fork", "owner-only"),
    ("DELETE", "/api/sessions/s1", "owner-only"),
    ("POST", "/api/sessions/s1/agent/pirate", "write"),
    ("POST", "/api/sessions/s1/agent/pirate/captain", "write"),
    ("POST", "/api/sessions/s1/elicitation", "write"),
    ("POST", "/api/sessions/s1/steer", "write"),
    ("POST", "/api/sessions/s1/followup", "write"),
    ("GET", "/api/sessions/s1/events", "read"),
    ("POST", "/api/sessions/s1/messages", "write"),
    ("PATCH", "/api/sessions/s1/messages/m1", "write"),
    ("POST", "/api/sessions/s1/summaries", "owner-only"),
    ("GET", "/api/sessions/s1/queue", "read"),
    ("GET", "/api/sessions/s1/recovery", "owner-only"),
    ("POST", "/api/sessions/batch/delete", "owner-only"),
    ("POST", "/api/sessions/batch/export", "owner-only"),
    ("POST", "/api/mcp-oauth/callback", "owner-only"),
    ("GET", "/api/ping", "owner-only"),
    ("GET", "/api/ready", "owner-only"),
]


@pytest.mark.parametrize(("method", "path", "action"), UPSTREAM_ROUTES)
def test_every_current_upstream_route_is_classified(method: str, path: str, action: str) -> None:
    from gateway import profiles
    from gateway.pipeline.routes import RouteTable

    match = RouteTable(profiles.load("docker-agent").rules).match(method, path)
    assert match.rule is not None, (method, path)
    assert "{rest}" not in match.template, (method, path, "caught only by a catch-all")
    assert match.action.value == action, (method, path)
    if path.startswith("/api/sessions/s1"):
        assert match.params["session_id"] == "s1"


def test_creating_routes_record_their_owner() -> None:
    from gateway import profiles
    from gateway.pipeline.routes import RouteTable

    profile = profiles.load("docker-agent")
    table = RouteTable(profile.rules)
    assert profile.owner_from == "id"
    assert table.match("POST", "/api/sessions").has_hook("record_owner")
    assert table.match("POST", "/api/sessions/s1/fork").has_hook("record_owner")


async def test_other_session_routes_are_the_owners_only(da: tuple[Client, StandIn, Gateway]) -> None:
    """Routes server.go does not register under /api/sessions/{id} (removed ones such as
    /model, or future ones) are never reachable for another user's session."""
    c, fake, _ = da
    mine, theirs = await new_session(c, "alice"), await new_session(c, "bob")
    fake.requests.clear()
    for method, suffix in (("PATCH", "/model"), ("POST", "/model"), ("GET", "/future"), ("POST", "/a/b"),
                           ("PUT", ""), ("GET", "/shares/x")):
        status, _, _ = await c.call(method, f"/api/sessions/{theirs}{suffix}", user="alice", json_body={})
        assert status == 404, (method, suffix)
    assert fake.requests == []
    status, body, _ = await c.call("PATCH", f"/api/sessions/{mine}/model", user="alice", json_body={})
    assert (status, body) == (404, {"message": "Not Found"})  # docker-agent's own answer: no such route
    assert len(fake.requests) == 1


async def test_mcp_oauth_callback_goes_through_as_the_caller(da: tuple[Client, StandIn, Gateway]) -> None:
    c, fake, _ = da
    sid = await new_session(c, "alice")
    token = (await c.share("alice", sid, read_only=False))["token"]
    fake.pending_oauth.add("st-1")
    fake.requests.clear()
    status, _, _ = await c.call("POST", "/api/mcp-oauth/callback?state=st-1&code=abc", token=token)
    assert (status, fake.requests) == (401, [])  # no identity: a share never stands in for one
    status, body, _ = await c.call("POST", "/api/mcp-oauth/callback?state=st-1&code=abc", user="bob", token=token)
    assert (status, body) == (200, None)
    assert fake.oauth_callbacks == [{"state": "st-1", "code": "abc"}]
    assert fake.requests[-1]["headers"]["X-User-Id"] == "bob"  # as the caller, not as the share's owner
    status, body, _ = await c.call("POST", "/api/mcp-oauth/callback?state=st-1&code=abc", user="bob")
    assert (status, body) == (404, {"message": "no pending OAuth flow for the given state"})


ROUTES = [  # (method, suffix, body, class)
    ("GET", "", None, "read"),
    ("GET", "/status", None, "read"),
    ("GET", "/status?wait=1s", None, "read"),
    ("GET", "/snapshot", None, "read"),
    ("GET", "/events?since=99", None, "read"),
    ("GET", "/queue", None, "read"),
    ("GET", "/models", None, "read"),
    ("POST", "/agent/pirate", RUN, "write"),
    ("POST", "/agent/pirate/captain", RUN, "write"),
    ("POST", "/resume", {"confirmation": "approve"}, "write"),
    ("POST", "/elicitation", {"action": "accept"}, "write"),
    ("POST", "/steer", RUN, "write"),
    ("POST", "/followup", RUN, "write"),
    ("POST", "/messages", {"message": {"message": {"role": "user", "content": "hi"}}}, "write"),
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
    c, fake, gw = da
    for method, suffix, body, kind in ROUTES:
        sid = await new_session(c, "alice", run=True)
        token = (await c.share("alice", sid, read_only=read_only))["token"]
        fake.requests.clear()
        if suffix.startswith("/events"):  # a stream: read its head, then hang up
            async with c.http.get(f"{gw.url}/api/sessions/{sid}{suffix}",
                                  headers={USER: "bob", "X-Share-Token": token}) as r:
                status, headers = r.status, r.headers
                answer = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        else:
            status, answer, headers = await c.call(method, f"/api/sessions/{sid}{suffix}", user="bob",
                                                   token=token, json_body=body)
        forwarded = bool(fake.requests)
        if kind == "read" or (kind == "write" and not read_only):
            assert 200 <= status < 300, (method, suffix, status, answer)
            assert forwarded
            assert headers["X-Share-Read-Only"] == ("true" if read_only else "false")
        elif kind == "write":
            assert (status, answer["error"]) == (403, "share link is read-only"), (method, suffix)
            assert not forwarded
        else:  # owner-only: the token is ignored and bob owns nothing
            assert status == 404, (method, suffix)
            assert not forwarded
    assert await listed(c, "bob") == []


def frames(data: bytes) -> list[bytes]:
    return [f for f in data.split(b"\n\n") if f]


async def test_sse_resume_heartbeats_gaps_and_exit_pass_through(da: tuple[Client, StandIn, Gateway],
                                                                http: aiohttp.ClientSession) -> None:
    """eventlog.go through the gateway and a share: numbered events (run frames carry the
    same ids), replay after ?since= / Last-Event-ID, {"type":"gap"} before the replay when
    the resume point left the buffer, ": ping" heartbeats, and session_exited on delete."""
    c, _, gw = da
    sid = await new_session(c, "alice", "t")
    token = (await c.share("alice", sid))["token"]
    status, snap, _ = await c.call("GET", f"/api/sessions/{sid}/snapshot", user="bob", token=token)
    assert (status, snap["last_event_seq"]) == (200, 0)  # the snapshot started the session's log
    for text in ("one", "two"):  # 4 events each: session_title, stream_started, agent_choice, stream_stopped
        status, body, _ = await c.call("POST", f"/api/sessions/{sid}/agent/pirate", user="alice",
                                       json_body={"messages": [{"content": text}]})
        assert status == 200
        assert f'"content":"arr: {text} (for alice)"' in body
    assert body.startswith('id: 5\ndata: {"type":"session_title"')  # run frames carry their log ids
    status, snap, _ = await c.call("GET", f"/api/sessions/{sid}/snapshot", user="bob", token=token)
    assert snap["last_event_seq"] == 8
    headers = {USER: "bob", "X-Share-Token": token}

    async def read(url: str, extra: dict[str, str], until: bytes) -> bytes:
        async with http.get(url, headers={**headers, **extra}) as r:
            assert (r.status, r.headers["Content-Type"]) == (200, "text/event-stream")
            data = b""
            while until not in data:
                data += await asyncio.wait_for(r.content.readany(), 5)
            return data

    got = frames(await read(f"{gw.url}/api/sessions/{sid}/events?since=4", {}, b": ping"))
    assert [f.split(b"\n")[0] for f in got[:4]] == [b"id: 5", b"id: 6", b"id: 7", b"id: 8"]
    assert got[4] == b": ping"
    got = frames(await read(f"{gw.url}/api/sessions/{sid}/events", {"Last-Event-ID": "7"}, b": ping"))
    assert got[0].startswith(b'id: 8\ndata: {"type":"stream_stopped"')
    got = frames(await read(f"{gw.url}/api/sessions/{sid}/events?since=1", {}, b"id: 8"))
    assert got[:2] == [b'data: {"type":"gap"}', b'id: 3\ndata: {"type":"agent_choice","content":"arr: one (for alice)",'
                       b'"agent":"root"}']  # untouched: the gap has no id and comes before the replay

    async def delete_later() -> None:
        await asyncio.sleep(0.3)
        await c.call("DELETE", f"/api/sessions/{sid}", user="alice")

    deleting = asyncio.ensure_future(delete_later())
    async with http.get(f"{gw.url}/api/sessions/{sid}/events?since=8", headers=headers) as r:
        rest = await asyncio.wait_for(r.content.read(), 5)
    await deleting
    assert frames(rest)[-1] == b'id: 9\ndata: {"type":"session_exited","reason":"session ended"}'
    assert b": ping" in rest  # the heartbeat ran while the session was quiet


async def test_followup_idempotency_key_and_409_pass_through(da: tuple[Client, StandIn, Gateway]) -> None:
    c, fake, _ = da
    sid = await new_session(c, "alice")
    token = (await c.share("alice", sid, read_only=False))["token"]
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/followup", user="bob", token=token, json_body=RUN)
    assert (status, body["message"]) == (409, "failed to enqueue follow-up: session is not running")
    fake.step = 0.05
    await c.call("POST", f"/api/sessions/{sid}/agent/pirate", user="alice", json_body=RUN)
    answers = []
    for _ in range(2):
        status, body, _ = await c.call("POST", f"/api/sessions/{sid}/followup", user="bob", token=token,
                                       json_body=RUN, headers={"Idempotency-Key": "k-1"})
        answers.append((status, body["status"]))
    assert answers == [(202, "queued_idle"), (202, "duplicate")]
    run = asyncio.ensure_future(c.call("POST", f"/api/sessions/{sid}/agent/pirate", user="alice", json_body=RUN))
    await asyncio.sleep(0.05)
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/messages", user="bob", token=token,
                                   json_body={"message": {"message": {"content": "x"}}})
    assert (status, body["message"]) == (409, "session is already processing a request")
    assert (await run)[0] == 200


async def test_upstream_errors_and_its_body_limit_pass_through(da: tuple[Client, StandIn, Gateway]) -> None:
    """docker-agent's own answers reach the client as they are: its 1 MiB request body limit,
    a fork index out of range (no owner recorded for a session that was not created), a
    snapshot of a session it no longer has (api.ErrorResponse with code unknown_session)."""
    c, fake, _ = da
    sid = await new_session(c, "alice", run=True)
    big = json.dumps({"message": {"message": {"content": "x" * (1 << 20)}}}).encode()
    async with c.http.post(f"{c.base}/api/sessions/{sid}/messages", data=io.BytesIO(big),
                           headers={USER: "alice", "Content-Type": "application/json"}) as r:
        assert (r.status, await r.json()) == (413, {"message": "Request Entity Too Large"})
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/fork", user="alice",
                                   json_body={"user_message_index": 5})
    assert (status, body) == (400, {"message": "fork user-message index out of range: 5"})
    assert await listed(c, "alice") == [sid]
    del fake.sessions[sid]  # gone upstream, still alice's in the gateway
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}/snapshot", user="alice")
    assert (status, body["code"]) == (404, "unknown_session")


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
    assert await listed(claimed, "carol") == [old]


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
