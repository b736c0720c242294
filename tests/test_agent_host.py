"""VS Code's agent host behind the gateway, with real WebSocket clients (profile ``agent-host``).

The upstream is ``tests/agent_host_standin.py``, an AHP host written from the
protocol documents and VS Code's host: one connection token, every session
open to whoever holds it. Through the gateway its owner keeps that; a share
holder sees one session live — and, with a read-write link, can continue it —
and nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.observe import metrics
from tests.agent_host_standin import HOST, AgentHost, default_chat_uri, make_app, subagent_chat_uri
from tests.conftest import USER, Client, Gateway, GatewayFactory

S1, S2 = "mock:/s1", "ahp-session:/s2"
CHAT1, CHAT2 = default_chat_uri(S1), default_chat_uri(S2)
HOST_TOKEN = "host-secret-token"
OWNER = "owner@example.com"
DEADLINE = 2.0


@pytest.fixture
async def host(tmp_path: Any) -> AsyncIterator[tuple[TestServer, AgentHost]]:
    server = TestServer(make_app(HOST_TOKEN, 0.01), host="127.0.0.1")
    await server.start_server()
    standin = server.app[HOST]
    standin.base_url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    yield server, standin
    await server.close()


@pytest.fixture
async def ahp(host: tuple[TestServer, AgentHost], make_gateway: GatewayFactory, tmp_path: Any,
              client_for: Callable[[Gateway], Client]) -> tuple[Gateway, Client, AgentHost]:
    server, standin = host
    token_file = tmp_path / "host-token"
    token_file.write_text(HOST_TOKEN + "\n")
    gw = await make_gateway(profile="agent-host", upstream=str(server.make_url("")).rstrip("/"),
                            upstream_auth__token_file=str(token_file), default_owner=OWNER,
                            public_url="https://agents.example.com")
    return gw, client_for(gw), standin


class Peer:
    """One AHP client over a real WebSocket: JSON-RPC requests, and every message it received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.next_id = 0

    async def request(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.receive()
            if message.get("id") == self.next_id and "method" not in message:
                return message

    async def notify(self, method: str, **params: Any) -> None:
        await self.ws.send_json({"jsonrpc": "2.0", "method": method, "params": params})

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, self.ws.close_code)
        message: dict[str, Any] = json.loads(msg.data)
        self.seen.append(message)
        return message

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(max(0.01, deadline - time.monotonic()))
            if predicate(message):
                return message

    async def quiet(self, seconds: float = 0.3) -> None:
        """Read whatever arrives for ``seconds`` (into ``seen``)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                await self.receive(left)
            except TimeoutError:
                return

    def frames_text(self) -> str:
        return json.dumps(self.seen)


async def connect(http: aiohttp.ClientSession, gw: Gateway, *, user: str | None, tkn: str | None,
                  client_id: str = "vscode-1", subscriptions: list[str] | None = None) -> Peer:
    url = gw.url + "/" + (f"?tkn={quote(tkn)}" if tkn else "")
    ws = await http.ws_connect(url, headers={USER: user} if user else {})
    peer = Peer(ws)
    answer = await peer.request("initialize", channel="ahp-root://", protocolVersions=["0.9.0"],
                                clientId=client_id, initialSubscriptions=subscriptions or [])
    assert "result" in answer, answer
    return peer


async def share(c: Client, session: str, read_only: bool) -> dict[str, Any]:
    status, body, _ = await c.call("POST", f"/api/sessions/{quote(session, safe='')}/shares", user=OWNER,
                                   json_body={"read_only": read_only})
    assert status == 201, body
    return dict(body["data"])


async def test_the_owner_gets_the_whole_host_and_the_host_token_stays_the_gateways(
    ahp: tuple[Gateway, Client, AgentHost], http: aiohttp.ClientSession
) -> None:
    gw, _, standin = ahp
    owner = await connect(http, gw, user=OWNER, tkn=None)  # signed in: no connection token
    listed = await owner.request("listSessions", channel="ahp-root://")
    assert {s["resource"] for s in listed["result"]["items"]} == {S1, S2}
    read = await owner.request("resourceRead", channel="ahp-root://", uri="file:///workspace/README.md")
    assert "result" in read
    queries = [c["query"] for c in standin.connections]
    assert queries and all(q == f"tkn={HOST_TOKEN}" for q in queries), queries
    await owner.ws.close()


async def test_nobody_else_connects_without_a_share(
    ahp: tuple[Gateway, Client, AgentHost], http: aiohttp.ClientSession
) -> None:
    gw, _, _ = ahp
    for user, tkn in (("bob", None), ("bob", HOST_TOKEN), (None, "not-a-share-token")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(gw.url + "/" + (f"?tkn={tkn}" if tkn else ""),
                                  headers={USER: user} if user else {})
        assert refused.value.status in (401, 403)


async def test_a_read_only_holder_watches_one_session_live_and_nothing_else(
    ahp: tuple[Gateway, Client, AgentHost], http: aiohttp.ClientSession
) -> None:
    gw, c, standin = ahp
    link = await share(c, S1, read_only=True)
    assert link["url"].endswith(f"/?tkn={link['token']}")
    bob = await connect(http, gw, user="bob", tkn=link["token"],
                        subscriptions=["ahp-root://", S1, CHAT1, CHAT2, S2])
    snapshots = bob.seen[0]["result"]["snapshots"]
    assert {s["resource"] for s in snapshots} == {S1, CHAT1}
    listed = await bob.request("listSessions", channel="ahp-root://")
    assert [s["resource"] for s in listed["result"]["items"]] == [S1]
    for method, params in [("subscribe", {"channel": S2}), ("subscribe", {"channel": CHAT2}),
                           ("subscribe", {"channel": "ahp-terminal:/t1"}), ("subscribe", {"channel": "ahp-root://"}),
                           ("resourceRead", {"channel": "ahp-root://", "uri": "file:///home/user/.ssh/id_rsa"}),
                           ("createTerminal", {"channel": "ahp-terminal:/t9"}),
                           ("createSession", {"channel": "ahp-session:/mine", "provider": "mock"}),
                           ("authenticate", {"channel": "ahp-root://", "resource": "r", "token": "t"}),
                           ("createTcpConnection", {"channel": "ahp-tcp:/x", "host": "169.254.169.254", "port": 80}),
                           ("shutdown", {})]:
        answer = await bob.request(method, **params)
        assert answer["error"]["code"] == -32009, (method, answer)
    subagent = await bob.request("subscribe", channel=subagent_chat_uri(S1, "toolu_s1:spawn/1"))
    assert "result" in subagent
    await bob.notify("dispatchAction", channel=CHAT1, clientSeq=1,
                     action={"type": "chat/turnStarted", "turnId": "b1", "message": {"text": "may I?"}})
    # live: the owner's turn in s1 reaches bob; activity in s2 and host-wide broadcasts do not
    await standin_turn(gw, standin, S1)
    await bob.until(lambda m: m.get("method") == "action" and m["params"]["action"]["type"] == "chat/turnComplete")
    await standin_turn(gw, standin, S2)
    await standin.broadcast({"jsonrpc": "2.0", "method": "auth/required",
                             "params": {"channel": "ahp-root://", "resource": "https://api.github.com"}})
    await bob.quiet(0.5)
    text = bob.frames_text()
    assert S2 not in text and "YWhwLXNlc3Npb246L3My" not in text and "auth/required" not in text
    assert "ahp-terminal" not in text and "id_rsa" not in text.replace("file:///home/user/.ssh/id_rsa", "")
    sent_by_bob = [r["message"] for r in standin.received if r["clientId"] and "share-" in r["clientId"]]
    assert not any(m.get("method") in ("dispatchAction", "resourceRead", "createTerminal", "shutdown")
                   for m in sent_by_bob)
    await bob.ws.close()


async def standin_turn(gw: Gateway, standin: AgentHost, session: str, tool: bool = False) -> None:
    """Activity in ``session`` that no client started (``POST /_test/turn`` on the host)."""
    async with aiohttp.ClientSession() as http, http.post(
        standin.base_url + "/_test/turn", json={"session": session, "text": "the owner's turn", "tool": tool}
    ) as r:
        assert r.status == 200, await r.text()


async def test_a_read_write_holder_pairs_in_that_session_only(
    ahp: tuple[Gateway, Client, AgentHost], http: aiohttp.ClientSession
) -> None:
    gw, c, standin = ahp
    link = await share(c, S1, read_only=False)
    bob = await connect(http, gw, user="bob", tkn=link["token"], subscriptions=[CHAT1])
    await bob.notify("dispatchAction", channel=CHAT1, clientSeq=1,
                     action={"type": "chat/turnStarted", "turnId": "b1", "message": {"text": "run ls"}})
    started = await bob.until(lambda m: m.get("method") == "action"
                              and m["params"]["action"]["type"] == "chat/turnStarted")
    assert started["params"]["origin"]["clientId"] == "vscode-1"  # bob sees his own id
    ready = await bob.until(lambda m: m.get("method") == "action"
                            and m["params"]["action"]["type"] == "chat/toolCallReady")
    action = ready["params"]["action"]
    await bob.notify("dispatchAction", channel=CHAT1, clientSeq=2, action={
        "type": "chat/toolCallConfirmed", "turnId": action.get("turnId", "b1"),
        "toolCallId": action["toolCallId"], "approved": True, "confirmed": "user"})
    await bob.until(lambda m: m.get("method") == "action" and m["params"]["action"]["type"] == "chat/turnComplete")
    # the host saw bob's actions from a namespaced client id, never bob's own
    mine = [r for r in standin.received if (r["message"] or {}).get("method") == "dispatchAction"]
    assert mine and all(r["clientId"].startswith("share-") and r["clientId"].endswith("-vscode-1") for r in mine)
    # a write into another session, or an owner setting, never reaches the host
    before = len(standin.received)
    await bob.notify("dispatchAction", channel=CHAT2, clientSeq=3,
                     action={"type": "chat/turnStarted", "turnId": "x", "message": {"text": "hi s2"}})
    await bob.notify("dispatchAction", channel=S1, clientSeq=4,
                     action={"type": "session/configChanged", "config": {"autoApprove": True}})
    await bob.request("ping")
    assert [r["message"]["method"] for r in standin.received[before:]] == ["ping"]
    await bob.ws.close()


async def test_revocation_closes_the_socket_with_4403(
    ahp: tuple[Gateway, Client, AgentHost], http: aiohttp.ClientSession
) -> None:
    gw, c, standin = ahp
    link = await share(c, S1, read_only=True)
    bob = await connect(http, gw, user="bob", tkn=link["token"], subscriptions=[CHAT1])
    carol = await connect(http, gw, user="carol", tkn=link["token"], client_id="vscode-1", subscriptions=[CHAT1])
    owner = await connect(http, gw, user=OWNER, tkn=None, subscriptions=[CHAT1])
    before = metrics.REGISTRY.get_sample_value("share_gateway_streams_ended_total", {"reason": "revoked"}) or 0
    status, _, _ = await c.call("DELETE", f"/api/sessions/{quote(S1, safe='')}/shares/{link['id']}", user=OWNER)
    assert status == 200
    revoked = time.monotonic()
    for holder in (bob, carol):
        msg = await holder.ws.receive(timeout=DEADLINE)
        while msg.type is aiohttp.WSMsgType.TEXT:
            msg = await holder.ws.receive(timeout=DEADLINE)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert holder.ws.close_code == 4403
    assert time.monotonic() - revoked < DEADLINE
    after = metrics.REGISTRY.get_sample_value("share_gateway_streams_ended_total", {"reason": "revoked"})
    assert after == before + 2
    assert "result" in await owner.request("listSessions", channel="ahp-root://")  # the owner's stays open
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(gw.url + f"/?tkn={link['token']}", headers={USER: "bob"})
    await owner.ws.close()


async def test_two_holders_never_share_a_client_and_reconnect_stays_theirs(
    ahp: tuple[Gateway, Client, AgentHost], http: aiohttp.ClientSession
) -> None:
    gw, c, standin = ahp
    link = await share(c, S1, read_only=True)
    bob = await connect(http, gw, user="bob", tkn=link["token"], client_id="same-id", subscriptions=[CHAT1])
    carol = await connect(http, gw, user="carol", tkn=link["token"], client_id="same-id", subscriptions=[CHAT1])
    ids = {r["message"]["params"]["clientId"] for r in standin.received
           if (r["message"] or {}).get("method") == "initialize"}
    assert len(ids) == 2 and "same-id" not in ids
    await bob.ws.close()
    again = await http.ws_connect(gw.url + f"/?tkn={link['token']}", headers={USER: "bob"})
    peer = Peer(again)
    resumed = await peer.request("reconnect", channel="ahp-root://", clientId="same-id", lastSeenServerSeq=0,
                                 subscriptions=[CHAT1, CHAT2])
    assert "result" in resumed or resumed["error"]["code"] != -32009
    assert CHAT2 not in json.dumps(resumed)
    owner_ids = {r["clientId"] for r in standin.received if r["clientId"]}
    assert not any(i == "same-id" for i in owner_ids)
    await again.close()
    await carol.ws.close()


async def test_bad_frames_from_a_holder_close_the_connection(
    ahp: tuple[Gateway, Client, AgentHost], http: aiohttp.ClientSession
) -> None:
    gw, c, standin = ahp
    link = await share(c, S1, read_only=True)
    for frame, code in ((b'{"jsonrpc":"2.0","id":1,"method":"resourceRead"}', 1003), ("not json", 1008),
                        ("[" * 100 + "]" * 100, 1008)):
        ws = await http.ws_connect(gw.url + f"/?tkn={link['token']}", headers={USER: "bob"})
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)  # VS Code's host would decode a binary frame as JSON
        else:
            await ws.send_str(frame)
        msg = await ws.receive(timeout=DEADLINE)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        assert ws.close_code == code
    assert not any((r["message"] or {}).get("method") == "resourceRead" for r in standin.received)
