"""The share management API: owner-only (404 for everyone else), validation, listing, revocation."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Client, Gateway, GatewayFactory


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway(public_url="https://chat.example", shares__max_expires_in="86400")


async def test_create_shows_token_once_and_list_hides_it(gw: Gateway, client_for: Callable[[Gateway], Client]) -> None:
    c = client_for(gw)
    sid = await c.session("alice")
    created = await c.share("alice", sid, read_only=False, expires_in=3600, label="for bob")
    token = created["token"]
    assert len(token) >= 43
    assert created["url"] == f"https://chat.example/api/sessions/{sid}?share={token}"
    assert (created["session_id"], created["user_id"], created["read_only"], created["label"]) == (
        sid, "alice", False, "for bob")
    assert created["expires_at"] is not None
    assert created["id"].startswith("sh_")
    status, listed, headers = await c.call("GET", f"/api/sessions/{sid}/shares", user="alice")
    assert status == 200
    assert listed["error"] is False
    assert headers["Cache-Control"] == "no-store"
    [item] = listed["data"]
    assert token not in str(listed)
    assert item["token_prefix"] == token[:8]
    assert (item["viewers"], item["access_count"], item["last_accessed_at"]) == (0, 0, None)


async def test_access_stats_appear_in_the_list(gw: Gateway, client_for: Callable[[Gateway], Client]) -> None:
    c = client_for(gw)
    sid = await c.session("alice")
    token = (await c.share("alice", sid))["token"]
    for user in ("bob", "bob", "carol"):
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user=user, token=token)
        assert status == 200
    await gw.flush_access()
    _, listed, _ = await c.call("GET", f"/api/sessions/{sid}/shares", user="alice")
    item = listed["data"][0]
    assert (item["viewers"], item["access_count"]) == (2, 3)
    assert item["last_accessed_at"] is not None


async def test_non_owners_get_404_everywhere(gw: Gateway, client_for: Callable[[Gateway], Client]) -> None:
    c = client_for(gw)
    sid = await c.session("alice")
    share = await c.share("alice", sid)
    missing = "no-such-session"
    calls = [
        ("POST", f"/api/sessions/{sid}/shares", "bob", {"read_only": True}),
        ("GET", f"/api/sessions/{sid}/shares", "bob", None),
        ("DELETE", f"/api/sessions/{sid}/shares/{share['id']}", "bob", None),
        ("DELETE", f"/api/sessions/{sid}/shares/{share['token']}", "bob", None),
        ("GET", f"/api/sessions/{missing}/shares", "bob", None),
        ("POST", f"/api/sessions/{missing}/shares", "alice", {}),
    ]
    bodies = set()
    for method, path, user, body in calls:
        status, out, _ = await c.call(method, path, user=user, json_body=body)
        assert status == 404, (method, path, user)
        assert out["error"] is True
        bodies.add(str(out))
    assert len(bodies) == 1  # a missing session and someone else's look the same
    # even with a valid share token for the session, the API stays owner-only
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/shares", user="bob", token=share["token"])
    assert status == 404
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}/shares")  # no identity at all
    assert status == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"read_only": "yes"}, "read_only"),
        ({"expires_in": -5}, "expires_in"),
        ({"expires_in": "60"}, "expires_in"),
        ({"expires_in": 10**9}, "at most 86400"),
        ({"label": "x" * 500}, "label"),
        ([1, 2], "JSON object"),
    ],
)
async def test_create_validation(
    gw: Gateway, client_for: Callable[[Gateway], Client], body: object, fragment: str
) -> None:
    c = client_for(gw)
    sid = await c.session("alice")
    status, out, _ = await c.call("POST", f"/api/sessions/{sid}/shares", user="alice", json_body=body)
    assert status == 400
    assert fragment in out["message"]
    status, out, _ = await c.call("POST", f"/api/sessions/{sid}/shares", user="alice", data=b"{oops")
    assert status == 400
    assert "not valid JSON" in out["message"]


async def test_revoke_by_id_and_by_token(gw: Gateway, client_for: Callable[[Gateway], Client]) -> None:
    c = client_for(gw)
    sid = await c.session("alice")
    by_id, by_token = await c.share("alice", sid), await c.share("alice", sid)
    for share, ref in ((by_id, by_id["id"]), (by_token, by_token["token"])):
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
        assert status == 200  # warm every cache first
        status, out, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{ref}", user="alice")
        assert (status, out["data"]["revoked"]) == (200, True)
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=share["token"])
        assert status == 403  # immediately, despite the cache
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/sh_nope", user="alice")
    assert status == 404
    other = await c.session("alice")
    foreign = await c.share("alice", other)
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{foreign['id']}", user="alice")
    assert status == 404  # a share of another session is not reachable through this one


async def test_expiry(make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]) -> None:
    gw = await make_gateway()
    c = client_for(gw)
    sid = await c.session("alice")
    token = (await c.share("alice", sid, read_only=True, expires_in=1))["token"]
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
    assert status == 200
    await asyncio.sleep(1.1)
    status, out, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=token)
    assert status == 403
    assert out["message"] == "share link is invalid, expired or revoked"


async def test_share_api_conforms_to_its_openapi_document(
    gw: Gateway, client_for: Callable[[Gateway], Client], tmp_path: Path
) -> None:
    """schemathesis drives the share API from the OpenAPI document the admin listener serves."""
    import json
    import sys

    from aiohttp.test_utils import TestServer

    from gateway.health import Health, create_admin_app

    c = client_for(gw)
    sid = await c.session("alice")
    await c.share("alice", sid)
    admin = TestServer(create_admin_app(Health()), host="127.0.0.1")
    await admin.start_server()
    try:
        async with aiohttp.ClientSession() as http, http.get(admin.make_url("/openapi.json")) as r:
            doc = await r.json()
    finally:
        await admin.close()
    for path in doc["paths"].values():  # let the generated cases reach alice's real session too
        path["parameters"][0]["schema"]["examples"] = [sid]
        path["parameters"][0]["example"] = sid
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(doc))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", gw.url,
        "-H", "X-Forwarded-User: alice", "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "-n", "40", "--seed", "7", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode()
    assert proc.returncode == 0, text[-4000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", text)
    assert generated is not None, text[-2000:]
    assert int(generated.group(1)) >= 100
    assert generated.group(1) == generated.group(2)
