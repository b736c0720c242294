"""A kagent-style agent server for demos and tests, built on a2a-sdk.

One process plays kagent's controller and one agent:

* ``/api/a2a/demo/echo/`` — a real A2A JSON-RPC agent (a2a-sdk; v1.0 and v0.3
  method names) whose task store is scoped per user. Like kagent's agents
  behind the controller, it trusts ``X-User-Id`` (Starlette authentication).
  It answers every message with a few streamed events, echoing the text, the
  user it ran as and ``metadata.initiated_by``.
* ``/api/sessions…`` and ``/api/tasks/{id}`` — kagent's REST sessions API,
  scoped by ``X-User-Id`` (default ``admin@kagent.dev``): another user's
  session is a 404. An A2A message into another user's session is refused.
* ``/api/me`` — the user the request was resolved to.
* ``/_demo/requests`` (only with ``--capture``) — every request the server
  received (method, path, query, headers, body, and the ``effective_user`` it
  resolved), so tests can check exactly what the gateway forwarded.

Identity is resolved exactly as kagent's controller does (``--auth-mode``):

* ``unsecure`` (kagent's default; kagent-dev/kagent
  ``go/core/internal/httpserver/auth/authn.go``, ``UnsecureAuthenticator.Authenticate``):
  the first ``user_id`` query parameter (Go's ``url.Values.Get`` after
  percent-decoding, so ``user%5Fid`` counts), else the first ``X-User-Id``
  header, else ``admin@kagent.dev``.
* ``trusted-proxy`` (``proxy_authn.go``): ``Authorization: Bearer <JWT>`` is
  decoded **without verification** and the user is its ``sub`` claim; with an
  ``X-Agent-Name`` header (an agent calling back) the user is ``?user_id=``,
  else ``X-User-Id``, else the claim (release/v0.10.x; a later revision reads
  ``?user_id=``/``X-User-Id`` only when no bearer is sent — both let
  ``X-Agent-Name`` choose the user). No usable identity → 401.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from a2a.auth.user import User
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    ListTasksRequest,
    TaskState,
)
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

DEFAULT_USER = "admin@kagent.dev"
AGENT_PATH = "/api/a2a/demo/echo"


def resolve_user(mode: str, query: str, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The user kagent's controller resolves for a request (``None``: 401); see the module doc.

    ``query`` is the raw query string; ``headers`` the ASGI header list. Go's
    ``url.Values.Get`` and ``http.Header.Get`` return the first value;
    ``parse_qsl`` splits on ``&`` only, like Go 1.17+ ``url.ParseQuery``.
    """

    def header(name: bytes) -> str:
        return next((v.decode("latin-1") for k, v in headers if k.lower() == name), "")

    query_user = next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == "user_id"), "")
    named = query_user or header(b"x-user-id")
    if mode == "unsecure":
        return named or DEFAULT_USER
    claim = ""
    scheme, _, token = header(b"authorization").partition(" ")
    if scheme == "Bearer":
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return None
        claim = claims.get("sub", "") if isinstance(claims, dict) else ""
        if not isinstance(claim, str):
            claim = ""
    if header(b"x-agent-name"):
        return named or claim or None
    return claim or None


def user_of(conn: HTTPConnection) -> str:
    """The user the request was resolved to (``KagentIdentity`` put it in the scope)."""
    return str(conn.scope["kagent_user"])


class KagentIdentity:
    """ASGI middleware: resolves every request's user as kagent's controller does (401 if none)."""

    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_demo/"):
            await self.app(scope, receive, send)
            return
        user = resolve_user(self.mode, scope["query_string"].decode("latin-1"), scope["headers"])
        if user is None:
            await PlainTextResponse("Unauthorized", status_code=401)(scope, receive, send)
            return
        scope["kagent_user"] = user
        await self.app(scope, receive, send)


class TrustUserHeader(AuthenticationBackend):
    """Trusts ``X-User-Id`` as kagent's agents trust their controller."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
        return AuthCredentials(["authenticated"]), SimpleUser(user_of(conn))


class _A2AUser(User):
    """``a2a.auth.user.User`` for calls the REST part makes into the task store."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._name


class Sessions:
    """kagent's sessions table: id → {id, name, user_id, agent_ref, created_at, events}."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def create(self, user: str, agent_ref: str, name: str | None, sid: str | None) -> dict[str, Any]:
        sid = sid or str(uuid.uuid4())
        row = {
            "id": sid,
            "name": name,
            "user_id": user,
            "agent_id": agent_ref.replace("/", "__NS__"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.rows[sid] = {**row, "events": []}
        return row

    def owned(self, sid: str, user: str) -> dict[str, Any] | None:
        row = self.rows.get(sid)
        return row if row is not None and row["user_id"] == user else None

    @staticmethod
    def public(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "events"}


class EchoExecutor(AgentExecutor):
    """Echoes the user's text in several events, ~20 ms apart, naming who it ran as.

    Message metadata: ``ticks`` (count) and ``tickSeconds`` make a long-running
    task that reports "tick N" that often first; ``delaySeconds`` a pause.
    """

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        assert context.task_id is not None
        assert context.context_id is not None
        text = get_message_text(message)
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work(updater.new_agent_message([new_text_part("thinking…")]))
        metadata = dict(message.metadata)
        ticks = min(int(metadata.get("ticks", 0) or 0), 10_000)
        for tick in range(ticks):  # a long-running task: one status update every tickSeconds
            await asyncio.sleep(float(metadata.get("tickSeconds", 0.05) or 0.05))
            await updater.update_status(TaskState.TASK_STATE_WORKING, updater.new_agent_message(
                [new_text_part(f"tick {tick}")]))
        delay = float(metadata.get("delaySeconds", 0) or 0)
        await asyncio.sleep(0.02 + delay)
        user = context.call_context.user.user_name
        initiated_by = metadata.get("initiated_by", "-")
        await updater.add_artifact([new_text_part(f"echo: {text}")], artifact_id="echo", name="echo")
        await asyncio.sleep(0.02)
        await updater.add_artifact(
            [new_text_part(f" [user={user} initiated_by={initiated_by}]")],
            artifact_id="echo",
            name="echo",
            append=True,
            last_chunk=True,
        )
        await asyncio.sleep(0.02)
        await updater.complete(updater.new_agent_message([new_text_part(f"echo: {text}")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        assert context.context_id is not None
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel(updater.new_agent_message([new_text_part("cancelled")]))


def agent_card(base_url: str) -> AgentCard:
    """The agent's card; v1.0 and v0.3 JSON-RPC interfaces on one URL."""
    url = f"{base_url}{AGENT_PATH}/"
    return AgentCard(
        name="Echo Agent",
        description="Echoes what you say (share-gateway demo).",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="Echo", description="Repeats what you say.", tags=["echo"])],
    )


class SessionGuard:
    """ASGI wrapper for the agent: a message into another user's session is refused.

    kagent's agents create a session per ``contextId`` for the calling user,
    so a context that is someone else's session cannot be written as yourself.
    New contexts become sessions of the caller.
    """

    def __init__(self, app: Any, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body"):
                break
        body = b"".join(chunks)
        user = user_of(HTTPConnection(scope))
        refusal = self._refusal(body, user)
        if refusal is not None:
            await JSONResponse(refusal)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _refusal(self, body: bytes, user: str) -> dict[str, Any] | None:
        try:
            rpc = json.loads(body)
            message = rpc["params"]["message"]
            context = message.get("contextId")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not isinstance(context, str):
            return None
        row = self.sessions.rows.get(context)
        if row is None:
            self.sessions.create(user, "demo/echo", None, context)
            return None
        if row["user_id"] != user:
            return {
                "jsonrpc": "2.0",
                "id": rpc.get("id"),
                "error": {"code": -32001, "message": "Session not found"},
            }
        return None


def build_app(base_url: str, *, capture: bool = False, auth_mode: str = "unsecure") -> Any:
    """The demo server as an ASGI app (``base_url``: where clients reach it;
    ``auth_mode``: kagent's ``unsecure`` or ``trusted-proxy``)."""
    sessions = Sessions()
    task_store = InMemoryTaskStore()
    card = agent_card(base_url)
    handler = DefaultRequestHandler(agent_executor=EchoExecutor(), task_store=task_store, agent_card=card)
    captured: list[dict[str, Any]] = []

    def ok(data: Any, status: int = 200) -> JSONResponse:
        return JSONResponse({"error": False, "data": data, "message": ""}, status_code=status)

    def not_found(what: str = "Session") -> JSONResponse:
        return JSONResponse({"error": f"{what} not found"}, status_code=404)

    async def tasks_of(sid: str, user: str) -> list[dict[str, Any]]:
        ctx = ServerCallContext(user=_A2AUser(user))
        listed = await task_store.list(ListTasksRequest(context_id=sid), ctx)
        return [MessageToDict(t) for t in listed.tasks]

    async def list_sessions(request: Request) -> JSONResponse:
        user = user_of(request)
        return ok([Sessions.public(r) for r in sessions.rows.values() if r["user_id"] == user])

    async def create_session(request: Request) -> JSONResponse:
        body = await request.json()
        if not body.get("agent_ref"):
            return JSONResponse({"error": "agent_ref is required"}, status_code=400)
        row = sessions.create(user_of(request), body["agent_ref"], body.get("name"), body.get("id"))
        return ok(row, 201)

    async def session(request: Request) -> JSONResponse:
        user = user_of(request)
        sid = request.path_params["session_id"]
        row = sessions.owned(sid, user)
        if row is None:
            return not_found()
        if request.method == "DELETE":
            del sessions.rows[sid]
            return ok(None)
        if request.method in ("PUT", "PATCH"):
            row["name"] = (await request.json()).get("name", row["name"])
            return ok(Sessions.public(row))
        return ok(
            {"session": Sessions.public(row), "events": row["events"], "tasks": await tasks_of(sid, user)}
        )

    async def session_tasks(request: Request) -> JSONResponse:
        user = user_of(request)
        sid = request.path_params["session_id"]
        if sessions.owned(sid, user) is None:
            return not_found()
        return ok(await tasks_of(sid, user))

    async def session_events(request: Request) -> JSONResponse:
        user = user_of(request)
        sid = request.path_params["session_id"]
        row = sessions.owned(sid, user)
        if row is None:
            return not_found()
        event = await request.json()
        row["events"].append(
            {"id": event.get("id") or str(uuid.uuid4()), "data": event.get("data"), "user_id": user}
        )
        return ok(row["events"][-1], 201)

    async def task(request: Request) -> JSONResponse:
        ctx = ServerCallContext(user=_A2AUser(user_of(request)))
        found = await task_store.get(request.path_params["task_id"], ctx)
        return ok(MessageToDict(found)) if found is not None else not_found("Task")

    async def me(request: Request) -> JSONResponse:
        return ok({"user": user_of(request)})

    async def requests_seen(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            captured.clear()
        return JSONResponse(captured)

    agent = Starlette(
        routes=[
            *create_agent_card_routes(card),
            *create_agent_card_routes(card, card_url="/.well-known/agent.json"),
            *create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True),
        ],
        middleware=[Middleware(AuthenticationMiddleware, backend=TrustUserHeader())],
    )
    routes = [
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions", create_session, methods=["POST"]),
        Route("/api/sessions/{session_id}", session, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/api/sessions/{session_id}/tasks", session_tasks, methods=["GET"]),
        Route("/api/sessions/{session_id}/events", session_events, methods=["POST"]),
        Route("/api/tasks/{task_id}", task, methods=["GET"]),
        Route("/api/me", me, methods=["GET"]),
        Mount(AGENT_PATH, app=SessionGuard(agent, sessions)),
    ]
    if capture:
        routes.append(Route("/_demo/requests", requests_seen, methods=["GET", "DELETE"]))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await handler.aclose()

    app = KagentIdentity(Starlette(routes=routes, lifespan=lifespan), auth_mode)
    if not capture:
        return app

    async def capturing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_demo/"):
            await app(scope, receive, send)
            return
        # Recorded before the app runs, so a request is visible here before its response is sent.
        record: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": "",
            "effective_user": resolve_user(
                auth_mode, scope["query_string"].decode("latin-1"), scope["headers"]
            ),
        }
        captured.append(record)

        async def tap() -> Message:
            event = await receive()
            record["body"] += event.get("body", b"").decode("utf-8", "replace")
            return event

        await app(scope, tap, send)

    return capturing


def main(argv: list[str] | None = None) -> None:
    """``python -m gateway.demo.agent --port 8083 [--capture]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--capture", action="store_true", help="serve /_demo/requests")
    parser.add_argument("--auth-mode", choices=["unsecure", "trusted-proxy"], default="unsecure")
    args = parser.parse_args(argv)
    app = build_app(f"http://{args.host}:{args.port}", capture=args.capture, auth_mode=args.auth_mode)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
