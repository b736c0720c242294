"""A stand-in for VS Code's agent host (Agent Host Protocol, AHP) over WebSocket, for tests.

Written in Python from a reading of (not copied from):

- microsoft/vscode `src/vs/platform/agentHost/node/webSocketTransport.ts` (0f225ea): no URL path
  check (any path upgrades); the token is the `tkn` query parameter, checked before the upgrade
  (HTTP 403 "Forbidden"); each frame is decoded as UTF-8 and JSON-parsed, a failure answers
  `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`. Binary frames are
  decoded the same way (`data.toString('utf-8')`), so a binary frame holding JSON is processed:
  VS Code differs here from the spec's "one message per text frame" (AHP
  `docs/specification/transport.md`), and this stand-in behaves like VS Code. `ws` answers a
  plain HTTP request with 426, allows 100 MiB frames, sends no pings and answers the client's.
- microsoft/vscode `src/vs/platform/agentHost/node/protocolServerHandler.ts` (0123089): before
  `initialize` only `ping`, `initialize` and `reconnect` are answered (other requests -32601,
  notifications ignored); versions negotiated with caret semantics against 0.9.0 (else -32005 with
  `data.supportedVersions: ["^0.9.0"]`); `initialize` and `reconnect` attach a connection to the
  client-asserted `clientId` (reconnect needs a known id, else -32008) and the newest connection of
  a clientId is the one that receives; replay buffer of 1000 envelopes, replay when
  `lastSeenServerSeq >= oldest buffered serverSeq`, filtered to the new connection's
  subscriptions; `action` envelopes go to connections subscribed to that exact channel (root
  envelopes to any root subscriber), while `root/*`, `auth/required` and MCP notifications go to
  every initialized client (`_broadcastNotification`, `_broadcastMcpNotification`);
  `dispatchAction` is forwarded for session/chat/terminal/changeset/annotations actions and
  `root/configChanged`, `chat/workingDirectorySet|Removed` come back with a `rejectionReason`;
  `subscribe` to an unknown channel -32001 "Resource not found"; `fetchTurns` checks the cursor
  and dispatches `chat/turnsLoaded {turns: []}`; `listSessions` returns every session; extension
  method `shutdown`; `mcp://` channel requests.
- microsoft/vscode `src/vs/platform/agentHost/common/state/sessionState.ts`: chat URIs
  `ahp-chat://<chatId>/<base64url-no-pad(session)>`, default chat id `default`, subagent chats
  `ahp-chat://subagent/<b64(session)>/<encodeURIComponent(toolCallId)>`; `common/annotationsUri.ts`:
  `<session>/annotations`; `common/state/agentSubscription.ts`
  (`isActionEnvelopeRelevantToSubscriptionUris`); `protocol/version/{registry,negotiation}.ts`.
- microsoft/agent-host-protocol `types/common/{messages,commands,notifications}.ts`,
  `types/channels-chat/{actions,state}.ts`, `types/channels-session/state.ts`,
  `types/channels-root/{state,notifications}.ts`, `types/channels-terminal/state.ts`,
  `types/channels-tcp/commands.ts`, `types/test-cases/reducers/019-*.json`,
  `docs/specification/subscriptions.md`: field names of params, results, states and actions.

Known simplifications: the chat reducer is partial; turn and annotations state shapes are
approximate; `root/sessionSummaryChanged` is sent at once (VS Code debounces ~100 ms);
`createTcpConnection` succeeds (it is in the spec; VS Code 0123089 has no handler and answers
-32601) so that tests can tell a gateway refusal from an upstream one. Test-only HTTP endpoints
live under `/_test/` (see `AgentHost.app`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import WSMsgType, web

ROOT = "ahp-root://"
PROTOCOL_VERSION = "0.9.0"
REPLAY_BUFFER_CAPACITY = 1000
MAX_FRAME = 100 * 1024 * 1024  # ws default maxPayload
PARSE_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, INTERNAL_ERROR = -32700, -32602, -32601, -32603
SESSION_NOT_FOUND, PROVIDER_NOT_FOUND, SESSION_EXISTS = -32001, -32002, -32003
UNSUPPORTED_VERSION, NOT_FOUND, ALREADY_EXISTS = -32005, -32008, -32010
IDLE, IN_PROGRESS, INPUT_NEEDED = 1, 8, 24  # SessionStatus bits
PROVIDERS = ("mock", "copilot")
UNSUPPORTED_CLIENT_ACTIONS = {"chat/workingDirectorySet", "chat/workingDirectoryRemoved"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def chat_uri(session: str, chat_id: str) -> str:
    return f"ahp-chat://{chat_id}/{b64url(session)}"


def default_chat_uri(session: str) -> str:
    return chat_uri(session, "default")


def subagent_chat_uri(session: str, tool_call_id: str) -> str:
    encoded = quote(tool_call_id, safe="!*'()")  # encodeURIComponent
    return f"ahp-chat://subagent/{b64url(session)}/{encoded}"


def annotations_uri(session: str) -> str:
    return f"{session}/annotations"


def is_root(channel: str) -> bool:
    return channel in (ROOT, "ahp-root:")


def negotiate(offered: Any) -> str | None:
    """negotiation.ts picks the highest offered version compatible with ^0.9.0 and not above it:
    for 0.x the minor must match and the patch be <= ours, so only "0.9.0" qualifies."""
    return PROTOCOL_VERSION if isinstance(offered, list) and PROTOCOL_VERSION in offered else None


class ProtocolError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass
class Chat:
    resource: str
    session: str
    title: str
    origin: dict[str, Any] | None = None
    interactivity: str | None = None
    status: int = IDLE
    modified_at: str = field(default_factory=now)
    turns: list[dict[str, Any]] = field(default_factory=list)
    turns_next_cursor: str | None = None
    active_turn: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resource": self.resource, "title": self.title, "status": self.status,
                               "modifiedAt": self.modified_at}
        if self.origin:
            out["origin"] = self.origin
        if self.interactivity:
            out["interactivity"] = self.interactivity
        return out

    def state(self) -> dict[str, Any]:
        out = self.summary() | {"turns": self.turns}
        if self.turns_next_cursor:
            out["turnsNextCursor"] = self.turns_next_cursor
        if self.active_turn:
            out["activeTurn"] = self.active_turn
        return out


@dataclass
class Session:
    resource: str
    provider: str
    title: str
    working_directories: list[str]
    chats: list[str] = field(default_factory=list)
    status: int = IDLE
    created_at: str = field(default_factory=now)
    modified_at: str = field(default_factory=now)
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"resource": self.resource, "provider": self.provider, "title": self.title,
                "status": self.status, "createdAt": self.created_at, "modifiedAt": self.modified_at,
                "workingDirectories": self.working_directories}

    def state(self, chats: dict[str, Chat]) -> dict[str, Any]:
        return {"provider": self.provider, "title": self.title, "status": self.status,
                "workingDirectories": self.working_directories, "lifecycle": "ready",
                "activeClients": [], "chats": [chats[c].summary() for c in self.chats if c in chats],
                "defaultChat": default_chat_uri(self.resource),
                "config": {"schema": {"type": "object", "properties": {"autoApprove": {"type": "boolean"}}},
                           "values": self.config}}


@dataclass
class Conn:
    """One WebSocket; `client_id` is set by a successful `initialize` or `reconnect`."""

    number: int
    ws: web.WebSocketResponse
    client_id: str | None = None
    subscriptions: set[str] = field(default_factory=set)


class AgentHost:
    def __init__(self, token: str | None = "secret-token", step_delay: float = 0.0) -> None:
        self.token, self.step_delay = token, step_delay
        self.sessions: dict[str, Session] = {}
        self.chats: dict[str, Chat] = {}
        self.terminals: dict[str, dict[str, Any]] = {}
        self.files: dict[str, str] = {
            "file:///workspace/README.md": "# workspace\n",
            "file:///workspace/one/notes.txt": "notes of session one\n",
            "file:///home/user/.ssh/id_rsa": "-----BEGIN FAKE PRIVATE KEY-----\n",
        }
        self.credentials: dict[str, str] = {}
        self.tcp_connections: list[dict[str, Any]] = []
        self.extension_calls: list[dict[str, Any]] = []
        self.root_config: dict[str, Any] = {"chat.autoApprove": False}
        self.clients: dict[str, list[Conn]] = {}  # a record outlives its connections (grace)
        self.server_seq = 0
        self.replay: deque[dict[str, Any]] = deque(maxlen=REPLAY_BUFFER_CAPACITY)
        self.received: list[dict[str, Any]] = []
        self.connections: list[dict[str, Any]] = []
        self.open: list[Conn] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}  # chat uri -> running turn
        self.pending: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._turn_counter = 0
        self.seed()

    # ---- state -------------------------------------------------------------------------------

    def add_session(self, resource: str, provider: str, title: str, workdir: str) -> Session:
        s = Session(resource, provider, title, [workdir])
        self.sessions[resource] = s
        self.add_chat(s, default_chat_uri(resource), "Chat")
        return s

    def add_chat(self, s: Session, uri: str, title: str, **kw: Any) -> Chat:
        c = Chat(uri, s.resource, title, **kw)
        self.chats[uri] = c
        if uri not in s.chats:
            s.chats.append(uri)
        return c

    def seed(self) -> None:
        for uri, provider, title, wd in (("mock:/s1", "mock", "Session one", "file:///workspace/one"),
                                         ("ahp-session:/s2", "copilot", "Session two", "file:///workspace/two")):
            s = self.add_session(uri, provider, title, wd)
            default = self.chats[default_chat_uri(uri)]
            default.turns_next_cursor = "older"
            default.turns.append({"id": "t0", "message": {"text": f"history of {title}", "origin": {"kind": "user"}},
                                  "responseParts": [{"kind": "markdown", "id": "md-t0", "content": f"{title} says hi"}],
                                  "state": "complete"})
            self.add_chat(s, chat_uri(uri, "side"), "Side chat", origin={"kind": "user"})
            call = f"toolu_{uri[-2:]}:spawn/1"
            self.add_chat(s, subagent_chat_uri(uri, call), "Worker", interactivity="read-only",
                          origin={"kind": "tool", "chat": default.resource, "toolCallId": call})
            n = uri[-1]
            self.terminals[f"ahp-terminal:/t{n}"] = {"resource": f"ahp-terminal:/t{n}", "title": f"bash {n}",
                                                     "claim": {"kind": "session", "session": uri}}

    def root_state(self) -> dict[str, Any]:
        agents = [{"provider": p, "displayName": p.title(), "description": f"{p} agent",
                   "models": [{"id": f"{p}-model", "provider": p, "name": f"{p} model"}],
                   "protectedResources": [{"resource": "https://api.github.com", "resource_name": "GitHub API",
                                           "authorization_servers": ["https://github.com/login/oauth"]}]}
                  for p in PROVIDERS]
        return {"agents": agents, "activeSessions": len(self.sessions), "terminals": list(self.terminals.values()),
                "config": {"schema": {"type": "object", "properties": {}}, "values": self.root_config}}

    def state_of(self, channel: str) -> dict[str, Any] | None:
        if is_root(channel):
            return self.root_state()
        if channel in self.sessions:
            return self.sessions[channel].state(self.chats)
        if channel in self.chats:
            return self.chats[channel].state()
        if channel in self.terminals:
            t = self.terminals[channel]
            return {"title": t["title"], "content": [{"type": "unclassified", "value": "$ "}], "claim": t["claim"]}
        if channel.endswith("/annotations") and channel.removesuffix("/annotations") in self.sessions:
            return {"annotations": []}
        return None

    def snapshot(self, channel: str) -> dict[str, Any] | None:
        state = self.state_of(channel)
        return None if state is None else {"resource": channel, "state": state, "fromSeq": self.server_seq}

    def reduce(self, channel: str, action: dict[str, Any]) -> None:
        kind, chat = action.get("type"), self.chats.get(channel)
        if channel in self.sessions:
            s = self.sessions[channel]
            if kind == "session/titleChanged":
                s.title = str(action.get("title"))
            elif kind == "session/configChanged":
                s.config.update(action.get("config") or action.get("values") or {})
            return
        if chat is None:
            return
        turn, chat.modified_at = chat.active_turn, now()
        if kind == "chat/turnStarted":
            chat.active_turn = {"id": action.get("turnId"), "startedAt": action.get("startedAt") or now(),
                                "message": action.get("message"), "responseParts": [], "usage": None}
            chat.status = IN_PROGRESS
            return
        if turn is None or action.get("turnId") != turn["id"]:
            return
        parts: list[dict[str, Any]] = turn["responseParts"]
        calls = {p["toolCall"]["toolCallId"]: p["toolCall"] for p in parts if p.get("kind") == "toolCall"}
        call = calls.get(str(action.get("toolCallId")), {})
        if kind == "chat/responsePart":
            parts.append(dict(action["part"]))
        elif kind == "chat/delta":
            for p in parts:
                if p.get("id") == action.get("partId"):
                    p["content"] = p.get("content", "") + str(action.get("content", ""))
        elif kind == "chat/toolCallStart":
            parts.append({"kind": "toolCall", "toolCall": {"status": "streaming", **{
                k: action.get(k) for k in ("toolCallId", "toolName", "displayName")}}})
        elif kind == "chat/toolCallReady" and call:
            call.update(invocationMessage=action.get("invocationMessage"), toolInput=action.get("toolInput"),
                        status="running" if action.get("confirmed") else "pending-confirmation")
            chat.status = IN_PROGRESS if action.get("confirmed") else INPUT_NEEDED
        elif kind == "chat/toolCallConfirmed" and call:
            approved = bool(action.get("approved"))
            call.update(status="running" if approved else "cancelled",
                        **({"confirmed": action.get("confirmed")} if approved else {"reason": action.get("reason")}))
            chat.status = IN_PROGRESS
        elif kind == "chat/toolCallComplete" and call:
            call.update(status="completed", **action.get("result", {}))
        elif kind in ("chat/turnComplete", "chat/turnCancelled"):
            chat.turns.append(turn | {"state": "complete" if kind == "chat/turnComplete" else "cancelled"})
            chat.active_turn, chat.status = None, IDLE

    # ---- delivery ----------------------------------------------------------------------------

    def active_connections(self) -> list[Conn]:
        """The newest connection of every clientId that has one (protocolServerHandler)."""
        return [conns[-1] for conns in self.clients.values() if conns]

    @staticmethod
    def relevant(conn: Conn, envelope: dict[str, Any]) -> bool:
        channel = envelope["channel"]
        return channel in conn.subscriptions or (is_root(channel) and any(map(is_root, conn.subscriptions)))

    async def send(self, conn: Conn, message: dict[str, Any]) -> None:
        if not conn.ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await conn.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def emit(self, channel: str, action: dict[str, Any], origin: dict[str, Any] | None = None,
                   rejection: str | None = None) -> dict[str, Any]:
        """Number an action, keep it for replay, apply it and deliver it to the channel's subscribers."""
        self.server_seq += 1
        envelope: dict[str, Any] = {"channel": channel, "action": action, "serverSeq": self.server_seq}
        if origin is not None:
            envelope["origin"] = origin
        if rejection is not None:
            envelope["rejectionReason"] = rejection
        else:
            with contextlib.suppress(Exception):  # the reducer is partial; a malformed action still echoes
                self.reduce(channel, action)
        self.replay.append(envelope)
        for conn in self.active_connections():
            if self.relevant(conn, envelope):
                await self.send(conn, {"jsonrpc": "2.0", "method": "action", "params": envelope})
        return envelope

    async def broadcast(self, message: dict[str, Any]) -> int:
        """root/*, auth/required and MCP notifications: every initialized client, subscribed or not."""
        targets = self.active_connections()
        for conn in targets:
            await self.send(conn, message)
        return len(targets)

    async def notify(self, method: str, **params: Any) -> None:
        await self.broadcast({"jsonrpc": "2.0", "method": method, "params": {"channel": ROOT, **params}})

    async def set_status(self, s: Session, status: int) -> None:
        s.status, s.modified_at = status, now()
        await self.notify("root/sessionSummaryChanged", session=s.resource,
                          changes={"status": status, "modifiedAt": s.modified_at})

    # ---- turns -------------------------------------------------------------------------------

    async def run_turn(self, chat: Chat, turn_id: str, text: str, tool: bool) -> None:
        """The agent's side of a turn: stream, ask for a tool confirmation, finish."""
        s, ch, started = self.sessions[chat.session], chat.resource, asyncio.get_running_loop().time()
        await self.set_status(s, IN_PROGRESS)
        part = f"md-{turn_id}"
        await self.emit(ch, {"type": "chat/responsePart", "turnId": turn_id,
                             "part": {"kind": "markdown", "id": part, "content": ""}})
        for chunk in ("You said: ", text):
            await asyncio.sleep(self.step_delay)
            await self.emit(ch, {"type": "chat/delta", "turnId": turn_id, "partId": part, "content": chunk})
        if tool:
            call = f"tc-{turn_id}"
            await self.emit(ch, {"type": "chat/toolCallStart", "turnId": turn_id, "toolCallId": call,
                                 "toolName": "bash", "displayName": "Run Command"})
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.pending[(ch, call)] = future
            await self.emit(ch, {"type": "chat/toolCallReady", "turnId": turn_id, "toolCallId": call,
                                 "invocationMessage": "Run: ls", "toolInput": "ls",
                                 "confirmationTitle": "Run in terminal"})
            await self.set_status(s, INPUT_NEEDED)
            try:
                answer = await future
            finally:
                self.pending.pop((ch, call), None)
            await self.set_status(s, IN_PROGRESS)
            if answer.get("approved"):
                await self.emit(ch, {"type": "chat/toolCallComplete", "turnId": turn_id, "toolCallId": call,
                                     "result": {"success": True, "pastTenseMessage": "Ran command"}})
        await self.emit(ch, {"type": "chat/turnComplete", "turnId": turn_id,
                             "duration": int((asyncio.get_running_loop().time() - started) * 1000)})
        await self.set_status(s, IDLE)

    def start_turn(self, chat: Chat, turn_id: str, text: str, tool: bool = True) -> None:
        task = asyncio.create_task(self.run_turn(chat, turn_id, text, tool))
        self.tasks[chat.resource] = task
        task.add_done_callback(lambda t: self.tasks.pop(chat.resource, None) if self.tasks.get(chat.resource) is t
                               else None)

    async def dispatch(self, conn: Conn, params: dict[str, Any]) -> None:
        """A client's dispatchAction: echo with its origin, then react like the agent would."""
        channel, action = str(params.get("channel")), params.get("action")
        if not isinstance(action, dict):
            return
        kind = str(action.get("type"))
        origin = {"clientId": conn.client_id, "clientSeq": params.get("clientSeq")}
        if kind in UNSUPPORTED_CLIENT_ACTIONS:
            await self.emit(channel, action, origin, rejection=f"Unsupported action: {kind}")
            return
        owner = {"session/": channel in self.sessions, "chat/": channel in self.chats,
                 "terminal/": channel in self.terminals, "annotations/": channel.endswith("/annotations")}
        if not (any(kind.startswith(p) and ok for p, ok in owner.items()) or (kind == "root/configChanged"
                                                                              and is_root(channel))):
            return  # not forwarded (unknown kind, or no such channel)
        await self.emit(channel, action, origin)
        chat = self.chats.get(channel)
        if kind == "chat/turnStarted" and chat and channel not in self.tasks:
            text = (action.get("message") or {}).get("text", "")
            self.start_turn(chat, str(action.get("turnId")), str(text))
        elif kind == "chat/toolCallConfirmed":
            future = self.pending.get((channel, str(action.get("toolCallId"))))
            if future and not future.done():
                future.set_result(action)
        elif kind == "chat/turnCancelled" and chat and channel in self.tasks:
            self.tasks.pop(channel).cancel()
            await self.set_status(self.sessions[chat.session], IDLE)
        elif kind == "session/titleChanged":
            s = self.sessions[channel]
            s.modified_at = now()
            await self.notify("root/sessionSummaryChanged", session=channel,
                              changes={"title": s.title, "modifiedAt": s.modified_at})

    # ---- requests ----------------------------------------------------------------------------

    def initialize(self, conn: Conn, p: dict[str, Any]) -> dict[str, Any]:
        version = negotiate(p.get("protocolVersions"))
        if version is None:
            raise ProtocolError(UNSUPPORTED_VERSION, f"Client offered protocol versions {p.get('protocolVersions')}, "
                                f"none of which are compatible with this server's version {PROTOCOL_VERSION}",
                                {"supportedVersions": [f"^{PROTOCOL_VERSION}"]})
        self.attach(conn, str(p.get("clientId")))
        snapshots = []
        for uri in p.get("initialSubscriptions") or []:
            conn.subscriptions.add(str(uri))  # kept even without a snapshot, like VS Code
            if (snap := self.snapshot(str(uri))) is not None:
                snapshots.append(snap)
        return {"protocolVersion": version, "serverSeq": self.server_seq, "snapshots": snapshots,
                "defaultDirectory": "file:///workspace"}

    def reconnect(self, conn: Conn, p: dict[str, Any]) -> dict[str, Any]:
        client_id = str(p.get("clientId"))
        if client_id not in self.clients:
            raise ProtocolError(NOT_FOUND, f"Reconnect client not found: {client_id}")
        self.attach(conn, client_id)  # no credential beyond the asserted id (VS Code)
        last = p.get("lastSeenServerSeq")
        oldest = self.replay[0]["serverSeq"] if self.replay else self.server_seq
        can_replay = isinstance(last, int) and last >= oldest
        missing, snapshots = [], []
        for uri in p.get("subscriptions") or []:
            snap = self.snapshot(str(uri))
            if snap is None:
                missing.append(uri)
            else:
                conn.subscriptions.add(str(uri))
                snapshots.append(snap)
        if can_replay:
            actions = [e for e in self.replay if e["serverSeq"] > last and self.relevant(conn, e)]
            return {"type": "replay", "actions": actions, "missing": missing}
        return {"type": "snapshot", "snapshots": snapshots}

    def attach(self, conn: Conn, client_id: str) -> None:
        conn.client_id = client_id
        self.clients.setdefault(client_id, []).append(conn)  # newest wins delivery

    async def request(self, conn: Conn, method: str, p: dict[str, Any]) -> Any:
        channel = str(p.get("channel", ""))
        if method == "subscribe":
            snap = self.snapshot(channel)
            if snap is None:
                raise ProtocolError(SESSION_NOT_FOUND, f"Resource not found: {channel}")
            conn.subscriptions.add(channel)
            return {"snapshot": snap}
        if method == "listSessions":
            return {"items": [s.summary() for s in self.sessions.values()]}
        if method == "createSession":
            return await self.create_session(conn, channel, p)
        if method == "disposeSession":
            if self.sessions.pop(channel, None) is not None:
                for uri in [u for u, c in self.chats.items() if c.session == channel]:
                    self.chats.pop(uri)
                    if uri in self.tasks:
                        self.tasks.pop(uri).cancel()
                await self.notify("root/sessionRemoved", session=channel)
            return None
        if method == "createChat":
            s = self.sessions.get(channel)
            if s is None:
                raise ProtocolError(SESSION_NOT_FOUND, f"Session not found: {channel}")
            uri = str(p["chat"])
            if uri != default_chat_uri(channel):
                added = self.add_chat(s, uri, f"Chat {len(s.chats) + 1}", origin={"kind": "user"})
                await self.emit(channel, {"type": "session/chatAdded", "summary": added.summary()})
            return None
        if method == "disposeChat":
            gone = self.chats.pop(channel, None)
            if gone is not None and gone.session in self.sessions:
                self.sessions[gone.session].chats.remove(channel)
                await self.emit(gone.session, {"type": "session/chatRemoved", "chat": channel})
            return None
        if method == "fetchTurns":
            chat = self.chats.get(channel)
            if chat is None:
                raise ProtocolError(SESSION_NOT_FOUND, f"Session not found: {channel}")
            if p.get("cursor") and p["cursor"] != chat.turns_next_cursor:
                raise ProtocolError(INVALID_PARAMS, "Unrecognized fetchTurns cursor")
            await self.emit(channel, {"type": "chat/turnsLoaded", "turns": []})
            return {}
        if method == "authenticate":  # one host-wide store keyed by resource, shared by every client
            if p.get("token"):
                self.credentials[str(p["resource"])] = str(p["token"])
            else:
                self.credentials.pop(str(p.get("resource")), None)
            return {}
        if method in ("createTerminal", "disposeTerminal"):
            if method == "createTerminal":
                self.terminals[channel] = {"resource": channel, "title": p.get("name") or "bash",
                                           "claim": p.get("claim") or {"kind": "client", "clientId": conn.client_id}}
            else:
                self.terminals.pop(channel, None)
            await self.emit(ROOT, {"type": "root/terminalsChanged", "terminals": list(self.terminals.values())})
            return None
        if method == "createTcpConnection":
            self.tcp_connections.append({"channel": channel, "host": p.get("host"), "port": p.get("port"),
                                         "clientId": conn.client_id})
            return None
        if method.startswith("resource"):
            return self.resource(method, p)
        if method == "completions":
            return {"items": []}
        if method in ("shutdown", "diagnosticsFetch"):  # VS Code extension methods
            self.extension_calls.append({"method": method, "params": p, "clientId": conn.client_id})
            return None
        if channel.startswith("mcp://"):
            self.extension_calls.append({"method": method, "params": p, "clientId": conn.client_id})
            return {}
        raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")

    async def create_session(self, conn: Conn, channel: str, p: dict[str, Any]) -> None:
        fork = p.get("fork")
        if fork and fork.get("session") == channel:
            raise ProtocolError(SESSION_EXISTS, f"Fork target session must differ from source session: {channel}")
        if fork and fork.get("session") not in self.sessions:
            raise ProtocolError(SESSION_NOT_FOUND, f"Fork source session not found: {fork.get('session')}")
        active = p.get("activeClient")
        if active and active.get("clientId") != conn.client_id:
            raise ProtocolError(INVALID_PARAMS, "createSession.activeClient.clientId must match the connection's clientId")
        provider = str(p.get("provider") or "mock")
        if provider not in PROVIDERS:
            raise ProtocolError(PROVIDER_NOT_FOUND, f"No agent registered for provider: {provider}")
        if channel in self.sessions:
            raise ProtocolError(SESSION_EXISTS, f"Session already exists: {channel}")
        dirs = p.get("workingDirectories") or ["file:///workspace"]
        s = self.add_session(channel, provider, "New Session", str(dirs[0]))
        s.config.update(p.get("config") or {})
        await self.notify("root/sessionAdded", summary=s.summary())

    def resource(self, method: str, p: dict[str, Any]) -> Any:
        uri = str(p.get("uri", ""))
        if method == "resourceRead":
            if uri not in self.files:
                raise ProtocolError(NOT_FOUND, f"File not found: {uri}")
            if p.get("encoding") == "base64":
                return {"data": base64.b64encode(self.files[uri].encode()).decode(), "encoding": "base64"}
            return {"data": self.files[uri], "encoding": "utf-8", "contentType": "text/plain"}
        if method == "resourceList":
            prefix, entries = uri.rstrip("/") + "/", {}
            for path in self.files:
                if path.startswith(prefix):
                    name, _, rest = path[len(prefix):].partition("/")
                    entries[name] = "directory" if rest else "file"
            if not entries:
                raise ProtocolError(NOT_FOUND, f"Directory not found: {uri}")
            return {"entries": [{"name": n, "type": t} for n, t in sorted(entries.items())]}
        if method == "resourceWrite":
            if p.get("createOnly") and uri in self.files:
                raise ProtocolError(ALREADY_EXISTS, f"File already exists: {uri}")
            data = str(p.get("data", ""))
            self.files[uri] = base64.b64decode(data).decode() if p.get("encoding") == "base64" else data
            return {}
        if method == "resourceDelete":
            if self.files.pop(uri, None) is None:
                raise ProtocolError(NOT_FOUND, f"File not found: {uri}")
            return {}
        if method == "resourceRequest":
            return {}  # VS Code's local host always grants
        raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")

    # ---- connection --------------------------------------------------------------------------

    async def on_message(self, conn: Conn, msg: Any) -> None:
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            return  # responses to server requests and stray values are ignored
        method = msg["method"]
        params: dict[str, Any] = msg["params"] if isinstance(msg.get("params"), dict) else {}
        if "id" not in msg:
            if conn.client_id is None:
                return  # notifications before initialize are ignored
            if method == "unsubscribe":
                conn.subscriptions.discard(str(params.get("channel")))
            elif method == "dispatchAction":
                with contextlib.suppress(Exception):  # VS Code logs a failing notification and carries on
                    await self.dispatch(conn, params)
            return
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg["id"]}
        try:
            if method == "ping":
                reply["result"] = None
            elif conn.client_id is None and method == "initialize":
                reply["result"] = self.initialize(conn, params)
            elif conn.client_id is None and method == "reconnect":
                reply["result"] = self.reconnect(conn, params)
            elif conn.client_id is None:
                raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
            else:
                reply["result"] = await self.request(conn, method, params)
        except ProtocolError as e:
            reply["error"] = {"code": e.code, "message": e.message} | ({"data": e.data} if e.data is not None else {})
        except Exception as e:  # a malformed params object: VS Code answers with the JS error
            reply["error"] = {"code": INTERNAL_ERROR, "message": f"{type(e).__name__}: {e}"}
        await self.send(conn, reply)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        entry: dict[str, Any] = {"connection": len(self.connections) + 1, "path": request.path,
                                 "query": request.query_string, "headers": dict(request.headers),
                                 "accepted": False, "closeCode": None}
        self.connections.append(entry)
        ws = web.WebSocketResponse(autoclose=False, max_msg_size=MAX_FRAME)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="Upgrade Required")
        if self.token is not None and request.query.getall("tkn", []) != [self.token]:
            return web.Response(status=403, text="Forbidden")
        await ws.prepare(request)
        entry["accepted"] = True
        conn = Conn(entry["connection"], ws)
        self.open.append(conn)
        try:
            while True:
                frame = await ws.receive()
                if frame.type == WSMsgType.CLOSE:  # echo the client's code, as `ws` does
                    code = frame.data if isinstance(frame.data, int) and 1000 <= frame.data < 5000 \
                        and frame.data not in (1004, 1005, 1006, 1015) else 1000
                    entry["closeCode"] = frame.data
                    await ws.close(code=code)
                    break
                if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                raw = frame.data if frame.type == WSMsgType.TEXT else frame.data.decode("utf-8", "replace")
                try:
                    msg = json.loads(raw)
                except ValueError:
                    self.received.append({"clientId": conn.client_id, "connection": conn.number, "raw": raw})
                    await self.send(conn, {"jsonrpc": "2.0", "id": None,
                                           "error": {"code": PARSE_ERROR, "message": "Parse error"}})
                    continue
                self.received.append({"clientId": conn.client_id, "connection": conn.number, "message": msg,
                                      **({"binary": True} if frame.type == WSMsgType.BINARY else {})})
                await self.on_message(conn, msg)
        finally:
            self.open.remove(conn)
            if conn.client_id is not None and conn in self.clients.get(conn.client_id, []):
                self.clients[conn.client_id].remove(conn)
        return ws

    # ---- test-only endpoints -----------------------------------------------------------------

    async def t_received(self, _request: web.Request) -> web.Response:
        return web.json_response(self.received)

    async def t_clear(self, _request: web.Request) -> web.Response:
        self.received.clear()
        self.connections.clear()
        return web.json_response({})

    async def t_connections(self, _request: web.Request) -> web.Response:
        return web.json_response(self.connections)

    async def t_state(self, _request: web.Request) -> web.Response:
        return web.json_response({
            "sessions": [s.summary() for s in self.sessions.values()], "chats": list(self.chats),
            "terminals": list(self.terminals.values()), "credentials": self.credentials,
            "tcpConnections": self.tcp_connections, "extensionCalls": self.extension_calls,
            "files": sorted(self.files), "clients": {k: len(v) for k, v in self.clients.items()},
            "serverSeq": self.server_seq})

    async def t_broadcast(self, request: web.Request) -> web.Response:
        """Send the JSON body verbatim to every initialized client (like `_broadcastNotification`)."""
        return web.json_response({"sent": await self.broadcast(await request.json())})

    async def t_turn(self, request: web.Request) -> web.Response:
        """Start a turn without a client: {session, chat?, text?, tool?: false}."""
        body = await request.json()
        s = self.sessions.get(str(body.get("session")))
        chat = self.chats.get(str(body.get("chat") or (default_chat_uri(s.resource) if s else "")))
        if s is None or chat is None or chat.session != s.resource:
            return web.json_response({"error": "unknown session or chat"}, status=404)
        if chat.resource in self.tasks:
            return web.json_response({"error": "turn in progress"}, status=409)
        self._turn_counter += 1
        turn_id, text = f"host-turn-{self._turn_counter}", str(body.get("text", "background work"))
        await self.emit(chat.resource, {"type": "chat/turnStarted", "turnId": turn_id, "startedAt": now(),
                                        "message": {"text": text, "origin": {"kind": "user"}}})
        self.start_turn(chat, turn_id, text, tool=bool(body.get("tool", False)))
        return web.json_response({"chat": chat.resource, "turnId": turn_id})

    async def t_close(self, request: web.Request) -> web.Response:
        """Close connections from the host side: {code?: 1000, clientId?}."""
        body = await request.json() if request.can_read_body else {}
        targets = [c for c in list(self.open) if body.get("clientId") in (None, c.client_id)]
        for conn in targets:
            await conn.ws.close(code=int(body.get("code", 1000)))
        return web.json_response({"closed": len(targets)})

    async def shutdown(self, _app: web.Application) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        for conn in list(self.open):
            await conn.ws.close(code=1001)  # going away

    def app(self) -> web.Application:
        app = web.Application()
        app[HOST] = self
        app.router.add_get("/_test/received", self.t_received)
        app.router.add_delete("/_test/received", self.t_clear)
        app.router.add_get("/_test/connections", self.t_connections)
        app.router.add_get("/_test/state", self.t_state)
        app.router.add_post("/_test/broadcast", self.t_broadcast)
        app.router.add_post("/_test/turn", self.t_turn)
        app.router.add_post("/_test/close", self.t_close)
        app.router.add_get("/{tail:.*}", self.websocket)  # any path, like VS Code
        app.on_shutdown.append(self.shutdown)
        return app


HOST = web.AppKey("agent_host", AgentHost)


def make_app(token: str | None = "secret-token", step_delay: float = 0.0) -> web.Application:
    return AgentHost(token, step_delay).app()


async def _serve(host: str, port: int, token: str | None, step_delay: float) -> None:
    runner = web.AppRunner(make_app(token, step_delay), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"READY:{bound}", flush=True)  # agentHostServerMain prints this on stdout
    print(f"Local: ws://{host}:{bound}", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("VSCODE_AGENT_HOST_PORT", "8081")))
    ap.add_argument("--token", "--connection-token", dest="token", default="secret-token")
    ap.add_argument("--without-connection-token", action="store_true")
    ap.add_argument("--step-delay", type=float, default=0.0, help="seconds between streamed chunks")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, None if args.without_connection_token else args.token,
                           args.step_delay))


if __name__ == "__main__":
    main()
