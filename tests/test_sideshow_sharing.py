"""sideshow behind the gateway, past the session routes: posts, comments and assets by id through
learned bindings, publishing into one's own sessions, board-wide listings and the live feed cut
down to the caller's sessions, MCP tools classified one by one, the read that writes (the agent's
feedback cursor), board settings for admins, and public read through the ``shared`` flag; against
the stand-in written from sideshow's source (tests/sideshow_standin.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests import test_sideshow as base
from tests.conftest import USER, Client, Gateway
from tests.sideshow_standin import StandIn
from tests.test_sideshow import listed, new_session, seed_post

# the sideshow stand-in and gateways in front of it (fixtures of tests/test_sideshow.py)
standin, make_sideshow, ss = base.standin, base.make_sideshow, base.ss

DEADLINE = 2.0  # seconds: a feed that must end has ended by then
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}  # what a browser on the gateway's origin sends


async def publish(c: Client, user: str | None, session: str | None = None, *, token: str | None = None,
                  title: str = "p") -> tuple[int, Any]:
    body: dict[str, Any] = {"title": title, "surfaces": [{"kind": "html", "html": "<p>x</p>"}]}
    if session is not None:
        body["session"] = session
    status, out, _ = await c.call("POST", "/api/posts", user=user, token=token, json_body=body)
    return status, out


async def mcp(c: Client, user: str | None, tool: str, token: str | None = None, **args: Any) -> tuple[int, Any]:
    status, out, _ = await c.call("POST", "/mcp", user=user, token=token, json_body={
        "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": args}})
    return status, out


def tool_result(out: Any) -> Any:
    assert "result" in out and not out["result"].get("isError"), out
    return json.loads(out["result"]["content"][0]["text"])


@dataclass
class Feed:
    """An SSE feed read in the background: its events' JSON data, and when and how it ended."""

    events: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    ended_at: float | None = None
    error: BaseException | None = None
    task: asyncio.Task[None] | None = None

    async def wait_for(self, check: Callable[[list[dict[str, Any]]], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while not check(self.events):
            assert time.monotonic() < deadline, self.events
            await asyncio.sleep(0.02)


async def open_feed(c: Client, path: str, *, user: str | None = None, token: str | None = None) -> Feed:
    """Open ``path`` as an SSE feed; returns once its ``hello`` arrived (or it was refused)."""
    feed = Feed()
    ready = asyncio.Event()
    headers = {USER: user} if user else {}
    if token:
        headers["X-Share-Token"] = token

    async def read() -> None:
        try:
            async with c.http.get(c.base + path, headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as r:
                feed.status = r.status
                if r.status != 200:
                    return
                async for line in r.content:
                    if line.startswith(b"event: hello"):
                        ready.set()
                    elif line.startswith(b"data:") and line[5:].strip() != b"{}":
                        feed.events.append(json.loads(line[5:]))
        except BaseException as exc:  # recorded for the test to assert on
            feed.error = exc
        finally:
            feed.ended_at = time.monotonic()
            ready.set()

    feed.task = asyncio.get_running_loop().create_task(read())
    await asyncio.wait_for(ready.wait(), 10)
    return feed


async def test_posts_by_id_belong_to_their_session(ss: tuple[Client, StandIn]) -> None:
    """A post published through the gateway is bound to its session by the answer's sessionId; one
    the gateway never saw is bound by asking sideshow (GET /api/posts/{id}). Only the session's
    owner, or a share of it, reaches the post by id; a read-only share only reads it."""
    c, fake = ss
    status, out = await publish(c, "alice", title="plan")  # no session: a new one, alice's
    assert status == 201, out
    sid, post = out["sessionId"], out["id"]
    assert await listed(c, "alice") == [sid] and await listed(c, "bob") == []
    unseen = seed_post(fake, sid, "unseen")  # behind the gateway's back: no binding yet
    bob_post = seed_post(fake, await new_session(c, "bob"), "bobs")
    fake.requests.clear()
    for pid in (post, unseen):
        for method, path, body in (("GET", f"/api/posts/{pid}", None), ("GET", f"/p/{pid}", None),
                                   ("GET", f"/api/posts/{pid}/markdown", None), ("PUT", f"/api/posts/{pid}", {"title": "x"}),
                                   ("DELETE", f"/api/surfaces/{pid}", None), ("POST", f"/api/posts/{pid}/surfaces", {})):
            status, _, _ = await c.call(method, path, user="bob", json_body=body)
            assert status == 404, (method, path)
    # only the probe for the unseen post reached sideshow, and never as a request of bob's
    assert [(r["method"], r["path"]) for r in fake.requests] == [("GET", f"/api/posts/{unseen}")]
    assert fake.posts[post]["title"] == "plan" and post in fake.posts and unseen in fake.posts
    status, body, _ = await c.call("GET", f"/api/posts/{unseen}", user="alice")
    assert (status, body["title"]) == (200, "unseen")
    status, _, _ = await c.call("GET", f"/api/posts/{bob_post}", user="alice")
    assert status == 404
    # a share of the session reaches its posts by id, and nothing else
    ro = (await c.share("alice", sid))["token"]
    status, body, headers = await c.call("GET", f"/api/posts/{post}", user="carol", token=ro)
    assert (status, body["title"], headers["X-Share-Read-Only"]) == (200, "plan", "true")
    status, _, _ = await c.call("GET", f"/p/{unseen}", token=None, user="carol")
    assert status == 404  # without the link carol is herself, and owns nothing
    status, _, _ = await c.call("GET", f"/api/posts/{bob_post}", user="carol", token=ro)
    assert status == 404  # bob's post: the token is ignored
    status, body, _ = await c.call("PUT", f"/api/posts/{post}", user="carol", token=ro, json_body={"title": "x"})
    assert (status, body["error"]) == (403, "share link is read-only")
    rw = (await c.share("alice", sid, read_only=False))["token"]
    status, body, _ = await c.call("PUT", f"/api/posts/{post}", user="carol", token=rw, json_body={"title": "v2"})
    assert (status, body["title"], fake.posts[post]["title"]) == (200, "v2", "v2")


async def test_publishing_and_uploads_go_only_into_the_callers_sessions(ss: tuple[Client, StandIn]) -> None:
    """POST /api/posts, /api/snippets and /api/assets name their session in the JSON body or (assets)
    ?session=; naming someone else's is 404 before sideshow sees it, naming none creates a session
    recorded as the caller's (server/app.ts publishSurface, uploadAsset)."""
    c, fake = ss
    alice = await new_session(c, "alice")
    fake.requests.clear()
    status, _ = await publish(c, "bob", alice)
    assert status == 404
    status, _, _ = await c.call("POST", "/api/snippets", user="bob", json_body={"html": "<p/>", "session": alice})
    assert status == 404
    status, _, _ = await c.call("POST", f"/api/assets?session={alice}", user="bob", data=b"\x89PNG",
                                headers={"Content-Type": "image/png"})
    assert status == 404
    envelope = {"data": base64.b64encode(b"bytes").decode(), "contentType": "text/plain", "session": alice}
    status, _, _ = await c.call("POST", "/api/assets", user="bob", json_body=envelope)
    assert status == 404
    # a body naming two sessions (field and query), or the field twice, is not attributed to one
    status, _, _ = await c.call("POST", f"/api/assets?session={alice}", user="alice",
                                json_body={**envelope, "session": "other"})
    assert status == 404
    status, _, _ = await c.call("POST", "/api/posts", user="alice",
                                data=f'{{"session": "{alice}", "session": "x"}}'.encode(),
                                headers={"Content-Type": "application/json"})
    assert status == 400
    assert fake.requests == [] and fake.posts == {} and fake.assets == {}
    # the owner publishes and uploads into hers; a session-less upload is a new session of the uploader's
    status, out = await publish(c, "alice", alice)
    assert (status, out["sessionId"]) == (201, alice)
    status, asset, _ = await c.call("POST", "/api/assets", user="bob", data=b"GIF89a",
                                    headers={"Content-Type": "image/gif"})
    assert status == 201 and asset["sessionId"] != alice
    assert await listed(c, "bob") == [asset["sessionId"]]
    status, raw, _ = await c.call("GET", f"/a/{asset['id']}", user="bob")
    assert (status, raw) == (200, "GIF89a")
    status, _, _ = await c.call("GET", f"/a/{asset['id']}", user="alice")
    assert status == 404  # bound by the upload's answer to bob's session


async def test_board_wide_listings_show_only_the_callers_sessions(ss: tuple[Client, StandIn]) -> None:
    """GET /api/posts/recent and GET /api/comments without a session list every session upstream
    (server/app.ts); through the gateway each user sees their own."""
    c, fake = ss
    _, a = await publish(c, "alice", title="a")
    _, b = await publish(c, "bob", title="b")
    for user, post in (("alice", a), ("bob", b)):
        status, _, _ = await c.call("POST", "/api/comments", user=user, headers=SAME_ORIGIN,
                                    json_body={"text": f"hi from {user}", "surface": post["id"]})
        assert status == 201
    for user, post in (("alice", a), ("bob", b)):
        status, body, _ = await c.call("GET", "/api/posts/recent", user=user)
        assert (status, [p["id"] for p in body]) == (200, [post["id"]])
        status, body, _ = await c.call("GET", "/api/comments", user=user)
        assert (status, [x["text"] for x in body["comments"]]) == (200, [f"hi from {user}"])
        status, body, _ = await c.call("GET", f"/api/comments?surface={post['id']}", user=user)
        assert (status, len(body["comments"])) == (200, 1)
    assert await listed(c, "carol") == []
    status, body, _ = await c.call("GET", "/api/posts/recent", user="carol")
    assert (status, body) == (200, [])
    # naming another's session or post is 404, not an empty list
    for path in (f"/api/comments?session={a['sessionId']}", f"/api/comments?surface={a['id']}",
                 f"/api/comments?snippet={a['id']}&session={b['sessionId']}"):
        status, _, _ = await c.call("GET", path, user="bob")
        assert status == 404, path
    # comments by id: deleting another's is 404; the owner's goes through
    comment = fake.comments[0]
    status, _, _ = await c.call("DELETE", f"/api/comments/{comment['id']}", user="bob")
    assert (status, len(fake.comments)) == (404, 2)
    status, _, _ = await c.call("DELETE", f"/api/comments/{comment['id']}", user="alice")
    assert (status, len(fake.comments)) == (200, 1)


async def test_the_read_that_writes_needs_a_read_write_share(ss: tuple[Client, StandIn]) -> None:
    """GET /api/comments?session=S&author=user advances the agent's feedback cursor (server/app.ts
    waitForComments → markAgentSeen): a read-only share may not do it, so the agent still gets the
    user's comment on its next write (collectFeedback). A read-write holder comments as the user
    because the browser's sec-fetch-site reaches sideshow (#254)."""
    c, fake = ss
    _, post = await publish(c, "alice", title="plan")
    sid = post["sessionId"]
    ro = (await c.share("alice", sid))["token"]
    rw = (await c.share("alice", sid, read_only=False))["token"]
    status, comment, _ = await c.call("POST", "/api/comments", user="bob", token=rw, headers=SAME_ORIGIN,
                                      json_body={"text": "use tabs", "surface": post["id"]})
    assert (status, comment["author"]) == (201, "user")
    status, _, _ = await c.call("POST", "/api/comments", user="bob", token=ro, headers=SAME_ORIGIN,
                                json_body={"text": "nope", "surface": post["id"]})
    assert status == 403
    status, body, _ = await c.call("GET", f"/api/comments?session={sid}&author=user", user="bob", token=ro)
    assert (status, body["error"]) == (403, "share link is read-only")
    status, body, _ = await c.call("GET", f"/api/comments?session={sid}", user="bob", token=ro)
    assert (status, [x["text"] for x in body["comments"]]) == (200, ["use tabs"])
    assert fake.sessions[sid]["agentSeq"] == 0
    # the agent's next write still carries the feedback
    status, out = await publish(c, "alice", sid, title="v2")
    assert (status, out["userFeedback"]) == (201, [{"surfaceId": post["id"], "text": "use tabs"}])
    # a read-write holder may read as the agent does (it is the user's own cursor to move)
    await c.call("POST", "/api/comments", user="bob", token=rw, headers=SAME_ORIGIN,
                 json_body={"text": "again", "surface": post["id"]})
    status, body, _ = await c.call("GET", f"/api/comments?session={sid}&author=user", user="bob", token=rw)
    assert (status, [x["text"] for x in body["comments"]]) == (200, ["again"])
    assert fake.sessions[sid]["agentSeq"] == body["lastSeq"]


async def test_mcp_tools_are_classified_one_by_one(ss: tuple[Client, StandIn]) -> None:
    """POST /mcp (server/mcpHttp.ts): each tool's session or post id is checked like a REST route;
    tools that would read every session are refused; wait_for_feedback is a write."""
    c, fake = ss
    status, out = await mcp(c, "alice", "publish_post", title="plan", surfaces=[{"kind": "html", "html": "x"}])
    assert status == 200
    first = tool_result(out)
    sid, post = first["sessionId"], first["id"]
    assert await listed(c, "alice") == [sid]
    status, out = await mcp(c, "alice", "get_post", id=post)
    assert tool_result(out)["title"] == "plan"
    status, out = await mcp(c, "alice", "list_posts", session=sid)
    assert [p["id"] for p in tool_result(out)] == [post]
    fake.requests.clear()
    for tool, args in (("get_post", {"id": post}), ("update_post", {"id": post, "title": "x"}),
                       ("list_posts", {"session": sid}), ("wait_for_feedback", {"session": sid, "timeoutSeconds": 0}),
                       ("reply_to_user", {"postId": post, "message": "x"}), ("publish_post", {"session": sid})):
        status, out = await mcp(c, "bob", tool, **args)
        assert (status, out["id"], out["error"]["code"]) == (404, 7, -32600), tool  # a JSON-RPC error
    for tool, args, reason in (("list_posts", {}, "needs a session"), ("wait_for_feedback", {}, "needs a session"),
                               ("send_test_post", {}, "not available"), ("no_such_tool", {}, "not available")):
        status, out = await mcp(c, "alice", tool, **args)
        assert (status, reason in out["error"]["message"], out["id"]) == (403, True, 7), (tool, out)
    status, out, _ = await c.call("POST", "/mcp", user="alice", json_body=[{"jsonrpc": "2.0", "id": 1}])
    assert status == 400
    assert fake.requests == []
    # shares: reads for read-only holders; wait_for_feedback (it moves the agent's cursor) is a write
    ro = (await c.share("alice", sid))["token"]
    status, out = await mcp(c, "carol", "get_post", token=ro, id=post)
    assert tool_result(out)["id"] == post
    status, out = await mcp(c, "carol", "wait_for_feedback", token=ro, session=sid, timeoutSeconds=0)
    assert (status, out["error"]) == (403, {"code": -32003, "message": "share link is read-only"})
    status, out = await mcp(c, "carol", "update_post", token=ro, id=post, title="x")
    assert status == 403
    rw = (await c.share("alice", sid, read_only=False))["token"]
    status, out = await mcp(c, "carol", "update_post", token=rw, id=post, title="v2")
    assert (tool_result(out)["id"], fake.posts[post]["title"]) == (post, "v2")
    status, out = await mcp(c, None, "initialize", token=rw)
    assert status == 401  # no identity: a share never opens the protocol itself


async def test_theme_is_for_admins(make_sideshow: Callable[..., Any], standin: tuple[StandIn, str],
                                   client_for: Callable[[Gateway], Client]) -> None:
    """PUT /api/theme changes the one board-wide theme (server/app.ts): admins only; reading it is public."""
    fake = standin[0]
    c = client_for(await make_sideshow(admins="ops,root"))
    sid = await new_session(c, "alice")
    rw = (await c.share("alice", sid, read_only=False))["token"]
    for user, token in (("alice", None), ("bob", rw)):
        status, body, _ = await c.call("PUT", "/api/theme", user=user, token=token, json_body={"id": "ink"})
        assert (status, body["error"]) == (403, "only admins may change these settings")
    assert fake.theme == "paper"
    status, body, _ = await c.call("PUT", "/api/theme", user="root", json_body={"id": "ink"})
    assert (status, body, fake.theme) == (200, {"id": "ink"}, "ink")
    status, body, _ = await c.call("GET", "/api/theme")  # the viewer of a public session needs it
    assert (status, body["id"]) == (200, "ink")


async def test_the_live_feed_is_cut_to_the_callers_sessions(ss: tuple[Client, StandIn]) -> None:
    """GET /api/events without ?session= is the whole board's feed (server/app.ts live feed); an
    owner's is filtered event by event, a share holder's is forced to ?session=<shared>, and
    revoking the share ends the holder's feed at once."""
    c, fake = ss
    alice_sid = await new_session(c, "alice")
    owner = await open_feed(c, "/api/events", user="alice")
    ro = await c.share("alice", alice_sid)
    holder = await open_feed(c, "/api/events", user="bob", token=ro["token"])
    assert fake.requests[-1]["query"] == {"session": alice_sid}  # forced by the gateway
    bob_sid = await new_session(c, "bob")
    _, bob_post = await publish(c, "bob", bob_sid)
    _, alice_post = await publish(c, "alice", alice_sid)
    fresh_sid = await new_session(c, "alice", "fresh")
    fake.broadcast({"type": "theme-changed", "id": "ink"})
    await owner.wait_for(lambda e: any(x.get("type") == "theme-changed" for x in e))
    assert [(e["type"], e.get("sessionId", e["id"])) for e in owner.events] == [
        ("post-created", alice_sid), ("session-created", fresh_sid), ("theme-changed", "ink")]
    await holder.wait_for(lambda e: len(e) >= 1)
    await asyncio.sleep(0.1)
    assert [(e["type"], e["id"]) for e in holder.events] == [("post-created", alice_post["id"])]
    assert bob_post["id"] not in json.dumps(owner.events + holder.events)
    # a holder naming another session is that session's stranger: 404 as themself
    other = await open_feed(c, f"/api/events?session={bob_sid}", user="carol", token=ro["token"])
    assert other.status == 404
    status, _, _ = await c.call("DELETE", f"/api/sessions/{alice_sid}/shares/{ro['id']}", user="alice")
    revoked_at = time.monotonic()
    assert status == 200
    assert holder.task is not None
    await asyncio.wait_for(holder.task, DEADLINE)
    assert holder.error is None and holder.ended_at is not None and holder.ended_at - revoked_at < DEADLINE
    assert owner.ended_at is None  # the owner's own feed goes on
    assert owner.task is not None
    owner.task.cancel()


async def test_the_shared_flag_opens_one_session_to_public_read(ss: tuple[Client, StandIn]) -> None:
    """PATCH /api/sessions/{id} {"shared": true} (sideshow's draft flag, PR #114; sideshow itself
    answers 400) is the gateway's: every visitor may then read that session, read-only, the feed
    included, and nothing else; the owner's listing shows "shared"; turning it off ends
    anonymous feeds at once."""
    c, fake = ss
    _, post = await publish(c, "alice", title="demo")
    sid = post["sessionId"]
    private = await new_session(c, "alice", "private")
    reads = [f"/session/{sid}", f"/api/sessions/{sid}/posts", f"/api/posts/{post['id']}", f"/p/{post['id']}",
             f"/api/comments?session={sid}", f"/api/sessions/{sid}/trace"]
    for path in reads:
        status, _, _ = await c.call("GET", path)
        assert status == 401, path  # not public yet
    status, _, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="bob", json_body={"shared": True})
    assert status == 404  # only the owner
    fake.requests.clear()
    status, body, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"shared": True})
    assert (status, body) == (200, {"id": sid, "shared": True})
    assert fake.requests == []  # answered by the gateway
    status, body, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"shared": "yes"})
    assert status == 400
    status, body, _ = await c.call("GET", "/api/sessions", user="alice")
    assert {s["id"]: s["shared"] for s in body} == {sid: True, private: False}
    for user in (None, "bob"):
        for path in reads:
            status, _, headers = await c.call("GET", path, user=user)
            assert (status, headers.get("X-Share-Read-Only")) == (200, "true"), (user, path)
        for path in (f"/api/sessions/{private}/posts", "/api/posts/recent", "/api/sessions"):
            status, body, _ = await c.call("GET", path, user=user)
            assert status == (401 if user is None else 404 if private in path else 200), path
            assert user is None or private in path or body == []  # bob's own: nothing
        status, _, _ = await c.call("GET", f"/api/comments?session={sid}&author=user", user=user)
        assert status == (401 if user is None else 404)  # the read that writes is not a read
        status, _ = await publish(c, user, sid)
        assert status == (401 if user is None else 404)
        status, _, _ = await c.call("POST", "/api/comments", user=user, headers=SAME_ORIGIN,
                                    json_body={"text": "hi", "surface": post["id"]})
        assert status == (401 if user is None else 404)
    status, _, _ = await c.call("GET", "/api/events")
    assert status == 401  # the board's feed is nobody's to read anonymously
    unseen = seed_post(fake, sid, "unseen")  # no binding: an anonymous visitor never makes the gateway ask
    fake.requests.clear()
    status, _, _ = await c.call("GET", f"/p/{unseen}")
    assert (status, fake.requests) == (401, [])
    status, _, _ = await c.call("GET", f"/p/{unseen}", user="bob")  # a signed-in visitor does
    assert (status, [r["path"] for r in fake.requests]) == (200, [f"/api/posts/{unseen}", f"/p/{unseen}"])
    status, _, _ = await c.call("GET", f"/p/{unseen}")
    assert status == 200  # bound now
    feed = await open_feed(c, f"/api/events?session={sid}")
    await publish(c, "alice", sid, title="live")
    await feed.wait_for(lambda e: len(e) >= 1)
    status, body, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"shared": False})
    off_at = time.monotonic()
    assert (status, body) == (200, {"id": sid, "shared": False})
    assert feed.task is not None
    await asyncio.wait_for(feed.task, DEADLINE)
    assert feed.error is None and feed.ended_at is not None and feed.ended_at - off_at < DEADLINE
    for path in reads:
        status, _, _ = await c.call("GET", path)
        assert status == 401, path
    status, body, _ = await c.call("GET", "/api/sessions", user="alice")
    assert {s["id"]: s["shared"] for s in body} == {sid: False, private: False}
    # on again: a new public share, and a rename still reaches sideshow
    status, body, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"shared": True})
    assert status == 200
    status, _, _ = await c.call("GET", f"/session/{sid}")
    assert status == 200
    status, body, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"title": "renamed"})
    assert (status, body["title"]) == (200, "renamed")


async def test_replicas_share_bindings_and_public_read_ends_everywhere(
    pg: str, redis_url: str, make_sideshow: Callable[..., Any], standin: tuple[StandIn, str],
    client_for: Callable[[Gateway], Client],
) -> None:
    """Two replicas on one PostgreSQL and one Redis: a post binding learned on A serves B without
    asking sideshow again, and turning public read off on A ends an anonymous feed on B at once."""
    fake = standin[0]
    common = {"store": pg, "redis": redis_url, "redis_prefix": f"sgtest-{uuid.uuid4().hex[:8]}"}
    a, b = client_for(await make_sideshow(**common)), client_for(await make_sideshow(**common))
    status, post = await publish(a, "alice", title="plan")
    assert status == 201
    sid = post["sessionId"]
    fake.requests.clear()
    status, body, _ = await b.call("GET", f"/api/posts/{post['id']}", user="alice")
    assert (status, body["title"]) == (200, "plan")
    assert [r["path"] for r in fake.requests] == [f"/api/posts/{post['id']}"]  # the request itself, no probe
    status, _, _ = await a.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"shared": True})
    assert status == 200
    feed = await open_feed(b, f"/api/events?session={sid}")
    status, _, _ = await a.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"shared": False})
    off_at = time.monotonic()
    assert status == 200 and feed.task is not None
    await asyncio.wait_for(feed.task, DEADLINE)
    assert feed.error is None and feed.ended_at is not None and feed.ended_at - off_at < DEADLINE
    status, _, _ = await b.call("GET", f"/session/{sid}")
    assert status == 401


async def test_every_route_naming_another_users_data_is_not_found(ss: tuple[Client, StandIn]) -> None:
    """Per-user isolation, route by route: whatever names alice's session, post, comment or asset
    (path, query, body, or an id bound to her session) is 404 for bob, before sideshow sees it."""
    c, fake = ss
    _, post = await publish(c, "alice", title="plan")
    s, p = post["sessionId"], post["id"]
    _, comment, _ = await c.call("POST", "/api/comments", user="alice", headers=SAME_ORIGIN,
                                 json_body={"text": "note", "surface": p})
    _, asset, _ = await c.call("POST", f"/api/assets?session={s}", user="alice", data=b"PNG-ish",
                               headers={"Content-Type": "image/png"})
    envelope = {"data": base64.b64encode(b"x").decode(), "contentType": "text/plain", "session": s}
    requests: list[tuple[str, str, Any]] = [
        *(("GET", path, None) for path in (
            f"/session/{s}", f"/session/{s}/p/{p}", f"/session/{s}/s/{p}", f"/api/sessions/{s}/posts",
            f"/api/sessions/{s}/surfaces", f"/api/sessions/{s}/snippets", f"/api/sessions/{s}/trace",
            f"/p/{p}", f"/s/{p}", f"/a/{asset['id']}", f"/api/posts/{p}", f"/api/surfaces/{p}",
            f"/api/snippets/{p}", f"/api/posts/{p}/viewer", f"/api/posts/{p}/markdown",
            f"/api/posts/{p}/surfaces/0/raw", f"/api/comments?session={s}", f"/api/comments?surface={p}",
            f"/api/comments?snippet={p}", f"/api/events?session={s}")),
        ("POST", f"/api/sessions/{s}/trace", {"steps": [{"label": "x"}]}),
        ("PATCH", f"/api/sessions/{s}", {"title": "x"}), ("PATCH", f"/api/sessions/{s}", {"shared": True}),
        ("DELETE", f"/api/sessions/{s}", None),
        ("PUT", f"/api/posts/{p}", {"title": "x"}), ("PATCH", f"/api/posts/{p}", {"title": "x"}),
        ("PUT", f"/api/surfaces/{p}", {"title": "x"}), ("PUT", f"/api/snippets/{p}", {"html": "x"}),
        ("POST", f"/api/posts/{p}/surfaces", {}), ("PATCH", f"/api/posts/{p}/surfaces", {"order": [0]}),
        ("PATCH", f"/api/posts/{p}/surfaces/0", {}), ("DELETE", f"/api/posts/{p}/surfaces/0", None),
        ("DELETE", f"/api/posts/{p}", None), ("DELETE", f"/api/surfaces/{p}", None),
        ("DELETE", f"/api/snippets/{p}", None),
        ("POST", "/api/posts", {"session": s, "title": "x"}), ("POST", "/api/surfaces", {"session": s}),
        ("POST", "/api/snippets", {"session": s, "html": "x"}),
        ("POST", "/api/comments", {"text": "x", "surface": p}), ("POST", "/api/comments", {"text": "x", "snippet": p}),
        ("DELETE", f"/api/comments/{comment['id']}", None), ("POST", "/api/assets", envelope),
    ]
    fake.requests.clear()
    for method, path, body in requests:
        status, out, _ = await c.call(method, path, user="bob", json_body=body)
        assert status == 404, (method, path, out)
    assert fake.requests == []
    assert (fake.posts[p]["title"], len(fake.comments), fake.sessions[s]["title"]) == ("plan", 1, "Untitled session")
    # alice reaches every one of them (a sample: reads, and a write per kind of name)
    for method, path, body in [r for r in requests if r[0] == "GET" and "events" not in r[1]] + [
            ("PUT", f"/api/posts/{p}", {"title": "v2"}), ("POST", "/api/posts", {"session": s}),
            ("POST", "/api/comments", {"text": "x", "snippet": p})]:
        status, out, _ = await c.call(method, path, user="alice", json_body=body)
        assert status in (200, 201), (method, path, out)
