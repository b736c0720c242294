"""sideshow behind the gateway: per-user sessions, the deploy token kept by the gateway, client
credentials stripped, shares of a session, every route classified and unknown ones refused, against
a stand-in written from sideshow's source (tests/sideshow_standin.py). Posts, comments, the feed,
MCP and public read: tests/test_sideshow_sharing.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway import profiles
from gateway.pipeline.routes import RouteTable
from tests.conftest import Client, Gateway, GatewayFactory
from tests.sideshow_standin import StandIn

DEPLOY = "deploy-token-0123456789"
# sideshow's ids are 11 url-safe base64 characters (server/types.ts newId), "_" and a leading "-" included
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    fake = StandIn(token=DEPLOY)
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def make_sideshow(make_gateway: GatewayFactory, standin: tuple[StandIn, str],
                  tmp_path: Path) -> Callable[..., Any]:
    async def make(**overrides: Any) -> Gateway:
        token_file = tmp_path / "sideshow-token"
        token_file.write_text(DEPLOY + "\n")
        return await make_gateway(upstream=standin[1], profile="sideshow", upstream_auth__mode="profile",
                                  upstream_auth__token_file=str(token_file),
                                  shares__session_id_pattern=ID_PATTERN,
                                  public_url="https://board.example.com", **overrides)
    return make


@pytest.fixture
async def ss(make_sideshow: Callable[..., Any], standin: tuple[StandIn, str],
             client_for: Callable[[Gateway], Client]) -> tuple[Client, StandIn]:
    return client_for(await make_sideshow()), standin[0]


async def new_session(c: Client, user: str, title: str = "t") -> str:
    status, body, _ = await c.call("POST", "/api/sessions", user=user, json_body={"title": title, "agent": "codex"})
    assert status == 201, body
    return str(body["id"])


async def listed(c: Client, user: str) -> list[str]:
    status, body, _ = await c.call("GET", "/api/sessions", user=user)
    assert status == 200, body
    return [s["id"] for s in body]


def seed_post(fake: StandIn, session: str, title: str) -> str:
    """A post put into ``session`` behind the gateway's back (the gateway has learned no binding for it)."""
    post: dict[str, Any] = {"id": f"post-{title}", "sessionId": session, "title": title, "createdAt": "", "updatedAt": "",
            "version": 1}
    fake.posts[post["id"]] = post
    return str(post["id"])


async def test_sessions_are_per_user(ss: tuple[Client, StandIn]) -> None:
    c, fake = ss
    a1, a2 = await new_session(c, "alice", "a1"), await new_session(c, "alice", "a2")
    b1 = await new_session(c, "bob", "b1")
    assert set(fake.sessions) == {a1, a2, b1}
    assert await listed(c, "alice") == [a1, a2]
    assert await listed(c, "bob") == [b1]
    assert await listed(c, "carol") == []
    seed_post(fake, b1, "secret")
    status, body, _ = await c.call("GET", f"/api/sessions/{a1}/posts", user="alice")
    assert (status, body) == (200, [])
    fake.requests.clear()
    for method, suffix, body in (
        ("GET", "/posts", None), ("GET", "/surfaces", None), ("GET", "/snippets", None),
        ("GET", "/trace", None), ("POST", "/trace", {"steps": [{"label": "x"}]}),
        ("PATCH", "", {"title": "mine now"}), ("DELETE", "", None), ("GET", "", None),
        ("POST", "/anything", {}),
    ):
        status, out, _ = await c.call(method, f"/api/sessions/{b1}{suffix}", user="alice", json_body=body)
        assert (status, out["error"]) == (404, "session not found"), (method, suffix)
    status, _, _ = await c.call("GET", f"/session/{b1}", user="alice")
    assert status == 404
    assert fake.requests == []  # nothing about bob's session reached sideshow as alice
    assert fake.sessions[b1]["title"] == "b1" and fake.traces.get(b1) is None
    # the owner does all of it
    status, body, _ = await c.call("PATCH", f"/api/sessions/{b1}", user="bob", json_body={"title": "renamed"})
    assert (status, body["title"]) == (200, "renamed")
    status, body, _ = await c.call("GET", f"/api/sessions/{b1}/posts", user="bob")
    assert (status, [p["title"] for p in body]) == (200, ["secret"])
    status, body, _ = await c.call("GET", f"/session/{b1}", user="bob")
    assert status == 200 and "<div id=app>" in body
    status, body, _ = await c.call("DELETE", f"/api/sessions/{b1}", user="bob")
    assert (status, body, b1 in fake.sessions) == (200, {"ok": True}, False)


async def test_anonymous_callers_get_nothing(ss: tuple[Client, StandIn]) -> None:
    c, fake = ss
    for method, path in (("GET", "/api/sessions"), ("POST", "/api/sessions"), ("GET", "/"),
                         ("GET", "/api/posts/recent")):
        status, _, _ = await c.call(method, path)
        assert status == 401, (method, path)
    assert fake.requests == [] and fake.sessions == {}


async def test_deploy_token_stays_in_the_gateway_and_client_credentials_never_reach_sideshow(
    ss: tuple[Client, StandIn],
) -> None:
    """sideshow takes its token as Bearer, cookie sideshow_key or ?key= (server/app.ts auth
    middleware; a matching ?key= also sets the cookie). The gateway sends its own Bearer on every
    request and drops the other two, whatever the client sends — even the real token."""
    c, fake = ss
    sid = await new_session(c, "alice")
    tries = [
        ("GET", f"/api/sessions/{sid}/posts?key=client-key", {"Authorization": "Bearer client-own-token"}),
        ("GET", f"/api/sessions/{sid}/trace?KEY={DEPLOY}&key={DEPLOY}&hydrate=1",
         {"Cookie": f"sideshow_key={DEPLOY}; other=1"}),
        ("GET", f"/?key={DEPLOY}", {"Cookie": "sideshow_key=client"}),
        ("GET", "/api/sessions?key=x", {"Authorization": "Basic YTpi"}),
    ]
    for method, path, headers in tries:
        status, body, out = await c.call(method, path, user="alice", headers=headers)
        assert status == 200, (path, body)
        assert "Set-Cookie" not in out  # sideshow never saw a ?key=, so it never set its cookie
        assert DEPLOY not in str(body) and all(DEPLOY not in v for v in out.values())
    sent = fake.requests[1:]
    assert len(sent) == len(tries)
    assert {r["headers"].get("Authorization") for r in fake.requests} == {f"Bearer {DEPLOY}"}
    assert all("Cookie" not in r["headers"] for r in fake.requests)
    assert [r["query"] for r in sent] == [{}, {"hydrate": "1"}, {}, {}]
    # without the gateway's token, sideshow refuses: the client's own token is never enough
    fake.token = "rotated"
    status, body, _ = await c.call("GET", "/api/sessions", user="alice", headers={"Authorization": "Bearer rotated"})
    assert status == 401


async def test_shares_read_write_and_revocation(ss: tuple[Client, StandIn]) -> None:
    c, fake = ss
    sid, other = await new_session(c, "alice", "shared"), await new_session(c, "alice", "private")
    seed_post(fake, sid, "plan")
    seed_post(fake, other, "diary")
    ro = await c.share("alice", sid)
    assert ro["url"] == f"https://board.example.com/session/{sid}?share={ro['token']}"
    # a read-only share holder reads that session
    status, body, headers = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", token=ro["token"])
    assert (status, [p["title"] for p in body], headers["X-Share-Read-Only"]) == (200, ["plan"], "true")
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}/trace", user="bob", token=ro["token"])
    assert (status, body) == (200, {"steps": []})
    status, _, _ = await c.call("GET", f"/session/{sid}", user="bob", token=ro["token"])
    assert status == 200
    # … and is refused writes
    fake.requests.clear()
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/trace", user="bob", token=ro["token"],
                                   json_body={"steps": [{"label": "x"}]})
    assert (status, body["error"]) == (403, "share link is read-only")
    for method, body_ in (("PATCH", {"title": "x"}), ("DELETE", None)):
        status, _, _ = await c.call(method, f"/api/sessions/{sid}", user="bob", token=ro["token"], json_body=body_)
        assert status == 404, method  # owner-only: the token is ignored, and bob owns nothing
    # the share opens that session only, and never the listing of alice's sessions
    status, _, _ = await c.call("GET", f"/api/sessions/{other}/posts", user="bob", token=ro["token"])
    assert status == 404
    status, body, _ = await c.call("GET", "/api/sessions", user="bob", token=ro["token"])
    assert (status, body) == (200, [])
    assert fake.requests == [{"method": "GET", "path": "/api/sessions", "query": {},
                              "headers": fake.requests[0]["headers"]}]
    # a read-write share holder writes
    rw = await c.share("alice", sid, read_only=False)
    status, body, headers = await c.call("POST", f"/api/sessions/{sid}/trace", user="bob", token=rw["token"],
                                         json_body={"steps": [{"label": "reviewed"}]})
    assert (status, body["count"], headers["X-Share-Read-Only"]) == (200, 1, "false")
    assert fake.traces[sid] == [{"label": "reviewed"}]
    status, _, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="bob", token=rw["token"],
                                json_body={"title": "x"})
    assert (status, fake.sessions[sid]["title"]) == (404, "shared")  # renaming stays the owner's
    # revocation: the link stops working at once
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{rw['id']}", user="alice")
    assert status == 200
    status, body, _ = await c.call("POST", f"/api/sessions/{sid}/trace", user="bob", token=rw["token"],
                                   json_body={"steps": [{"label": "late"}]})
    assert (status, body["error"]) == (403, "share link is invalid, expired or revoked")
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{ro['token']}", user="alice")
    assert status == 200
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", token=ro["token"])
    assert status == 403
    assert fake.traces[sid] == [{"label": "reviewed"}]
    # only the owner manages shares
    status, _, _ = await c.call("POST", f"/api/sessions/{sid}/shares", user="bob", json_body={"read_only": True})
    assert status == 404


async def test_routes_the_profile_does_not_know_are_refused_for_everyone(
    make_sideshow: Callable[..., Any], standin: tuple[StandIn, str], client_for: Callable[[Gateway], Client],
) -> None:
    """A route sideshow may have that the profile cannot attribute to a session (newer versions'
    /api/export and /api/import, GET /mcp) is refused (action: deny): not for owners, not for the
    board's operator (default_owner), not through a share."""
    fake = standin[0]
    c = client_for(await make_sideshow(default_owner="ops", admins="ops"))
    sid = await new_session(c, "alice")
    token = (await c.share("alice", sid, read_only=False))["token"]
    fake.requests.clear()
    for method, path in (("GET", "/api/export"), ("POST", "/api/import"), ("GET", "/mcp"),
                         ("DELETE", "/mcp"), ("GET", f"/api/export?session={sid}")):
        for user, tok in (("alice", None), ("ops", None), ("bob", token)):
            status, body, _ = await c.call(method, path, user=user, token=tok)
            assert (status, body["error"]) == (403, "this route is not available through the gateway"), (
                method, path, user)
        status, _, _ = await c.call(method, path, token=token)
        assert status == 401  # no identity, no anonymous shares
    assert fake.requests == []


async def test_pages_without_session_data_pass_as_the_caller(ss: tuple[Client, StandIn]) -> None:
    c, _ = ss
    for path in ("/", "/guide", "/api/kits", "/api/theme"):
        status, _, headers = await c.call("GET", path, user="alice")
        assert (status, headers["Referrer-Policy"]) == (200, "no-referrer"), path


# sideshow's routes (research/sideshow.md §1, server/app.ts at #261) with the class the profile gives
# them and where the session comes from. "s1" is a session id, "p1" a post id.
ROUTES = [
    ("GET", "/", "owner-only", "viewer", "none"),
    ("GET", "/connect", "owner-only", "connect", "none"),
    ("GET", "/guide", "public", "guide", "none"),
    ("GET", "/setup", "public", "setup", "none"),
    ("GET", "/agent-howto", "public", "agent-howto", "none"),
    ("GET", "/api/kits", "public", "kits", "none"),
    ("GET", "/api/theme", "public", "theme", "none"),
    ("PUT", "/api/theme", "admin", "theme-set", "none"),
    ("GET", "/api/version", "owner-only", "version", "none"),
    ("GET", "/api/sessions", "owner-only", "sessions-list", "none"),
    ("POST", "/api/sessions", "owner-only", "sessions-create", "none"),
    ("GET", "/session/s1", "read", "session-page", "path"),
    ("GET", "/session/s1/p/p1", "read", "session-post-page", "path"),
    ("GET", "/session/s1/s/p1", "read", "session-surface-page", "path"),
    ("GET", "/api/sessions/s1/posts", "read", "posts", "path"),
    ("GET", "/api/sessions/s1/surfaces", "read", "surfaces", "path"),
    ("GET", "/api/sessions/s1/snippets", "read", "snippets", "path"),
    ("GET", "/api/sessions/s1/trace", "read", "trace", "path"),
    ("POST", "/api/sessions/s1/trace", "write", "trace-add", "path"),
    ("PATCH", "/api/sessions/s1", "owner-only", "rename", "path"),
    ("DELETE", "/api/sessions/s1", "owner-only", "delete", "path"),
    ("GET", "/api/sessions/s1", "owner-only", "session-other-methods", "path"),
    ("GET", "/p/p1", "read", "post-page", "object"),
    ("GET", "/s/p1", "read", "surface-page", "object"),
    ("GET", "/a/a1", "read", "asset", "object"),
    ("GET", "/api/posts/p1", "read", "post", "object"),
    ("GET", "/api/surfaces/p1", "read", "surface", "object"),
    ("GET", "/api/snippets/p1", "read", "snippet", "object"),
    ("GET", "/api/posts/p1/viewer", "read", "post-viewer", "object"),
    ("GET", "/api/posts/p1/markdown", "read", "post-markdown", "object"),
    ("GET", "/api/posts/p1/surfaces/0/raw", "read", "post-raw", "object"),
    ("PUT", "/api/posts/p1", "write", "post-edit", "object"),
    ("PATCH", "/api/posts/p1", "write", "post-edit", "object"),
    ("DELETE", "/api/posts/p1", "write", "post-edit", "object"),
    ("PUT", "/api/surfaces/p1", "write", "surface-edit", "object"),
    ("DELETE", "/api/snippets/p1", "write", "snippet-edit", "object"),
    ("POST", "/api/posts/p1/surfaces", "write", "post-surfaces", "object"),
    ("PATCH", "/api/posts/p1/surfaces", "write", "post-surfaces", "object"),
    ("PATCH", "/api/posts/p1/surfaces/0", "write", "post-surface", "object"),
    ("DELETE", "/api/posts/p1/surfaces/0", "write", "post-surface", "object"),
    ("POST", "/api/posts", "write", "publish-post", "body"),
    ("POST", "/api/surfaces", "write", "publish-surface", "body"),
    ("POST", "/api/snippets", "write", "publish-snippet", "body"),
    ("POST", "/api/test-post", "write", "test-post", "none"),
    ("GET", "/api/posts/recent", "owner-only", "posts-recent", "none"),
    ("GET", "/api/surfaces/recent", "owner-only", "surfaces-recent", "none"),
    ("GET", "/api/comments", "read", "comments", "query"),
    ("POST", "/api/comments", "write", "comment-add", "body"),
    ("DELETE", "/api/comments/c1", "write", "comment-delete", "object"),
    ("POST", "/api/assets", "write", "asset-upload", "body"),
    ("GET", "/api/events", "read", "events", "query"),
    ("POST", "/mcp", "write", "mcp", "call"),
    ("GET", "/mcp", "deny", "unknown", "none"),
    ("GET", "/api/export", "deny", "unknown", "none"),
    ("POST", "/api/import", "deny", "unknown", "none"),
]


@pytest.mark.parametrize(("method", "path", "action", "name", "locator"), ROUTES)
def test_every_upstream_route_is_classified(method: str, path: str, action: str, name: str, locator: str) -> None:
    match = RouteTable(profiles.load("sideshow").rules).match(method, path)
    assert match.rule is not None, (method, path)
    assert (match.action.value, match.rule.name, match.locator.value) == (action, name, locator)
    if locator == "path":
        assert match.params["session_id"] == "s1"
    if locator == "object":
        assert match.rule.param is not None and match.params[match.rule.param] in ("p1", "a1", "c1")


def test_profile_carriers_and_upstream_auth() -> None:
    profile = profiles.load("sideshow")
    assert (profile.upstream_auth_mode, profile.owner_from) == ("bearer", "id")
    assert (profile.carrier_headers, profile.carrier_query) == (frozenset({"Cookie"}), frozenset({"key"}))


def test_example_config_loads(tmp_path: Path) -> None:
    from gateway import config
    from gateway.app import upstream_credentials

    root = Path(__file__).resolve().parent.parent
    text = (root / "deploy/sideshow/share-gateway.yaml").read_text()
    token = tmp_path / "sideshow-token"
    token.write_text("t0ken\n")
    path = tmp_path / "gw.yaml"
    path.write_text(text.replace("/etc/share-gateway/sideshow-token", str(token)))
    settings = config.load(path, require_upstream=True)
    credentials = upstream_credentials(settings, profiles.load(settings.profile))
    assert (settings.profile, credentials.mode, settings.default_owner) == ("sideshow", "bearer", "ops@example.com")
    assert (settings.admins, settings.limits.max_parsed_body) == (["ops@example.com"], 8 << 20)
    assert re.match(settings.shares.session_id_pattern, "-aZ_09xyz12")
