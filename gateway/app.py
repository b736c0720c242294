"""Application assembly: resources in ``cleanup_ctx`` order, the pipeline, and the serve loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import signal
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from gateway import profiles
from gateway.config import Settings
from gateway.health import HEALTH, Health, create_admin_app
from gateway.observe import metrics
from gateway.observe.logging import get_logger
from gateway.pipeline import Pipeline
from gateway.pipeline.credentials import AssertionSigner, UpstreamCredentials, read_secret
from gateway.pipeline.forward import Forwarder
from gateway.pipeline.identify import Identifier, normalise_header_name, query_key
from gateway.pipeline.live import LiveConnections, LiveShareCheck
from gateway.pipeline.locate import ObjectBindings
from gateway.pipeline.outbound import strip_set
from gateway.pipeline.public import PublicRead
from gateway.pipeline.routes import RouteTable
from gateway.pipeline.websocket import FrameLimits
from gateway.profiles import Profile
from gateway.shares.access import AccessRecorder
from gateway.shares.api import Ownership, OwnershipProbe, ShareApi, effective_link_template
from gateway.shares.cache import ShareCache, TaskBindings
from gateway.shares.guesses import GuessLimiter
from gateway.shares.owners import OwnerDirectory
from gateway.shares.shared_state import CircuitBreaker, SharedState, connect
from gateway.shares.store import ShareStore, open_store
from gateway.shares.tokens import TokenCipher
from gateway.tasks import Background

log = get_logger("gateway")

METRICS_FOLD_INTERVAL = 1.0  # seconds between folds of the request path's metric tallies
STORE = web.AppKey("store", ShareStore)
FORWARDER = web.AppKey("forwarder", Forwarder)
SHARED = web.AppKey("shared", SharedState)
CACHE = web.AppKey("cache", ShareCache)
BINDINGS = web.AppKey("bindings", TaskBindings)
RECORDER = web.AppKey("recorder", AccessRecorder)
PIPELINE = web.AppKey("pipeline", Pipeline)
LIVE = web.AppKey("live", LiveConnections)
BACKGROUND = web.AppKey("background", Background)


def upstream_credentials(settings: Settings, profile: Profile) -> UpstreamCredentials:
    """The upstream credential mode: ``upstream_auth`` from the config, else the profile's.

    Raises ``ValueError`` for an unusable combination (e.g. ``bearer`` without a token).
    """
    cfg = settings.upstream_auth
    mode = profile.upstream_auth_mode if cfg.mode == "profile" else cfg.mode
    header = cfg.header if cfg.header is not None else profile.identity_header
    if mode == "header" and not header:
        raise ValueError("upstream_auth.mode header needs an identity header name")
    token = read_secret(cfg.token.get_secret_value() if cfg.token else None, cfg.token_file)
    signer = None
    if mode == "jwt-assertion":
        signer = AssertionSigner(
            cfg.jwt.private_key,
            issuer=cfg.jwt.issuer,
            audience=cfg.jwt.audience,
            ttl=cfg.jwt.ttl_seconds,
            user_claim=cfg.jwt.user_claim,
        )
    if mode != "header" and cfg.header is None:
        header = None  # token modes name the user in a header only when asked to
    return UpstreamCredentials(
        mode,
        identity_header=header or None,
        token=token,
        signer=signer,
        query_param=profile.upstream_query_param,
    )


def ownership_probe(
    profile: Profile,
    forwarder: Forwarder,
    owners: OwnerDirectory | None,
    limit: int,
    credentials: UpstreamCredentials,
) -> OwnershipProbe:
    """How the share API learns that a caller owns a session, per the profile.

    ``upstream-probe`` (kagent): the upstream answers ``probe_path`` with 2xx
    when asked as the caller (kagent scopes sessions by ``X-User-Id``); its
    answer (at most ``limit`` bytes; kagent: ``{"data": {"session": …}}``)
    comes back with the ``Ownership``, for the profile's link placeholders.
    ``gateway-recorded``: the owner the gateway recorded in its store.
    """

    if owners is not None:
        recorded = owners

        async def from_store(session_id: str, user_id: str) -> Ownership | None:
            return Ownership() if await recorded.owns(session_id, user_id) else None

        return from_store

    async def upstream(session_id: str, user_id: str) -> Ownership | None:
        path = profile.probe_path.format(session_id=quote(session_id, safe=""))
        headers: CIMultiDict[str] = CIMultiDict()
        credentials.apply(headers, user_id)
        status, body = await forwarder.fetch(profile.probe_method, forwarder.url(path), headers, None, limit)
        return Ownership(session=body) if 200 <= status < 300 else None

    return upstream


def create_app(
    settings: Settings, *, store: ShareStore | None = None, health: Health | None = None
) -> web.Application:
    """The main listener's application (proxy + share API).

    Start-up order (``cleanup_ctx``; torn down in reverse): store (opened and
    migrated) → Redis (optional) → background tasks → share cache and live
    connections (the live-share check; with Redis, the revocation listener)
    → upstream client pool → access recorder → pipeline. So on
    shutdown the pipeline goes first, then pending access records are flushed
    while the store is still open, then the pool and the store close.
    ``store`` may be injected (tests of fault handling). Raises ``ProfileError``
    or ``RouteTableError`` for a bad profile, ``ValueError`` for a
    ``shares.link_template`` the profile cannot fill: configuration errors
    surface at start-up, never per request.
    """
    profile = profiles.load(settings.profile)
    routes = RouteTable(profile.rules)
    identifier = Identifier(settings.auth)
    credentials = upstream_credentials(settings, profile)
    links = effective_link_template(settings.shares.link_template, profile)  # ValueError: bad placeholders
    cipher = None  # shares.token_storage: encrypted — key material decoded once, at start-up
    if settings.shares.token_storage == "encrypted":
        cipher = TokenCipher(settings.shares.token_key_bytes())
    health = health or Health(upstream=settings.upstream)
    health.jwks = credentials.signer.jwks if credentials.signer is not None else None
    app = web.Application(client_max_size=settings.limits.max_parsed_body)
    app[HEALTH] = health

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        s = store or open_store(settings.store)
        await s.open()
        applied = await s.migrate()
        if applied:
            log.info("store_migrated", versions=applied)
        app[STORE] = s
        health.store = s
        yield
        await s.close()

    async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
        """Fold the request path's metric tallies into the registry every second (a
        multiprocess scrape reads the other workers' files), and once more at shutdown."""
        loop = asyncio.get_running_loop()
        timer: list[asyncio.TimerHandle] = []

        def tick() -> None:
            metrics.fold()
            timer[:] = [loop.call_later(METRICS_FOLD_INTERVAL, tick)]

        tick()
        yield
        timer[0].cancel()
        metrics.fold()

    async def background_ctx(app: web.Application) -> AsyncIterator[None]:
        """Work that must finish even when its request is abandoned (single-flight lookups,
        owner records, share creation and revocation): drained before Redis and the store close."""
        app[BACKGROUND] = Background("gateway")
        yield
        await app[BACKGROUND].drain(settings.shutdown_grace)

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        """Redis (optional): the cache tier and task bindings every replica shares."""
        if settings.redis is None:
            yield
            return
        shared = SharedState(
            connect(settings.redis, timeout=settings.timeouts.redis),
            connect(settings.redis, timeout=None),
            prefix=settings.redis_prefix,
            breaker=CircuitBreaker(settings.timeouts.redis_retry),
            revoked_ttl=settings.shares.redis_ttl,  # as long as any cached entry of the share lives
        )
        if not await shared.ping():
            log.error("redis_unreachable_at_start", note="share lookups go to the store until it answers")
        app[SHARED] = health.redis = shared
        yield
        await shared.close()

    async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
        """Share cache and task bindings; with Redis, the revocation subscription."""
        shared = app.get(SHARED)
        live = app[LIVE] = LiveConnections()
        cache = ShareCache(
            app[STORE],
            ttl=settings.shares.cache_ttl,
            negative_ttl=settings.shares.negative_ttl,
            size=settings.shares.cache_size,
            shared=shared,
            redis_ttl=settings.shares.redis_ttl,
            live=live,
            background=app[BACKGROUND],
        )
        app[CACHE] = cache
        app[BINDINGS] = TaskBindings(shared=shared)
        checker = LiveShareCheck(app[STORE], live, settings.shares.live_check_interval)
        tasks = [app[BACKGROUND].spawn(checker.run(), name="live-share-check")]
        if shared is not None:

            def resync() -> None:
                cache.clear()
                checker.soon()  # revocations may have been missed while unsubscribed

            subscribed = asyncio.Event()
            listen = shared.listen(cache.on_revoked, resync, subscribed)
            tasks.append(app[BACKGROUND].spawn(listen, name="revocation-listener"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscribed.wait(), settings.timeouts.connect)
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def forwarder_ctx(app: web.Application) -> AsyncIterator[None]:
        assert settings.upstream is not None
        forwarder = Forwarder(
            settings.upstream, connect=settings.timeouts.connect, read_idle=settings.timeouts.read_idle
        )
        await forwarder.start()
        app[FORWARDER] = forwarder
        yield
        await forwarder.close()

    async def recorder_ctx(app: web.Application) -> AsyncIterator[None]:
        recorder = AccessRecorder(
            app[STORE],
            flush_interval=settings.access.flush_interval,
            max_pending=settings.access.max_pending,
            batch_size=settings.access.batch_size,
            background=app[BACKGROUND],
        )
        recorder.start()
        app[RECORDER] = recorder
        yield
        await recorder.close()

    async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
        cache = app[CACHE]
        owners = None
        if profile.ownership_mode == "gateway-recorded":
            owners = OwnerDirectory(
                app[STORE],
                default_owner=settings.default_owner,
                shared=app.get(SHARED),
                background=app[BACKGROUND],
            )
        probe = ownership_probe(
            profile, app[FORWARDER], owners, settings.limits.max_learned_response, credentials
        )
        trusted = (*settings.trusted_proxies, *settings.auth.trusted_header.trusted_cidrs)
        app[PIPELINE] = Pipeline(
            identifier=identifier,
            credentials=credentials,
            owners=owners,
            routes=routes,
            profile=profile,
            shares=settings.shares,
            cache=cache,
            bindings=app[BINDINGS],
            recorder=app[RECORDER],
            forwarder=app[FORWARDER],
            share_api=ShareApi(
                app[STORE],
                cache,
                probe,
                profile,
                public_url=settings.public_url,
                max_expires_in=settings.shares.max_expires_in,
                ownership_ttl=settings.shares.ownership_cache_ttl,
                link_template=links,
                cipher=cipher,
                background=app[BACKGROUND],
            ),
            trusted_proxies=trusted,
            strip=strip_set(credentials, [*identifier.consumed_headers, *profile.carrier_headers]),
            query_carriers=frozenset(query_key(q) for q in profile.carrier_query),
            trusted_agents=tuple(settings.trusted_agents),
            agent_strip=strip_set(credentials, identifier.consumed_headers)
            - credentials.replaced
            - {normalise_header_name(h) for h in profile.carrier_headers},
            live=app[LIVE],
            share_cookie=profile.share_cookie,
            share_param=(profile.share_query_param or settings.shares.query_param)
            if settings.shares.allow_query_param
            else None,
            host_owner=settings.default_owner,
            ws_limits=FrameLimits(
                max_frame=settings.limits.max_ws_frame,
                rate=settings.limits.ws_frames_per_second,
                burst=settings.limits.ws_frame_burst,
            ),
            session_id=re.compile(settings.shares.session_id_pattern),
            max_body=settings.limits.max_body,
            guesses=GuessLimiter(
                limit=settings.shares.guess_limit,
                window=settings.shares.guess_window,
                shared=app.get(SHARED),
                background=app[BACKGROUND],
            ),
            background=app[BACKGROUND],
            max_parsed_body=settings.limits.max_parsed_body,
            max_learned_response=settings.limits.max_learned_response,
            public_url=settings.public_url,
            objects=ObjectBindings(app[BINDINGS], profile.binding_field, profile.binding_probe)
            if profile.binding_field
            else None,
            public=PublicRead(app[STORE], cache, owners, background=app[BACKGROUND])
            if owners is not None and profile.public_flag
            else None,
            admins=frozenset(settings.admins),
        )
        health.ready = True
        yield
        health.ready = False

    app.cleanup_ctx.extend(
        [
            metrics_ctx, store_ctx, redis_ctx, background_ctx, cache_ctx, forwarder_ctx, recorder_ctx,
            pipeline_ctx,
        ]
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        return await request.app[PIPELINE].handle(request)

    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)  # every path, newlines included
    return app


def server_options(settings: Settings) -> dict[str, Any]:
    """aiohttp server settings for the main listener: limits and timeouts from ``settings``.

    Header count and size limits answer 400/431 before any handler runs; idle
    keep-alive connections are closed after ``timeouts.keepalive`` seconds.
    The client disconnecting cancels the handler, closing the upstream request.
    """
    return {
        "handler_cancellation": True,
        "access_log": None,
        "shutdown_timeout": settings.shutdown_grace,
        "keepalive_timeout": settings.timeouts.keepalive,
        "max_headers": settings.limits.max_headers,
        "max_field_size": settings.limits.max_header_size,
        "max_line_size": settings.limits.max_header_size,
    }


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
    metrics_dir: str | None = None,
) -> None:
    """Run the main and admin listeners until SIGTERM/SIGINT (or ``stop``), then drain.

    Drain: ``/readyz`` turns 503, open streams are ended cleanly, the listeners
    stop accepting, in-flight requests get ``shutdown_grace`` seconds, then
    pending access records are flushed and pools close. ``reuse_port`` lets
    several worker processes share the ports (SO_REUSEPORT); ``metrics_dir``
    makes ``/metrics`` aggregate every worker.
    """
    health = Health(upstream=settings.upstream, metrics_dir=metrics_dir)
    app = create_app(settings, health=health)
    runner = web.AppRunner(app, **server_options(settings))
    admin_runner = web.AppRunner(create_admin_app(health), access_log=None)
    await admin_runner.setup()
    host, port = settings.admin_address
    await web.TCPSite(admin_runner, host, port, reuse_port=reuse_port or None).start()
    await runner.setup()
    host, port = settings.listen_address
    await web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None).start()
    # Everything built at start-up (modules, settings, pools, caches' skeletons) lives as long
    # as the process: moved out of the collector's sight, so each full collection scans only
    # what requests allocate (CPython's gc.freeze, meant for exactly this).
    gc.collect()
    gc.freeze()
    log.info(
        "listening",
        listen=settings.listen,
        admin_listen=settings.admin_listen,
        upstream=settings.upstream,
        profile=settings.profile,
        pid=os.getpid(),
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    health.draining = True
    live = app[LIVE]
    log.info("draining", grace_seconds=settings.shutdown_grace, open_streams=len(live))
    live.end_all()
    await runner.cleanup()
    await admin_runner.cleanup()
    log.info("stopped")
