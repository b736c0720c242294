"""A stand-in for docker-agent's API server (`docker agent serve api`), written from its documented
behaviour: no users (every caller sees every session), one optional bearer token (`--auth-token`;
`/health` and `/ready` exempt; Echo-style `{"message": ...}` errors), sessions as bare JSON arrays,
SSE `/events` with `id: <seq>` + `data: <json>`, replay with `?since=` / `Last-Event-ID`, `{"type":
"gap"}` when the resume point left the buffer, `session_exited` on delete, `: ping` keep-alives,
409 while a run streams, 202 from steer/followup (followup honours `Idempotency-Key`).

For the gateway's `jwt-assertion` mode it can instead verify a JWT against a JWKS URL and note
whose request it was (`seen_users`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import ClientSession, web


@dataclass
class Session:
    id: str
    title: str
    created_at: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    starred: bool = False
    seq: int = 0
    log: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    listeners: set[asyncio.Queue[tuple[int, dict[str, Any]] | None]] = field(default_factory=set)
    streaming: asyncio.Lock = field(default_factory=asyncio.Lock)
    idempotency: set[str] = field(default_factory=set)

    def emit(self, event: dict[str, Any], capacity: int) -> None:
        self.seq += 1
        self.log.append((self.seq, event))
        del self.log[:-capacity]
        for queue in self.listeners:
            queue.put_nowait((self.seq, event))

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "created_at": self.created_at,
                "num_messages": len(self.messages), "input_tokens": 0, "output_tokens": 0}


@dataclass
class StandIn:
    token: str | None = None
    jwks_url: str | None = None
    ping_interval: float = 15.0
    capacity: int = 1024
    sessions: dict[str, Session] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    seen_users: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        r = app.router
        r.add_get("/health", constant({"status": "ok"}))
        r.add_get("/ready", constant({"ready": True}))
        r.add_get("/api/ping", constant({"status": "ok"}))
        r.add_get("/api/agents", constant([{"name": "pirate", "description": "arr", "multi": False}]))
        r.add_get("/api/sessions", self.list_sessions)
        r.add_post("/api/sessions", self.create)
        r.add_post("/api/sessions/batch/delete", self.batch_delete)
        r.add_post("/api/sessions/batch/export", self.batch_export)
        r.add_get("/api/sessions/{id}", self.get)
        r.add_delete("/api/sessions/{id}", self.delete)
        r.add_get("/api/sessions/{id}/status", self.status)
        r.add_get("/api/sessions/{id}/snapshot", self.snapshot)
        r.add_get("/api/sessions/{id}/events", self.events)
        r.add_get("/api/sessions/{id}/queue", self.simple({"steer": {"depth": 0, "capacity": 8}}))
        r.add_get("/api/sessions/{id}/models", self.simple({"agent": "root", "models": []}))
        r.add_get("/api/sessions/{id}/recovery", self.simple({"recovery": True}))
        r.add_post("/api/sessions/{id}/agent/{agent}", self.run)
        r.add_post("/api/sessions/{id}/agent/{agent}/{agent_name}", self.run)
        r.add_post("/api/sessions/{id}/resume", self.simple({"message": "session resumed"}))
        r.add_post("/api/sessions/{id}/elicitation", self.simple(None))
        r.add_post("/api/sessions/{id}/steer", self.steer)
        r.add_post("/api/sessions/{id}/followup", self.followup)
        r.add_post("/api/sessions/{id}/messages", self.add_message)
        r.add_patch("/api/sessions/{id}/messages/{mid}", self.simple({"status": "updated"}, busy=True))
        r.add_post("/api/sessions/{id}/fork", self.fork)
        r.add_post("/api/sessions/{id}/summaries", self.simple({"status": "added"}, status=201))
        r.add_post("/api/sessions/{id}/tools/toggle", self.simple(None))
        for name in ("title", "starred", "permissions", "tokens", "safety-policy"):
            r.add_patch(f"/api/sessions/{{id}}/{name}", self.simple({"status": "updated"}))
        return app

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append({"method": request.method, "path": request.path_qs,
                              "headers": dict(request.headers)})
        if request.path in ("/health", "/ready"):
            return await handler(request)  # type: ignore[no-any-return]
        header = request.headers.get("Authorization")
        if self.token is not None or self.jwks_url is not None:
            if header is None:
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

    async def verify(self, token: str) -> str:
        async with ClientSession() as http, http.get(self.jwks_url) as r:  # type: ignore[arg-type]
            keys = jwt.PyJWKSet.from_dict(await r.json())
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in keys.keys if k.key_id == kid)
        return str(jwt.decode(token, key, algorithms=["ES256"], issuer="share-gateway")["sub"])

    def session(self, request: web.Request) -> Session:
        found = self.sessions.get(request.match_info["id"])
        if found is None:
            raise web.HTTPNotFound(text=json.dumps({"message": f"session not found: {request.match_info['id']}"}),
                                   content_type="application/json")
        return found

    def simple(self, body: Any, status: int = 200, busy: bool = False) -> Any:
        async def handler(request: web.Request) -> web.Response:
            session = self.session(request)
            if busy and session.streaming.locked():
                return _error(409, "session is already processing a request")
            return _json(body, status)
        return handler

    async def list_sessions(self, _request: web.Request) -> web.Response:
        return _json([s.summary() for s in self.sessions.values()])

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        session = Session(str(uuid.uuid4()), str(body.get("title", "")),
                          time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.sessions[session.id] = session
        return _json({"id": session.id, "title": session.title, "created_at": session.created_at,
                      "messages": [], "tools_approved": False, "starred": False})

    async def get(self, request: web.Request) -> web.Response:
        s = self.session(request)
        return _json({"id": s.id, "title": s.title, "messages": s.messages, "created_at": s.created_at})

    async def delete(self, request: web.Request) -> web.Response:
        s = self.session(request)
        s.emit({"type": "session_exited", "reason": "session ended"}, self.capacity)
        for queue in s.listeners:
            queue.put_nowait(None)
        del self.sessions[s.id]
        return _json({"message": "session deleted"})

    async def status(self, request: web.Request) -> web.Response:
        s = self.session(request)
        return _json({"id": s.id, "title": s.title, "streaming": s.streaming.locked(),
                      "num_messages": len(s.messages)})

    async def snapshot(self, request: web.Request) -> web.Response:
        s = self.session(request)
        return _json({"id": s.id, "messages": s.messages, "last_event_seq": s.seq, "streaming": s.streaming.locked()})

    async def events(self, request: web.Request) -> web.StreamResponse:
        s = self.session(request)
        raw = request.query.get("since") or request.headers.get("Last-Event-ID")
        since = int(raw) if raw and raw.isdigit() else None
        queue: asyncio.Queue[tuple[int, dict[str, Any]] | None] = asyncio.Queue()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        replay = [(q, e) for q, e in s.log if since is None or q > since]
        if since is not None and s.log and s.log[0][0] > since + 1:
            await resp.write(b'data: {"type":"gap"}\n\n')
        for seq, event in replay:
            await resp.write(f"id: {seq}\ndata: {json.dumps(event)}\n\n".encode())
        s.listeners.add(queue)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.ping_interval)
                except TimeoutError:
                    await resp.write(b": ping\n\n")
                    continue
                if item is None:
                    break
                seq, event = item
                await resp.write(f"id: {seq}\ndata: {json.dumps(event)}\n\n".encode())
        finally:
            s.listeners.discard(queue)
        return resp

    async def run(self, request: web.Request) -> web.StreamResponse:
        s = self.session(request)
        if s.streaming.locked():
            return _error(409, "session is already processing a request")
        body = await request.json()
        content = body["messages"][-1]["content"]
        async with s.streaming:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            s.messages.append({"role": "user", "content": content})
            who = self.seen_users[-1] if self.seen_users else request.headers.get("X-User-Id", "-")
            for event in ({"type": "stream_started"},
                          {"type": "agent_choice", "content": f"arr: {content} (for {who})",
                           "agent": request.match_info.get("agent_name", "root")},
                          {"type": "stream_stopped"}):
                s.emit(event, self.capacity)
                await resp.write(f"data: {json.dumps(event)}\n\n".encode())
                await asyncio.sleep(0.05)
            return resp

    async def steer(self, request: web.Request) -> web.Response:
        self.session(request)
        return _json({"status": "queued"}, 202)

    async def followup(self, request: web.Request) -> web.Response:
        s = self.session(request)
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in s.idempotency:
            return _json({"status": "duplicate", "duplicate": True}, 202)
        if key is not None:
            s.idempotency.add(key)
        return _json({"status": "queued_idle", "duplicate": False}, 202)

    async def add_message(self, request: web.Request) -> web.Response:
        s = self.session(request)
        if s.streaming.locked():
            return _error(409, "session is already processing a request")
        s.messages.append((await request.json())["message"])
        return _json({"status": "added"}, 201)

    async def fork(self, request: web.Request) -> web.Response:
        s = self.session(request)
        new = Session(str(uuid.uuid4()), s.title + " (fork)", s.created_at, list(s.messages))
        self.sessions[new.id] = new
        return _json({"id": new.id, "title": new.title, "created_at": new.created_at})

    async def batch_delete(self, request: web.Request) -> web.Response:
        ids = (await request.json())["session_ids"]
        deleted = [i for i in ids if self.sessions.pop(i, None) is not None]
        return _json({"deleted_count": len(deleted), "failed_count": len(ids) - len(deleted)})

    async def batch_export(self, request: web.Request) -> web.Response:
        ids = (await request.json())["session_ids"]
        return _json({"export_format": "json", "session_count": len([i for i in ids if i in self.sessions])})


def constant(body: Any) -> Any:
    async def handler(_request: web.Request) -> web.Response:
        return _json(body)
    return handler


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
