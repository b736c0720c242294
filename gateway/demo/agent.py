"""kagent's controller and one agent in one process: the demo upstream and the tests' kagent stand-in.

Written in Python from kagent's Go and Python source (kagent-dev/kagent, branch
``release/v0.10.x``, tip ``03e950f6e``); no kagent code is copied. Paths below
are in that repository.

Routing — ``go/core/internal/httpserver/server.go`` ``setupRoutes`` (gorilla/mux):
routes are tried in kagent's order; ``{name}`` is one segment; the A2A routes are
path *prefixes* (``/api/a2a/{namespace}/{name}``, ``/api/a2a-sandboxes/{namespace}/{name}``).
An unknown path is 404 ``404 page not found``, a known path with another method
405 (HEAD is not GET), and middleware runs only on a matched route:
authentication (``go/core/pkg/auth/auth.go`` ``AuthnMiddleware``: ``/health`` and
``/version`` are exempt), then ``middleware.go`` ``shareTokenMiddleware``: any
``X-Share-Token`` is looked up in kagent's own ``session_share`` table, which is
empty behind the gateway, so it is always 403 ``Invalid or expired share token``
(401 ``Unauthorized`` where authentication was skipped). A token that reaches this
server means the gateway leaked it.

Envelopes — ``go/api/httpapi/types.go`` ``StandardResponse``
``{"error": false, "data": …, "message": …}`` with Go's ``omitempty``: an empty
list (or nothing) drops ``data``, an empty message drops ``message``. Handler
errors are ``{"error": "<message>: <detail>"}`` (``middleware_error.go``
``RespondWithError``; a 5xx carries the message only); middleware errors are
``text/plain`` (``http.Error``). Times are Go's RFC 3339 with nanoseconds.

Storage — ``go/core/pkg/migrations/core/000001_initial.up.sql`` (+ ``000007_task_owner``)
and ``go/core/internal/database/queries/{sessions,events,tasks}.sql``: sessions
and events are keyed by ``(id, user_id)`` — two users may hold one session id and
the client may choose it; deletes are soft and filtered by user; a task id is
global and belongs to the user who stored it first.

Sessions — ``go/core/internal/httpserver/handlers/sessions.go``:
``GET|POST /api/sessions`` (the caller's; create with ``agent_ref``, optional
client-chosen ``id``, ``name``, ``source``), ``GET /api/sessions/agent/{namespace}/{name}``
(the sidebar: the caller's sessions of that agent; kagent adds sessions opened
through its own shares, none behind the gateway), ``GET /api/sessions/{id}``
(``{"session", "events"}``; query ``order=asc``, ``after`` (RFC 3339),
``limit``; ``read_only`` only under kagent's own share context, so never here:
the gateway injects it), ``GET /api/sessions/{id}/tasks``, ``PUT|PATCH`` (name
and/or ``agent_ref``; another user's session is 404), ``DELETE`` (soft, filtered
by user: 200 even when nothing was deleted), ``POST /api/sessions/{id}/events``
(only the session's own agent: ``X-Agent-Name`` must name it, else 403
``Session does not belong to this agent``).

Tasks — ``handlers/tasks.go``: ``GET /api/tasks/{id}`` (the caller's only),
``POST /api/tasks`` (201; 409 if another user holds the id), ``DELETE
/api/tasks/{id}`` (204; 404 if another user holds it). Task bodies follow
``A2A-Version`` (``go/core/internal/utils/a2a_version.go``: none or ``0.3`` →
v0.3 JSON, ``1.0`` → v1.0 JSON, anything else 400).

Also ``GET /api/me`` (``handlers/current_user.go``: the bearer's claims in
trusted-proxy mode, else ``{"sub": user}``), ``GET /version``, ``GET /health``
(``handlers/health.go``).

A2A — ``go/core/internal/a2a/a2a_handler_mux.go``: every path under the prefix
(bare, ``/``, deeper) is the agent; a path ending ``/.well-known/agent-card.json``
at any depth is its card (a v1.0/v0.3 union); ``/.well-known/agent.json`` is not
a card but JSON-RPC. ``A2A-Version`` picks the wire: v0.3 method names without
it or with ``0.3``, v1.0 names with ``1.0`` (the other generation's names are
method-not-found). kagent answers task reads from its own store, as the caller
(``task_query_store.go``): ``GetTask``/``tasks/get`` (#2484) and ``ListTasks``
and kagent's v0.3 extension ``tasks/list`` (``a2av0_tasks_list.go``; sorted by
id, pages of 50 (max 100), artifacts only with ``includeArtifacts``). Everything
else passes to the agent runtime with the caller as the user.

The agent runtime — kagent-adk (``python/packages/kagent-adk``) runs in the
agent's pod and calls back into the controller as the request's user
(``_token.py``: ``X-Agent-Name`` + ``X-User-Id``; ``_session_service.py``: a
message into a context the user has no session for creates one with that id;
every turn is appended as an event; kagent-core ``a2a/_task_store.py``: tasks
are saved through ``/api/tasks``). Here the runtime is a2a-sdk's
``DefaultRequestHandler`` with an echo executor in the same process, writing to
the same tables directly (so its callbacks never show in ``/_demo/requests``).
It echoes the text, the user it ran as and ``metadata.initiated_by``.

Not modelled: Kubernetes-backed routes (agents, model configs, tools, …) answer
404 as unknown paths; kagent's own share routes (the gateway serves them);
sandbox single-session limits; the A2A passthrough's v0.3/v1.0 re-encoding
(the runtime answers both generations itself).

``/_demo/requests`` (only with ``--capture``) lists every request received
(method, path, query, headers, body and the ``effective_user`` it resolved), so
tests can check exactly what the gateway forwarded.

Identity is resolved exactly as kagent's controller does (``--auth-mode``):

* ``unsecure`` (kagent's default; kagent-dev/kagent
  ``go/core/internal/httpserver/auth/authn.go``, ``UnsecureAuthenticator.Authenticate``):
  the first ``user_id`` query parameter (Go's ``url.Values.Get`` after
  percent-decoding, so ``user%5Fid`` counts), else the first ``X-User-Id``
  header, else ``admin@kagent.dev``.
* ``trusted-proxy`` (``proxy_authn.go``, release/v0.10.x): ``Authorization:
  Bearer <JWT>`` is required and decoded **without verification**; the user is
  its ``sub`` claim, but with an ``X-Agent-Name`` header (an agent calling
  back) it is ``?user_id=``, else ``X-User-Id``, else the claim — so
  ``X-Agent-Name`` lets a caller choose the user. No bearer or no user → 401.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from a2a.compat.v0_3 import types as types_v03
from a2a.compat.v0_3.conversions import (
    to_compat_agent_card,
    to_compat_task,
    to_core_task,
    to_core_task_status,
)
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.tasks import TaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    ListTasksRequest,
    ListTasksResponse,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.demo.capture import capturing

DEFAULT_USER = "admin@kagent.dev"
AGENT_REF = "demo/echo"
AGENT_PATH = "/api/a2a/demo/echo"
SANDBOX_AGENT_PATH = "/api/a2a-sandboxes/demo/echo"
VERSION = {"kagent_version": "v0.10.x-standin", "git_commit": "share-gateway-demo", "build_date": "-"}
CARD_SUFFIX = "/.well-known/agent-card.json"
V03_METHODS = frozenset({
    "message/send", "message/stream", "tasks/get", "tasks/cancel", "tasks/resubscribe",
    "tasks/pushNotificationConfig/set", "tasks/pushNotificationConfig/get",
    "tasks/pushNotificationConfig/list", "tasks/pushNotificationConfig/delete",
    "agent/getAuthenticatedExtendedCard",
})
V10_METHODS = frozenset({
    "SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask", "SubscribeToTask",
    "GetTaskPushNotificationConfig", "CreateTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs", "DeleteTaskPushNotificationConfig", "GetExtendedAgentCard",
})
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 100  # task_query_store.go


# -- identity (kagent's authenticators; see the module doc) ---------------------------------


def _claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, decoded without verification (``None`` if unreadable)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    """Go's ``http.Header.Get``: the first value, or ``""``."""
    return next((v.decode("latin-1") for k, v in headers if k.lower() == name), "")


def resolve_user(mode: str, query: str, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The user kagent's controller resolves for a request (``None``: 401); see the module doc.

    ``query`` is the raw query string; ``headers`` the ASGI header list. Go's
    ``url.Values.Get`` and ``http.Header.Get`` return the first value;
    ``parse_qsl`` splits on ``&`` only, like Go 1.17+ ``url.ParseQuery``.
    """
    query_user = next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == "user_id"), "")
    named = query_user or _header(headers, b"x-user-id")
    if mode == "unsecure":
        return named or DEFAULT_USER
    authorization = _header(headers, b"authorization")
    if not authorization.startswith("Bearer "):  # strings.CutPrefix(authHeader, "Bearer ")
        return None
    claims = _claims(authorization.removeprefix("Bearer "))
    if claims is None:
        return None
    claim = claims.get("sub", "")
    if not isinstance(claim, str):
        claim = ""
    if _header(headers, b"x-agent-name"):
        return named or claim or None
    return claim or None


def user_of(conn: HTTPConnection) -> str:
    """The user the request was resolved to (``KagentIdentity`` put it in the scope)."""
    return str(conn.scope["kagent_user"])


class KagentIdentity:
    """ASGI middleware: resolves every request's user as kagent's controller does (401 if none).

    ``/health`` and ``/version`` skip authentication, as kagent's ``AuthnMiddleware`` does.
    """

    UNAUTHENTICATED = frozenset({"/health", "/version"})

    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope["type"] != "http" or path.startswith("/_demo/") or path in self.UNAUTHENTICATED:
            await self.app(scope, receive, send)
            return
        user = resolve_user(self.mode, scope["query_string"].decode("latin-1"), scope["headers"])
        if user is None:
            await go_http_error("Unauthorized", 401)(scope, receive, send)
            return
        scope["kagent_user"] = user
        await self.app(scope, receive, send)


class ShareTokenCheck:
    """kagent's ``shareTokenMiddleware``: any ``X-Share-Token`` is looked up in kagent's own
    share table — empty behind the gateway — so it is refused (``middleware.go``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _header(scope["headers"], b"x-share-token"):
            if "kagent_user" not in scope:
                await go_http_error("Unauthorized", 401)(scope, receive, send)
            else:
                await go_http_error("Invalid or expired share token", 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class TrustUserHeader(AuthenticationBackend):
    """The agent runtime runs as the user the controller resolved (kagent sends it as ``X-User-Id``)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
        return AuthCredentials(["authenticated"]), SimpleUser(user_of(conn))


# -- responses, as kagent's handlers write them -----------------------------------------------


def go_http_error(text: str, status: int) -> Response:
    """Go's ``http.Error``: ``text/plain``, the text and a newline."""
    return PlainTextResponse(text + "\n", status_code=status, headers={"X-Content-Type-Options": "nosniff"})


def ok(data: Any, message: str, status: int = 200) -> JSONResponse:
    """``StandardResponse`` with Go's ``omitempty``: no ``data`` for an empty list or nothing."""
    body: dict[str, Any] = {"error": False}
    if data is not None and data != []:
        body["data"] = data
    if message:
        body["message"] = message
    return JSONResponse(body, status_code=status)


def api_error(status: int, message: str, detail: str | None = None) -> JSONResponse:
    """``RespondWithError``: ``{"error": "<message>: <detail>"}``; a 5xx hides the detail."""
    text = f"{message}: {detail}" if detail and status < 500 else message
    return JSONResponse({"error": text}, status_code=status)


def go_time(value: datetime | None) -> str:
    """Go's ``time.Time`` JSON (RFC 3339, trailing zeros of the fraction dropped); zero for ``None``."""
    if value is None:
        return "0001-01-01T00:00:00Z"
    fraction = f"{value.microsecond:06d}".rstrip("0")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def python_identifier(ref: str) -> str:
    """kagent's ``ConvertToPythonIdentifier``: agent ``ns/name`` → ``ns__NS__name`` (``-`` → ``_``)."""
    return ref.replace("-", "_").replace("/", "__NS__")


def query_get(request: Request, name: str) -> str:
    """Go's ``url.Values.Get``: the first value, or ``""``."""
    return next((v for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k == name), "")


class BodyError(ValueError):
    """A request body Go's ``json.Decoder`` would refuse (the message imitates Go's)."""


_GO_TYPES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number", float: "number"}


def decode_body(raw: bytes, struct: str, fields: Mapping[str, type]) -> dict[str, Any]:
    """``DecodeJSONBody`` into a struct of optional fields: the first JSON value, type-checked."""
    text = raw.decode("utf-8", "replace").lstrip()
    if not text:
        raise BodyError("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            raise BodyError("unexpected EOF") from None
        raise BodyError(f"invalid character {text[exc.pos]!r} looking for beginning of value") from None
    if not isinstance(value, dict):
        if value is None:
            return {}
        got = _GO_TYPES.get(type(value), "value")
        raise BodyError(f"json: cannot unmarshal {got} into Go value of type {struct or 'struct'}")
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        item = value.get(name)
        if item is None:
            continue
        if not isinstance(item, kind) or isinstance(item, bool) is not (kind is bool):
            got = _GO_TYPES.get(type(item), "value")
            raise BodyError(
                f"json: cannot unmarshal {got} into Go struct field {struct}.{name} of type {_GO_TYPES[kind]}"
            )
        out[name] = item
    return out


SESSION_REQUEST: Mapping[str, type] = {"agent_ref": str, "name": str, "id": str, "source": str}


# -- kagent's tables ---------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SessionRow:
    """A row of kagent's ``session`` table (``database.Session``)."""

    id: str
    user_id: str
    name: str | None = None
    agent_id: str | None = None
    source: str | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    deleted_at: datetime | None = None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            out["name"] = self.name
        out |= {"user_id": self.user_id, "created_at": go_time(self.created_at),
                "updated_at": go_time(self.updated_at)}
        if self.deleted_at is not None:
            out["deleted_at"] = go_time(self.deleted_at)
        if self.agent_id is not None:
            out["agent_id"] = self.agent_id
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass
class EventRow:
    """A row of kagent's ``event`` table (``database.Event``; ``data`` is a JSON string)."""

    id: str
    session_id: str
    user_id: str
    data: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "session_id": self.session_id, "user_id": self.user_id,
                               "created_at": go_time(self.created_at), "updated_at": go_time(self.updated_at)}
        if self.deleted_at is not None:
            out["deleted_at"] = go_time(self.deleted_at)
        out["data"] = self.data
        return out


@dataclass
class TaskRow:
    """A row of kagent's ``task`` table: a task id is global, its ``user_id`` the owner."""

    task: Task
    user_id: str
    created_at: datetime = field(default_factory=_now)
    deleted_at: datetime | None = None


class RecordNotFound(LookupError):
    """``database.ErrNotFound`` as kagent's Postgres client wraps it
    (``failed to get session S: record not found``)."""


class TaskOwnedByAnotherUser(Exception):
    """``database.ErrTaskOwnedByAnotherUser``."""

    def __str__(self) -> str:
        return "task id owned by another user"


class Store:
    """kagent's database, in memory (queries as in ``go/core/internal/database/queries``)."""

    def __init__(self, agents: Iterable[str]) -> None:
        self.agents = {python_identifier(a) for a in agents}
        self.sessions: dict[tuple[str, str], SessionRow] = {}
        self.events: dict[tuple[str, str], EventRow] = {}
        self.tasks: dict[str, TaskRow] = {}

    def get_agent(self, agent_id: str) -> None:
        if agent_id not in self.agents:
            raise RecordNotFound(f"failed to get agent {agent_id}: record not found")

    def get_session(self, session_id: str, user_id: str) -> SessionRow:
        """``GetSession``: the user's live session (a copy)."""
        row = self.sessions.get((session_id, user_id))
        if row is None or row.deleted_at is not None:
            raise RecordNotFound(f"failed to get session {session_id}: record not found")
        return replace(row)

    def list_sessions(self, user_id: str, agent_id: str | None = None) -> list[SessionRow]:
        """``ListSessions`` / ``ListSessionsForAgent`` (own rows; agent-sourced ones hidden per agent)."""
        rows = [r for r in self.sessions.values() if r.user_id == user_id and r.deleted_at is None]
        if agent_id is not None:
            rows = [r for r in rows if r.agent_id == agent_id and r.source != "agent"]
        return sorted(rows, key=lambda r: (r.updated_at, r.created_at), reverse=True)

    def upsert_session(self, row: SessionRow) -> None:
        """``UpsertSession``: insert, or update name, agent and source (a soft delete stays)."""
        existing = self.sessions.get((row.id, row.user_id))
        if existing is None:
            self.sessions[(row.id, row.user_id)] = replace(row, created_at=_now(), updated_at=_now())
            return
        existing.name, existing.agent_id, existing.source = row.name, row.agent_id, row.source
        existing.updated_at = _now()

    def soft_delete_session(self, session_id: str, user_id: str) -> None:
        row = self.sessions.get((session_id, user_id))
        if row is not None and row.deleted_at is None:
            row.deleted_at = _now()

    def _touch(self, session_id: str, user_id: str) -> None:
        row = self.sessions.get((session_id, user_id))
        if row is not None and row.deleted_at is None:
            row.updated_at = _now()

    def insert_event(self, event: EventRow) -> None:
        """``InsertEvent`` (primary key ``(id, user_id)``); touches the session."""
        if (event.id, event.user_id) in self.events:
            raise ValueError(f"duplicate key value violates unique constraint (event {event.id})")
        now = _now()
        self.events[(event.id, event.user_id)] = replace(event, created_at=now, updated_at=now)
        self._touch(event.session_id, event.user_id)

    def list_events(
        self, session_id: str, user_id: str, *, ascending: bool, after: datetime | None, limit: int
    ) -> list[EventRow]:
        """``ListEventsForSession{Asc,Desc}[Limit]``: newest first unless ``order=asc``."""
        rows = [
            e for e in self.events.values()
            if e.session_id == session_id and e.user_id == user_id and e.deleted_at is None
            and (after is None or (e.created_at is not None and e.created_at > after))
        ]
        rows.sort(key=lambda e: e.created_at or _now(), reverse=not ascending)
        return rows[:limit] if limit > 0 else rows

    def upsert_task(self, task: Task, user_id: str) -> None:
        """``UpsertTask``: another user's id, or a deleted one, is refused; touches the session."""
        row = self.tasks.get(task.id)
        if row is not None and (row.deleted_at is not None or row.user_id != user_id):
            raise TaskOwnedByAnotherUser()
        stored = Task()
        stored.CopyFrom(task)
        if row is None:
            self.tasks[task.id] = TaskRow(stored, user_id)
        else:
            row.task = stored
        if task.context_id:
            self._touch(task.context_id, user_id)

    def get_task(self, task_id: str, user_id: str) -> Task:
        """``GetTask``: the user's own task (a copy)."""
        row = self.tasks.get(task_id)
        if row is None or row.deleted_at is not None or row.user_id != user_id:
            raise RecordNotFound(f"failed to get task {task_id}: record not found")
        out = Task()
        out.CopyFrom(row.task)
        return out

    def list_tasks_for_session(self, session_id: str, user_id: str) -> list[Task]:
        rows = [r for r in self.tasks.values()
                if r.task.context_id == session_id and r.user_id == user_id and r.deleted_at is None]
        rows.sort(key=lambda r: r.created_at)
        out = []
        for r in rows:
            task = Task()
            task.CopyFrom(r.task)
            out.append(task)
        return out

    def delete_task(self, task_id: str, user_id: str) -> None:
        """``SoftDeleteTask`` then ``checkTaskOwner``: a task held by someone else is an error."""
        row = self.tasks.get(task_id)
        if row is None or row.deleted_at is not None:
            return
        if row.user_id != user_id:
            raise TaskOwnedByAnotherUser()
        row.deleted_at = _now()


# -- task JSON on kagent's two wires --------------------------------------------------------


def wire_of(request: HTTPConnection) -> str | None:
    """``NegotiateA2AWireVersion``: ``"v0"``, ``"v1"``, or ``None`` for an unsupported version."""
    version = request.headers.get("A2A-Version", "")
    return {"": "v0", "0.3": "v0", "1.0": "v1"}.get(version)


def unsupported_version(request: HTTPConnection) -> str:
    return f'unsupported A2A version "{request.headers.get("A2A-Version", "")}"'


def task_json(task: Task, wire: str) -> dict[str, Any]:
    """A task in v1.0 JSON (protojson) or kagent's legacy v0.3 shape (``trpcv0.ToLegacyTask``)."""
    if wire == "v1":
        return dict(MessageToDict(task))
    out: dict[str, Any] = to_compat_task(task).model_dump(mode="json", exclude_none=True, by_alias=True)
    return out


def shape_task(task: Task, history_length: int | None, include_artifacts: bool) -> Task:
    """``shapeTask``: history capped to the newest ``history_length``; artifacts only if asked."""
    shaped = Task()
    shaped.CopyFrom(task)
    if history_length is not None:
        keep = list(task.history)[-history_length:] if history_length > 0 else []
        del shaped.history[:]
        shaped.history.extend(keep)
    if not include_artifacts:
        del shaped.artifacts[:]
    return shaped


# -- the agent runtime (kagent-adk's role) -------------------------------------------------------


def _context_user(context: ServerCallContext) -> str:
    return str(context.user.user_name)


class KagentTaskStore(TaskStore):
    """a2a-sdk ``TaskStore`` over the controller's task table, scoped to the request's user —
    what kagent-core's ``KAgentTaskStore`` does over ``/api/tasks``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, task: Task, context: ServerCallContext) -> None:
        self.store.upsert_task(task, _context_user(context))

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        try:
            return self.store.get_task(task_id, _context_user(context))
        except RecordNotFound:
            return None

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        user = _context_user(context)
        sessions = [params.context_id] if params.context_id else [
            s.id for s in self.store.list_sessions(user)
        ]
        tasks = [t for sid in sessions for t in self.store.list_tasks_for_session(sid, user)]
        return ListTasksResponse(tasks=tasks, total_size=len(tasks), page_size=len(tasks))

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        self.store.delete_task(task_id, _context_user(context))


def adk_event(author: str, role: str, text: str, invocation_id: str) -> str:
    """An ADK event as kagent-adk stores it (``Event.model_dump_json``, the fields that matter)."""
    return json.dumps({
        "id": str(uuid.uuid4()), "invocation_id": invocation_id, "author": author,
        "content": {"role": role, "parts": [{"text": text}]}, "timestamp": time.time(),
    }, separators=(",", ":"))


class EchoExecutor(AgentExecutor):
    """Echoes the user's text in several events, ~20 ms apart, naming who it ran as.

    Like kagent-adk, it first makes sure the user has a session with the
    message's context id (creating one for this agent if not) and appends the
    user's turn and its answer to that session's events.
    Message metadata: ``ticks`` (count) and ``tickSeconds`` make a long-running
    task that reports "tick N" that often first; ``delaySeconds`` a pause.
    """

    def __init__(self, store: Store, agent_id: str) -> None:
        self.store = store
        self.agent_id = agent_id

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        assert context.task_id is not None
        assert context.context_id is not None
        user = context.call_context.user.user_name
        text = get_message_text(message)
        try:
            self.store.get_session(context.context_id, user)
        except RecordNotFound:
            self.store.upsert_session(SessionRow(context.context_id, user, agent_id=self.agent_id))
        self._event(context, "user", "user", text)
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
        self._event(context, "echo", "model", f"echo: {text}")
        await updater.complete(updater.new_agent_message([new_text_part(f"echo: {text}")]))

    def _event(self, context: RequestContext, author: str, role: str, text: str) -> None:
        assert context.context_id is not None
        user = context.call_context.user.user_name
        self.store.insert_event(EventRow(
            str(uuid.uuid4()), context.context_id, user, adk_event(author, role, text, context.task_id or "")
        ))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        assert context.context_id is not None
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel(updater.new_agent_message([new_text_part("cancelled")]))


def agent_card(url: str) -> AgentCard:
    """The agent's card; v1.0 and v0.3 JSON-RPC on one URL (kagent: ``{a2a base}/{ns}/{name}/``)."""
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


# -- the A2A endpoint (a2a_handler_mux.go, task_query_store.go, a2av0_tasks_list.go) ------------


def rpc_result(request_id: Any, result: Any) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result})


def rpc_error(request_id: Any, code: int, message: str) -> JSONResponse:
    """A JSON-RPC error as a2a-go writes it: HTTP 200."""
    return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


class InvalidParams(ValueError):
    """``a2a.ErrInvalidParams`` (JSON-RPC -32602)."""


def _opt(params: dict[str, Any], name: str, kind: type) -> Any:
    value = params.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool)):
        raise InvalidParams("invalid params")
    return value


def _decode_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParams("invalid pageToken") from None
    if offset < 0:
        raise InvalidParams("invalid pageToken")
    return offset


class AgentEndpoint:
    """One agent behind kagent's A2A handler: card, wire negotiation, store-backed task
    reads, and everything else passed to the agent runtime as the caller."""

    def __init__(self, store: Store, card: AgentCard, runtime: ASGIApp) -> None:
        self.store = store
        self.card = card
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if scope["path"].endswith(CARD_SUFFIX):
            await self._card(request)(scope, receive, send)
            return
        wire = wire_of(request)
        if wire is None:
            await go_http_error(unsupported_version(request), 400)(scope, receive, send)
            return
        if request.method != "POST":
            await rpc_error(None, -32600, "invalid request")(scope, receive, send)
            return
        body = await request.body()
        try:
            rpc = json.loads(body)
        except (ValueError, RecursionError):
            rpc = None
        method = rpc.get("method") if isinstance(rpc, dict) else None
        if isinstance(rpc, dict) and isinstance(method, str):
            answer = self._store_backed(wire, rpc, method, user_of(request))
            if answer is not None:
                await answer(scope, receive, send)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        inner = {**scope, "path": "/", "raw_path": b"/", "root_path": ""}
        await self.runtime(inner, replay, send)

    def _card(self, request: Request) -> Response:
        """a2a-go's agent-card handler: GET (and CORS preflight) only."""
        cors = {"Access-Control-Allow-Origin": "*"}
        if request.method == "OPTIONS":
            return Response(status_code=200, headers={**cors, "Access-Control-Allow-Methods": "GET, OPTIONS"})
        if request.method != "GET":
            return Response(status_code=405)
        return JSONResponse(agent_card_to_dict(self.card), headers=cors)

    def _store_backed(self, wire: str, rpc: dict[str, Any], method: str, user: str) -> Response | None:
        """The answers kagent's controller gives itself; ``None`` passes the call to the runtime."""
        request_id = rpc.get("id")
        if wire == "v0" and method == "tasks/list":  # a2av0_tasks_list.go: no envelope checks
            return self._v0_tasks_list(request_id, rpc.get("params"), user)
        names = V03_METHODS if wire == "v0" else V10_METHODS
        if method not in names:
            return rpc_error(request_id, -32601, "method not found")
        if method not in ("tasks/get", "GetTask", "ListTasks", "agent/getAuthenticatedExtendedCard",
                          "GetExtendedAgentCard"):
            return None
        if isinstance(request_id, bool) or not isinstance(request_id, str | int | float | None):
            return rpc_error(None, -32600, "invalid request")
        if rpc.get("jsonrpc") != "2.0":
            return rpc_error(request_id, -32600, "invalid request")
        params = rpc.get("params") or {}
        try:
            if not isinstance(params, dict):
                raise InvalidParams("invalid params")
            if method in ("agent/getAuthenticatedExtendedCard", "GetExtendedAgentCard"):
                # passthrough_handler.go: a card without the extended capability is its own extended card
                card = (MessageToDict(self.card) if wire == "v1" else to_compat_agent_card(self.card)
                        .model_dump(mode="json", exclude_none=True, by_alias=True))
                return rpc_result(request_id, card)
            if method == "ListTasks":
                return rpc_result(request_id, self._list_tasks(params, user, wire))
            task_id = _opt(params, "id", str) or ""
            history = _opt(params, "historyLength", int)
            try:
                task = self.store.get_task(task_id, user)
            except RecordNotFound:
                return rpc_error(request_id, -32001, "task not found")
            return rpc_result(request_id, task_json(shape_task(task, history, True), wire))
        except InvalidParams as exc:
            return rpc_error(request_id, -32602, str(exc))
        except RecordNotFound as exc:
            return rpc_error(request_id, -32603, str(exc))

    def _list_tasks(self, params: dict[str, Any], user: str, wire: str) -> dict[str, Any]:
        """``storeTaskQueryHandler.ListTasks`` as the caller.

        Raises ``InvalidParams`` (-32602) or ``RecordNotFound`` (-32603: the
        ``contextId`` is not one of the caller's sessions).
        """
        context_id = _opt(params, "contextId", str) or ""
        status = _opt(params, "status", str) or ""
        page_size = _opt(params, "pageSize", int) or 0
        page_token = _opt(params, "pageToken", str) or ""
        history = _opt(params, "historyLength", int)
        after_text = _opt(params, "statusTimestampAfter", str)
        include_artifacts = bool(_opt(params, "includeArtifacts", bool))
        state = TaskState.TASK_STATE_UNSPECIFIED
        if status:
            try:  # an unknown state filters nothing, as a2av0.ToV1TaskState maps it to unspecified
                if wire == "v1":
                    state = TaskState.Value(status)
                else:
                    legacy = types_v03.TaskStatus(state=types_v03.TaskState(status))
                    state = to_core_task_status(legacy).state
            except ValueError:
                state = TaskState.TASK_STATE_UNSPECIFIED
        try:
            after = datetime.fromisoformat(after_text.replace("Z", "+00:00")) if after_text else None
        except ValueError:
            raise InvalidParams("invalid params") from None
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        if context_id:
            try:
                self.store.get_session(context_id, user)
            except RecordNotFound as exc:
                raise RecordNotFound(f"get session {context_id}: {exc}") from None
            tasks = self.store.list_tasks_for_session(context_id, user)
        else:
            sessions = self.store.list_sessions(user)
            tasks = [t for s in sessions for t in self.store.list_tasks_for_session(s.id, user)]
        if state != TaskState.TASK_STATE_UNSPECIFIED:
            tasks = [t for t in tasks if t.status.state == state]
        if after is not None:
            tasks = [t for t in tasks
                     if t.status.HasField("timestamp") and t.status.timestamp.ToDatetime(UTC) > after]
        tasks.sort(key=lambda t: t.id)
        offset = min(_decode_page_token(page_token), len(tasks))
        end = min(offset + size, len(tasks))
        next_token = ""
        if end < len(tasks):
            next_token = base64.urlsafe_b64encode(str(end).encode()).decode().rstrip("=")
        return {
            "tasks": [task_json(shape_task(t, history, include_artifacts), wire) for t in tasks[offset:end]],
            "totalSize": len(tasks), "pageSize": size, "nextPageToken": next_token,
        }

    def _v0_tasks_list(self, request_id: Any, params: Any, user: str) -> Response:
        """kagent's v0.3 ``tasks/list`` extension: ListTasks under a v0.3 name, legacy task JSON."""
        try:
            if params is not None and not isinstance(params, dict):
                raise InvalidParams("invalid params")
            result = self._list_tasks(params or {}, user, "v0")
        except InvalidParams as exc:
            return rpc_error(request_id, -32602, str(exc))
        except RecordNotFound as exc:
            return rpc_error(request_id, -32603, str(exc))
        return rpc_result(request_id, result)


# -- the REST API (handlers/sessions.go, handlers/tasks.go, …) -----------------------------------

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """One gorilla/mux route: a path pattern (``{name}`` = one segment), methods (empty = any)."""

    template: str
    methods: frozenset[str]
    endpoint: ASGIApp
    prefix: bool = False
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        parts = re.split(r"(\{[A-Za-z_]+\})", self.template)
        regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
        object.__setattr__(self, "pattern", re.compile("^" + regex + ("" if self.prefix else "$")))


class Controller:
    """kagent's controller: the route table, the middleware on matched routes, the handlers."""

    def __init__(self, base_url: str, auth_mode: str) -> None:
        self.auth_mode = auth_mode
        self.store = Store([AGENT_REF])
        self.task_store = KagentTaskStore(self.store)
        self.handlers: list[DefaultRequestHandler] = []
        agents: dict[str, AgentEndpoint] = {}
        for key, path in ((AGENT_REF, AGENT_PATH), (f"sandboxes/{AGENT_REF}", SANDBOX_AGENT_PATH)):
            card = agent_card(f"{base_url}{path}/")
            handler = DefaultRequestHandler(
                agent_executor=EchoExecutor(self.store, python_identifier(AGENT_REF)),
                task_store=self.task_store, agent_card=card,
            )
            self.handlers.append(handler)
            runtime = Starlette(
                routes=create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True),
                middleware=[Middleware(AuthenticationMiddleware, backend=TrustUserHeader())],
            )
            agents[key] = AgentEndpoint(self.store, card, runtime)
        self.agents = agents

        def rest(func: Handler) -> ASGIApp:
            return request_response(func)

        get, post, delete = frozenset({"GET"}), frozenset({"POST"}), frozenset({"DELETE"})
        self.routes = (
            Route("/health", get, rest(self.health)),
            Route("/version", get, rest(self.version)),
            Route("/api/me", get, rest(self.me)),
            Route("/api/sessions", get, rest(self.list_sessions)),
            Route("/api/sessions", post, rest(self.create_session)),
            Route("/api/sessions/agent/{namespace}/{name}", get, rest(self.sessions_for_agent)),
            Route("/api/sessions/{session_id}", get, rest(self.get_session)),
            Route("/api/sessions/{session_id}/tasks", get, rest(self.session_tasks)),
            Route("/api/sessions/{session_id}", delete, rest(self.delete_session)),
            Route("/api/sessions/{session_id}", frozenset({"PUT", "PATCH"}), rest(self.update_session)),
            Route("/api/sessions/{session_id}/events", post, rest(self.add_event)),
            Route("/api/tasks/{task_id}", get, rest(self.get_task)),
            Route("/api/tasks", post, rest(self.create_task)),
            Route("/api/tasks/{task_id}", delete, rest(self.delete_task)),
            Route("/api/a2a/{namespace}/{name}", frozenset(), self.a2a, prefix=True),
            Route("/api/a2a-sandboxes/{namespace}/{name}", frozenset(), self.a2a, prefix=True),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    for handler in self.handlers:
                        await handler.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        wrong_method = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            if route.methods and method not in route.methods:
                wrong_method = True
                continue
            scope["path_params"] = m.groupdict()
            app = KagentIdentity(ShareTokenCheck(route.endpoint), self.auth_mode)
            await app(scope, receive, send)
            return
        if wrong_method:
            await Response(status_code=405)(scope, receive, send)
        else:
            await go_http_error("404 page not found", 404)(scope, receive, send)

    async def a2a(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``handlerMux.ServeHTTP``: the agent named by the prefix, or 404."""
        params = scope["path_params"]
        sandbox = scope["path"].startswith("/api/a2a-sandboxes/")
        key = ("sandboxes/" if sandbox else "") + f"{params['namespace']}/{params['name']}"
        endpoint = self.agents.get(key)
        if endpoint is None:
            await go_http_error(f"Agent {key} not found", 404)(scope, receive, send)
            return
        await endpoint(scope, receive, send)

    # /health, /version, /api/me

    async def health(self, request: Request) -> Response:
        return ok({"status": "OK"}, "OK")

    async def version(self, request: Request) -> Response:
        return JSONResponse(VERSION)

    async def me(self, request: Request) -> Response:
        """``HandleGetCurrentUser``: the bearer's claims (trusted-proxy, no agent) or ``{"sub": user}``."""
        headers = request.scope["headers"]
        if self.auth_mode == "trusted-proxy" and not _header(headers, b"x-agent-name"):
            claims = _claims(_header(headers, b"authorization").partition(" ")[2])
            if claims is not None:
                return JSONResponse(claims)
        return JSONResponse({"sub": user_of(request)})

    # sessions

    async def list_sessions(self, request: Request) -> Response:
        rows = self.store.list_sessions(user_of(request))
        return ok([r.json() for r in rows], "Successfully listed sessions")

    async def create_session(self, request: Request) -> Response:
        try:
            body = decode_body(await request.body(), "api.SessionRequest", SESSION_REQUEST)
        except BodyError as exc:
            return api_error(400, "Invalid request body", str(exc))
        user = user_of(request)
        agent_ref = body.get("agent_ref")
        if agent_ref is None:
            return api_error(400, "agent_ref is required")
        session_id = body.get("id") or str(uuid.uuid4())
        agent_id = python_identifier(agent_ref)
        try:
            self.store.get_agent(agent_id)
        except RecordNotFound as exc:
            return api_error(400, f"Agent ref is invalid, please check the agent ref {agent_ref}", str(exc))
        self.store.upsert_session(SessionRow(
            session_id, user, name=body.get("name"), agent_id=agent_id, source=body.get("source")
        ))
        try:
            stored = self.store.get_session(session_id, user)
        except RecordNotFound:  # a soft-deleted id stays deleted: the upsert does not revive it
            return api_error(500, "Failed to load created session")
        return ok(stored.json(), "Successfully created session", 201)

    async def sessions_for_agent(self, request: Request) -> Response:
        """``HandleGetSessionsForAgent``: the caller's sessions of one agent (no share-opened ones here)."""
        params = request.path_params
        agent_id = python_identifier(f"{params['namespace']}/{params['name']}")
        try:
            self.store.get_agent(agent_id)
        except RecordNotFound as exc:
            return api_error(404, "Agent not found", str(exc))
        rows = self.store.list_sessions(user_of(request), agent_id)
        return ok([r.json() for r in rows], "Successfully listed sessions")

    async def get_session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        user = user_of(request)
        try:
            row = self.store.get_session(session_id, user)
        except RecordNotFound as exc:
            return api_error(404, "Session not found", str(exc))
        ascending = query_get(request, "order") == "asc"
        after: datetime | None = None
        limit = 0
        if after_text := query_get(request, "after"):
            try:
                after = datetime.fromisoformat(after_text.replace("Z", "+00:00"))
                if after.tzinfo is None or "T" not in after_text:
                    raise ValueError(after_text)
            except ValueError:
                message = (f'failed to parse after timestamp: parsing time "{after_text}" as '
                           '"2006-01-02T15:04:05Z07:00": cannot parse')
                return api_error(400, message, message)
        if limit_text := query_get(request, "limit"):
            try:
                limit = int(limit_text, 10)
            except ValueError:
                message = f'failed to parse limit: strconv.Atoi: parsing "{limit_text}": invalid syntax'
                return api_error(400, message, message)
        events = self.store.list_events(session_id, user, ascending=ascending, after=after, limit=limit)
        data = {"session": row.json(), "events": [e.json() for e in events]}
        return ok(data, "Successfully retrieved session")

    async def session_tasks(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        user = user_of(request)
        try:
            self.store.get_session(session_id, user)
        except RecordNotFound as exc:
            return api_error(404, "Session not found for given ID", str(exc))
        tasks = self.store.list_tasks_for_session(session_id, user)
        wire = wire_of(request)
        if wire is None:
            return api_error(400, "Unsupported A2A version", unsupported_version(request))
        return ok([task_json(t, wire) for t in tasks], "Successfully retrieved session tasks")

    async def update_session(self, request: Request) -> Response:
        """``HandleUpdateSession`` (PUT and PATCH alike): name and/or agent, the caller's session only."""
        user = user_of(request)
        session_id = request.path_params["session_id"]
        try:
            body = decode_body(await request.body(), "api.SessionRequest", SESSION_REQUEST)
        except BodyError as exc:
            return api_error(400, "Invalid request body", str(exc))
        if body.get("name") is None and body.get("agent_ref") is None:
            return api_error(400, "at least one of name or agent_ref is required")
        try:
            row = self.store.get_session(session_id, user)
        except RecordNotFound as exc:
            return api_error(404, "Session not found", str(exc))
        if "name" in body:
            row.name = body["name"]
        if "agent_ref" in body:
            agent_id = python_identifier(body["agent_ref"])
            try:
                self.store.get_agent(agent_id)
            except RecordNotFound as exc:
                return api_error(404, "Agent not found", str(exc))
            row.agent_id = agent_id
        self.store.upsert_session(row)
        return ok(row.json(), "Successfully updated session")

    async def delete_session(self, request: Request) -> Response:
        """``HandleDeleteSession``: a soft delete filtered by user — 200 whether or not a row matched."""
        self.store.soft_delete_session(request.path_params["session_id"], user_of(request))
        return ok({}, "Session deleted successfully")

    async def add_event(self, request: Request) -> Response:
        """``HandleAddEventToSession``: only the session's own agent (``X-Agent-Name``) may append."""
        session_id = request.path_params["session_id"]
        agent = _header(request.scope["headers"], b"x-agent-name")
        user = user_of(request)
        try:
            body = decode_body(await request.body(), "", {"id": str, "data": str})
        except BodyError as exc:
            return api_error(400, "Invalid request body", str(exc))
        try:
            row = self.store.get_session(session_id, user)
        except RecordNotFound as exc:
            return api_error(404, "Session not found", str(exc))
        if row.agent_id is not None and row.agent_id != python_identifier(agent):
            return api_error(403, "Session does not belong to this agent")
        event = EventRow(body.get("id", ""), session_id, user, body.get("data", ""))
        try:
            self.store.insert_event(event)
        except ValueError:
            return api_error(500, "Failed to store event")
        # kagent answers the struct it built, not the stored row: its times are Go's zero time.
        return ok(event.json(), "Event added to session successfully", 201)

    # tasks

    async def get_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            task = self.store.get_task(task_id, user_of(request))
        except RecordNotFound as exc:
            return api_error(404, "Task not found", str(exc))
        wire = wire_of(request)
        if wire is None:
            return api_error(400, "Unsupported A2A version", unsupported_version(request))
        return ok(task_json(task, wire), "Successfully retrieved task")

    async def create_task(self, request: Request) -> Response:
        """``HandleCreateTask``: the runtime's task store saving a task as the request's user."""
        wire = wire_of(request)
        if wire is None:
            return api_error(400, "Unsupported A2A version", unsupported_version(request))
        raw = await request.body()
        try:
            value = json.loads(raw) if raw.strip() else None
            if not isinstance(value, dict):
                raise ValueError("EOF" if value is None else "json: cannot unmarshal into a task")
            if wire == "v1":
                task = ParseDict(value, Task(), ignore_unknown_fields=True)
            else:
                task = to_core_task(types_v03.Task.model_validate(value))
        except (ValueError, ParseError) as exc:
            return api_error(400, "Invalid request body", str(exc).splitlines()[0])
        if not task.id:
            task.id = str(uuid.uuid4())
        try:
            self.store.upsert_task(task, user_of(request))
        except TaskOwnedByAnotherUser as exc:
            return api_error(409, "Task ID is already in use", str(exc))
        return ok(task_json(task, wire), "Successfully created task", 201)

    async def delete_task(self, request: Request) -> Response:
        try:
            self.store.delete_task(request.path_params["task_id"], user_of(request))
        except TaskOwnedByAnotherUser as exc:
            return api_error(404, "Task not found", str(exc))
        return Response(status_code=204)


def build_app(base_url: str, *, capture: bool = False, auth_mode: str = "unsecure") -> Any:
    """The demo server as an ASGI app (``base_url``: where clients reach it;
    ``auth_mode``: kagent's ``unsecure`` or ``trusted-proxy``)."""
    app = Controller(base_url, auth_mode)
    if not capture:
        return app
    return capturing(app, note=lambda scope: {"effective_user": resolve_user(
        auth_mode, scope["query_string"].decode("latin-1"), scope["headers"])})


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
