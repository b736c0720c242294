"""A sideshow share link opened in a browser: the viewer page in one-session mode, and the share
cookie that carries the token on the page's own requests (gateway/pipeline/cookie.py), against the
stand-in written from sideshow's source (tests/sideshow_standin.py)."""

from __future__ import annotations

import asyncio
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from gateway import profiles
from gateway.models import Share
from gateway.shares.store import StoreError
from gateway.shares.store.sqlite import SqliteStore
from tests import test_sideshow as base
from tests.conftest import Client
from tests.sideshow_standin import VIEWER, StandIn
from tests.test_sideshow import new_session, seed_post

standin, make_sideshow, ss = base.standin, base.make_sideshow, base.ss

COOKIE = "share_gateway_share"
SIDESHOW_CONFIG = '<script>window.__SIDESHOW_BASE_PATH__="";</script>'  # sideshow's own, for any reader
READ_ONLY = '<script>window.__SIDESHOW_READONLY__=true;window.__SIDESHOW_PUBLIC_READ__="session";</script>'
ONE_SESSION = '<script>window.__SIDESHOW_PUBLIC_READ__="session";</script>'


def set_cookie(headers: Any) -> SimpleCookie:
    values = headers.getall("Set-Cookie", [])
    assert len(values) == 1, values
    jar: SimpleCookie = SimpleCookie()
    jar.load(values[0])
    return jar


async def test_a_share_link_opened_in_a_browser_keeps_working_for_the_page_s_own_requests(
    ss: tuple[Client, StandIn],
) -> None:
    c, fake = ss
    sid, other, mine = await new_session(c, "alice"), await new_session(c, "alice"), await new_session(c, "bob")
    seed_post(fake, sid, "shown")
    token = (await c.share("alice", sid, read_only=True))["token"]

    status, page, headers = await c.call("GET", f"/session/{sid}?share={token}", user="bob")
    assert status == 200
    assert page == VIEWER.replace("</head>", READ_ONLY + "</head>")  # after sideshow's own globals
    assert SIDESHOW_CONFIG + READ_ONLY + "</head>" in page
    cookie = set_cookie(headers)[COOKIE]
    assert cookie.value == token
    assert cookie["path"] == "/" and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["secure"]  # public_url is https
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"

    browser = {"Cookie": f"{COOKIE}={token}"}  # what the browser sends with the page's own requests
    status, posts, _ = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", headers=browser)
    assert status == 200 and [p["id"] for p in posts] == ["post-shown"]
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob")
    assert status == 404  # without the cookie: not bob's session
    status, _, headers = await c.call("GET", f"/api/sessions/{mine}/posts", user="bob", headers=browser)
    assert status == 200 and "Set-Cookie" not in headers  # bob's own session: the cookie changes nothing
    status, _, _ = await c.call("GET", f"/api/sessions/{other}/posts", user="bob", headers=browser)
    assert status == 404  # the share opens one session only
    status, _, _ = await c.call("POST", f"/api/sessions/{sid}/trace", user="bob", headers=browser,
                                json_body={"steps": []})
    assert status == 403  # read-only
    assert all("share_gateway" not in r["headers"].get("Cookie", "") for r in fake.requests)  # never upstream


async def test_a_dead_share_cookie_is_cleared_and_never_blocks(ss: tuple[Client, StandIn]) -> None:
    c, _ = ss
    sid, mine = await new_session(c, "alice"), await new_session(c, "bob")
    share = await c.share("alice", sid, read_only=True)
    browser = {"Cookie": f"{COOKIE}={share['token']}"}
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{share['id']}", user="alice")
    assert status == 200
    status, _, headers = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", headers=browser)
    assert status == 404  # bob as himself (a token would have been 403 "revoked"): nothing of alice's
    cleared = set_cookie(headers)[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    status, _, _ = await c.call("GET", f"/api/sessions/{mine}/posts", user="bob", headers=browser)
    assert status == 200
    status, _, headers = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob",
                                      headers={"Cookie": f"{COOKIE}={'x' * 43}"})
    assert status == 404 and set_cookie(headers)[COOKIE]["max-age"] == "0"  # a forged one alike


async def test_the_viewer_opens_in_the_mode_the_reader_s_rights_allow(ss: tuple[Client, StandIn]) -> None:
    c, fake = ss
    sid = await new_session(c, "alice")
    post = seed_post(fake, sid, "p")
    status, page, headers = await c.call("GET", f"/session/{sid}", user="alice")
    assert (status, page) == (200, VIEWER) and "Set-Cookie" not in headers  # the owner's page, unchanged
    rw = (await c.share("alice", sid, read_only=False))["token"]
    status, page, _ = await c.call("GET", f"/session/{sid}?share={rw}", user="bob")
    assert status == 200 and ONE_SESSION + "</head>" in page and "READONLY" not in page
    ro = (await c.share("alice", sid, read_only=True))["token"]
    status, page, _ = await c.call("GET", f"/p/{post}?share={ro}", user="bob")  # a post's permalink
    assert status == 200 and READ_ONLY + "</head>" in page
    status, page, headers = await c.call("GET", f"/session/{sid}", user="bob", token=ro)
    assert status == 200 and READ_ONLY in page and "Set-Cookie" not in headers  # a header token: no cookie
    status, _, _ = await c.call("PATCH", f"/api/sessions/{sid}", user="alice", json_body={"shared": True})
    assert status == 200
    status, page, headers = await c.call("GET", f"/session/{sid}")  # anyone, no sign-in: public read
    assert status == 200 and READ_ONLY in page and "Set-Cookie" not in headers


@pytest.mark.parametrize(("extra", "problem"), [
    ({"share_cookie": "a b"}, "cookie name"),
    ({"share_cookie": "sg"}, "needs Cookie in identity_carriers"),
    ({"share_cookie": "sg", "identity_carriers": {"headers": ["X-User-Id"]}}, "needs Cookie"),
])
def test_a_share_cookie_must_never_reach_the_upstream(extra: dict[str, Any], problem: str) -> None:
    route = {"path": "/s/{id}", "action": "read", "session": "path", "param": "id"}
    with pytest.raises(profiles.ProfileError) as err:
        profiles.parse({"name": "x", "routes": [route], **extra})
    assert any(problem in p for p in err.value.problems), err.value.problems
    assert profiles.parse({"name": "x", "routes": [route], "share_cookie": "sg",
                           "identity_carriers": {"headers": ["Cookie"]}}).share_cookie == "sg"


async def test_a_long_poll_through_a_share_ends_when_the_share_does(ss: tuple[Client, StandIn]) -> None:
    """``GET /api/comments?wait=N`` holds its answer up to 300 s (sideshow's ``waitForComments``):
    revoking the share answers the holder 403 at once and closes the wait at sideshow; the
    owner's own wait, and a wait through a share that lives, are answered by the next comment."""
    c, fake = ss
    sid = await new_session(c, "alice")
    post = seed_post(fake, sid, "asked")
    share = await c.share("alice", sid, read_only=True)
    kept = (await c.share("alice", sid, read_only=True))["token"]
    path = f"/api/comments?session={sid}&wait=60"
    revoked = asyncio.ensure_future(c.call("GET", path, user="bob", token=share["token"]))
    living = asyncio.ensure_future(c.call("GET", path, user="carol", token=kept))
    owners = asyncio.ensure_future(c.call("GET", path, user="alice"))
    await until(lambda: fake.waiting == 3)
    started = time.monotonic()
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{share['id']}", user="alice")
    assert status == 200
    status, body, _ = await asyncio.wait_for(revoked, 5)
    assert (status, body) == (403, {"error": "share link is invalid, expired or revoked"})
    assert time.monotonic() - started < 2
    await until(lambda: fake.waiting == 2)  # the revoked holder's wait is gone at sideshow too
    assert not living.done() and not owners.done()
    status, out, _ = await c.call("POST", "/api/comments", user="alice", json_body={"surface": post, "text": "hi"},
                                  headers={"Sec-Fetch-Site": "same-origin"})
    assert status == 201, out
    for waiter in (living, owners):
        status, body, _ = await asyncio.wait_for(waiter, 5)
        assert status == 200 and [cm["text"] for cm in body["comments"]] == ["hi"]


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


class FlakyStore(SqliteStore):
    """The real SQLite store, whose token lookups fail while ``down`` (a store outage)."""

    down = False

    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        if self.down:
            raise StoreError("store unreachable")
        return await super().share_by_token_hash(token_hash)


async def test_a_store_outage_sets_the_cookie_aside_but_keeps_failing_closed_for_tokens(
    make_sideshow: Any, client_for: Any, tmp_path: Path,
) -> None:
    store = FlakyStore(str(tmp_path / "flaky.db"))
    c = client_for(await make_sideshow(inject_store=store, shares__cache_ttl="0"))
    sid, mine = await new_session(c, "alice"), await new_session(c, "bob")
    token = (await c.share("alice", sid, read_only=True))["token"]
    browser = {"Cookie": f"{COOKIE}={token}"}
    store.down = True
    status, _, headers = await c.call("GET", f"/api/sessions/{mine}/posts", user="bob", headers=browser)
    assert status == 200 and "Set-Cookie" not in headers  # bob's own session; the cookie is kept for later
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", headers=browser)
    assert status == 404  # as bob: never alice's session because the store is down
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", token=token)
    assert status == 503  # a token the caller chose to present: fail closed, as before
    store.down = False
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", headers=browser)
    assert status == 200


async def test_one_browser_keeps_several_share_links_open(ss: tuple[Client, StandIn]) -> None:
    """Two links opened in one browser: each session's page keeps working, the newest link first in
    the cookie; a revoked link drops out of it; the owner's own link never stands in the owner's way."""
    c, _ = ss
    first, second, third = [await new_session(c, "alice") for _ in range(3)]
    a = await c.share("alice", first, read_only=True)
    b = (await c.share("alice", second, read_only=False))["token"]
    _, _, headers = await c.call("GET", f"/session/{first}?share={a['token']}", user="bob")
    assert set_cookie(headers)[COOKIE].value == a["token"]
    status, _, headers = await c.call("GET", f"/session/{second}?share={b}", user="bob",
                                      headers={"Cookie": f"{COOKIE}={a['token']}"})
    assert status == 200 and set_cookie(headers)[COOKIE].value == f"{b}.{a['token']}"  # newest first
    browser = {"Cookie": f"{COOKIE}={b}.{a['token']}"}
    for sid in (first, second):
        status, _, headers = await c.call("GET", f"/api/sessions/{sid}/posts", user="bob", headers=browser)
        assert status == 200 and "Set-Cookie" not in headers
    status, _, _ = await c.call("POST", f"/api/sessions/{second}/trace", user="bob", headers=browser,
                                json_body={"steps": []})
    assert status == 200  # the read-write link, for its own session
    status, _, _ = await c.call("POST", f"/api/sessions/{first}/trace", user="bob", headers=browser,
                                json_body={"steps": []})
    assert status == 403  # the read-only one, for its session
    status, _, _ = await c.call("GET", f"/api/sessions/{third}/posts", user="bob", headers=browser)
    assert status == 404  # no link for this one
    await c.call("DELETE", f"/api/sessions/{first}/shares/{a['id']}", user="alice")
    status, _, headers = await c.call("GET", f"/api/sessions/{first}/posts", user="bob", headers=browser)
    assert status == 404 and set_cookie(headers)[COOKIE].value == b  # the revoked link dropped out
    status, _, _ = await c.call("GET", f"/api/sessions/{second}/posts", user="bob", headers={"Cookie": f"{COOKIE}={b}"})
    assert status == 200
    # alice opened her own read-only link (to see what others see): her writes are still hers
    own = (await c.share("alice", third, read_only=True))["token"]
    status, _, _ = await c.call("POST", f"/api/sessions/{third}/trace", user="alice",
                                headers={"Cookie": f"{COOKIE}={own}"}, json_body={"steps": []})
    assert status == 200
