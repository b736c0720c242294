"""A stand-in for docker-agent's API server (`docker agent serve api`, v1.80.0 and later), written
from its current source (module github.com/docker/docker-agent; read, not copied):

- pkg/server/server.go, `registerRoutes`: every route registered below, in the same shapes.
  Middleware order: a 1 MiB body limit (`defaultMaxRequestBytes`; 413 `{"message":"Request Entity
  Too Large"}`), then `BearerTokenMiddleware` (`--auth-token`; `/health` and `/ready` exempt; 401
  "missing Authorization header" / "invalid Authorization header format" / "invalid token").
  Errors are Echo's `{"message": ...}` bodies, except the snapshot 404, `api.ErrorResponse`
  `{"code":"unknown_session","message":...}`. `forkSession` answers 200 with an
  `api.SessionResponse` (the new session's id in `id`), 400 for an out-of-range
  `user_message_index`, 500 when the parent is missing. `runAgent` takes an `api.RunAgentRequest`
  (`{"messages": [...], "model": ...}`, model overrides live here since `/sessions/:id/model` was
  removed), answers 409 while a turn runs, and gives each SSE frame an `id: <seq>` line when the
  session has an event log. `sessionEvents` creates the log for an existing session on first use
  (404 "session not found" otherwise), resumes from `?since=` or `Last-Event-ID`, and writes a
  `: ping` comment every heartbeat interval (15 s upstream) whatever else is sent. `steerSession`
  and `followUpSession` answer 202 (`Idempotency-Key` deduplicates follow-ups), 409 when the
  session has no running runtime. `mcpOAuthCallback` delivers `?state=&code=` to a pending flow
  (400 without state, or without both code and error; 404 for an unknown state).
- pkg/server/eventlog.go: a per-session ring buffer (`defaultEventLogCapacity` 1024) numbering
  events from 1; a resume point older than the buffer gets `{"type":"gap"}` (no id) before the
  replay; ending the session appends `{"type":"session_exited","reason":"session ended"}` (with an
  id, replayed) and closes every stream; a listener that falls `capacity` events behind is dropped.
- pkg/server/session_manager.go: `ForkSession` (history up to, not including, the Nth user
  message; title "<parent> (fork N)", N the first number no sibling uses), `GetSessionSnapshot`
  (creates the event log, reports `last_event_seq`), `RunSession` (mirrors a turn's events into
  the log only when one exists; re-emits a known title as `session_title` first),
  `DeleteSession` (500 for an unknown session; drops the log), `GetSessionStatus` (404 without a
  runtime, i.e. before the first run).
- pkg/api/types.go: request and answer field names.

For the gateway's `jwt-assertion` mode it can instead verify a JWT against a JWKS URL and note
whose request it was (`seen_users`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import ClientSession, web

MAX_REQUEST_BYTES = 1 << 20  # server.go defaultMaxRequestBytes
BUSY = "session is already processing a request"  # session_manager.go ErrSessionBusy
SAFETY_POLICIES = ("strict", "balanced", "autonomous")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(raw: str) -> float:
    """Seconds of a Go duration such as `1s`, `250ms` or `1m30s`; ValueError otherwise."""
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise ValueError(f'time: invalid duration "{raw}"')
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _dump(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))  # Go's encoding/json is compact


class Listener:
    """One `/events` stream's queue; `None` ends it (the log closed, or the listener was dropped)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, Any] | None] = asyncio.Queue()


@dataclass
class EventLog:
    """eventlog.go's `eventLog`: numbered events, a bounded replay buffer, live listeners."""

    capacity: int
    seq: int = 0
    buf: deque[tuple[int, Any]] = field(default_factory=deque)
    listeners: set[Listener] = field(default_factory=set)
    closed: bool = False

    def append(self, event: Any) -> int:
        if self.closed:
            return 0
        self.seq += 1
        self.buf.append((self.seq, event))
        while len(self.buf) > self.capacity:
            self.buf.popleft()
        for listener in list(self.listeners):
            if listener.queue.qsize() >= self.capacity:  # a slow client: drop it, never block
                self.listeners.discard(listener)
                listener.queue.put_nowait(None)
            else:
                listener.queue.put_nowait((self.seq, event))
        return self.seq

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.append({"type": "session_exited", "reason": reason})
        self.closed = True
        for listener in self.listeners:
            listener.queue.put_nowait(None)
        self.listeners.clear()

    def backlog(self, since: int | None) -> list[tuple[int, Any]]:
        return [(q, e) for q, e in self.buf if since is None or q > since]


@dataclass
class Session:
    id: str
    title: str
    created_at: str
    messages: list[dict[str, Any]] = field(default_factory=list)  # session.Message items
    starred: bool = False
    tools_approved: bool = False
    safety_policy: str = ""
    runtime: bool = False  # a runtime exists once the session has run (RunSession)
    streaming: asyncio.Lock = field(default_factory=asyncio.Lock)
    idempotency: set[str] = field(default_factory=set)

    def response(self) -> dict[str, Any]:
        """api.SessionResponse."""
        body: dict[str, Any] = {"id": self.id, "title": self.title, "messages": self.messages,
                                "created_at": self.created_at, "tools_approved": self.tools_approved,
                                "input_tokens": 0, "output_tokens": 0}
        if self.safety_policy:
            body["safety_policy"] = self.safety_policy
        return body

    def summary(self) -> dict[str, Any]:
        """api.SessionsResponse."""
        return {"id": self.id, "title": self.title, "created_at": self.created_at,
                "num_messages": len(self.messages), "input_tokens": 0, "output_tokens": 0}


def user_message(content: str) -> dict[str, Any]:
    return {"agentName": "", "message": {"role": "user", "content": content}}


def role_of(item: dict[str, Any]) -> Any:
    message = item.get("message")
    return message.get("role") if isinstance(message, dict) else None


@dataclass
class StandIn:
    token: str | None = None
    jwks_url: str | None = None
    ping_interval: float = 15.0  # server.go defaultEventsHeartbeatInterval
    capacity: int = 1024  # eventlog.go defaultEventLogCapacity
    step: float = 0.05  # pause between the events of a turn
    max_request_bytes: int = MAX_REQUEST_BYTES
    sessions: dict[str, Session] = field(default_factory=dict)
    logs: dict[str, EventLog] = field(default_factory=dict)
    pending_oauth: set[str] = field(default_factory=set)
    oauth_callbacks: list[dict[str, str]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    seen_users: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record, self.body_limit, self.auth, self.not_found],
                              client_max_size=self.max_request_bytes)
        r = app.router
        r.add_get("/health", constant({"status": "ok", "version": "v1.80.0-standin"}))
        r.add_get("/ready", self.ready)
        r.add_get("/api/agents", constant([{"name": "pirate", "description": "arr", "multi": False}]))
        r.add_get("/api/agents/{id}", self.agent)
        r.add_get("/api/agents/{id}/{agent_name}/tools/count", constant({"available_tools": 3}))
        r.add_get("/api/sessions", self.list_sessions)
        r.add_post("/api/sessions", self.create)
        r.add_get("/api/sessions/{id}", self.get)
        r.add_get("/api/sessions/{id}/status", self.status)
        r.add_get("/api/sessions/{id}/snapshot", self.snapshot)
        r.add_post("/api/sessions/{id}/resume", self.needs_runtime({"message": "session resumed"},
                                                                   "failed to resume session"))
        r.add_post("/api/sessions/{id}/tools/toggle", self.toggle)
        r.add_patch("/api/sessions/{id}/safety-policy", self.safety_policy)
        r.add_patch("/api/sessions/{id}/permissions", self.simple({"message": "session permissions updated"}))
        r.add_patch("/api/sessions/{id}/title", self.title)
        r.add_patch("/api/sessions/{id}/tokens", self.simple({"status": "updated"}))
        r.add_patch("/api/sessions/{id}/starred", self.simple({"status": "updated"}))
        r.add_get("/api/sessions/{id}/models", self.models)
        r.add_post("/api/sessions/{id}/fork", self.fork)
        r.add_delete("/api/sessions/{id}", self.delete)
        r.add_post("/api/sessions/{id}/agent/{agent}", self.run)
        r.add_post("/api/sessions/{id}/agent/{agent}/{agent_name}", self.run)
        r.add_post("/api/sessions/{id}/elicitation", self.needs_runtime(None, "failed to resume elicitation"))
        r.add_post("/api/sessions/{id}/steer", self.steer)
        r.add_post("/api/sessions/{id}/followup", self.followup)
        r.add_get("/api/sessions/{id}/events", self.events)
        r.add_post("/api/sessions/{id}/messages", self.add_message)
        r.add_patch("/api/sessions/{id}/messages/{msg_id}", self.update_message)
        r.add_post("/api/sessions/{id}/summaries", self.add_summary)
        r.add_get("/api/sessions/{id}/queue", self.queue)
        r.add_get("/api/sessions/{id}/recovery", self.recovery)
        r.add_post("/api/sessions/batch/delete", self.batch_delete)
        r.add_post("/api/sessions/batch/export", self.batch_export)
        r.add_post("/api/mcp-oauth/callback", self.mcp_oauth_callback)
        r.add_get("/api/ping", constant({"status": "ok"}))
        r.add_get("/api/ready", self.sessions_ready)
        return app

    # -- middleware (server.go NewWithManager: body limit, then bearer token; Echo error bodies) --

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append({"method": request.method, "path": request.path_qs,
                              "headers": dict(request.headers)})
        return await handler(request)  # type: ignore[no-any-return]

    @web.middleware
    async def body_limit(self, request: web.Request, handler: Any) -> web.StreamResponse:
        too_large = _error(413, "Request Entity Too Large")
        if request.content_length is not None and request.content_length > self.max_request_bytes:
            return too_large
        if request.body_exists:
            try:
                await request.read()  # cached for the handler; aiohttp enforces client_max_size
            except web.HTTPRequestEntityTooLarge:
                return too_large
        return await handler(request)  # type: ignore[no-any-return]

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in ("/health", "/ready"):
            return await handler(request)  # type: ignore[no-any-return]
        header = request.headers.get("Authorization")
        if self.token is not None or self.jwks_url is not None:
            if not header:
                return _error(401, "missing Authorization header")
            if not header.startswith("Bearer "):
                return _error(401, "invalid Authorization header format")
            credential = header[len("Bearer "):]
            if self.token is not None and credential != self.token:
                return _error(401, "invalid token")
            if self.jwks_url is not None:
                try:
                    self.seen_users.append(await self.verify(credential))
                except jwt.PyJWTError:
                    return _error(401, "invalid token")
        return await handler(request)  # type: ignore[no-any-return]

    @web.middleware
    async def not_found(self, request: web.Request, handler: Any) -> web.StreamResponse:
        unrouted = request.match_info.http_exception
        if unrouted is not None:  # Echo's own 404/405 bodies
            return _error(unrouted.status, "Not Found" if unrouted.status == 404 else "Method Not Allowed")
        return await handler(request)  # type: ignore[no-any-return]

    async def verify(self, token: str) -> str:
        async with ClientSession() as http, http.get(self.jwks_url) as r:  # type: ignore[arg-type]
            keys = jwt.PyJWKSet.from_dict(await r.json())
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in keys.keys if k.key_id == kid)
        return str(jwt.decode(token, key, algorithms=["ES256"], issuer="share-gateway")["sub"])

    # -- helpers --

    def session(self, request: web.Request) -> Session:
        sid = request.match_info["id"]
        found = self.sessions.get(sid)
        if found is None:
            raise EchoError(404, f"session not found: session {sid} not found")
        return found

    async def body(self, request: web.Request) -> Any:
        """Echo's Bind: an empty body binds to nothing; malformed JSON is a 400."""
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise EchoError(400, f"invalid request body: {exc}") from None

    def mirror(self, sid: str, event: Any) -> int:
        """RunSession's mirror into the session's event log: 0 (no id) when it has none."""
        log = self.logs.get(sid)
        return log.append(event) if log is not None else 0

    def ensure_log(self, sid: str) -> EventLog:
        log = self.logs.get(sid)
        if log is None:
            log = self.logs[sid] = EventLog(self.capacity)
        return log

    def drop(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        log = self.logs.pop(sid, None)
        if log is not None:
            log.close("session ended")

    def simple(self, body: Any, status: int = 200) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self.session(request)
            await self.body(request)
            return _json(body, status)
        return handler

    def needs_runtime(self, body: Any, failure: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            await self.body(request)
            s = self.sessions.get(request.match_info["id"])
            if s is None or not s.runtime:
                return _error(500, f"{failure}: session not found")
            return _json(body)
        return handler

    # -- handlers --

    async def ready(self, _request: web.Request) -> web.Response:
        return _json({"ready": True, "active_sessions": len(self.sessions), "store_connected": True,
                      "toolset_health": "ok"})

    async def sessions_ready(self, request: web.Request) -> web.Response:
        try:
            timeout = min(parse_duration(request.query.get("timeout", "30s")), 300.0)
        except ValueError as exc:
            return _error(400, f"invalid timeout: {exc}")
        deadline = time.monotonic() + timeout
        while not self.sessions:
            if time.monotonic() >= deadline:
                return _error(503, "no sessions registered within timeout")
            await asyncio.sleep(0.01)
        return _json({"status": "ready"})

    async def agent(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != "pirate":
            return _error(404, "agent source not found")
        return _json({"agents": {"root": {"description": "arr"}}})

    async def list_sessions(self, _request: web.Request) -> web.Response:
        return _json([s.summary() for s in self.sessions.values()])

    async def create(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        session = Session(str(uuid.uuid4()), str(body.get("title", "")).strip(),
                          time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.sessions[session.id] = session
        return _json({"id": session.id, "title": session.title, "created_at": session.created_at,
                      "messages": [], "tools_approved": False, "starred": False})

    async def get(self, request: web.Request) -> web.Response:
        return _json(self.session(request).response())

    async def status(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        wait = request.query.get("wait")
        if wait:
            try:
                deadline = time.monotonic() + min(parse_duration(wait), 300.0)
            except ValueError as exc:
                return _error(400, f"invalid wait: {exc}")
            while not (sid in self.sessions and self.sessions[sid].runtime):
                if time.monotonic() >= deadline:
                    return _error(503, "session not ready within timeout")
                await asyncio.sleep(0.01)
        s = self.sessions.get(sid)
        if s is None or not s.runtime:
            return _error(404, f"session not found: session {sid} not found")
        return _json({"id": s.id, "title": s.title, "streaming": s.streaming.locked(), "agent": "root",
                      "input_tokens": 0, "output_tokens": 0, "num_messages": len(s.messages)})

    async def snapshot(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        s = self.sessions.get(sid)
        if s is None:
            return _json({"code": "unknown_session", "message": f"session not found: session {sid} not found"},
                         404)
        log = self.ensure_log(sid)  # "I am about to tail from this position"
        return _json({**s.response(), "streaming": s.streaming.locked(), "agent": "root" if s.runtime else "",
                      "last_event_seq": log.seq, "cost": 0})

    async def toggle(self, request: web.Request) -> web.Response:
        s = self.sessions.get(request.match_info["id"])
        if s is None:
            return _error(500, "failed to toggle session tool approval mode: session not found")
        s.tools_approved = not s.tools_approved
        return _json(None)

    async def safety_policy(self, request: web.Request) -> web.Response:
        policy = (await self.body(request)).get("safety_policy", "")
        if policy not in SAFETY_POLICIES:
            return _error(400, f'invalid safety_policy: "{policy}"')
        s = self.sessions.get(request.match_info["id"])
        if s is None:
            return _error(400, "session not found")
        s.safety_policy = policy
        return _json({"message": "session safety policy updated"})

    async def title(self, request: web.Request) -> web.Response:
        s = self.session(request)
        s.title = str((await self.body(request)).get("title", ""))
        return _json({"id": s.id, "title": s.title})

    async def models(self, request: web.Request) -> web.Response:
        s = self.sessions.get(request.match_info["id"])
        if s is None or not s.runtime:
            return _error(404, "session is not running")
        return _json({"agent": "root", "current_model_ref": "", "models": []})

    async def fork(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        parent = self.sessions.get(request.match_info["id"])
        if parent is None:
            return _error(500, "failed to fork session: session not found")
        ordinal = body.get("user_message_index", 0)
        users = [i for i, item in enumerate(parent.messages) if role_of(item) == "user"]
        if not isinstance(ordinal, int) or not 0 <= ordinal < len(users):
            return _error(400, f"fork user-message index out of range: {ordinal}")
        taken = {s.title for s in self.sessions.values()}
        n = next(n for n in range(1, len(taken) + 2) if f"{parent.title} (fork {n})".strip() not in taken)
        forked = Session(str(uuid.uuid4()), f"{parent.title} (fork {n})".strip(),
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         json.loads(json.dumps(parent.messages[:users[ordinal]])),
                         tools_approved=parent.tools_approved, safety_policy=parent.safety_policy)
        self.sessions[forked.id] = forked
        return _json(forked.response())

    async def delete(self, request: web.Request) -> web.Response:
        raw = request.query.get("timeout")
        if raw:
            try:
                parse_duration(raw)
            except ValueError as exc:
                return _error(400, f"invalid timeout: {exc}")
        sid = request.match_info["id"]
        if sid not in self.sessions:
            return _error(500, f"failed to delete session: session {sid} not found")
        self.drop(sid)
        return _json({"message": "session deleted"})

    async def run(self, request: web.Request) -> web.StreamResponse:
        s = self.session(request)
        try:
            body = json.loads(await request.read())
            messages = body["messages"]
            contents = [str(m.get("content", "")) for m in messages]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return _error(400, f"invalid request body: {exc}")
        if s.streaming.locked():
            return _error(409, BUSY)
        async with s.streaming:
            s.runtime = True
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            s.messages.extend(user_message(c) for c in contents)
            who = self.seen_users[-1] if self.seen_users else request.headers.get("X-User-Id", "-")
            agent = request.match_info.get("agent_name", "root")
            turn: list[dict[str, Any]] = []
            if s.title:
                turn.append({"type": "session_title", "session_id": s.id, "title": s.title})
            reply = f"arr: {contents[-1] if contents else ''} (for {who})"
            turn += [{"type": "stream_started", "session_id": s.id, "agent": agent},
                     {"type": "agent_choice", "content": reply, "agent": agent},
                     {"type": "stream_stopped", "session_id": s.id, "agent": agent}]
            for event in turn:
                seq = self.mirror(s.id, event)
                await resp.write((f"id: {seq}\n" if seq else "").encode() + f"data: {_dump(event)}\n\n".encode())
                await asyncio.sleep(self.step)
            s.messages.append({"agentName": agent, "message": {"role": "assistant", "content": reply}})
            return resp

    async def steer(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        if not body.get("messages"):
            return _error(400, "at least one message is required")
        s = self.sessions.get(request.match_info["id"])
        if s is None or not s.runtime:
            return _error(409, "failed to steer session: session is not running")
        return _json({"status": "queued"}, 202)

    async def followup(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        if not body.get("messages"):
            return _error(400, "at least one message is required")
        s = self.sessions.get(request.match_info["id"])
        if s is None or not s.runtime:
            return _error(409, "failed to enqueue follow-up: session is not running")
        key = request.headers.get("Idempotency-Key")
        if key and key in s.idempotency:
            return _json({"status": "duplicate", "duplicate": True}, 202)
        if key:
            s.idempotency.add(key)
        status = "queued_streaming" if s.streaming.locked() else "queued_idle"
        return _json({"status": status, "duplicate": False}, 202)

    async def events(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        log = self.logs.get(sid)
        if log is None:
            if sid not in self.sessions:
                return _error(404, "session not found")
            log = self.ensure_log(sid)
        raw = request.query.get("since") or request.headers.get("Last-Event-ID") or ""
        since = int(raw) if raw.isdigit() else None
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        writing = asyncio.Lock()

        async def send(seq: int, event: Any) -> None:
            async with writing:
                await resp.write((f"id: {seq}\n" if seq else "").encode() + f"data: {_dump(event)}\n\n".encode())

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self.ping_interval)
                async with writing:
                    await resp.write(b": ping\n\n")

        backlog = log.backlog(since)
        listener = None if log.closed else Listener()
        if listener is not None:
            log.listeners.add(listener)
        beating = asyncio.ensure_future(heartbeat())
        try:
            if since is not None and backlog and backlog[0][0] > since + 1:
                await send(0, {"type": "gap"})  # a per-connection marker: no id
            for seq, event in backlog:
                await send(seq, event)
            while listener is not None:
                item = await listener.queue.get()
                if item is None:
                    break
                await send(*item)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            if listener is not None:
                log.listeners.discard(listener)
        return resp

    async def add_message(self, request: web.Request) -> web.Response:
        s = self.session(request)
        message = (await self.body(request)).get("message")
        if message is None:
            return _error(400, "message is required")
        if s.streaming.locked():
            return _error(409, BUSY)
        s.messages.append(message)
        return _json({"status": "added"}, 201)

    async def update_message(self, request: web.Request) -> web.Response:
        s = self.session(request)
        if (await self.body(request)).get("message") is None:
            return _error(400, "message is required")
        if s.streaming.locked():
            return _error(409, BUSY)
        return _json({"status": "updated"})

    async def add_summary(self, request: web.Request) -> web.Response:
        s = self.session(request)
        summary = (await self.body(request)).get("summary")
        if not summary:
            return _error(400, "summary is required")
        s.messages.append({"summary": summary})
        return _json({"status": "added"}, 201)

    async def queue(self, request: web.Request) -> web.Response:
        s = self.sessions.get(request.match_info["id"])
        if s is None or not s.runtime:
            return _error(404, "session not found or not running")
        return _json({"steer": {"depth": 0, "capacity": 8}, "followup": {"depth": 0, "capacity": 8}})

    async def recovery(self, request: web.Request) -> web.Response:
        s = self.sessions.get(request.match_info["id"])
        if s is None:
            return _error(500, "failed to export session: session not found")
        return _json({"session": s.response()})

    async def batch_delete(self, request: web.Request) -> web.Response:
        ids = (await self.body(request)).get("session_ids") or []
        if not ids:
            return _error(400, "session_ids cannot be empty")
        failed = [i for i in ids if i not in self.sessions]
        for i in ids:
            self.drop(i)
        body: dict[str, Any] = {"deleted_count": len(ids) - len(failed), "failed_count": len(failed)}
        if failed:
            body["failed_ids"] = failed
        return _json(body)

    async def batch_export(self, request: web.Request) -> web.Response:
        ids = (await self.body(request)).get("session_ids") or []
        if not ids:
            return _error(400, "session_ids cannot be empty")
        return _json({"export_format": "json", "session_count": len([i for i in ids if i in self.sessions])})

    async def mcp_oauth_callback(self, request: web.Request) -> web.Response:
        q = request.query
        state = q.get("state", "")
        if not state:
            return _error(400, "missing state query parameter")
        if not q.get("code") and not q.get("error"):
            return _error(400, "missing both code and error query parameters")
        if state not in self.pending_oauth:
            return _error(404, "no pending OAuth flow for the given state")
        self.pending_oauth.discard(state)
        self.oauth_callbacks.append(dict(q))
        return _json(None)


def constant(body: Any) -> Any:
    async def handler(_request: web.Request) -> web.Response:
        return _json(body)
    return handler


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dump(body) + "\n", status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"message": message}, status)


class EchoError(web.HTTPException):
    """An Echo-style `{"message": ...}` error raised from inside a handler."""

    def __init__(self, status: int, message: str) -> None:
        self.status_code = status
        super().__init__(text=_dump({"message": message}) + "\n", content_type="application/json")
