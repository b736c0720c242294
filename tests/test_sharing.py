"""Every decision-table row end to end, through the gateway, against the real a2a-sdk agent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Client, Gateway, GatewayFactory, Upstream, artifact_text, chat, task_of


def upstream_identity(upstream: Upstream) -> list[dict[str, list[str]]]:
    """Identity headers of each request the upstream received since the last clear."""
    out = []
    for req in upstream.requests():
        h: dict[str, list[str]] = {}
        for k, v in req["headers"]:
            if k.startswith("x-share") or k == "x-user-id":
                h.setdefault(k, []).append(v)
        out.append(h)
    return out


# Row 1: target = share's session, read → forward as owner


async def test_read_as_owner(c: Client, upstream: Upstream) -> None:
    sid, task = await chat(c, "alice")
    share = await c.share("alice", sid, read_only=True)
    upstream.clear()
    status, body, headers = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
    assert status == 200
    assert body["data"]["session"]["user_id"] == "alice"
    assert {e["user_id"] for e in body["data"]["events"]} == {"alice"}  # alice's turns (kagent: no tasks here)
    assert body["data"]["events"]
    assert upstream_identity(upstream) == [
        {"x-user-id": ["alice"], "x-share-accessor": ["bob"], "x-share-id": [share["id"]]}
    ]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Share-Read-Only"] == "true"
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}/tasks", user="bob", token=share["token"])
    assert (status, body["data"][0]["id"]) == (200, task["id"])


# Row 2: write on a read-write share → forward as owner, initiated_by = caller


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_write_on_read_write_share(c: Client, upstream: Upstream, version: str) -> None:
    sid, _ = await chat(c, "alice")
    share = await c.share("alice", sid, read_only=False)
    upstream.clear()
    status, body = await c.say("add a museum", user="bob", context=sid, token=share["token"], version=version)
    assert status == 200, body
    task = task_of(body["result"])
    assert task["contextId"] == sid
    assert "user=alice initiated_by=bob" in artifact_text(task)
    assert upstream_identity(upstream)[0]["x-user-id"] == ["alice"]
    upstream.clear()
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/events", user="bob", token=share["token"],
                                   json_body={"data": "{}"})
    # Forwarded as alice: kagent finds her session (bob would get 404) and then
    # takes events only from the session's own agent (sessions.go HandleAddEventToSession).
    assert (status, body) == (403, {"error": "Session does not belong to this agent"})
    assert upstream_identity(upstream)[0]["x-user-id"] == ["alice"]


# Row 3: write on a read-only share → 403 before the upstream


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_write_on_read_only_share_is_refused(c: Client, upstream: Upstream, version: str) -> None:
    sid, task = await chat(c, "alice")
    share = await c.share("alice", sid, read_only=True)
    token = share["token"]
    upstream.clear()
    status, body = await c.say("hijack", user="bob", context=sid, token=token, version=version)
    assert status == 403
    assert body["error"]["message"] == "share link is read-only"
    assert body["id"] == 1
    cancel = "CancelTask" if version == "1.0" else "tasks/cancel"
    status, body = await c.rpc(cancel, {"id": task["id"]}, user="bob", token=token, rpc_id="abc")
    assert (status, body["id"], body["error"]["message"]) == (403, "abc", "share link is read-only")
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/events", user="bob", token=token,
                                   json_body={"data": "{}"})
    assert (status, body["error"]) == (403, "share link is read-only")
    assert upstream.requests() == []  # nothing reached the upstream


# Row 4: owner-only → token ignored, caller's identity


async def test_owner_only_ignores_the_token(c: Client, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    share = await c.share("alice", sid, read_only=False)
    upstream.clear()
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}", user="bob", token=share["token"])
    assert status == 200  # kagent's soft delete filtered by user: bob deleted nothing of his own
    assert upstream_identity(upstream) == [{"x-user-id": ["bob"]}]
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="alice")
    assert status == 200  # still there


# Row 5: another session, or none provable → token ignored


async def test_other_session_uses_callers_identity(c: Client, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    carols, _ = await chat(c, "carol")
    share = await c.share("alice", sid)
    upstream.clear()
    status, _, _ = await c.call("GET", f"/api/sessions/{carols}", user="bob", token=share["token"])
    assert status == 404
    assert upstream_identity(upstream) == [{"x-user-id": ["bob"]}]


async def test_new_conversation_with_a_token_grants_nothing(c: Client) -> None:
    sid, _ = await chat(c, "alice")
    share = await c.share("alice", sid, read_only=False)
    status, body = await c.say("fresh start", user="bob", token=share["token"])
    assert status == 200
    assert "user=bob initiated_by=-" in artifact_text(task_of(body["result"]))


async def test_token_never_widens_unmatched_routes(c: Client, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    share = await c.share("alice", sid, read_only=False)
    upstream.clear()
    status, body, _ = await c.call("GET", "/api/sessions", user="bob", token=share["token"])
    assert status == 200
    listed = body.get("data", [])  # kagent drops an empty list (Go's omitempty)
    assert all(s["user_id"] == "bob" for s in listed) and sid not in [s["id"] for s in listed]  # bob's own
    assert upstream_identity(upstream) == [{"x-user-id": ["bob"]}]


# Invalid tokens: unknown, revoked, expired → one 403 body


async def test_invalid_tokens_share_one_answer(c: Client, gw: Gateway, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    revoked = await c.share("alice", sid)
    await c.call("DELETE", f"/api/sessions/{sid}/shares/{revoked['id']}", user="alice")
    answers = set()
    for token in (revoked["token"], "x" * 43, "not a token!", "A" * 300):
        status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
        answers.add((status, str(body)))
        status, body = await c.rpc("GetTask", {"id": "t"}, user="bob", token=token)
        assert (status, body["error"]["message"]) == (403, "share link is invalid, expired or revoked")
    assert answers == {(403, str({"error": "share link is invalid, expired or revoked"}))}


# Anonymous share holders (shares.allow_anonymous)


async def test_anonymous_share_holder(make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client],
                                      upstream: Upstream) -> None:
    c = client_for(await make_gateway(shares__allow_anonymous="true"))
    sid, task = await chat(c, "alice")
    carols, _ = await chat(c, "carol")
    token = (await c.share("alice", sid))["token"]
    upstream.clear()
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", token=token)
    assert status == 200
    assert upstream_identity(upstream)[0]["x-share-accessor"] == ["anonymous"]
    status, _, _ = await c.call("GET", f"/api/sessions/{carols}", token=token)
    assert status == 403  # token does not apply, and an anonymous caller has no identity of its own
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}")
    assert status == 401  # no token, no identity
    status, body = await c.rpc("GetTask", {"id": task["id"]}, user=None, token=token)
    assert (status, body["result"]["id"]) == (200, task["id"])


async def test_anonymous_not_allowed_by_default(c: Client) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    status, _, headers = await c.call("GET", f"/api/sessions/{sid}", token=token)
    assert status == 401
    assert "WWW-Authenticate" in headers


async def test_query_parameter_token_is_stripped(c: Client, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    upstream.clear()
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}?order=asc&share={token}&limit=5", user="bob")
    assert status == 200
    [seen] = upstream.requests()
    assert seen["query"] == "order=asc&limit=5"
    assert token not in str(seen)
    assert upstream_identity(upstream)[0]["x-user-id"] == ["alice"]
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}?share=a&share=b", user="bob")
    assert status == 400


async def test_query_parameter_can_be_turned_off(make_gateway: GatewayFactory,
                                                 client_for: Callable[[Gateway], Client]) -> None:
    c = client_for(await make_gateway(shares__allow_query_param="false"))
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}?share={token}", user="bob")
    assert status == 404  # not honoured: bob is bob


async def test_a2a_body_over_the_cap_is_413(make_gateway: GatewayFactory,
                                            client_for: Callable[[Gateway], Client]) -> None:
    c = client_for(await make_gateway(limits__max_parsed_body="2048"))
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid, read_only=False))["token"]
    status, body = await c.say("x" * 5000, user="bob", context=sid, token=token)
    assert status == 413
    assert body["error"]["code"] == -32600
    status, body = await c.say("x" * 5000, user="alice", context=sid)  # no token: streamed, no cap
    assert status == 200
