"""The request pipeline: identify → share token → route → [A2A] → share → decide → forward → learn."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cachetools import TTLCache
from multidict import CIMultiDict

from gateway.config import Network, SharesSettings
from gateway.errors import (
    BadRequest,
    DependencyUnavailable,
    Forbidden,
    GatewayError,
    JsonRpcError,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from gateway.models import (
    A2ACall,
    Action,
    Caller,
    Decision,
    Locator,
    Named,
    Outcome,
    RouteMatch,
    Share,
    Target,
)
from gateway.observe import metrics
from gateway.observe.logging import get_logger
from gateway.pipeline import a2a, cookie, events, locate, public
from gateway.pipeline.credentials import UpstreamCredentials
from gateway.pipeline.decide import SESSION_ACTIONS, decide, target_of
from gateway.pipeline.forward import (
    Forwarder,
    StreamAborted,
    capped,
    is_json,
    is_sse,
    read_capped,
    relay,
)
from gateway.pipeline.identify import (
    SHARE_TOKEN_HEADER,
    WWW_AUTHENTICATE,
    Identifier,
    extract_share_token,
    in_networks,
    peer_address,
    token_hash,
)
from gateway.pipeline.live import LiveConnections
from gateway.pipeline.locate import ObjectBindings
from gateway.pipeline.outbound import response_headers, upstream_headers
from gateway.pipeline.public import PublicRead
from gateway.pipeline.routes import RouteTable, canonical_path
from gateway.pipeline.websocket import FrameLimits, relay_websocket
from gateway.profiles import Profile, hooks
from gateway.profiles.hooks import HookContext, Sessions
from gateway.shares import tokens
from gateway.shares.access import AccessRecorder
from gateway.shares.api import ShareApi
from gateway.shares.cache import ShareCache, TaskBindings
from gateway.shares.guesses import GuessLimiter, guesser
from gateway.shares.owners import OwnerDirectory
from gateway.tasks import Background, uncancelled

access_log = get_logger("gateway.access")
ANONYMOUS = Caller(None, "anonymous")
AGENT = Caller(None, "trusted-agent")
AS_AGENT = Decision(Outcome.AS_CALLER, "trusted_agent")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_TASK_IDS = 16  # per request; more cannot be attributed to one session
SMALL_BODY = 64 * 1024  # bytes: bodies up to this size with a Content-Length are read whole


@dataclass(slots=True)
class Exchange:
    """What the access log line and metrics report about one request (filled as it goes)."""

    request_id: str
    method: str
    route: str = "unmatched"
    decision: str = "none"
    reason_id: str = "none"
    caller: str | None = None
    share_id: str | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    rpc_id: Any = None
    a2a_route: bool = False
    set_cookie: str | None = None  # a share cookie issued or cleared (``cookie``), on the answer
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Pipeline:
    """Everything a request needs, built once at start-up by ``app.create_app``."""

    identifier: Identifier
    credentials: UpstreamCredentials
    routes: RouteTable
    profile: Profile
    shares: SharesSettings
    cache: ShareCache
    bindings: TaskBindings
    recorder: AccessRecorder
    forwarder: Forwarder
    share_api: ShareApi
    trusted_proxies: tuple[Network, ...]
    max_parsed_body: int
    max_learned_response: int
    public_url: str | None
    owners: OwnerDirectory | None = None  # gateway-recorded ownership profiles only
    objects: ObjectBindings | None = None  # object → session bindings (``session: object`` profiles)
    public: PublicRead | None = None  # public read of sessions (profiles with ``public_read``)
    admins: frozenset[str] = frozenset()  # who may call ``action: admin`` routes
    guesses: GuessLimiter = field(default_factory=lambda: GuessLimiter(limit=0, window=60))
    session_id: re.Pattern[str] = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
    max_body: int = 16 << 20
    strip: frozenset[str] = frozenset()  # from outbound.strip_set, built at start-up
    query_carriers: frozenset[str] = frozenset()  # the profile's identity query parameters
    share_param: str | None = "share"  # the query parameter a share token may come in (None: off)
    share_cookie: str | None = None  # the profile's ``share_cookie`` (``cookie``): None for most profiles
    host_owner: str | None = None  # ``default_owner``: who may open unshared ``session: share`` routes
    ws_limits: FrameLimits = field(default_factory=FrameLimits)
    trusted_agents: tuple[Network, ...] = ()
    agent_strip: frozenset[str] = frozenset()  # ``strip`` less the identity carriers
    live: LiveConnections = field(default_factory=LiveConnections)
    background: Background = field(default_factory=lambda: Background("pipeline"))
    _proxies: dict[str | None, bool] = field(default_factory=dict)
    _unbound: TTLCache[tuple[str, str], bool] = field(
        default_factory=lambda: TTLCache(maxsize=10_000, ttl=10)
    )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler: every request on the main listener comes here.

        A request its client abandoned (the handler cancelled by aiohttp's
        ``handler_cancellation`` on disconnect, or the connection reset while
        the response is written) is logged and counted with status 499 and
        ``reason_id=client_closed``, never as a 500 (DESIGN.md
        "Cancellation-safe"); the ``CancelledError`` (or reset) is re-raised.
        """
        started = time.perf_counter()
        rid = request.headers.get("X-Request-Id")
        ex = Exchange(
            rid if rid is not None and _REQUEST_ID.match(rid) else os.urandom(16).hex(),
            request.method if request.method in _METHODS else "OTHER",
        )
        metrics.IN_FLIGHT_NOW.inc()
        status = 500
        try:
            response = await self._handle(request, ex)
            status = response.status
            if ex.set_cookie is not None and not response.prepared:
                response.headers.add("Set-Cookie", ex.set_cookie)
            return response
        except GatewayError as err:
            ex.decision = ex.decision if ex.decision != "none" else Outcome.DENY.value
            ex.reason_id = err.reason_id
            if ex.a2a_route:
                err = JsonRpcError.from_error(err, ex.rpc_id)
            status = err.status
            headers = {**err.headers, "X-Request-Id": ex.request_id}
            if ex.set_cookie is not None:
                headers["Set-Cookie"] = ex.set_cookie
            return web.json_response(err.body(), status=err.status, headers=headers)
        except StreamAborted as exc:
            ex.reason_id = "upstream_stream_aborted"
            ex.extra["error"] = str(exc)
            raise
        except (asyncio.CancelledError, ConnectionResetError):  # aiohttp's ClientConnectionResetError too
            status, ex.reason_id = 499, "client_closed"  # nginx's code for a client that went away
            raise
        finally:
            metrics.IN_FLIGHT_NOW.dec()
            elapsed = time.perf_counter() - started
            metrics.request_done(ex.route, ex.method, status, ex.decision, ex.reason_id, elapsed)
            access_log.info(
                "request",
                request_id=ex.request_id,
                method=ex.method,
                route=ex.route,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                decision=ex.decision,
                reason_id=ex.reason_id,
                caller=ex.caller,
                share_id=ex.share_id,
                upstream_status=ex.upstream_status,
                upstream_ms=ex.upstream_ms,
                **ex.extra,
            )

    async def _handle(self, request: web.Request, ex: Exchange) -> web.StreamResponse:
        path, match = self._route(request)
        ex.route = match.template
        ex.a2a_route = match.rule is not None and match.rule.locator is Locator.A2A
        if self._from_trusted_agent(request, match):
            _, query = extract_share_token(request, self.share_param, frozenset())
            ex.decision, ex.reason_id, ex.caller = AS_AGENT.outcome.value, AS_AGENT.reason_id, AGENT.label
            return await self._forward(request, ex, match, AS_AGENT, AGENT, path, query, None)
        token, query = extract_share_token(request, self.share_param, self.query_carriers)
        ambient: tuple[str, ...] = ()  # the share cookie's tokens, when the client sent none itself
        if token is None and self.share_cookie is not None:
            ambient = cookie.tokens(request.headers, self.share_cookie)
        presented = token if token is not None or not ambient else ambient[0]
        caller = await self._caller(request, match, presented)
        ex.caller = caller.label
        if match.action is Action.SHARE_API:
            assert match.rule is not None
            assert match.rule.param is not None
            ex.decision, ex.reason_id = "share_api", "share_api"
            return await self.share_api.handle(
                request, match.params[match.rule.param], match.params.get("share_ref"), caller
            )
        body, call, action = await self._a2a_call(request, match, presented, ex)
        body, found, action = await self._named(request, match, query, body, action, ex)
        target = None
        if ambient:  # the cookie's token for the session this request targets, if one fits
            token, share, target = await self._ambient(
                ambient, action, caller, request, ex, match, call, query, found
            )
        else:
            share = await self._share(token, action, caller, request)
        now = time.time()
        if target is None and share is not None and share.usable_at(now) and action in SESSION_ACTIONS:
            target = await self._target(request, match, call, query, share, found)
        elif token is None and action is Action.READ and self.public is not None:
            share, target = await self._public_share(match, found, caller)
        decision = decide(
            caller, token_present=token is not None or share is not None, share=share, action=action,
            target=target, now=now,
        )
        ex.decision, ex.reason_id = decision.outcome.value, decision.reason_id
        ex.share_id = decision.share.id if decision.share else None
        if decision.outcome is Outcome.DENY:
            headers = WWW_AUTHENTICATE if decision.status == 401 else None
            raise GatewayError(
                decision.message, reason_id=decision.reason_id, status=decision.status, headers=headers
            )
        if decision.outcome is Outcome.AS_CALLER and match.locator is Locator.SHARE:
            self._host_owner_only(caller)
        if action is Action.ADMIN and caller.user_id not in self.admins:
            raise Forbidden("only admins may change these settings", reason_id="admin_only")
        if decision.outcome is Outcome.AS_CALLER and self.owners is not None:
            body = await self._owned(request, match, caller, body, found)
            if match.has_hook("public_flag") and self.public is not None:
                answered, body = await self._public_flag(request, match, caller, body)
                if answered is not None:
                    return answered
        if decision.shared:
            assert decision.share is not None
            self.recorder.record(decision.share.id, caller.label, now)
            if self.share_cookie is not None and token is not None and not ambient and (
                SHARE_TOKEN_HEADER not in request.headers
            ):  # a share link opened in a browser: its page's own requests carry the token back
                kept = (token, *cookie.tokens(request.headers, self.share_cookie))
                ex.set_cookie = cookie.issued(self.share_cookie, kept, secure=self._secure(request))
            if call is not None and call.has_message:
                body = a2a.with_initiated_by(call, caller.label)
            if match.has_hook("scope_query") and match.rule is not None and match.rule.param:
                query = locate.scoped_query(query, match.rule.param, decision.share.session_id)
        return await self._forward(request, ex, match, decision, caller, path, query, body)

    async def _caller(self, request: web.Request, match: RouteMatch, token: str | None) -> Caller:
        """The verified caller; anonymous only with a token and ``allow_anonymous``, on public
        routes, or on read routes where a session may be open to public read (``public.py``)."""
        caller = await self.identifier.identify(request)
        if caller is not None:
            return caller
        if (
            (token is not None and self.shares.allow_anonymous)
            or match.action is Action.PUBLIC
            or (self.public is not None and match.action is Action.READ)
        ):
            return ANONYMOUS
        raise Unauthenticated(headers=WWW_AUTHENTICATE)

    async def _a2a_call(
        self, request: web.Request, match: RouteMatch, token: str | None, ex: Exchange
    ) -> tuple[bytes | None, A2ACall | None, Action]:
        """With a share token on an A2A route, read and classify the JSON-RPC body.

        Where the gateway records who owns each context (profile ``a2a``: the
        agent has no users), every A2A request is read and classified, token or
        not: ``_owned`` decides from the body whose contexts and tasks it names,
        so ambiguous bodies are refused for everyone (strict parsing).
        """
        if not ex.a2a_route or (token is None and self.owners is None):
            return None, None, match.action
        body = await read_capped(request, self.max_parsed_body)
        if body is None:
            raise JsonRpcError(
                "request body too large",
                code=-32600,
                request_id=None,
                reason_id=PayloadTooLarge.reason_id,
                status=413,
            )
        ex.rpc_id = a2a.request_id_of(body)
        call = a2a.parse_call(body, strict=True)
        if call is None:
            return body, None, Action.UNMATCHED
        ex.extra["a2a_method"] = call.method
        return body, call, call.action

    async def _named(
        self, request: web.Request, match: RouteMatch, query: str, body: bytes | None, action: Action,
        ex: Exchange,
    ) -> tuple[bytes | None, Named, Action]:
        """What a request names (``locate.named``) and its action, reading the JSON body where the
        locator needs it (``body``, ``call``; at most ``limits.max_parsed_body`` bytes, else 413).

        A read is a write when its query has one of the rule's ``write_when``
        pairs (sideshow's ``GET /api/comments?author=user`` advances the agent's
        feedback cursor); a classified call (``call``: JSON-RPC) brings its own
        action, and every denial of it is a JSON-RPC error echoing its id.
        """
        rule = match.rule
        if rule is None or rule.locator not in locate.NAMED_LOCATORS:
            return body, Named(), action
        if rule.locator is Locator.PATH and self.public is None and not rule.write_when:
            return body, Named(), action  # _target and _owned read the path parameter themselves
        decoded = None
        if rule.locator in (Locator.BODY, Locator.CALL) and request.body_exists:
            body = await read_capped(request, self.max_parsed_body)
            if body is None:
                raise PayloadTooLarge()
            decoded = locate.json_body(body)
        if rule.locator is Locator.CALL:
            ex.a2a_route, ex.rpc_id = True, a2a.request_id_of(body) if body else None
        found = locate.named(rule, match.params, query, decoded, self.profile.classifier)
        return body, found, locate.action_of(rule, query, found)

    async def _ambient(
        self, tokens: tuple[str, ...], action: Action, caller: Caller, request: web.Request, ex: Exchange,
        match: RouteMatch, call: A2ACall | None, query: str, found: Named,
    ) -> tuple[str | None, Share | None, Target | None]:
        """The share cookie's token for this request, its share and target (``cookie``).

        The cookie's tokens (most recent first) are looked up like any token;
        the first whose share the request provably targets, and whose owner is
        not the caller, is used. The cookie never blocks: on a route that takes
        no share, or when no token fits, the caller acts as themself; tokens of unknown,
        revoked or expired shares are dropped from it (``Set-Cookie``); while
        the store cannot be asked it is set aside, unchanged — where a token
        the client sent itself gets 503.
        """
        if action not in SESSION_ACTIONS:
            return None, None, None
        assert self.share_cookie is not None
        kept: list[str] = []
        chosen: tuple[str | None, Share | None, Target | None] = (None, None, None)
        now = time.time()
        for candidate in tokens:
            try:
                share = await self._share(candidate, action, caller, request)
            except DependencyUnavailable:
                return None, None, None
            if share is None or not share.usable_at(now):
                continue
            kept.append(candidate)
            if chosen[0] is None and share.owner_id != caller.user_id:  # the owner acts as themself
                target = await self._target(request, match, call, query, share, found)
                if target.session_id == share.session_id:
                    chosen = (candidate, share, target)
        if len(kept) != len(tokens):
            ex.set_cookie = cookie.issued(self.share_cookie, kept, secure=self._secure(request))
        return chosen

    async def _share(
        self, token: str | None, action: Action, caller: Caller, request: web.Request
    ) -> Share | None:
        """The share a token names, only where the route can use one.

        A share already validated in the in-process cache is served at once;
        anything else first passes the guess limiter (429 when the caller has
        presented too many unknown tokens), and an unknown token counts as a
        failure. Raises ``DependencyUnavailable`` (503) if the store cannot answer.
        """
        if token is None or action not in SESSION_ACTIONS:
            return None
        digest = token_hash(token) if tokens.plausible(token) else None
        now = time.time()
        if digest is not None:
            cached = self.cache.cached(digest)
            if cached is not None and cached.usable_at(now):
                return cached
        key = guesser(caller, peer_address(request))
        await self.guesses.check(key)
        share = await self.cache.lookup(digest) if digest is not None else None
        if share is None:  # unknown: a guess (revoked or expired links were real ones)
            await self.guesses.failure(key)
        return share

    async def _target(
        self,
        request: web.Request,
        match: RouteMatch,
        call: A2ACall | None,
        query: str,
        share: Share,
        found: Named,
    ) -> Target:
        """The session the request provably targets (DESIGN.md "A2A": contextId or task binding;
        ``locate.target``: named sessions and objects' bindings, probed as the share's owner)."""
        rule = match.rule
        assert rule is not None
        if rule.locator is Locator.SHARE:  # the profile's message authorizer confines the socket
            if not is_websocket(request):
                return Target(None, "share_needs_websocket")
            return Target(share.session_id)
        if rule.locator is Locator.PATH and rule.param:
            return Target(self._valid_id(match.params[rule.param]))
        if rule.locator in locate.NAMED_LOCATORS:
            if found.empty and match.has_hook("scope_query"):
                return Target(share.session_id)  # the query is set to the share's session
            return locate.target(found, await self._bound(found, share.owner_id))
        context: str | None = None
        task_ids: tuple[str, ...] = ()
        if rule.locator is Locator.TASK and rule.param:
            task_ids = (self._valid_id(match.params[rule.param]),)
        elif rule.locator is Locator.A2A and call is not None and call.session_scoped:
            context, task_ids = call.context_id, call.task_ids
            for value in (context, *task_ids):
                if value is not None and not self.session_id.match(value):
                    raise JsonRpcError(
                        "session or task id has an invalid format",
                        code=-32602,
                        request_id=call.request_id,
                        reason_id="session_id_invalid",
                        status=400,
                    )
        if len(task_ids) > MAX_TASK_IDS:
            return Target(None, "share_too_many_tasks")
        if context is not None and context != share.session_id:
            return Target(context)  # provably another session: no need to look further
        bound: list[str | None] = []
        for task_id in task_ids:
            context_of = await self.bindings.context_of(task_id)
            if context_of is None:
                context_of = await self._probe_binding(request, rule.locator, call, task_id, share)
            bound.append(context_of)
            if context_of is None:
                break
        return target_of(context, bound)

    async def _bound(self, found: Named, user: str | None) -> dict[str, str | None]:
        """The session each named object is bound to, probed as ``user`` when unknown (never
        for ``None``: an anonymous visitor does not make the gateway ask the upstream)."""
        bound: dict[str, str | None] = {}
        objects = self.objects
        for object_id in found.objects:
            self._valid_id(object_id)
            if objects is None:
                bound[object_id] = None
            elif user is None:
                bound[object_id] = await objects.session_of(object_id)
            else:
                bound[object_id] = await objects.resolve(object_id, self._fetch_as, user)
        return bound

    async def _public_share(
        self, match: RouteMatch, found: Named, caller: Caller
    ) -> tuple[Share | None, Target | None]:
        """A read by a visitor without a share link, of a session open to public read
        (``public.py``): its public share and target; ``(None, None)`` otherwise (the
        visitor acts as themself, and the session's owner always does)."""
        assert self.public is not None
        if match.rule is None or match.rule.locator not in locate.NAMED_LOCATORS or found.empty:
            return None, None
        for session_id in found.sessions:
            self._valid_id(session_id)
        target = locate.target(found, await self._bound(found, caller.user_id))
        if target.session_id is None:
            return None, None
        if self.owners is not None and await self.owners.owns(target.session_id, caller.user_id):
            return None, None
        share = await self.public.share_of(target.session_id)
        return (share, target) if share is not None else (None, None)

    async def _public_flag(
        self, request: web.Request, match: RouteMatch, caller: Caller, body: bytes | None
    ) -> tuple[web.Response | None, bytes | None]:
        """The owner turning public read on/off (hook ``public_flag``; ``public.flag_of``):
        answered by the gateway; any other body is forwarded unchanged. ``_owned`` checked
        ownership."""
        assert self.public is not None
        assert match.rule is not None
        assert match.rule.param
        assert caller.user_id is not None
        if body is None and request.body_exists:
            body = await read_capped(request, self.max_parsed_body)
            if body is None:
                raise PayloadTooLarge()
        field_name = self.profile.public_flag
        assert field_name is not None
        value = public.flag_of(body, field_name)
        if value is None:
            return None, body
        session_id = match.params[match.rule.param]
        await self.public.set(session_id, caller.user_id, value)
        answer = {"id": session_id, field_name: value}
        return web.json_response(answer, headers={"Cache-Control": "no-store"}), body

    def _session_services(self) -> Sessions | None:
        """What response hooks may ask about sessions (gateway-recorded ownership profiles)."""
        owners = self.owners
        if owners is None:
            return None
        objects, public_read = self.objects, self.public

        async def learn(pairs: list[tuple[str, str]]) -> None:
            if objects is not None:
                await objects.learn(pairs)

        async def public_of(ids: list[str]) -> set[str]:
            return await public_read.public(ids) if public_read is not None else set()

        return Sessions(owners.owners_of, owners.record, learn, public_of)

    async def _probe_binding(
        self,
        request: web.Request,
        locator: Locator,
        call: A2ACall | None,
        task_id: str,
        share: Share,
    ) -> str | None:
        """Ask the upstream, as the share's owner, which context a task belongs to.

        A2A: ``GetTask`` on the same endpoint; REST task routes: the same GET.
        The answer only teaches a binding; it is never returned to the caller.
        Unknown tasks are remembered for 10 s so they cannot be used to flood
        the upstream.
        """
        key = (share.owner_id, task_id)
        if key in self._unbound:
            return None
        path = request.raw_path.partition("?")[0]
        headers: CIMultiDict[str] = CIMultiDict()
        self.credentials.apply(headers, share.owner_id)
        if locator is Locator.A2A and call is not None:
            data, extra = a2a.get_task_request(call.version, task_id)
            headers.update(extra)
            method: str = "POST"
        else:
            data, method = None, "GET"
        status, raw = await self.forwarder.fetch(
            method, self.forwarder.url(path), headers, data, self.max_learned_response
        )
        pairs = a2a.bindings_in_json(raw) if 200 <= status < 300 else []
        await self.bindings.learn(pairs)
        bound = await self.bindings.context_of(task_id)
        if bound is None:
            self._unbound[key] = True
        return bound

    async def _forward(
        self,
        request: web.Request,
        ex: Exchange,
        match: RouteMatch,
        decision: Decision,
        caller: Caller,
        path: str,
        query: str,
        body: bytes | None,
    ) -> web.StreamResponse:
        peer = peer_address(request)
        headers = upstream_headers(
            request.headers,
            decision=decision,
            caller=caller,
            credentials=self.credentials,
            strip=self.agent_strip if decision is AS_AGENT else self.strip,
            peer=peer,
            peer_is_proxy=self._is_proxy(peer),
            scheme=request.scheme,
            host=request.headers.get("Host"),
            request_id=ex.request_id,
            content_length=len(body) if body is not None else request.content_length,
        )
        rule = match.rule
        learn = rule is not None and rule.locator in (Locator.A2A, Locator.TASK)
        card = match.has_hook("agent_card")
        owner_hook = self.owners is not None and (
            match.has_hook("record_owner") or match.has_hook("filter_owned")
        )
        rewrite = self.profile.response_hook(rule)
        owned_feed = match.has_hook("filter_events") and decision.outcome is Outcome.AS_CALLER
        if learn or card or owner_hook or rewrite is not None or owned_feed:
            headers.popall("Accept-Encoding", None)  # bodies the gateway reads are not encoded
        data: Any = body
        if data is None and request.body_exists:
            if request.content_length is not None and request.content_length > self.max_body:
                raise PayloadTooLarge()
            data = capped(request.content, self.max_body)
        started = time.perf_counter()
        url = self.forwarder.url(path, self.credentials.query(query))
        if is_websocket(request):
            return await self._websocket(request, ex, decision, caller, url, headers)
        waiting = None
        if decision.shared and decision.share is not None and match.has_hook("long_poll"):
            waiting = self.live.pending(decision.share)  # revocation cuts the wait (403)
        async with self.forwarder.request(request.method, url, headers, data, waiting) as upstream:
            ex.upstream_status = upstream.status
            waited = time.perf_counter() - started
            ex.upstream_ms = round(waited * 1000, 3)
            metrics.child(metrics.UPSTREAM_DURATION, ex.route).observe(waited)
            content_type = upstream.headers.get("Content-Type", "")
            if card and upstream.status == 200 and is_json(content_type):
                return await self._agent_card(request, ex, upstream, decision, path)
            if rewrite is not None and 200 <= upstream.status < 300 and hooks.accepts(rewrite, content_type):
                context = HookContext(
                    caller, decision, match.params, self._fetch_as, self._opened_shares,
                    self._session_services(),
                )
                body = await rewrite(context, await self._read_answer(upstream))
                out = response_headers(upstream.headers, decision=decision, body_replaced=True)
                out["X-Request-Id"] = ex.request_id
                return web.Response(body=body, status=upstream.status, reason=upstream.reason, headers=out)
            owned = owner_hook and decision.outcome is Outcome.AS_CALLER
            if owned and not (learn and is_sse(content_type)):  # A2A streams: _sse_learner records
                # Read and recorded to the end even if the client goes away: a session
                # created upstream must not be left without its owner.
                replaced = await uncancelled(self.background.spawn(
                    self._owner_hooks(match, caller, upstream), name="owner-hooks", expected=(GatewayError,)
                ))
                out = response_headers(upstream.headers, decision=decision, body_replaced=True)
                out["X-Request-Id"] = ex.request_id
                return web.Response(
                    body=replaced, status=upstream.status, reason=upstream.reason, headers=out
                )
            out = response_headers(upstream.headers, decision=decision, body_replaced=False)
            out["X-Request-Id"] = ex.request_id
            if owned_feed and is_sse(content_type) and caller.user_id is not None:
                return await self._owned_events(request, upstream, out, caller.user_id)
            length = upstream.content_length
            if length is not None and length <= SMALL_BODY and request.method != "HEAD":
                # A small, complete body: one read and one write beat a streamed relay.
                body = await upstream.read()
                if learn and is_json(content_type):
                    await self.bindings.learn(a2a.bindings_in_json(body))
                out.popall("Content-Length", None)
                return web.Response(body=body, status=upstream.status, reason=upstream.reason, headers=out)
            on_chunk: Callable[[bytes], Awaitable[None]] | None = None
            buffered: list[bytes] = []
            if learn and is_sse(content_type):
                on_chunk = self._sse_learner(caller.user_id if owned else None)
            elif learn and is_json(content_type):
                on_chunk = self._json_collector(buffered)
            share = decision.share if decision.shared else None
            response = await relay(request, upstream, out, self.live, share, on_chunk)
            if buffered:
                await self.bindings.learn(a2a.bindings_in_json(b"".join(buffered)))
            return response

    async def _owned_events(
        self, request: web.Request, upstream: Any, out: CIMultiDict[str], user: str
    ) -> web.StreamResponse:
        """A feed answering its owner, cut down to their sessions event by event (``events.py``)."""
        assert self.owners is not None
        keeps = events.OwnedFilter(user, self.owners.owner_of).keeps
        objects = self.objects

        async def learn(data: Any) -> None:
            if objects is not None:
                await objects.learn(locate.pairs_in(data, objects.field))

        return await events.relay_owned(request, upstream, out, self.live, keeps, learn)

    async def _owns_named(self, found: Named, caller: Caller) -> None:
        """Every session a request names (in its query or body, or as an object's bound
        session, probed as the caller) is the caller's; else 404, as if it did not exist."""
        assert self.owners is not None
        user = caller.user_id
        if user is None:
            raise NotFound("session not found", reason_id="session_not_owner")
        bound = await self._bound(found, user)
        if any(session is None for session in bound.values()):
            raise NotFound("not found", reason_id="object_unbound")
        sessions = [*found.sessions, *(s for s in bound.values() if s is not None)]
        owners = await self.owners.owners_of(list(dict.fromkeys(sessions)))
        if any(owners.get(s) != user for s in sessions):
            raise NotFound("session not found", reason_id="session_not_owner")

    async def _owned(
        self, request: web.Request, match: RouteMatch, caller: Caller, body: bytes | None, found: Named
    ) -> bytes | None:
        """Gateway-recorded ownership (upstreams without users: docker-agent, plain A2A agents).

        A session route reached as the caller is the owner's only: anyone else
        gets 404, as if it did not exist; so is one naming sessions or objects
        in its query or body (``locate.named``; ``_owns_named``). Naming none
        is a request about no existing session: one that creates a session
        (recorded as the caller's by the answer hooks) or a board-wide listing
        (filtered by them). Batch routes (hook ``owned_ids``)
        must name only the caller's sessions, or nothing is forwarded (403).
        Returns the request body if it had to be read.

        An A2A call (profile ``a2a``; its body was read by ``_a2a_call``) may
        name only the caller's contexts and tasks, checked before the upstream:

        * every task id (``id``/``taskId``, ``message.taskId``,
          ``referenceTaskIds``) must be bound to a context the caller owns; an
          unbound task is looked up once with ``GetTask``. Anything else is
          answered exactly as an A2A agent answers a task it does not have
          (``a2a.task_not_found``): someone else's task and no task look alike;
        * a message's ``contextId`` must be the caller's; one nobody owns yet
          (A2A lets the client choose a new context's id) is recorded as theirs
          first (first writer wins); someone else's is refused (403);
        * ``ListTasks`` must name one of the caller's contexts in its
          ``contextId`` filter (403 otherwise, whether the context is someone
          else's or nobody's);
        * a method outside the A2A method table is refused (403, -32601): the
          gateway cannot tell whose data it touches.

        A message naming no context starts a new conversation: the context of
        its answer is recorded as the caller's (``_owner_hooks``, ``_sse_learner``).
        """
        assert self.owners is not None
        rule = match.rule
        if rule is None:
            return body
        if rule.locator is Locator.A2A:
            assert body is not None  # read by _a2a_call on every A2A route of these profiles
            user = caller.user_id
            if user is None:  # only a verified caller acts as themself here (decide)
                raise Forbidden("authentication required", reason_id="identity_missing")
            call = a2a.parse_call(body, strict=True)
            if call is None:
                raise JsonRpcError(
                    "method not found", code=-32601, request_id=a2a.request_id_of(body),
                    reason_id="a2a_method_unknown", status=403,
                )
            for value in (call.context_id, *call.task_ids):
                if value is not None and not self.session_id.match(value):
                    raise JsonRpcError(
                        "session or task id has an invalid format", code=-32602,
                        request_id=call.request_id, reason_id="session_id_invalid", status=400,
                    )
            if len(call.task_ids) > MAX_TASK_IDS:
                raise JsonRpcError(
                    f"at most {MAX_TASK_IDS} task ids per request", code=-32602,
                    request_id=call.request_id, reason_id="a2a_too_many_tasks", status=400,
                )
            for task_id in call.task_ids:
                context = await self.bindings.context_of(task_id)
                if context is None and (user, task_id) not in self._unbound:
                    data, extra = a2a.get_task_request(call.version, task_id)
                    headers: CIMultiDict[str] = CIMultiDict()
                    self.credentials.apply(headers, user)
                    headers.update(extra)
                    url = self.forwarder.url(request.raw_path.partition("?")[0])
                    status, raw = await self.forwarder.fetch(
                        "POST", url, headers, data, self.max_learned_response
                    )
                    if not 200 <= status < 300:
                        raise GatewayError(
                            "upstream could not be asked about a task", reason_id="a2a_task_lookup_failed",
                            status=502,
                        )
                    await self.bindings.learn(a2a.bindings_in_json(raw))
                    context = await self.bindings.context_of(task_id)
                    if context is None:
                        self._unbound[(user, task_id)] = True
                if context is None or await self.owners.owner_of(context) != user:
                    raise a2a.task_not_found(call.request_id, "a2a_task_not_owner")
            if call.context_id is None:
                if call.method in a2a.LIST_METHODS:
                    raise JsonRpcError(
                        "ListTasks needs a contextId filter naming one of your conversations", code=-32602,
                        request_id=call.request_id, reason_id="a2a_list_unfiltered", status=403,
                    )
                return body
            owner = await self.owners.owner_of(call.context_id)
            if owner is None and call.has_message:
                owner = await self.owners.record(call.context_id, user)
            if owner != user:
                raise JsonRpcError(
                    "contextId is not one of your conversations", code=-32003,
                    request_id=call.request_id, reason_id="a2a_context_not_owner", status=403,
                )
            return body
        if (
            rule.locator is Locator.PATH
            and rule.param
            and not await self.owners.owns(match.params[rule.param], caller.user_id)
        ):
            raise NotFound("session not found", reason_id="session_not_owner")
        if rule.locator in locate.NAMED_LOCATORS and rule.locator is not Locator.PATH:
            await self._owns_named(found, caller)
        if match.has_hook("owned_ids"):
            body = await read_capped(request, self.max_parsed_body)
            if body is None:
                raise PayloadTooLarge()
            ids = session_ids_of(body)
            owners = await self.owners.owners_of(ids)
            if any(owners.get(i) != caller.user_id for i in ids):
                raise Forbidden(
                    "only sessions you own can be listed here; nothing was done",
                    reason_id="batch_not_owner",
                )
        return body

    async def _read_answer(self, upstream: Any) -> bytes:
        """An upstream answer read whole, to its end (never cut at a chunk boundary).

        Raises ``GatewayError`` 502 past ``limits.max_learned_response`` bytes:
        an answer the gateway must rewrite is never relayed unrewritten.
        """
        length = upstream.content_length
        if length is not None and length <= self.max_learned_response:
            return bytes(await upstream.read())  # a declared length aiohttp holds the upstream to
        parts: list[bytes] = []
        size = 0
        async for chunk in upstream.content.iter_any():
            size += len(chunk)
            if size > self.max_learned_response:
                raise GatewayError(
                    "upstream answer too large for the gateway to read",
                    reason_id="answer_too_large",
                    status=502,
                )
            parts.append(chunk)
        return b"".join(parts)

    async def _fetch_as(self, method: str, path: str, user: str) -> tuple[int, bytes]:
        """A request of the gateway's own to the upstream, as ``user`` (response hooks)."""
        headers: CIMultiDict[str] = CIMultiDict()
        self.credentials.apply(headers, user)
        return await self.forwarder.fetch(
            method, self.forwarder.url(path), headers, None, self.max_learned_response
        )

    async def _opened_shares(self, user: str) -> list[tuple[Share, str | None]]:
        """Live shares ``user`` has opened (response hooks; see ``ShareApi.opened_by``)."""
        return await self.share_api.opened_by(user)

    async def _owner_hooks(self, match: RouteMatch, caller: Caller, upstream: Any) -> bytes:
        """Read an upstream answer whole and apply the owner hooks; returns the body to send.

        After a 2xx answer, ``record_owner`` records the caller as the owner of
        the session whose id the answer carries in the profile's
        ``ownership.session_id_field`` (docker-agent: ``id``, in the answers of
        ``POST /api/sessions`` and ``POST /api/sessions/{id}/fork``) before the
        client sees the answer, so a follow-up request for the new session is
        already the caller's; ``filter_owned`` keeps only the caller's sessions
        in a listing. The answer is read to its end, never cut at a chunk
        boundary; one over ``limits.max_learned_response`` bytes, or a listing
        that is not a JSON list, is never relayed unrecorded or unfiltered:
        ``GatewayError`` 502 (fail closed).

        On an A2A route (profile ``a2a``; SSE answers go to ``_sse_learner``)
        a 2xx JSON answer teaches task bindings, and the context its result
        names is the caller's: ``_owned`` let through only calls naming the
        caller's contexts and tasks, so a context without a record is a new
        conversation's and is recorded as theirs (first writer wins). An answer
        naming someone else's context is never relayed (502).
        """
        raw = await self._read_answer(upstream)
        status: int = upstream.status
        rule = match.rule
        if rule is not None and rule.locator is Locator.A2A:
            if 200 <= status < 300 and is_json(upstream.headers.get("Content-Type", "")):
                await self.bindings.learn(a2a.bindings_in_json(raw))
                context = a2a.context_in_answer(raw)
                user = caller.user_id
                if (
                    self.owners is not None
                    and user is not None
                    and context is not None
                    and not await self.owners.adopt(context, user)
                ):
                    raise GatewayError(
                        "upstream answered with another user's conversation",
                        reason_id="a2a_context_taken", status=502,
                    )
            return raw
        if self.owners is None or not 200 <= status < 300 or caller.user_id is None or not raw:
            return raw  # an error, an anonymous or trusted-agent caller, or a HEAD answer
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
        if match.has_hook("record_owner"):
            session_id = data.get(self.profile.owner_from or "id") if isinstance(data, dict) else None
            if isinstance(session_id, str) and session_id:
                await self.owners.record(session_id, caller.user_id)
            return raw
        if match.has_hook("filter_owned"):
            if not isinstance(data, list):
                raise GatewayError(
                    "upstream session listing has an unexpected shape",
                    reason_id="owner_listing_unparsable",
                    status=502,
                )
            ids = [item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]
            owners = await self.owners.owners_of(ids)
            mine = [
                item
                for item in data
                if isinstance(item, dict) and owners.get(str(item.get("id"))) == caller.user_id
            ]
            return json.dumps(mine, separators=(",", ":")).encode()
        return raw

    def _valid_id(self, value: str) -> str:
        """A session/task id used with a share token, checked against ``shares.session_id_pattern``."""
        if not self.session_id.match(value):
            raise BadRequest("session or task id has an invalid format", reason_id="session_id_invalid")
        return value

    def _route(self, request: web.Request) -> tuple[str, RouteMatch]:
        """The canonical raw path and its route.

        Share API paths may carry a session id that is itself a URI, percent-
        encoded as one segment (an agent host's ``ahp-session:/…``; DESIGN.md
        "Share management API"): the gateway serves them itself and never
        forwards them, so on those routes alone encoded ``/`` and ``:`` are
        accepted, dot segments never.
        """
        raw = request.raw_path.partition("?")[0]
        try:
            path = canonical_path(raw)
        except BadRequest:
            match = self.routes.match(request.method, raw)
            if match.action is not Action.SHARE_API or not _SHARE_API_PATH.match(raw) or any(
                v in ("", ".", "..") or not v.isprintable() for v in match.params.values()
            ):
                raise
            return raw, match
        return path, self.routes.match(request.method, path)

    def _secure(self, request: web.Request) -> bool:
        """Is the client's side HTTPS (the connection, or ``public_url``)? Cookies then say ``Secure``."""
        return request.secure or (self.public_url or "").startswith("https://")

    def _host_owner_only(self, caller: Caller) -> None:
        """Without a share, a ``session: share`` route (a whole agent host) is its owner's alone."""
        if self.host_owner is None or caller.user_id != self.host_owner:
            raise Forbidden(
                "only the host's owner connects without a share link", reason_id="host_owner_only"
            )

    async def _websocket(
        self,
        request: web.Request,
        ex: Exchange,
        decision: Decision,
        caller: Caller,
        url: Any,
        headers: CIMultiDict[str],
    ) -> web.StreamResponse:
        """Relay a WebSocket; a share holder's frames pass the profile's message authorizer."""
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        share = decision.share if decision.shared else None
        async with self.forwarder.websocket(url, headers, protocols, self.ws_limits.max_frame) as upstream:
            ex.upstream_status = 101
            return await relay_websocket(
                request,
                upstream,
                authorizer=self.profile.authorizer,
                share=share,
                caller=caller,
                live=self.live,
                limits=self.ws_limits,
                background=self.background,
            )

    def _from_trusted_agent(self, request: web.Request, match: RouteMatch) -> bool:
        """Is this the upstream's own agent calling it (TCP peer in ``trusted_agents``)?

        kagent's agents call the controller naming the user in ``?user_id=``
        and ``X-Agent-Name`` (kagent ``go/core/internal/httpserver/auth/authn.go``,
        ``proxy_authn.go``); from these peers the identity carriers pass
        untouched and no share token applies. The gateway's own share API is
        never reached this way. Default: no peer is a trusted agent.
        """
        return (
            bool(self.trusted_agents)
            and match.action is not Action.SHARE_API
            and in_networks(peer_address(request), self.trusted_agents)
        )

    def _is_proxy(self, peer: str | None) -> bool:
        """Is the TCP peer a trusted proxy? (memoised per address; bounded)"""
        if not self.trusted_proxies:
            return False
        known = self._proxies.get(peer)
        if known is None:
            if len(self._proxies) > 10_000:
                self._proxies.clear()
            known = self._proxies[peer] = in_networks(peer, self.trusted_proxies)
        return known

    def _sse_learner(self, owner: str | None = None) -> Callable[[bytes], Awaitable[None]]:
        """Learn task bindings from every event of an A2A stream as it is relayed.

        With ``owner`` (profile ``a2a``, a stream answering that caller), the
        context the first event names is theirs, as in ``_owner_hooks``:
        recorded if it had no record, before the event reaches the client; a
        stream naming another user's context is cut (``StreamAborted``).
        """
        scanner = a2a.SseScanner(self.max_learned_response)
        pending = [owner]

        async def learn(chunk: bytes) -> None:
            for event in scanner.feed(chunk):
                await self.bindings.learn(a2a.bindings_in_json(event))
                user = pending[0]
                if user is not None and self.owners is not None:
                    context = a2a.context_in_answer(event)
                    if context is not None:
                        pending[0] = None
                        if not await self.owners.adopt(context, user):
                            raise StreamAborted("upstream answered with another user's conversation")

        return learn

    def _json_collector(self, parts: list[bytes]) -> Callable[[bytes], Awaitable[None]]:
        budget = [self.max_learned_response]

        async def collect(chunk: bytes) -> None:
            budget[0] -= len(chunk)
            if budget[0] >= 0:
                parts.append(chunk)
            elif parts:
                parts.clear()  # too large to learn from: relay only

        return collect

    async def _agent_card(
        self,
        request: web.Request,
        ex: Exchange,
        upstream: Any,
        decision: Decision,
        path: str,
    ) -> web.StreamResponse:
        """Serve an agent card with its JSON-RPC interface URLs pointing at the gateway."""
        raw = await upstream.content.read(self.max_learned_response)
        prefix = path.split("/.well-known/", 1)[0] + "/"
        base = self.public_url or f"{request.scheme}://{request.host}"
        rewritten = a2a.rewrite_agent_card(raw, base + prefix)
        out = response_headers(upstream.headers, decision=decision, body_replaced=True)
        out["X-Request-Id"] = ex.request_id
        out.popall("Content-Type", None)
        return web.Response(
            body=rewritten if rewritten is not None else raw,
            status=upstream.status,
            headers=out,
            content_type="application/json",
        )


_SHARE_API_PATH = re.compile(r"^/api/sessions/[^/]+/shares(?:/[^/]+)?$")


def is_websocket(request: web.Request) -> bool:
    """A WebSocket upgrade request (RFC 6455 §4.1: GET with ``Upgrade: websocket``)."""
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


def session_ids_of(raw: bytes) -> list[str]:
    """The ``session_ids`` of a docker-agent batch request; ``BadRequest`` if absent or malformed."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON", reason_id="batch_bad_body") from None
    ids = body.get("session_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise BadRequest("session_ids must be a non-empty list of session ids", reason_id="batch_bad_body")
    return ids
