"""What a request names (sessions in its path, query or body; objects bound to a session), and those bindings.

Upstreams such as sideshow name a session in many places: a path parameter,
a ``session`` query parameter or JSON body field, or only an object id (a
post, comment or asset) whose session the upstream knows. ``named`` reads a
request's names from the route rule (pure); ``ObjectBindings`` keeps
object id → session id, learned from upstream answers that carry both (an
object's ``id`` and the profile's ``bindings.session_field``, sideshow's
``sessionId``), as ``TaskBindings`` keeps A2A task → context bindings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from cachetools import TTLCache

from gateway.errors import BadRequest
from gateway.models import Action, Locator, Named, RouteRule, Target
from gateway.profiles.hooks import Fetch, RequestClassifier
from gateway.shares.cache import TaskBindings

# Locators whose names ``named`` reads (the A2A body and task paths have their own steps).
NAMED_LOCATORS = frozenset({Locator.PATH, Locator.QUERY, Locator.BODY, Locator.OBJECT, Locator.CALL})
MAX_NAMES = 16  # session and object ids per request; more cannot be attributed to one session


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object without duplicate keys (parsers disagree on which one wins)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"duplicate key {key!r} in the request body", reason_id="body_duplicate_key")
        out[key] = value
    return out


def json_body(raw: bytes | None) -> Any:
    """The decoded JSON body (duplicate keys refused: ``BadRequest``), or ``None`` when empty or not JSON."""
    if not raw or not raw.strip():
        return None
    try:
        return json.loads(raw, object_pairs_hook=_strict_object)
    except (ValueError, RecursionError):
        return None


def _values(query: str, name: str | None) -> list[str]:
    if name is None:
        return []
    return [v for k, v in parse_qsl(query, keep_blank_values=True) if k == name]


def _field(body: Any, name: str | None) -> list[str]:
    """A top-level string field; a non-string value is ignored (sideshow: ``typeof x === "string"``)."""
    if name is None or not isinstance(body, dict):
        return []
    value = body.get(name)
    return [value] if isinstance(value, str) else []


def named(
    rule: RouteRule,
    params: Mapping[str, str],
    query: str,
    body: Any,
    classifier: RequestClassifier | None = None,
) -> Named:
    """The sessions and objects a request names, by the rule's locator.

    ``path``: the path parameter ``param``; ``query``: every value of the
    query parameter ``param`` (sessions) and ``object`` (objects); ``body``:
    the same names as top-level string fields of the decoded JSON ``body``
    and as query parameters (sideshow's ``POST /api/assets`` reads either,
    ``server/app.ts``); ``object``: the path parameter ``param`` is an
    object id; ``call``: the profile's classifier reads the body. Empty
    values count as names (they match no session). Raises ``BadRequest``
    past ``MAX_NAMES`` names, or ``GatewayError`` from the classifier.
    """
    locator = rule.locator
    if locator is Locator.PATH and rule.param:
        found = Named(sessions=(params[rule.param],))
    elif locator is Locator.OBJECT and rule.param:
        found = Named(objects=(params[rule.param],))
    elif locator in (Locator.QUERY, Locator.BODY):
        in_body = locator is Locator.BODY
        sessions = _values(query, rule.param) + (_field(body, rule.param) if in_body else [])
        objects = [
            value
            for name in rule.object_params
            for value in _values(query, name) + (_field(body, name) if in_body else [])
        ]
        found = Named(sessions=tuple(dict.fromkeys(sessions)), objects=tuple(dict.fromkeys(objects)))
    elif locator is Locator.CALL and classifier is not None:
        found = classifier(body)
    else:
        return Named()
    if len(found.sessions) + len(found.objects) > MAX_NAMES:
        raise BadRequest(f"at most {MAX_NAMES} session or object ids per request", reason_id="too_many_names")
    return found


def action_of(rule: RouteRule, query: str, found: Named) -> Action:
    """The request's action: a classified call's own; a read whose query has one of the
    rule's ``write_when`` pairs is a write; else the rule's.

    sideshow's ``GET /api/comments?session=…&author=user`` advances the agent's
    feedback cursor (``store.markAgentSeen`` in ``waitForComments``,
    ``server/app.ts``): a read-only share must not do that.
    """
    if found.action is not None:
        return found.action
    if rule.action is Action.READ and rule.write_when:
        pairs = set(parse_qsl(query, keep_blank_values=True))
        if pairs & rule.write_when:
            return Action.WRITE
    return rule.action


def scoped_query(query: str, name: str, session_id: str) -> str:
    """``query`` with every ``name`` parameter replaced by one, ``name=<session_id>`` (hook
    ``scope_query``: sideshow's ``/api/events?session=`` feed of one session)."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != name]
    return urlencode([*kept, (name, session_id)])


def target(found: Named, bound: Mapping[str, str | None]) -> Target:
    """The one session a request provably targets: every named session and every named
    object's bound session (``bound``: object id → session, ``None`` when unbound) alike.

    An unbound object, two different sessions, or no name at all prove none.
    """
    if any(bound.get(o) is None for o in found.objects):
        return Target(None, "share_object_unbound")
    sessions = set(found.sessions) | {bound[o] for o in found.objects if bound.get(o) is not None}
    if not sessions:
        return Target(None, "share_no_target")
    if len(sessions) > 1:
        return Target(None, "share_other_session")
    return Target(next(iter(sessions)))


def _pair(item: Any, field: str) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    object_id, session = item.get("id"), item.get(field)
    if isinstance(object_id, str) and object_id and isinstance(session, str) and session:
        return object_id, session
    return None


def pairs_in(data: Any, field: str) -> list[tuple[str, str]]:
    """Every ``(id, <field>)`` pair of string values an answer states about its objects.

    sideshow's posts, comments, assets and write results carry ``id`` and
    ``sessionId`` (``server/app.ts`` ``surfaceMeta``/``writeResult``,
    ``server/types.ts`` ``Comment``, ``Asset``). Only the answer itself, the
    items of a top-level list, and the items of the lists of an envelope (an
    answer without an ``id`` of its own: ``{"comments": [...], "lastSeq": …}``)
    count: never objects nested inside an object, whose shape a user may
    choose (a post's parts), so no user content can bind someone else's
    object to another session.
    """
    items: list[Any] = []
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and "id" in data:
        items = [data]
    elif isinstance(data, dict):
        items = [i for v in data.values() if isinstance(v, list) for i in v]
    return [pair for pair in (_pair(i, field) for i in items) if pair is not None]


class ObjectBindings:
    """Object id → session id, in the task-binding store under an ``object:`` namespace.

    First binding wins (``TaskBindings.learn``): an answer can never re-point
    an object at another session. Shared by every replica through Redis
    when configured.
    """

    PREFIX = "object:"

    def __init__(self, store: TaskBindings, field: str, probe: str | None = None) -> None:
        self._store = store
        self.field = field
        self._probe = probe
        # (user, object id) → True: probed and still unbound; not asked again for 10 s
        self._unbound: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=10_000, ttl=10)

    async def resolve(self, object_id: str, fetch: Fetch, user: str) -> str | None:
        """The object's session: its binding, else the probe's answer (asked as ``user``).

        The probe (sideshow: ``GET /api/posts/{id}``, whose answer carries
        ``sessionId``; ``server/app.ts``) only teaches a binding; its answer
        never reaches the client. An object the probe cannot bind is
        remembered for 10 s so it cannot be used to flood the upstream.
        """
        session = await self.session_of(object_id)
        if session is not None or self._probe is None or (user, object_id) in self._unbound:
            return session
        status, raw = await fetch("GET", self._probe.replace("{id}", quote(object_id, safe="")), user)
        if 200 <= status < 300:
            await self.learn_probe(object_id, raw)
        session = await self.session_of(object_id)
        if session is None:
            self._unbound[(user, object_id)] = True
        return session

    async def session_of(self, object_id: str) -> str | None:
        """The session the object is bound to, or ``None`` if unknown."""
        return await self._store.context_of(self.PREFIX + object_id)

    async def learn(self, pairs: list[tuple[str, str]]) -> None:
        """Record ``(object id, session id)`` pairs."""
        if pairs:
            await self._store.learn([(self.PREFIX + o, s) for o, s in pairs])

    async def learn_answer(self, raw: bytes) -> None:
        """Learn from a JSON answer's objects (``pairs_in``); anything else teaches nothing."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return
        await self.learn(pairs_in(data, self.field))

    async def learn_probe(self, object_id: str, raw: bytes) -> None:
        """Learn from the answer to a probe for ``object_id``: only its own top-level binding."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return
        if isinstance(data, dict) and data.get("id") == object_id:
            session = data.get(self.field)
            if isinstance(session, str) and session:
                await self.learn([(object_id, session)])
