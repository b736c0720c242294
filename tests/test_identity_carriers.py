"""Identity carriers (DESIGN.md): no client can name a user in a header or query parameter the upstream reads.

The upstream is the demo server, which resolves the user exactly as kagent's
controller does (``gateway/demo/agent.py`` ``resolve_user``: ``?user_id=``
before ``X-User-Id`` in unsecure mode; ``X-Agent-Name`` switching to them in
trusted-proxy mode). Every assertion is on the user the upstream *computed*
for each request it received (``effective_user`` in its capture), so a
spelling the gateway misses shows up as the wrong user.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import A2A, Client, Gateway, GatewayFactory, Upstream, demo_upstream, message_body

# Query strings that make kagent's unsecure mode take "alice" (Go's url.Values.Get:
# first value after percent-decoding) or that a looser parser might read so.
SPELLINGS = [
    "user_id=alice",
    "user%5Fid=alice",
    "user%5fid=alice",
    "%75ser_id=alice",
    "user_id=alice&user_id=bob",
    "user_id=&user_id=alice",
    "a=1&user_id=alice&b=2",
    "USER_ID=alice",
    "User_Id=alice",
    "user_id=alice;x=1",
    "x=1;user_id=alice",
    "user_id",
]
# Header spellings of kagent's identity headers (Go canonicalises case; some
# proxies and servers read "_" as "-": oauth2-proxy CVE-2025-64484).
AGENT_HEADERS = [("X-Agent-Name", "kagent__NS__agent"), ("x_agent_name", "a"), ("X-AGENT-NAME", "a")]


def seen(upstream: Upstream) -> list[dict[str, Any]]:
    return upstream.requests()


def effective_users(upstream: Upstream) -> list[str | None]:
    return [r["effective_user"] for r in seen(upstream)]


async def alice_session(c: Client) -> str:
    return await c.session("alice")


@pytest.mark.parametrize("query", SPELLINGS)
async def test_query_carriers_never_reach_the_upstream(c: Client, upstream: Upstream, query: str) -> None:
    sid = await alice_session(c)
    upstream.clear()
    # a matched session route, an unmatched route, the share API, an agent card and A2A
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}?{query}", user="bob")
    assert status == 404, body
    status, body, _ = await c.call("GET", f"/api/me?{query}", user="bob")
    assert (status, body["sub"]) == (200, "bob")
    status, body, _ = await c.call("GET", f"/api/sessions/{sid}/shares?{query}", user="bob")
    assert status == 404, body
    status, _, _ = await c.call("GET", f"/api/a2a/demo/echo/.well-known/agent-card.json?{query}", user="bob")
    assert status == 200
    status, body, _ = await c.call(
        "POST", f"{A2A}?{query}", user="bob", version="1.0",
        json_body={"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                   "params": {"message": message_body("hi", sid)}},
    )
    # Run as bob, not alice: kagent gives bob his own session under the same id.
    assert "user=bob " in json.dumps(body), body
    requests = seen(upstream)
    assert requests, "the upstream saw nothing"
    assert {r["effective_user"] for r in requests} == {"bob"}, requests
    for r in requests:
        assert "user_id" not in r["query"].lower() and "%5f" not in r["query"].lower(), r


async def test_other_parameters_are_forwarded_byte_for_byte(c: Client, upstream: Upstream) -> None:
    sid = await alice_session(c)
    upstream.clear()
    status, _, _ = await c.call("GET", f"/api/sessions/{sid}?order=asc&user_id=bob&limit=5&q=a%20b+c", user="alice")
    assert status == 200
    assert seen(upstream)[0]["query"] == "order=asc&limit=5&q=a%20b+c"


@pytest.mark.parametrize(("name", "value"), AGENT_HEADERS)
async def test_identity_headers_are_stripped(c: Client, upstream: Upstream, name: str, value: str) -> None:
    upstream.clear()
    status, body, _ = await c.call("GET", "/api/me?user_id=alice", user="bob",
                                   headers={name: value, "X_User_Id": "alice", "x-user-id": "alice"})
    assert (status, body["sub"]) == (200, "bob")
    names = [k for k, _ in seen(upstream)[0]["headers"]]
    assert "x-agent-name" not in names and "x_agent_name" not in names and "x_user_id" not in names
    assert names.count("x-user-id") == 1


async def test_a_share_token_with_a_carrier_names_only_the_owner(c: Client, upstream: Upstream) -> None:
    alice = await alice_session(c)
    carol = await c.session("carol")
    share = await c.share("alice", alice, read_only=True)
    upstream.clear()
    status, body, _ = await c.call("GET", f"/api/sessions/{alice}?user_id=carol", user="bob", token=share["token"])
    assert (status, body["data"]["session"]["user_id"]) == (200, "alice")
    status, _, _ = await c.call("GET", f"/api/sessions/{carol}?user_id=carol", user="bob", token=share["token"])
    assert status == 404  # another session: the token is ignored and bob is bob
    assert effective_users(upstream) == ["alice", "bob"]


async def test_trusted_agents_keep_their_carriers(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], upstream: Upstream
) -> None:
    """kagent's agents call back with ?user_id= and X-Agent-Name: only from trusted_agents."""
    open_gw = await make_gateway()
    c = client_for(open_gw)
    sid = await alice_session(c)
    path = f"/api/sessions/{sid}/events?user_id=alice"
    agent = {"X-Agent-Name": "demo__NS__echo"}
    upstream.clear()
    status, _, _ = await c.call("POST", path, user="bob", headers=agent, json_body={"data": "{}"})
    assert status == 404  # not a trusted agent: bob stays bob
    assert effective_users(upstream) == ["bob"]

    agents_gw = await make_gateway(trusted_agents="127.0.0.1/32")
    upstream.clear()
    status, body, _ = await client_for(agents_gw).call("POST", path, headers=agent, json_body={"data": "{}"})
    assert status == 201, body
    request = seen(upstream)[0]
    assert request["effective_user"] == "alice"
    assert request["query"] == "user_id=alice"
    assert ["x-agent-name", "demo__NS__echo"] in request["headers"]


# -- kagent's trusted-proxy mode behind jwt-assertion -----------------------------


@pytest.fixture(scope="module")
def proxy_mode_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """The demo server in kagent's trusted-proxy mode (user from the bearer JWT's claim)."""
    with demo_upstream(tmp_path_factory, "--auth-mode", "trusted-proxy") as server:
        yield server


@pytest.mark.parametrize("query", ["user_id=alice", "user%5Fid=alice", "user_id=alice&user_id=alice"])
async def test_trusted_proxy_mode_agent_switch_is_closed(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client], proxy_mode_upstream: Upstream,
    query: str,
) -> None:
    gw = await make_gateway(upstream=proxy_mode_upstream.url, upstream_auth__mode="jwt-assertion")
    c = client_for(gw)
    proxy_mode_upstream.clear()
    for name, value in AGENT_HEADERS:
        status, body, _ = await c.call("GET", f"/api/me?{query}", user="bob",
                                       headers={name: value, "X-User-Id": "alice"})
        assert (status, body["sub"]) == (200, "bob"), body
    assert set(effective_users(proxy_mode_upstream)) == {"bob"}
    # The switch really exists upstream: sent directly, the same request runs as alice.
    import aiohttp
    import jwt

    bearer = jwt.encode({"sub": "bob"}, "k" * 32, algorithm="HS256")  # kagent never verifies it
    async with aiohttp.ClientSession() as direct, direct.get(
        f"{proxy_mode_upstream.url}/api/me?{query}",
        headers={"Authorization": f"Bearer {bearer}", "X-Agent-Name": "a"},
    ) as r:
        assert (await r.json())["sub"] == "alice"
