"""The agent-host stand-in, spoken to directly: what any holder of the connection token can do
upstream, i.e. what a gateway in front of a VS Code agent host has to defend against."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.agent_host_standin import ROOT, AgentHost, default_chat_uri, subagent_chat_uri

TOKEN = "tok-123"
S1, S2 = "mock:/s1", "ahp-session:/s2"
CHAT1 = default_chat_uri(S1)


class Peer:
    """A JSON-RPC client on one WebSocket; notifications that arrive meanwhile go to `inbox`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.inbox, self.last_id = ws, list[dict[str, Any]](), 0

    async def recv(self) -> dict[str, Any]:
        msg: dict[str, Any] = await asyncio.wait_for(self.ws.receive_json(), 5)
        return msg

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.ws.send_json({"jsonrpc": "2.0", "id": self.last_id, "method": method,
                                 "params": {"channel": ROOT} | params})
        while True:
            msg = await self.recv()
            if "method" not in msg and msg.get("id") == self.last_id:
                return msg
            self.inbox.append(msg)

    async def notify(self, method: str, **params: Any) -> None:
        await self.ws.send_json({"jsonrpc": "2.0", "method": method, "params": params})

    async def wait_for(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for msg in self.inbox:
            if match(msg):
                self.inbox.remove(msg)
                return msg
        while not match(msg := await self.recv()):
            self.inbox.append(msg)
        return msg


def action(kind: str, channel: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: (m.get("method") == "action" and m["params"]["action"]["type"] == kind
                      and channel in (None, m["params"]["channel"]))


def notification(method: str, **params: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("method") == method and all(m["params"].get(k) == v for k, v in params.items())


@dataclass
class Upstream:
    host: AgentHost
    server: TestServer
    http: aiohttp.ClientSession
    peers: list[Peer] = field(default_factory=list)

    def url(self, path: str = "/", token: str | None = TOKEN) -> str:
        return str(self.server.make_url(path + (f"?tkn={token}" if token is not None else "")))

    async def open(self, path: str = "/") -> Peer:
        peer = Peer(await self.http.ws_connect(self.url(path)))
        self.peers.append(peer)
        return peer

    async def connect(self, client_id: str, subscriptions: list[str] | None = None) -> Peer:
        peer = await self.open()
        reply = await peer.call("initialize", protocolVersions=["0.9.0"], clientId=client_id,
                                initialSubscriptions=subscriptions or [])
        assert reply["result"]["protocolVersion"] == "0.9.0"
        return peer

    async def test_api(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.server.make_url(path), json=body) as r:
            assert r.status == 200, await r.text()
            return await r.json()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    host = AgentHost(TOKEN)
    server = TestServer(host.app())
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        up = Upstream(host, server, http)
        yield up
        for peer in up.peers:
            await peer.ws.close()
    await server.close()


async def test_a_wrong_or_missing_token_is_refused_before_the_upgrade(upstream: Upstream) -> None:
    for token in ("wrong", None):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await upstream.http.ws_connect(upstream.url("/any/path", token))
        assert refused.value.status == 403
    async with upstream.http.get(upstream.url("/x")) as plain:
        assert plain.status == 426  # `ws` answers plain HTTP with Upgrade Required
    assert [(c["query"], c["accepted"]) for c in await upstream.test_api("GET", "/_test/connections")] == [
        ("tkn=wrong", False), ("", False), (f"tkn={TOKEN}", False)]


async def test_the_token_alone_lists_every_session_reads_files_and_reaches_host_powers(upstream: Upstream) -> None:
    peer = await upstream.connect("anyone")
    items = (await peer.call("listSessions"))["result"]["items"]
    assert {i["resource"] for i in items} == {S1, S2}

    snapshot = (await peer.call("subscribe", channel=S2))["result"]["snapshot"]
    chats = [c["resource"] for c in snapshot["state"]["chats"]]
    assert chats == [default_chat_uri(S2), "ahp-chat://side/YWhwLXNlc3Npb246L3My",
                     subagent_chat_uri(S2, "toolu_s2:spawn/1")]
    assert chats[2] == "ahp-chat://subagent/YWhwLXNlc3Npb246L3My/toolu_s2%3Aspawn%2F1"
    assert CHAT1 == "ahp-chat://default/bW9jazovczE"
    history = (await peer.call("subscribe", channel=default_chat_uri(S2)))["result"]["snapshot"]["state"]
    assert history["turns"][0]["message"]["text"] == "history of Session two"

    read = await peer.call("resourceRead", uri="file:///home/user/.ssh/id_rsa")
    assert read["result"]["data"].startswith("-----BEGIN FAKE PRIVATE KEY")
    listing = await peer.call("resourceList", uri="file:///workspace")
    assert {"name": "README.md", "type": "file"} in listing["result"]["entries"]
    assert (await peer.call("resourceWrite", uri="file:///workspace/x", data="hi", encoding="utf-8"))["result"] == {}
    assert (await peer.call("createTerminal", channel="ahp-terminal:/mine"))["result"] is None
    tcp = await peer.call("createTcpConnection", channel="ahp-tcp:/1", host="169.254.169.254", port=80)
    assert tcp["result"] is None
    assert (await peer.call("authenticate", resource="https://api.github.com", token="gho_x"))["result"] == {}
    assert (await peer.call("shutdown"))["result"] is None

    state = await upstream.test_api("GET", "/_test/state")
    assert "ahp-terminal:/mine" in [t["resource"] for t in state["terminals"]]
    assert state["credentials"] == {"https://api.github.com": "gho_x"}  # host-wide, not per client
    assert state["tcpConnections"][0]["host"] == "169.254.169.254"
    assert [c["method"] for c in state["extensionCalls"]] == ["shutdown"]


async def test_root_and_mcp_notifications_reach_clients_that_never_subscribed(upstream: Upstream) -> None:
    watcher = await upstream.connect("watcher", [CHAT1])  # one chat of S1, not the root channel
    other = await upstream.connect("other")

    assert (await other.call("createSession", channel="ahp-session:/new", provider="mock"))["result"] is None
    added = await watcher.wait_for(notification("root/sessionAdded"))
    assert added["params"]["channel"] == ROOT and added["params"]["summary"]["resource"] == "ahp-session:/new"

    started = await upstream.test_api("POST", "/_test/turn", {"session": S2, "text": "private work"})
    assert started["chat"] == default_chat_uri(S2)
    await watcher.wait_for(notification("root/sessionSummaryChanged", session=S2))
    done = await watcher.wait_for(notification("root/sessionSummaryChanged", session=S2))
    assert done["params"]["changes"]["status"] == 1  # idle again: the turn completed
    await watcher.call("ping")  # anything sent to it before this reply has arrived by now
    assert not [m for m in watcher.inbox if m.get("method") == "action"]  # envelopes stay per channel

    mcp = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
           "params": {"channel": "mcp://copilot/s2/github"}}
    assert (await upstream.test_api("POST", "/_test/broadcast", mcp))["sent"] == 2
    assert await watcher.wait_for(lambda m: m == mcp)

    assert (await other.call("disposeSession", channel=S2))["result"] is None
    await watcher.wait_for(notification("root/sessionRemoved", session=S2))


async def test_reconnect_with_another_clients_id_takes_over_its_stream(upstream: Upstream) -> None:
    victim = await upstream.connect("victim", [CHAT1])
    turn = {"type": "chat/turnStarted", "turnId": "turn-1", "startedAt": "2025-01-01T00:00:00.000Z",
            "message": {"text": "deploy it", "origin": {"kind": "user"}}}
    await victim.notify("dispatchAction", channel=CHAT1, clientSeq=1, action=turn)
    echo = (await victim.wait_for(action("chat/turnStarted", CHAT1)))["params"]
    assert echo["origin"] == {"clientId": "victim", "clientSeq": 1}
    ready = (await victim.wait_for(action("chat/toolCallReady", CHAT1)))["params"]

    attacker = await upstream.open("/some/other/path")  # no initialize: reconnect is allowed first
    resumed = (await attacker.call("reconnect", clientId="victim", lastSeenServerSeq=echo["serverSeq"],
                                   subscriptions=[CHAT1, "mock:/gone"]))["result"]
    assert resumed["type"] == "replay" and resumed["missing"] == ["mock:/gone"]
    assert [a["action"]["type"] for a in resumed["actions"]] == [
        "chat/responsePart", "chat/delta", "chat/delta", "chat/toolCallStart", "chat/toolCallReady"]

    confirm = {"type": "chat/toolCallConfirmed", "turnId": "turn-1", "toolCallId": ready["action"]["toolCallId"],
               "approved": True, "confirmed": "user-action"}
    await attacker.notify("dispatchAction", channel=CHAT1, clientSeq=7, action=confirm)
    confirmed = await attacker.wait_for(action("chat/toolCallConfirmed", CHAT1))
    assert confirmed["params"]["origin"] == {"clientId": "victim", "clientSeq": 7}
    await attacker.wait_for(action("chat/turnComplete", CHAT1))

    await victim.call("ping")  # the newest connection of a clientId is the only one that receives
    assert not [m for m in victim.inbox if m.get("method") == "action" and m["params"]["serverSeq"] > ready["serverSeq"]]
    received = await upstream.test_api("GET", "/_test/received")
    assert [r["clientId"] for r in received if r.get("message", {}).get("params", {}).get("clientSeq") == 7] == ["victim"]


async def test_framing_errors_and_the_pre_initialize_gate(upstream: Upstream) -> None:
    peer = await upstream.open()
    await peer.ws.send_str("not json")
    assert await peer.recv() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    await peer.ws.send_bytes(json.dumps({"jsonrpc": "2.0", "id": 99, "method": "ping"}).encode())
    assert await peer.recv() == {"jsonrpc": "2.0", "id": 99, "result": None}  # binary JSON is accepted

    assert (await peer.call("listSessions"))["error"]["code"] == -32601
    await peer.notify("dispatchAction", channel=CHAT1, clientSeq=1, action={"type": "chat/turnStarted", "turnId": "x"})
    assert (await peer.call("reconnect", clientId="nobody", lastSeenServerSeq=0, subscriptions=[]))["error"]["code"] == -32008
    old = await peer.call("initialize", protocolVersions=["0.8.0"], clientId="c")
    assert old["error"]["code"] == -32005 and old["error"]["data"] == {"supportedVersions": ["^0.9.0"]}

    ok = await peer.call("initialize", protocolVersions=["0.9.0"], clientId="c", initialSubscriptions=[ROOT, CHAT1])
    assert [s["resource"] for s in ok["result"]["snapshots"]] == [ROOT, CHAT1]
    assert "activeTurn" not in ok["result"]["snapshots"][1]["state"]  # the early dispatch was dropped
    assert (await peer.call("initialize", protocolVersions=["0.9.0"], clientId="c"))["error"]["code"] == -32601
    assert (await peer.call("subscribe", channel="mock:/unknown"))["error"]["code"] == -32001
    loaded = await peer.call("fetchTurns", channel=CHAT1, cursor="older")
    assert loaded["result"] == {}
    assert (await peer.wait_for(action("chat/turnsLoaded", CHAT1)))["params"]["action"]["turns"] == []

    await peer.ws.close(code=4000)
    assert peer.ws.close_code == 4000  # the host echoes the client's close code
    assert (await upstream.test_api("GET", "/_test/connections"))[-1]["closeCode"] == 4000


async def test_runs_as_a_subprocess() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.agent_host_standin", "--port", "0", "--token", TOKEN,
        cwd=Path(__file__).resolve().parent.parent, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
        assert line.startswith("READY:")
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"http://127.0.0.1:{line.removeprefix('READY:')}/?tkn={TOKEN}") as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"channel": ROOT}})
            assert await ws.receive_json() == {"jsonrpc": "2.0", "id": 1, "result": None}
    finally:
        proc.terminate()
        await proc.wait()
