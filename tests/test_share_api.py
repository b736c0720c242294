"""The share management API: owner-only (404 for everyone else), validation, listing, revocation,
links, encrypted token storage — in the shapes kagent's own UI reads (kagent-dev/kagent
release/v0.10.x: ui/src/components/chat/ShareButton.tsx, ui/src/app/actions/sessionShares.ts)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway import config, profiles
from gateway.app import create_app
from gateway.profiles.links import Links, Placeholder, render
from gateway.profiles.links import parse as parse_links
from gateway.shares.tokens import key_id
from tests.conftest import Client, Gateway, GatewayFactory


def new_key() -> str:
    """A fresh base64 32-byte token key (``shares.token_keys``)."""
    return base64.b64encode(os.urandom(32)).decode()


KEY_1, KEY_2 = new_key(), new_key()
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Gateway:
    return await make_gateway(public_url="https://chat.example", shares__max_expires_in="86400")


async def test_create_shows_token_once_and_list_hides_it(gw: Gateway, client_for: Callable[[Gateway], Client]) -> None:
    c = client_for(gw)
    sid = await c.session("alice")
    status, out, _ = await c.call("POST", f"/api/sessions/{sid}/shares", user="alice",
                                  json_body={"read_only": False, "expires_in": 3600, "label": "for bob"})
    assert (status, out["error"], out["message"]) == (201, False, "share created")
    created = out["data"]
    token = created["token"]
    assert len(token) >= 43
    # kagent's UI page for the session; the agent comes from the probed session's agent_id
    assert created["url"] == f"https://chat.example/agents/demo/echo/chat/{sid}?share={token}"
    assert (created["session_id"], created["user_id"], created["read_only"], created["label"]) == (
        sid, "alice", False, "for bob")
    # the fields kagent's SessionShare has, with its JSON types (go/api/database/models.go;
    # only `id` differs: kagent's is an int64, the UI never reads it)
    assert {k: type(created[k]) for k in ("id", "token", "session_id", "user_id", "read_only", "created_at")} == {
        "id": str, "token": str, "session_id": str, "user_id": str, "read_only": bool, "created_at": str}
    assert RFC3339.match(created["created_at"])
    assert created["expires_at"] is not None
    assert created["id"].startswith("sh_")
    status, listed, headers = await c.call("GET", f"/api/sessions/{sid}/shares", user="alice")
    assert status == 200
    assert listed["error"] is False
    assert headers["Cache-Control"] == "no-store"
    [item] = listed["data"]
    assert token not in str(listed)
    assert "token" not in item and "url" not in item  # hashed storage (the default)
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
        assert out == {"error": "session not found"}
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
    assert fragment in out["error"]
    status, out, _ = await c.call("POST", f"/api/sessions/{sid}/shares", user="alice", data=b"{oops")
    assert status == 400
    assert "not valid JSON" in out["error"]


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
    assert out == {"error": "share link is invalid, expired or revoked"}


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


# ---------------------------------------------------------------- error bodies


async def test_error_bodies_are_strings_kagents_ui_shows_as_its_toast(
    gw: Gateway, client_for: Callable[[Gateway], Client]
) -> None:
    """kagent's fetchApi shows ``errorData.error`` as the toast (ui/src/app/actions/utils.ts), and
    kagent's handlers answer ``{"error": "<message>"}`` (middleware_error.go RespondWithError): every
    gateway error body is that, with the message as a string. JSON-RPC errors stay JSON-RPC."""
    c = client_for(gw)
    sid = await c.session("alice")
    read_only = (await c.share("alice", sid, read_only=True))["token"]
    cases: list[tuple[str, str, str | None, str | None, Any, int, str]] = [
        ("GET", f"/api/sessions/{sid}/shares", None, None, None, 401, "authentication required"),
        ("GET", f"/api/sessions/{sid}/shares", "bob", None, None, 404, "session not found"),
        ("POST", f"/api/sessions/{sid}/shares", "alice", None, {"read_only": "yes"}, 400,
         "read_only must be a boolean"),
        ("GET", f"/api/sessions/{sid}/shares?include=all", "alice", None, None, 400, "include must be 'inactive'"),
        ("DELETE", f"/api/sessions/{sid}/shares/sh_nope", "alice", None, None, 404, "share not found"),
        ("GET", f"/api/sessions/{sid}", "bob", "x" * 43, None, 403, "share link is invalid, expired or revoked"),
        ("POST", f"/api/sessions/{sid}/events", "bob", read_only, {"data": {}}, 403, "share link is read-only"),
    ]
    for method, path, user, token, body, status, message in cases:
        got, out, headers = await c.call(method, path, user=user, token=token, json_body=body)
        assert (got, out) == (status, {"error": message}), (method, path)
        assert headers["Content-Type"].startswith("application/json")
    status, rpc = await c.rpc("GetTask", {"id": "t"}, user="bob", token="x" * 43)
    assert status == 403
    assert rpc["jsonrpc"] == "2.0"
    assert rpc["error"]["message"] == "share link is invalid, expired or revoked"
    assert isinstance(rpc["error"]["code"], int)


# ---------------------------------------------------------------- kagent's create body


@pytest.mark.parametrize("raw", [None, b"", b"  \n", b"{}", b'{"label": "x"}', b'{"read_only": null}'])
async def test_read_only_is_the_default(
    gw: Gateway, client_for: Callable[[Gateway], Client], raw: bytes | None
) -> None:
    """kagent: ``read_only`` defaults to true for an empty body or a missing (or null) field."""
    c = client_for(gw)
    sid = await c.session("alice")
    status, out, _ = await c.call("POST", f"/api/sessions/{sid}/shares", user="alice", data=raw)
    assert status == 201, out
    assert out["data"]["read_only"] is True
    assert out["data"]["expires_at"] is not None  # shares.max_expires_in applies to an empty body too
    status, _, _ = await c.call("POST", f"/api/sessions/{sid}/events", user="bob", token=out["data"]["token"],
                                json_body={"data": {}})
    assert status == 403


# ---------------------------------------------------------------- listing


async def test_list_shows_live_shares_newest_first_and_include_inactive_adds_the_rest(
    gw: Gateway, client_for: Callable[[Gateway], Client]
) -> None:
    c = client_for(gw)
    sid = await c.session("alice")
    expiring = await c.share("alice", sid, expires_in=1)
    revoked = await c.share("alice", sid)
    older = await c.share("alice", sid)
    newer = await c.share("alice", sid, read_only=False)
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{revoked['id']}", user="alice")
    assert status == 200
    await asyncio.sleep(1.1)
    status, out, _ = await c.call("GET", f"/api/sessions/{sid}/shares", user="alice")
    assert (status, out["message"]) == (200, "shares listed")
    assert [(x["id"], x["active"]) for x in out["data"]] == [(newer["id"], True), (older["id"], True)]
    status, out, _ = await c.call("GET", f"/api/sessions/{sid}/shares?include=inactive", user="alice")
    assert status == 200
    assert [(x["id"], x["active"], x["revoked_at"] is not None) for x in out["data"]] == [
        (newer["id"], True, False),
        (older["id"], True, False),
        (revoked["id"], False, True),
        (expiring["id"], False, False),
    ]


# ---------------------------------------------------------------- links


async def test_link_template_takes_kagents_placeholders_from_the_probed_session(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], upstream: Any
) -> None:
    """``{namespace}``/``{name}`` come from the session's ``agent_id`` in the ownership probe's
    answer (kagent: GET /api/sessions/{id} as the owner → data.session.agent_id)."""
    gw = await make_gateway(
        public_url="https://chat.example",
        shares__link_template="{public_url}/ui/{namespace}/{name}?s={session_id}&t={token}",
    )
    c = client_for(gw)
    sid = await c.session("alice")
    created = await c.share("alice", sid)
    assert created["url"] == f"https://chat.example/ui/demo/echo?s={sid}&t={created['token']}"
    probes = [r for r in upstream.requests() if r["method"] == "GET" and r["path"] == f"/api/sessions/{sid}"]
    assert probes and {r["effective_user"] for r in probes} == {"alice"}
    # a template that needs no public_url works without one
    bare = await make_gateway(shares__link_template="https://ui.example/agents/{namespace}/{name}/chat/{session_id}")
    c = client_for(bare)
    sid = await c.session("alice")
    assert (await c.share("alice", sid))["url"] == f"https://ui.example/agents/demo/echo/chat/{sid}"


async def test_a_link_that_cannot_be_filled_is_left_out(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], tmp_path: Path
) -> None:
    """No public_url for a template that needs it, or a session without the field: no url, never a broken one."""
    gw = await make_gateway()  # kagent's template starts with {public_url}
    c = client_for(gw)
    sid = await c.session("alice")
    created = await c.share("alice", sid)
    assert "url" not in created and created["token"]
    data = yaml.safe_load(Path(profiles.__file__).with_name("kagent.yaml").read_text())
    data["links"]["placeholders"]["name"]["field"] = "data.session.no_such_field"
    custom = tmp_path / "kagent-custom.yaml"
    custom.write_text(yaml.safe_dump(data))
    gw = await make_gateway(profile=str(custom), public_url="https://chat.example")
    c = client_for(gw)
    sid = await c.session("alice")
    assert "url" not in await c.share("alice", sid)


def test_a_template_with_placeholders_the_profile_lacks_fails_at_start_up() -> None:
    settings = config.load(overrides={"upstream": "http://127.0.0.1:1", "shares.link_template": "{public_url}/{agent}"})
    with pytest.raises(ValueError, match=r"unknown placeholders \['agent'\]"):
        create_app(settings)
    settings = config.load(overrides={"upstream": "http://127.0.0.1:1", "profile": "docker-agent",
                                      "shares.link_template": "{public_url}/{namespace}/{token}"})
    with pytest.raises(ValueError, match="namespace"):  # only kagent's profile provides it
        create_app(settings)
    with pytest.raises(config.ConfigError, match=r"only \{name\} placeholders"):
        config.load(overrides={"shares.link_template": "{public_url}/{token!r}"})


KAGENT_LINKS = profiles.load("kagent").links


@pytest.mark.parametrize(
    ("agent_id", "expected"),
    [
        ("demo__NS__echo", ("demo", "echo")),
        # kagent stores ConvertToPythonIdentifier("ns/name"): "-" → "_", "/" → "__NS__"
        ("my_team__NS__echo_bot", ("my-team", "echo-bot")),
        ("echo", None),  # no namespace
        ("a__NS__b__NS__c", None),
        ("Demo__NS__echo", None),  # not a Kubernetes name
        ("demo__NS__", None),
        ("demo__NS__echo/../x", None),
        (42, None),
        (None, None),
    ],
)
def test_kagent_placeholders_undo_convert_to_python_identifier(agent_id: Any, expected: Any) -> None:
    body = json.dumps({"error": False, "data": {"session": {"id": "s", "agent_id": agent_id}, "events": []},
                       "message": "Successfully retrieved session"}).encode()
    values = KAGENT_LINKS.values(body, frozenset({"namespace", "name"}))
    if expected is None:
        assert not {"namespace", "name"} <= values.keys()
    else:
        assert (values["namespace"], values["name"]) == expected


@pytest.mark.parametrize("body", [None, b"", b"not json", b"[]", b'{"data": {"session": {}}}', b'{"data": []}'])
def test_kagent_placeholders_from_answers_without_an_agent(body: bytes | None) -> None:
    assert KAGENT_LINKS.values(body, frozenset({"namespace", "name"})) == {}


def test_render_percent_encodes_values_and_needs_every_placeholder() -> None:
    template = "{public_url}/agents/{namespace}/{name}/chat/{session_id}?share={token}"
    values = {"public_url": "https://h/p", "namespace": "ns", "name": "a", "session_id": "a/b c?", "token": "T-_"}
    assert render(template, values) == "https://h/p/agents/ns/a/chat/a%2Fb%20c%3F?share=T-_"
    assert render(template, {k: v for k, v in values.items() if k != "name"}) is None


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"links": {"template": "{public_url}/{agent}"}}, "unknown placeholders ['agent']"),
        ({"links": {"template": "{public_url}/{token:>9}"}}, "only {name} placeholders"),
        ({"links": {"placeholders": {"token": {"field": "a"}}}}, "links.placeholders.token"),
        ({"links": {"placeholders": {"ns": {"split": "__NS__"}}}}, "needs field"),
        ({"links": {"placeholders": {"ns": {"field": "a", "index": "0"}}}}, "ns.index"),
        ({"links": {"placeholders": {"ns": {"field": "a", "pattern": "("}}}}, "ns.pattern"),
        ({"links": {"placeholders": {"ns": {"field": "a", "spilt": "x"}}}}, "unknown keys ['spilt']"),
        ({"share_url": 5}, "share_url"),
    ],
)
def test_profile_link_sections_are_validated(section: dict[str, Any], problem: str) -> None:
    problems: list[str] = []
    parse_links(section, problems)
    assert any(problem in p for p in problems), problems


def test_a_profile_without_links_has_none_and_share_url_still_works() -> None:
    problems: list[str] = []
    assert parse_links({}, problems) == Links()
    legacy = parse_links({"share_url": "{public_url}/s/{session_id}?share={token}"}, problems)
    assert legacy.template == "{public_url}/s/{session_id}?share={token}"
    assert problems == []
    assert Placeholder("x", ("a",)).value({"a": "v"}) == "v"


# ---------------------------------------------------------------- token storage


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One store file (or PostgreSQL schema) that several gateways of a test share."""
    return f"sqlite:///{tmp_path}/tokens.db" if request.param == "sqlite" else str(request.getfixturevalue("pg"))


def encrypted(*keys: str) -> dict[str, str]:
    return {"shares__token_storage": "encrypted", "shares__token_keys": ",".join(keys)}


async def listed(c: Client, sid: str, query: str = "") -> dict[str, dict[str, Any]]:
    status, out, _ = await c.call("GET", f"/api/sessions/{sid}/shares{query}", user="alice")
    assert status == 200, out
    return {row["id"]: row for row in out["data"]}


async def test_hashed_storage_is_what_kagents_ui_cannot_copy_or_revoke_from(
    gw: Gateway, client_for: Callable[[Gateway], Client]
) -> None:
    """The README's account of kagent's ShareButton with hashed storage (the default): the created
    row carries its token, listed rows do not, so the UI's link ends in ?share=undefined and its
    revoke asks for DELETE …/shares/undefined, answered 404 "share not found" (the toast)."""
    c = client_for(gw)
    sid = await c.session("alice")
    created = await c.share("alice", sid)
    assert created["token"] and created["url"].endswith(f"?share={created['token']}")
    [row] = (await listed(c, sid)).values()
    assert "token" not in row and "url" not in row
    status, out, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/undefined", user="alice")
    assert (status, out) == (404, {"error": "share not found"})
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=created["token"])
    assert status == 200  # the share itself still works


async def test_encrypted_storage_round_trip_as_kagents_ui_drives_it(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], store_url: str
) -> None:
    """ShareButton: create {"read_only": …} → list → copy/revoke by each row's ``token``."""
    gw = await make_gateway(store=store_url, public_url="https://chat.example", **encrypted(KEY_1))
    c = client_for(gw)
    sid = await c.session("alice")
    first = await c.share("alice", sid, read_only=True)
    second = await c.share("alice", sid, read_only=False)
    rows = await listed(c, sid)
    assert list(rows) == [second["id"], first["id"]]
    for share in (first, second):
        row = rows[share["id"]]
        assert (row["token"], row["url"], row["read_only"]) == (share["token"], share["url"], share["read_only"])
        assert row["url"] == f"https://chat.example/agents/demo/echo/chat/{sid}?share={share['token']}"
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=rows[first["id"]]["token"])
    assert status == 200  # the listed token is the working share token
    status, out, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{rows[first['id']]['token']}", user="alice")
    assert (status, out["error"]) == (200, False)
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=first["token"])
    assert status == 403
    assert list(await listed(c, sid)) == [second["id"]]
    everything = await listed(c, sid, "?include=inactive")
    assert "token" not in everything[first["id"]] and "url" not in everything[first["id"]]
    assert everything[second["id"]]["token"] == second["token"]
    # in the store: the hash for lookups, the token only sealed; revocation erased the ciphertext
    stored = {s.share.id: s.sealed for s in await gw.store.list_shares(sid, "alice")}
    assert stored[first["id"]] is None
    sealed = stored[second["id"]]
    assert sealed is not None
    assert sealed.key_id == key_id(base64.b64decode(KEY_1))
    assert second["token"] not in sealed.ciphertext


async def test_key_rotation_old_keys_decrypt_the_first_encrypts(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], store_url: str
) -> None:
    old = await make_gateway(store=store_url, **encrypted(KEY_1))
    c = client_for(old)
    sid = await c.session("alice")
    before = await c.share("alice", sid)
    rotated = await make_gateway(store=store_url, **encrypted(KEY_2, KEY_1))
    c = client_for(rotated)
    after = await c.share("alice", sid)
    rows = await listed(c, sid)
    assert {i: r["token"] for i, r in rows.items()} == {after["id"]: after["token"], before["id"]: before["token"]}
    sealed = {s.share.id: s.sealed.key_id if s.sealed else None for s in await rotated.store.list_shares(sid, "alice")}
    assert sealed == {before["id"]: key_id(base64.b64decode(KEY_1)), after["id"]: key_id(base64.b64decode(KEY_2))}
    # KEY_1 retired: what it sealed lists without a token, and still works and revokes
    retired = await make_gateway(store=store_url, **encrypted(KEY_2))
    c = client_for(retired)
    rows = await listed(c, sid)
    assert "token" not in rows[before["id"]] and rows[after["id"]]["token"] == after["token"]
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user="bob", token=before["token"])
    assert status == 200
    status, _, _ = await c.call("DELETE", f"/api/sessions/{sid}/shares/{before['id']}", user="alice")
    assert status == 200
    # a wrong key opens nothing
    stranger = await make_gateway(store=store_url, **encrypted(new_key()))
    assert all("token" not in r for r in (await listed(client_for(stranger), sid)).values())


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"shares.token_storage": "encrypted"}, "shares.token_storage encrypted needs a key"),
        ({"shares.token_storage": "encrypted", "shares.token_keys": base64.b64encode(b"short").decode()},
         "shares.token_keys[0] decodes to 5 bytes, not 32"),
        ({"shares.token_storage": "encrypted", "shares.token_keys": "not base64!"}, "shares.token_keys[0] is not base64"),
        ({"shares.token_keys": f"{KEY_1},{KEY_2[:-4]}"}, "shares.token_keys[1] decodes to 30 bytes"),
        ({"shares.token_storage": "encrypted", "shares.token_key_file": "/nonexistent/keys"},
         "shares.token_key_file: not a readable text file"),
        ({"shares.token_storage": "sealed"}, "shares.token_storage"),
    ],
)
def test_token_keys_are_validated(overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(overrides=overrides)
    assert any(problem in p for p in err.value.problems), err.value.problems
    assert KEY_1 not in str(err.value) and KEY_2[:-4] not in str(err.value)


def test_token_key_file_follows_token_keys_and_keys_are_masked(tmp_path: Path) -> None:
    first = new_key()
    keys = tmp_path / "keys"
    keys.write_text(f"# newest first\n{base64.urlsafe_b64encode(base64.b64decode(KEY_2)).decode().rstrip('=')}\n\n{KEY_1}\n")
    settings = config.load(overrides={
        "shares.token_storage": "encrypted", "shares.token_keys": first, "shares.token_key_file": str(keys)})
    assert settings.shares.token_key_bytes() == [base64.b64decode(k) for k in (first, KEY_2, KEY_1)]
    shown = settings.redacted()
    assert shown["shares"]["token_keys"] == ["***"]
    assert first not in json.dumps(shown)
    keys.write_text(f"{KEY_1}\nnot-a-key\n")
    with pytest.raises(config.ConfigError, match="token_key_file line 2"):
        config.load(overrides={"shares.token_storage": "encrypted", "shares.token_key_file": str(keys)})


async def test_opened_by_gives_the_live_shares_a_user_opened_with_tokens_when_encrypted(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], store_url: str
) -> None:
    """For the sidebar (kagent's ``share_token`` on sessions opened through a share)."""
    gw = await make_gateway(store=store_url, **encrypted(KEY_1))
    c = client_for(gw)
    s1, s2 = await c.session("alice"), await c.session("alice")
    a, b, gone = await c.share("alice", s1), await c.share("alice", s2), await c.share("alice", s1)
    for user, share, sid in (("bob", a, s1), ("bob", gone, s1), ("bob", b, s2), ("carol", b, s2)):
        status, _, _ = await c.call("GET", f"/api/sessions/{sid}", user=user, token=share["token"])
        assert status == 200
    await gw.flush_access()
    await c.call("DELETE", f"/api/sessions/{s1}/shares/{gone['id']}", user="alice")
    api = gw.pipeline.share_api
    assert {(s.id, token) for s, token in await api.opened_by("bob")} == {(a["id"], a["token"]), (b["id"], b["token"])}
    assert [(s.id, token) for s, token in await api.opened_by("bob", [s1])] == [(a["id"], a["token"])]
    assert await api.opened_by("bob", []) == []
    assert await api.opened_by("alice") == []  # her own shares are hers, not "shared with her"
    hashed = await make_gateway(store=store_url)
    assert {(s.id, token) for s, token in await hashed.pipeline.share_api.opened_by("bob")} == {
        (a["id"], None), (b["id"], None)}
