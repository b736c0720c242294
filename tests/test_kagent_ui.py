"""kagent's own UI through the gateway: the calls its server side makes, as it makes them.

Each flow follows kagent's UI source (kagent-dev/kagent, release/v0.10.x):
``ui/src/app/actions/sessions.ts`` (``getSession``, ``getSessionWithEvents``,
``getSessionTasks``: ``X-Share-Token`` header only), ``ui/src/components/chat/
ChatInterface.tsx`` (read-only mode from ``data.read_only === true``),
``ui/src/components/chat/ShareButton.tsx`` (create, list, copy, revoke by the
row's token) and ``ui/src/components/sidebars/ChatItem.tsx`` (a sidebar row
opens ``/agents/{ns}/{name}/chat/{id}?share={share_token}``).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

from tests.conftest import Client, Gateway, GatewayFactory, chat


async def test_viewer_page_reads_read_only_mode_from_the_session(c: Client) -> None:
    """ChatInterface: ``getSessionWithEvents(sessionId, shareToken)`` then ``data.read_only === true``."""
    sid, _ = await chat(c, "alice")
    read_only = await c.share("alice", sid, read_only=True)
    read_write = await c.share("alice", sid, read_only=False)
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=read_only["token"])
    assert status == 200 and body["data"]["read_only"] is True  # the composer is disabled
    assert body["data"]["session"]["id"] == sid and "events" in body["data"]
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=read_write["token"])
    assert status == 200 and body["data"]["read_only"] is False
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user="alice")
    assert status == 200 and "read_only" not in body["data"]  # the owner's own view, as kagent answers it


KEY = base64.b64encode(b"k" * 32).decode()
SIDEBAR = "/api/sessions/agent/demo/echo"


def users() -> tuple[str, str, str]:
    """Fresh user names: the test upstream lives for the whole run, and a sidebar lists all of a user's."""
    tag = uuid.uuid4().hex[:8]
    return f"alice-{tag}", f"bob-{tag}", f"carol-{tag}"


async def sidebar(c: Client, user: str) -> list[dict[str, Any]]:
    status, body, _ = await c.call("GET", SIDEBAR, user=user)
    assert status == 200, body
    return list(body.get("data", []))  # kagent omits an empty list (Go's omitempty)


async def test_sidebar_lists_sessions_opened_through_a_share(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    """SessionsSidebar → ``GET /api/sessions/agent/{ns}/{name}``; ChatItem links a shared row with
    ``?share={share_token}`` — so with stored tokens, bob's sidebar shows alice's session he opened."""
    ALICE, BOB, CAROL = users()
    gw = await make_gateway(shares__token_storage="encrypted", shares__token_keys=KEY)
    c = client_for(gw)
    sid, _ = await chat(c, ALICE)
    own = await c.session(BOB)
    share = await c.share(ALICE, sid, read_only=True)
    assert [r["id"] for r in await sidebar(c, BOB)] == [own]  # not opened yet
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user=BOB, token=share["token"])
    assert status == 200
    await gw.flush_access()
    rows = {r["id"]: r for r in await sidebar(c, BOB)}
    assert set(rows) == {own, sid}
    assert rows[sid]["share_token"] == share["token"] and rows[sid]["share_read_only"] is True
    assert rows[sid]["user_id"] == ALICE and "share_token" not in rows[own]
    # the link the row opens works for bob
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}", user=BOB, token=rows[sid]["share_token"])
    assert (status, body["data"]["read_only"]) == (200, True)
    # a read-write share of the same session is preferred, as kagent's query orders them
    rw = await c.share(ALICE, sid, read_only=False)
    await c.call("GET", f"/api/sessions/{sid}", user=BOB, token=rw["token"])
    await gw.flush_access()
    rows = {r["id"]: r for r in await sidebar(c, BOB)}
    assert (rows[sid]["share_token"], rows[sid]["share_read_only"]) == (rw["token"], False)
    # alice's own sidebar is unchanged; carol never opened it
    assert [r["id"] for r in await sidebar(c, ALICE)] == [sid]
    assert await sidebar(c, CAROL) == []
    # revoked links leave the sidebar
    for s in (share, rw):
        status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{s['token']}", user=ALICE)
        assert status == 200
    assert [r["id"] for r in await sidebar(c, BOB)] == [own]


async def test_sidebar_with_hashed_tokens_shows_no_dead_links(c: Client, gw: Gateway) -> None:
    """Hashed storage cannot show a token, and a row without one would open nothing: not listed."""
    ALICE, BOB, _ = users()
    sid, _ = await chat(c, ALICE)
    share = await c.share(ALICE, sid, read_only=True)
    await c.call("GET", f"/api/sessions/{sid}", user=BOB, token=share["token"])
    await gw.flush_access()
    assert [r["id"] for r in await sidebar(c, BOB)] == []


async def test_share_dialog_flow_as_kagents_ui_drives_it(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    """ShareButton.tsx end to end: create a read-only link, see it listed, copy its link, the viewer
    opens the page (``getSessionWithEvents`` + ``getSessionTasks`` with ``X-Share-Token``), is read-only
    and cannot send, then the owner revokes the link by the row's token and the viewer is cut off."""
    alice, bob, _ = users()
    gw = await make_gateway(shares__token_storage="encrypted", shares__token_keys=KEY,
                            public_url="https://kagent.example.com")
    c = client_for(gw)
    sid, _ = await chat(c, alice)
    status, created, _ = await c.call("POST", f"/api/sessions/{sid}/shares", user=alice,
                                      json_body={"read_only": True})
    assert status == 201 and created["error"] is False
    status, listed, _ = await c.call("GET", f"/api/sessions/{sid}/shares", user=alice)
    row = listed["data"][0]
    assert status == 200 and row["token"] == created["data"]["token"] and row["read_only"] is True
    link = f"https://kagent.example.com/agents/demo/echo/chat/{sid}?share={row['token']}"
    assert created["data"]["url"] == link == row["url"]  # what "Copy link" copies
    token = link.rsplit("?share=", 1)[1]  # the chat page reads searchParams.get("share")
    status, page, _ = await c.call("GET", f"/api/sessions/{sid}", user=bob, token=token)
    assert (status, page["data"]["read_only"]) == (200, True)
    status, tasks, _ = await c.call("GET", f"/api/sessions/{sid}/tasks", user=bob, token=token)
    assert status == 200 and tasks["data"]
    status, sent = await c.say("can I write?", user=bob, context=sid, token=token, version="0.3")
    assert status == 403 and sent["error"]["message"] == "share link is read-only"
    status, gone, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{row['token']}", user=alice)
    assert status == 200 and gone["error"] is False
    status, denied, _ = await c.call("GET", f"/api/sessions/{sid}", user=bob, token=token)
    assert status == 403 and isinstance(denied["error"], str)  # the UI's toast text
    status, listed, _ = await c.call("GET", f"/api/sessions/{sid}/shares", user=alice)
    assert status == 200 and listed.get("data", []) == []
