"""Every route of the kagent profile, through the gateway, against the kagent stand-in.

The stand-in (``gateway/demo/agent.py``) follows kagent's controller at
release/v0.10.x (``go/core/internal/httpserver/server.go`` and its handlers):
sessions keyed by ``(id, user_id)``, soft deletes filtered by user, events only
from the session's own agent, task reads from kagent's store as the caller, A2A
on every path under the agent's prefix, kagent's v0.3 ``tasks/list``. Each test
says what kagent answers and what the gateway's share decision adds to it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import aiohttp
import pytest

from gateway import profiles
from gateway.models import Action
from tests.conftest import Client, Gateway, Upstream, artifact_text, chat, message_body, task_of

AGENT = "/api/a2a/demo/echo"
SANDBOX = "/api/a2a-sandboxes/demo/echo"


def seen_users(upstream: Upstream) -> list[str | None]:
    return [r["effective_user"] for r in upstream.requests()]


def forwarded_tokens(upstream: Upstream) -> list[str]:
    return [v for r in upstream.requests() for k, v in r["headers"] if k == "x-share-token"]


async def shared(c: Client) -> tuple[str, dict[str, Any], str, str]:
    """alice's session with one task, and a read-only and a read-write token for it."""
    sid, task = await chat(c, "alice")
    ro = (await c.share("alice", sid, read_only=True))["token"]
    rw = (await c.share("alice", sid, read_only=False))["token"]
    return sid, task, ro, rw


# -- probes and the caller's own account ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/version"])
async def test_probes_need_no_identity(c: Client, path: str) -> None:
    """kagent's AuthnMiddleware skips /health and /version: the profile makes them public."""
    status, body, _ = await c.call("GET", path)
    assert status == 200, body
    if path == "/health":
        assert body == {"error": False, "data": {"status": "OK"}, "message": "OK"}
    else:
        assert "kagent_version" in body


async def test_me_is_the_caller_even_with_a_token(c: Client, upstream: Upstream) -> None:
    _, _, _, rw = await shared(c)
    upstream.clear()
    status, body, _ = await c.call("GET", "/api/me", user="bob", token=rw)
    assert (status, body) == (200, {"sub": "bob"})  # current_user.go: {"sub": user} without JWT claims
    assert seen_users(upstream) == ["bob"] and forwarded_tokens(upstream) == []


# -- sessions ------------------------------------------------------------------------------------


async def test_sidebar_lists_the_callers_sessions_of_the_agent(c: Client, upstream: Upstream) -> None:
    sid, _, _, rw = await shared(c)
    status, body, _ = await c.call("GET", "/api/sessions/agent/demo/echo", user="alice")
    assert status == 200 and sid in [s["id"] for s in body["data"]]
    assert {s["user_id"] for s in body["data"]} == {"alice"}
    upstream.clear()
    status, body, _ = await c.call("GET", "/api/sessions/agent/demo/echo", user="dave", token=rw)
    assert status == 200
    assert sid not in [s["id"] for s in body.get("data", [])]  # dave's own: none (Go drops the empty list)
    assert seen_users(upstream) == ["dave"] and forwarded_tokens(upstream) == []
    status, body, _ = await c.call("GET", "/api/sessions/agent/demo/nope", user="alice")
    assert (status, body) == (404, {"error": "Agent not found: failed to get agent demo__NS__nope: record not found"})


# (method, path suffix, body, status as alice, as bob, as bob with a read-only token,
#  as bob with a read-write token, the user kagent saw for the read-write call)
SESSION_ROUTES = [
    ("GET", "", None, 200, 404, 200, 200, "alice"),
    ("GET", "/tasks", None, 200, 404, 200, 200, "alice"),
    # owner-only: the token is ignored, bob is bob (kagent: a read-only token is 403 here, R12)
    ("PUT", "", {"name": "renamed"}, 200, 404, 404, 404, "bob"),
    ("PATCH", "", {"name": "renamed"}, 200, 404, 404, 404, "bob"),
    # a write: read-only is refused by the gateway; read-write reaches kagent as alice, and
    # kagent takes events only from the session's own agent (HandleAddEventToSession)
    ("POST", "/events", {"data": "{}"}, 403, 404, 403, 403, "alice"),
    # kagent's soft delete is filtered by user: 200 whether or not bob had a row (R12)
    ("DELETE", "", None, 200, 200, 200, 200, "bob"),
]


@pytest.mark.parametrize(("method", "suffix", "body", "owner", "other", "ro", "rw", "rw_user"), SESSION_ROUTES)
async def test_session_routes(
    c: Client, upstream: Upstream, method: str, suffix: str, body: Any, owner: int, other: int, ro: int, rw: int,
    rw_user: str,
) -> None:
    sid, _, ro_token, rw_token = await shared(c)
    path = f"/api/sessions/{sid}{suffix}"
    for user, token, expected in (("bob", None, other), ("bob", ro_token, ro), ("bob", rw_token, rw)):
        upstream.clear()
        status, answer, _ = await c.call(method, path, user=user, token=token, json_body=body)
        assert status == expected, (user, token is not None, answer)
        if token is ro_token and method not in ("GET", "PUT", "PATCH", "DELETE"):
            assert upstream.requests() == []  # refused before kagent
        elif token is rw_token:
            assert seen_users(upstream) == [rw_user]
        assert forwarded_tokens(upstream) == []
    status, answer, _ = await c.call("GET", f"/api/sessions/{sid}", user="alice")
    assert status == 200 and answer["data"]["session"].get("name") is None  # nothing bob sent changed it
    status, answer, _ = await c.call(method, path, user="alice", json_body=body)
    assert status == owner, answer
    if method == "POST":
        assert answer == {"error": "Session does not belong to this agent"}


async def test_session_read_follows_kagents_event_query(c: Client, upstream: Upstream) -> None:
    """``order=asc``, ``after`` (RFC 3339) and ``limit`` reach kagent untouched (sessions.go)."""
    sid, _, ro, _ = await shared(c)
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}?order=asc", user="bob", token=ro)
    events = body["data"]["events"]
    assert status == 200 and len(events) == 2  # the user's turn and the agent's answer
    assert [json.loads(e["data"])["author"] for e in events] == ["user", "echo"]
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=ro)
    assert [e["id"] for e in body["data"]["events"]] == [e["id"] for e in reversed(events)]  # newest first
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}?order=asc&limit=1", user="bob", token=ro)
    assert [e["id"] for e in body["data"]["events"]] == [events[0]["id"]]
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}?after=2999-01-01T00:00:00Z", user="bob", token=ro)
    assert (status, body["data"]["events"]) == (200, [])
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}?limit=x", user="bob", token=ro)
    assert status == 400 and body["error"].startswith("failed to parse limit")


async def test_two_users_may_hold_one_session_id(c: Client, upstream: Upstream) -> None:
    """kagent keys sessions by (id, user_id) and lets the client choose the id: each holder
    owns their own row, and a share names the row of the user who created it."""
    sid = f"shared-id-{uuid.uuid4().hex[:8]}"
    for user in ("alice", "bob"):
        status, body, _ = await c.call("POST", "/api/sessions", user=user,
                                       json_body={"agent_ref": "demo/echo", "id": sid, "name": user})
        assert (status, body["data"]["user_id"]) == (201, user)
    alices = (await c.share("alice", sid))["token"]
    bobs = (await c.share("bob", sid))["token"]  # the ownership probe asks kagent as bob: his row
    for token, owner in ((alices, "alice"), (bobs, "bob"), (None, "carol")):
        status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user="carol", token=token)
        if token is None:
            assert status == 404
        else:
            assert (status, body["data"]["session"]["name"]) == (200, owner)


# -- tasks ---------------------------------------------------------------------------------------


async def test_task_read(c: Client, upstream: Upstream) -> None:
    sid, task, ro, _ = await shared(c)
    _, other_task = await chat(c, "alice")  # alice's task in another session
    status, body, _ = await c.call("GET", f"/api/tasks/{task['id']}", user="alice")
    assert (status, body["data"]["id"], body["data"]["status"]["state"]) == (200, task["id"], "completed")
    status, body, _ = await c.call("GET", f"/api/tasks/{task['id']}", user="bob")
    assert (status, body["error"]) == (404, f"Task not found: failed to get task {task['id']}: record not found")
    upstream.clear()
    status, body, _ = await c.call("GET", f"/api/tasks/{task['id']}", user="bob", token=ro)
    assert (status, body["data"]["contextId"]) == (200, sid)  # bound to the shared session: read as alice
    assert seen_users(upstream) == ["alice"]
    status, _, _ = await c.call("GET", f"/api/tasks/{other_task['id']}", user="bob", token=ro)
    assert status == 404  # another session: bob stays bob
    status, body, _ = await c.call("GET", f"/api/tasks/{task['id']}", user="alice", headers={"A2A-Version": "1.0"})
    assert body["data"]["status"]["state"] == "TASK_STATE_COMPLETED"  # the v1.0 wire


async def test_task_store_routes_are_the_callers_own(c: Client, upstream: Upstream) -> None:
    """POST /api/tasks and DELETE /api/tasks/{id} are the agent runtime's task store: as the caller."""
    _, task, _, rw = await shared(c)
    upstream.clear()
    status, body, _ = await c.call("POST", "/api/tasks", user="bob", token=rw,
                                   json_body={"id": task["id"], "contextId": "x", "kind": "task",
                                              "status": {"state": "working"}})
    assert (status, body) == (409, {"error": "Task ID is already in use: task id owned by another user"})
    status, body, _ = await c.call("DELETE", f"/api/tasks/{task['id']}", user="bob", token=rw)
    assert (status, body) == (404, {"error": "Task not found: task id owned by another user"})
    assert seen_users(upstream) == ["bob", "bob"] and forwarded_tokens(upstream) == []
    own = f"t-{uuid.uuid4().hex[:8]}"
    status, body, _ = await c.call("POST", "/api/tasks", user="bob",
                                   json_body={"id": own, "contextId": "c", "kind": "task",
                                              "status": {"state": "submitted"}})
    assert (status, body["data"]["id"]) == (201, own)
    status, _, _ = await c.call("DELETE", f"/api/tasks/{own}", user="bob")
    assert status == 204
    status, _, _ = await c.call("GET", f"/api/tasks/{task['id']}", user="alice")
    assert status == 200  # alice's task is untouched


# -- A2A -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [AGENT, AGENT + "/", AGENT + "/deeper", AGENT + "/deeper/still/"])
async def test_a2a_on_every_path_under_the_prefix(c: Client, upstream: Upstream, path: str) -> None:
    """kagent's A2A handler is a PathPrefix: a share works the same on the bare path and below it."""
    sid, task, ro, rw = await shared(c)

    async def rpc(method: str, params: dict[str, Any], token: str) -> tuple[int, Any]:
        version = "0.3" if "/" in method else "1.0"
        status, body, _ = await c.call("POST", path, user="bob", token=token, version=version,
                                       json_body={"jsonrpc": "2.0", "id": 3, "method": method, "params": params})
        return status, body

    upstream.clear()
    status, body = await rpc("GetTask", {"id": task["id"]}, ro)
    assert (status, body["result"]["id"]) == (200, task["id"])
    assert seen_users(upstream) == ["alice"]
    status, body = await rpc("SendMessage", {"message": message_body("hi", sid)}, ro)
    assert (status, body["error"]["message"]) == (403, "share link is read-only")
    status, body = await rpc("SendMessage", {"message": message_body("hi", sid)}, rw)
    assert status == 200
    assert "user=alice initiated_by=bob" in artifact_text(task_of(body["result"]))
    assert forwarded_tokens(upstream) == []


async def test_sandbox_prefix_is_shared_like_the_agent_prefix(c: Client, upstream: Upstream) -> None:
    sid, task, ro, _ = await shared(c)
    upstream.clear()
    status, body, _ = await c.call("POST", SANDBOX + "/x", user="bob", token=ro, version="1.0",
                                   json_body={"jsonrpc": "2.0", "id": 1, "method": "GetTask",
                                              "params": {"id": task["id"]}})
    assert (status, body["result"]["contextId"]) == (200, sid)
    assert seen_users(upstream) == ["alice"]


async def test_kagents_v0_tasks_list(c: Client, upstream: Upstream) -> None:
    """``tasks/list`` (a2av0_tasks_list.go): with a share only its contextId filter names the session."""
    sid, task, ro, _ = await shared(c)
    upstream.clear()
    status, body = await c.rpc("tasks/list", {"contextId": sid}, user="bob", token=ro)
    assert status == 200, body
    [listed] = body["result"]["tasks"]
    assert (listed["id"], listed["kind"], listed["status"]["state"]) == (task["id"], "task", "completed")
    assert "artifacts" not in listed  # kagent sends artifacts only with includeArtifacts
    assert body["result"]["totalSize"] == 1
    assert seen_users(upstream) == ["alice"]
    status, body = await c.rpc("tasks/list", {"contextId": sid, "includeArtifacts": True}, user="bob", token=ro)
    assert "user=alice" in artifact_text(body["result"]["tasks"][0])
    status, body = await c.rpc("tasks/list", {}, user="bob", token=ro)  # no filter: bob's own tasks
    assert task["id"] not in [t["id"] for t in body["result"]["tasks"]]
    status, body = await c.rpc("tasks/list", {"contextId": sid}, user="bob")  # no token: bob has no such session
    assert body["error"]["code"] == -32603
    status, body = await c.rpc("tasks/list", {"contextId": sid, "context_id": "x"}, user="bob", token=ro)
    assert (status, body["error"]["code"]) == (400, -32600)  # ambiguous with a share token


async def test_method_names_follow_the_a2a_version_header(c: Client) -> None:
    """kagent picks the wire from A2A-Version: v0.3 names without it, v1.0 names with 1.0."""
    sid, task, _, _ = await shared(c)
    status, body, _ = await c.call("POST", AGENT + "/", user="alice",
                                   json_body={"jsonrpc": "2.0", "id": 1, "method": "GetTask",
                                              "params": {"id": task["id"]}})
    assert body["error"]["code"] == -32601
    status, body, _ = await c.call("POST", AGENT + "/", user="alice", version="2.0",
                                   json_body={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {}})
    assert (status, body) == (400, 'unsupported A2A version "2.0"\n')


async def test_agent_cards_at_the_prefix(gw: Gateway, c: Client) -> None:
    for base in (AGENT, SANDBOX):
        status, card, _ = await c.call("GET", base + "/.well-known/agent-card.json")  # public
        assert status == 200, card
        assert card["url"] == gw.url + base + "/"
        assert {i["url"] for i in card["supportedInterfaces"]} == {gw.url + base + "/"}
    # kagent serves the card at any depth; below the prefix the gateway passes it as the caller's
    # request without rewriting it (no client looks for it there).
    status, card, _ = await c.call("GET", AGENT + "/x/.well-known/agent-card.json", user="alice")
    assert status == 200 and not card["url"].startswith(gw.url)
    status, body, _ = await c.call("GET", AGENT + "/.well-known/agent.json", user="alice")
    assert body["error"]["code"] == -32600  # not a card: kagent's JSON-RPC endpoint


# -- every other kagent route: the caller's own, a token never widens it --------------------------


def _concrete(template: str) -> str:
    return re.sub(r"/\{[a-z_]+\*\}$", "", re.sub(r"\{([a-z_]+)\}", r"x-\1", template)) or "/"


OWNER_ONLY = [
    (sorted(r.methods or {"GET"})[0], _concrete(r.template))
    for r in profiles.load("kagent").rules
    if r.action is Action.OWNER_ONLY and not r.template.startswith("/api/sessions")
]


@pytest.mark.parametrize(("method", "path"), OWNER_ONLY)
async def test_other_routes_reach_kagent_as_the_caller(
    c: Client, upstream: Upstream, gw: Gateway, method: str, path: str
) -> None:
    sid = await c.session("alice")
    rw = (await c.share("alice", sid, read_only=False))["token"]
    upstream.clear()
    await c.call(method, path, user="bob", token=rw, json_body={} if method in ("POST", "PUT") else None)
    [request] = upstream.requests()
    assert request["effective_user"] == "bob"
    assert forwarded_tokens(upstream) == []
    assert gw.pipeline.routes.match(method, path).action is Action.OWNER_ONLY


async def test_an_invalid_token_counts_only_where_a_share_could(c: Client, upstream: Upstream) -> None:
    """kagent 403s an unknown token on every route (R13); the gateway only where a share can apply."""
    sid = await c.session("alice")
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token="x" * 43)
    assert status == 403
    status, body, _ = await c.call("GET", "/api/me", user="bob", token="x" * 43)
    assert (status, body) == (200, {"sub": "bob"})


async def test_the_stand_in_refuses_any_share_token_like_kagent(upstream: Upstream) -> None:
    """Behind the gateway kagent's own share table is empty: a token that leaked through would be 403."""
    async with aiohttp.ClientSession() as http:
        async with http.get(upstream.url + "/api/sessions", headers={"X-Share-Token": "t"}) as r:
            assert (r.status, await r.text()) == (403, "Invalid or expired share token\n")
        async with http.get(upstream.url + "/health", headers={"X-Share-Token": "t"}) as r:
            assert r.status == 401  # no authentication on /health, so no session to check it against
        async with http.get(upstream.url + "/api/nope") as r:
            assert (r.status, await r.text()) == (404, "404 page not found\n")
        async with http.post(upstream.url + "/api/me") as r:
            assert r.status == 405
