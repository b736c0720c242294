"""A board-wide SSE feed filtered, event by event, to the sessions the caller owns.

sideshow's ``GET /api/events`` without ``?session=`` streams the events of
every session (modem-dev/sideshow ``server/app.ts``, ``// --- live feed ---``;
``server/events.ts`` ``FeedEvent``), and its viewer opens exactly that feed
for a signed-in user and filters it client-side (``viewer/src/state.ts``
``eventsPath``, ``handleFeedData``). Through the gateway such a feed is cut
down to the caller's sessions: an event's session is its ``sessionId``, or
its ``id`` for ``session-*`` events (sideshow's ``eventSessionId``); an event
naming no session (``theme-changed``: a board setting, no session data) and
events without JSON data (``hello``, ``ping``) pass. Post and comment events
teach object bindings (``id`` → ``sessionId``) on the way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from gateway.observe import metrics
from gateway.pipeline.forward import StreamAborted
from gateway.pipeline.live import LiveConnections

MAX_EVENT = 64 * 1024  # bytes: a longer event ends the stream (sideshow's events carry ids only)
RECORD_WAIT = 1.0  # seconds an event may wait for the owner record of a session created just now


def event_session(data: Any) -> str | None:
    """The session a decoded FeedEvent is about (``eventSessionId``), or ``None``."""
    if not isinstance(data, dict):
        return None
    session = data.get("sessionId")
    if isinstance(session, str):
        return session
    kind, object_id = data.get("type"), data.get("id")
    if isinstance(kind, str) and kind.startswith("session-") and isinstance(object_id, str):
        return object_id
    return None


def event_data(block: bytes) -> Any:
    """The decoded JSON of an SSE event's ``data:`` lines (joined by newlines), or ``None``."""
    lines = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    try:
        return json.loads(b"\n".join(lines))
    except (ValueError, RecursionError):
        return None


class OwnedFilter:
    """Decides per event: is it about a session ``user`` owns? (answers cached per stream)."""

    def __init__(self, user: str, owner_of: Callable[[str], Awaitable[str | None]]) -> None:
        self._user = user
        self._owner_of = owner_of
        self._known: dict[str, bool] = {}

    async def keeps(self, data: Any) -> bool:
        session = event_session(data)
        if session is None:
            return True
        known = self._known.get(session)
        if known is not None:
            return known
        owner = await self._owner_of(session)
        deadline = time.monotonic() + RECORD_WAIT
        while owner is None and time.monotonic() < deadline:
            # ``session-created`` may come before the creator's owner record (written
            # once the creating request's answer is read): wait for it, briefly.
            await asyncio.sleep(0.05)
            owner = await self._owner_of(session)
        # Remembered for the stream: a session without a record after the wait (one created
        # behind the gateway's back) is not the caller's, and stays so unless claimed.
        self._known[session] = owner == self._user
        return owner == self._user


async def relay_owned(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    live: LiveConnections,
    keeps: Callable[[Any], Awaitable[bool]],
    learn: Callable[[Any], Awaitable[None]],
) -> web.StreamResponse:
    """Relay an SSE feed, writing only the events ``keeps`` accepts (``learn`` sees each one's data).

    Registered in ``live`` like any stream (drain ends it cleanly). An event
    over ``MAX_EVENT`` bytes, or an upstream failing mid-stream, ends the
    client's connection (``StreamAborted``).
    """
    headers.popall("Content-Length", None)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    handle = live.open(lambda _reason: upstream.close(), None)
    pending = b""
    try:
        try:
            async for chunk in upstream.content.iter_any():
                if handle.ended is not None:
                    break
                pending += chunk.replace(b"\r\n", b"\n")
                while b"\n\n" in pending:
                    block, pending = pending.split(b"\n\n", 1)
                    data = event_data(block)
                    await learn(data)
                    if await keeps(data):
                        await response.write(block + b"\n\n")
                    else:
                        metrics.child(metrics.DECISIONS, "event_not_owner").inc()
                if len(pending) > MAX_EVENT:
                    raise StreamAborted("feed event too large")
        except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            if isinstance(exc, aiohttp.ClientConnectionResetError | ConnectionResetError):
                raise
            if handle.ended is None:
                metrics.child(metrics.UPSTREAM_ERRORS, "stream_aborted").inc()
                raise StreamAborted(type(exc).__name__) from exc
        await response.write_eof()
    except StreamAborted:
        if request.transport is not None:
            request.transport.close()
        raise
    finally:
        live.close(handle)
    return response
