"""WebSocket relay: frames both ways, a share holder's text frames checked by the profile's authorizer.

DESIGN.md "WebSocket and message-level authorization". The handshake was
decided like any request; here the gateway connects to the upstream first
(so an unreachable upstream is a 502, not an accepted socket that dies),
then accepts the client, then relays frame by frame without buffering
streams. Owner connections (no share) are relayed as they are; share
holders' frames pass the authorizer in both directions, within caps on frame
size (``max_frame``), JSON depth and frames per second. Ping/pong frames and
close codes pass through. The connection is registered in the live
registry: revocation or expiry of its share closes it with 4403, a drain
with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from gateway.models import Caller, Share
from gateway.observe import metrics
from gateway.observe.logging import get_logger
from gateway.pipeline.a2a import MAX_DEPTH, too_deep
from gateway.pipeline.live import DRAIN, EXPIRED, REVOKED, LiveConnections
from gateway.profiles.hooks import Close, Drop, Forward, MessageAuthorizer, Reply, Verdict
from gateway.tasks import Background

log = get_logger("gateway.websocket")

# RFC 6455 §7.4 codes the gateway itself closes with (4000-4999: private use).
POLICY_VIOLATION = 1008
UNSUPPORTED_DATA = 1003
GOING_AWAY = 1001
SHARE_ENDED = 4403
CLOSE_FOR = {REVOKED: (SHARE_ENDED, "share revoked"), EXPIRED: (SHARE_ENDED, "share expired"),
             DRAIN: (GOING_AWAY, "gateway shutting down")}


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """Per-connection caps for share holders: bytes per frame, frames per second (and burst)."""

    max_frame: int = 1 << 20
    rate: float = 50.0
    burst: int = 200


class _Bucket:
    """A token bucket: ``rate`` frames per second, at most ``burst`` at once."""

    __slots__ = ("_at", "_burst", "_left", "_rate")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, burst
        self._left, self._at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._left = min(self._burst, self._left + (now - self._at) * self._rate)
        self._at = now
        if self._left < 1:
            return False
        self._left -= 1
        return True


class _Ended(Exception):
    """A pump decided to close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def relay_websocket(
    request: web.Request,
    upstream: aiohttp.ClientWebSocketResponse,
    *,
    authorizer: MessageAuthorizer | None,
    share: Share | None,
    caller: Caller,
    live: LiveConnections,
    limits: FrameLimits,
    background: Background,
    headers: dict[str, str] | None = None,
) -> web.WebSocketResponse:
    """Accept the client's WebSocket and relay it to ``upstream`` until either side closes.

    ``authorizer`` applies only when ``share`` is set (a share holder's
    connection). Returns the client's ``WebSocketResponse`` once closed.
    """
    checked = authorizer is not None and share is not None
    client = web.WebSocketResponse(
        autoping=False,
        max_msg_size=limits.max_frame if checked else 0,
        protocols=(upstream.protocol,) if upstream.protocol else (),
        heartbeat=None,
    )
    await client.prepare(request)
    state = None
    if checked and authorizer is not None and share is not None:
        state = authorizer.open(share, caller)
    ended: list[tuple[int, str]] = []

    def stop(reason: str) -> None:
        ended.append(CLOSE_FOR.get(reason, (GOING_AWAY, reason)))
        background.spawn(_close_both(client, upstream, *ended[0]), name="ws-close")

    handle = live.open(stop, share)
    metrics.child(metrics.WS_CONNECTIONS, "shared" if checked else "direct").inc()
    bucket = _Bucket(limits.rate, limits.burst)

    async def client_to_upstream() -> None:
        async for msg in client:
            if msg.type is WSMsgType.TEXT:
                if not checked:
                    await upstream.send_str(msg.data)
                    continue
                if not bucket.take():
                    raise _Ended(POLICY_VIOLATION, "too many frames")
                verdict = _judge(authorizer, state, msg.data, "client")
                await _apply(verdict, msg.data, upstream, client, "client")
            elif msg.type is WSMsgType.BINARY:
                if checked and not (authorizer is not None and authorizer.binary_allowed):
                    raise _Ended(UNSUPPORTED_DATA, "binary frames are not accepted")
                await upstream.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                await upstream.ping(msg.data)
            elif msg.type is WSMsgType.PONG:
                await upstream.pong(msg.data)
        raise _Ended(client.close_code or 1000, "client closed")

    async def upstream_to_client() -> None:
        async for msg in upstream:
            if msg.type is WSMsgType.TEXT:
                if not checked:
                    await client.send_str(msg.data)
                    continue
                verdict = _judge(authorizer, state, msg.data, "upstream")
                await _apply(verdict, msg.data, client, upstream, "upstream")
            elif msg.type is WSMsgType.BINARY:
                if not checked or (authorizer is not None and authorizer.binary_allowed):
                    await client.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                await client.ping(msg.data)
            elif msg.type is WSMsgType.PONG:
                await client.pong(msg.data)
        raise _Ended(upstream.close_code or 1000, "upstream closed")

    pumps = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
    code, reason = 1000, ""
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in done:
            exc = pump.exception()
            if isinstance(exc, _Ended):
                code, reason = exc.code, exc.reason
            elif exc is not None and not isinstance(exc, ConnectionError | aiohttp.ClientError):
                log.error("websocket_relay_failed", error=repr(exc))
                code, reason = 1011, "relay error"
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        live.close(handle)
        if ended:
            code, reason = ended[0]
        await _close_both(client, upstream, code, reason)
    return client


def _judge(authorizer: MessageAuthorizer | None, state: Any, data: str, side: str) -> Verdict:
    """Parse one text frame and ask the authorizer; malformed input closes (1008) from a client."""
    assert authorizer is not None
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        message = None
    if message is None or too_deep(message, MAX_DEPTH):
        if side == "client":
            return Close(POLICY_VIOLATION, "frames must be JSON")
        return Drop("upstream frame is not JSON")
    if side == "client":
        return authorizer.from_client(state, message)
    return authorizer.from_upstream(state, message)


async def _apply(
    verdict: Verdict,
    original: str,
    onward: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    back: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    side: str,
) -> None:
    """Carry out a verdict for a frame from ``side``: to ``onward``, or an answer ``back``."""
    if isinstance(verdict, Forward):
        metrics.child(metrics.WS_MESSAGES, side, "forward").inc()
        text = original if verdict.message is None else json.dumps(verdict.message, separators=(",", ":"))
        await onward.send_str(text)
    elif isinstance(verdict, Reply):
        metrics.child(metrics.WS_MESSAGES, side, "reply").inc()
        log.info("websocket_refused", side=side, reason=verdict.reason)
        await back.send_str(json.dumps(verdict.message, separators=(",", ":")))
    elif isinstance(verdict, Drop):
        metrics.child(metrics.WS_MESSAGES, side, "drop").inc()
        log.debug("websocket_dropped", side=side, reason=verdict.reason)
    else:
        metrics.child(metrics.WS_MESSAGES, side, "close").inc()
        raise _Ended(verdict.code, verdict.reason)


async def _close_both(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, code: int, reason: str
) -> None:
    """Close both sockets (idempotent); the upstream always with a normal code."""
    message = reason.encode()[:120]
    with contextlib.suppress(ConnectionError, aiohttp.ClientError, asyncio.TimeoutError):
        await client.close(code=code, message=message)
    with contextlib.suppress(ConnectionError, aiohttp.ClientError, asyncio.TimeoutError):
        await upstream.close(code=code if code < 4000 else 1000, message=message)
