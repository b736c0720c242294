"""Pooled upstream client and the streaming relay (chunk by chunk, so SSE events flow as produced)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.errors import PayloadTooLarge, UpstreamTimeout, UpstreamUnreachable
from gateway.models import Share
from gateway.observe import metrics
from gateway.pipeline.live import LiveConnections

CHUNK = 64 * 1024


class StreamAborted(Exception):
    """The upstream failed after the response started; the client connection is cut."""


def _upstream_error(exc: BaseException) -> Exception | None:
    """The gateway's error for a failure reaching the upstream, counted by kind (``None``: not one).

    A timeout is ``UpstreamTimeout`` (504); a refused WebSocket upgrade or any
    other client error ``UpstreamUnreachable`` (502).
    """
    if isinstance(exc, PayloadTooLarge):
        return None
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        metrics.child(metrics.UPSTREAM_ERRORS, "websocket_refused").inc()
        return UpstreamUnreachable()
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        metrics.child(metrics.UPSTREAM_ERRORS, "timeout").inc()
        return UpstreamTimeout()
    if isinstance(exc, aiohttp.ClientError):
        metrics.child(metrics.UPSTREAM_ERRORS, "unreachable").inc()
        return UpstreamUnreachable()
    return None


@contextmanager
def _upstream_errors() -> Iterator[None]:
    """Connecting to the upstream: failures raised as ``_upstream_error`` maps them."""
    try:
        yield
    except Exception as exc:
        mapped = _upstream_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


class UpstreamRequest:
    """``async with forwarder.request(...) as response``: the response once its headers arrived,
    released on exit. A plain class, not a generator: it is entered once per request."""

    __slots__ = ("_pending", "_response", "_waiting")

    def __init__(
        self, pending: Awaitable[aiohttp.ClientResponse], waiting: AbstractContextManager[Any] | None = None
    ) -> None:
        self._pending = pending
        self._waiting = waiting
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            if self._waiting is None:
                self._response = await self._pending
            else:
                with self._waiting:
                    self._response = await self._pending
        except Exception as exc:
            mapped = _upstream_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return self._response

    async def __aexit__(self, *_exc: object) -> None:
        if self._response is not None:
            self._response.release()


class Forwarder:
    """One pooled ``aiohttp.ClientSession`` to the upstream.

    Timeouts (seconds): ``connect`` bounds connection set-up; ``read_idle``
    bounds each wait for upstream bytes (headers or body). There is no total
    timeout, so long SSE streams live as long as the upstream keeps talking.
    The client never decompresses, follows redirects or keeps cookies: what the
    upstream sends is what the client gets.
    """

    def __init__(self, upstream: str, *, connect: float, read_idle: float) -> None:
        self._base = upstream.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect, sock_connect=connect, sock_read=read_idle
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, raw_path: str, raw_query: str = "") -> URL:
        """Upstream URL for a raw (still encoded) path and query: never re-encoded."""
        target = self._base + raw_path + (f"?{raw_query}" if raw_query else "")
        return URL(target, encoded=True)

    def request(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: Any = None,
        waiting: AbstractContextManager[Any] | None = None,
    ) -> UpstreamRequest:
        """Send a request: ``async with`` yields the response once its headers arrived.

        ``waiting`` is held while the answer is awaited (``LiveConnections.pending``:
        a long poll through a share ends with the share). Raises
        ``UpstreamUnreachable`` (502) when the upstream cannot be reached or
        drops the connection before answering, ``UpstreamTimeout`` (504) when
        it does not answer in time.
        """
        assert self._session is not None, "Forwarder.start() was not called"
        return UpstreamRequest(
            self._session.request(method, url, headers=headers, data=data, allow_redirects=False), waiting
        )

    @asynccontextmanager
    async def websocket(
        self, url: URL, headers: CIMultiDict[str], protocols: list[str], max_frame: int
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """Open a WebSocket to the upstream; closed on exit.

        Raises ``UpstreamUnreachable`` (502) when it cannot be reached or
        refuses the upgrade (its status is logged, not relayed: a refusal of
        the gateway's own credentials is a configuration error, never the
        client's), ``UpstreamTimeout`` (504) when it does not answer in time.
        """
        assert self._session is not None, "Forwarder.start() was not called"
        with _upstream_errors():
            ws = await self._session.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoping=False,
                max_msg_size=max_frame,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        try:
            yield ws
        finally:
            await ws.close()

    async def fetch(
        self, method: str, url: URL, headers: CIMultiDict[str], data: bytes | None, limit: int
    ) -> tuple[int, bytes]:
        """A small request made by the gateway itself (ownership or binding probe).

        Returns ``(status, body)``; the body is cut at ``limit`` bytes.
        """
        async with self.request(method, url, headers, data) as response:
            try:
                body = await response.content.read(limit)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise UpstreamUnreachable() from exc
            return response.status, body


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    live: LiveConnections,
    share: Share | None,
    on_chunk: Callable[[bytes], Awaitable[None]] | None = None,
) -> web.StreamResponse:
    """Relay the upstream body to the client as it arrives, without buffering.

    ``on_chunk`` sees every chunk (for learning task bindings from SSE).
    Responses without ``Content-Length`` are streams: registered in ``live``
    under ``share`` (the share the request was served through, if any), so
    revocation, expiry and drain end them with a clean end of stream (the last
    chunk of a chunked body: SSE clients see the stream close, not an error).
    If the upstream fails mid-body, raises ``StreamAborted`` after the
    client's connection is closed (the status line is already sent).
    """
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    streaming = "Content-Length" not in headers
    await response.prepare(request)
    handle = live.open(lambda _reason: upstream.close(), share) if streaming else None
    try:
        if request.method != "HEAD":
            try:
                async for chunk in upstream.content.iter_any():
                    if handle is not None and handle.ended is not None:
                        break
                    if on_chunk is not None:
                        await on_chunk(chunk)
                    await response.write(chunk)
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                if isinstance(exc, aiohttp.ClientConnectionResetError | ConnectionResetError):
                    raise  # the client went away: nothing left to tell anyone
                if handle is None or handle.ended is None:
                    metrics.child(metrics.UPSTREAM_ERRORS, "stream_aborted").inc()
                    if request.transport is not None:
                        request.transport.close()
                    raise StreamAborted(type(exc).__name__) from exc
        await response.write_eof()
    finally:
        if handle is not None:
            live.close(handle)
    return response


async def capped(content: Any, limit: int) -> AsyncIterator[bytes]:
    """A request body streamed upstream, cut off with ``PayloadTooLarge`` past ``limit`` bytes."""
    size = 0
    async for chunk in content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        yield chunk


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The whole request body, or ``None`` if it exceeds ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    """``application/json`` or any ``+json`` media type."""
    media = _media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def is_sse(content_type: str) -> bool:
    """``text/event-stream``."""
    return _media_type(content_type) == "text/event-stream"


__all__ = ["Forwarder", "StreamAborted", "capped", "is_json", "is_sse", "read_capped", "relay"]
