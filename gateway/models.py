"""Frozen value objects that flow through the request pipeline; no I/O lives here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Action(enum.Enum):
    """What a route does to a session (DESIGN.md "match route")."""

    READ = "read"
    WRITE = "write"
    OWNER_ONLY = "owner-only"
    PUBLIC = "public"
    SHARE_API = "share-api"
    ADMIN = "admin"  # board-wide settings: only callers in ``admins``; a share never reaches it
    DENY = "deny"  # refused for everyone (a route the gateway cannot attribute to a session)
    UNMATCHED = "unmatched"

    __hash__ = object.__hash__  # members are singletons: identity hashing, in C (set lookups per request)


class Locator(enum.Enum):
    """How a route finds its target session."""

    PATH = "path"  # a path parameter holds the session id
    A2A = "a2a"  # the A2A JSON-RPC body (contextId, or a task bound to one)
    QUERY = "query"  # a query parameter holds the session id
    TASK = "task"  # a path parameter holds a task id; its binding gives the session
    BODY = "body"  # a top-level field of the JSON body (or the query parameter of that name)
    OBJECT = "object"  # a path parameter holds an object id (a post); its learned binding gives the session
    CALL = "call"  # the profile's request classifier reads the body (JSON-RPC tools such as MCP)
    # A WebSocket whose every message the profile's authorizer confines to the share's session.
    SHARE = "share"
    NONE = "none"  # not session-scoped

    __hash__ = object.__hash__  # members are singletons: identity hashing, in C


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified identity of whoever sent the request.

    ``user_id`` is ``None`` for an anonymous caller (only possible with a share
    token and ``shares.allow_anonymous``). ``via`` names the auth mode.
    """

    user_id: str | None
    via: str

    @property
    def label(self) -> str:
        """The caller as shown upstream in ``X-Share-Accessor`` and in logs."""
        return self.user_id if self.user_id is not None else "anonymous"


@dataclass(frozen=True, slots=True)
class Share:
    """A share link as stored: never carries the token itself, only its prefix.

    Times are UNIX epoch seconds (float); ``expires_at``/``revoked_at`` are
    ``None`` when unset.
    """

    id: str
    session_id: str
    owner_id: str
    read_only: bool
    label: str | None
    token_prefix: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None

    def usable_at(self, now: float) -> bool:
        """True while the share is neither revoked nor expired at ``now``."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One row of a profile's route table (see ``gateway/profiles/*.yaml``)."""

    name: str
    methods: frozenset[str]  # upper-case; empty means every method
    template: str  # e.g. "/api/sessions/{session_id}"
    action: Action
    locator: Locator
    param: str | None = None  # path/query parameter or body field name for PATH, QUERY, TASK, BODY, OBJECT
    hooks: frozenset[str] = frozenset()  # e.g. {"agent_card"}
    # QUERY/BODY: the query parameters or body fields naming an object (a post), as ``param`` names a session
    object_params: tuple[str, ...] = ()
    # (query parameter, value) pairs that make a read a write (a read with a side effect)
    write_when: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The result of matching a request against the route table."""

    rule: RouteRule | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def action(self) -> Action:
        return self.rule.action if self.rule is not None else Action.UNMATCHED

    @property
    def template(self) -> str:
        """Low-cardinality route label for logs and metrics."""
        return self.rule.template if self.rule is not None else "unmatched"

    @property
    def locator(self) -> Locator:
        """How the matched rule finds its session (``NONE`` when unmatched)."""
        return self.rule.locator if self.rule is not None else Locator.NONE

    def has_hook(self, hook: str) -> bool:
        return self.rule is not None and hook in self.rule.hooks


@dataclass(frozen=True, slots=True)
class Named:
    """What a request names (``gateway/pipeline/locate.py``): session ids, and object ids
    (posts, comments, assets) each bound to one session.

    Naming nothing is a request about no existing session: one that creates a
    session, or a board-wide listing the answer hooks filter. ``action`` is
    the class of a classified call (``Locator.CALL``), else ``None`` (the
    route's own).
    """

    sessions: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    action: Action | None = None

    @property
    def empty(self) -> bool:
        return not self.sessions and not self.objects


@dataclass(frozen=True, slots=True)
class A2ACall:
    """A parsed A2A JSON-RPC request (A2A spec §7 / §9 method table).

    ``context_id`` is ``message.contextId`` (or ListTasks' ``contextId``
    filter); ``task_ids`` are every task id the call names (``message.taskId``,
    ``message.referenceTaskIds[]``, or ``id``/``taskId`` of task calls).
    ``body`` is the decoded JSON object, kept so metadata can be injected.
    """

    method: str
    version: str  # "0.3" or "1.0"
    action: Action
    request_id: Any
    context_id: str | None
    task_ids: tuple[str, ...]
    session_scoped: bool
    has_message: bool
    body: dict[str, Any]


class Outcome(enum.Enum):
    """What the gateway does with a request."""

    AS_CALLER = "as_caller"
    AS_OWNER = "as_owner"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Target:
    """The session a request provably targets, or why none could be proven."""

    session_id: str | None
    reason_id: str = "target_found"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of ``decide``: forward as caller, forward as owner, or deny.

    ``effective_user`` is what the upstream sees in ``X-User-Id`` (``None`` for
    an anonymous caller forwarded as itself, which only happens on public routes).
    """

    outcome: Outcome
    reason_id: str
    effective_user: str | None = None
    share: Share | None = None
    status: int = 200
    message: str = ""
    shared: bool = field(init=False, default=False)  # acting as the session owner through a share

    def __post_init__(self) -> None:
        object.__setattr__(self, "shared", self.outcome is Outcome.AS_OWNER)
