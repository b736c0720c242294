"""Upstream request headers and client response headers from a ``Decision`` (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.models import Caller, Decision
from gateway.pipeline.credentials import UpstreamCredentials
from gateway.pipeline.identify import IDENTITY_HEADERS, normalise_header_name

# RFC 9110 §7.6.1 connection-specific fields, plus fields the HTTP client sets
# itself (Host, Content-Length) and the legacy Proxy-Connection.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# The WebSocket handshake's own fields: the gateway's client to the upstream makes its own
# (RFC 6455 §4.1); the subprotocol is passed on separately.
WEBSOCKET_HANDSHAKE = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept",
     "sec-websocket-protocol"}
)
_REQUEST_DROP = HOP_BY_HOP | WEBSOCKET_HANDSHAKE | {"host", "content-length", "expect"}
# Headers describing the client's own identity, meaningless (and misleading)
# once the request acts as the session owner.
_CALLER_CREDENTIALS = frozenset({"authorization", "cookie"})
FORWARDED_PREFIX = "x-forwarded-"


_LISTED: dict[str, frozenset[str]] = {}


def _listed(value: str) -> frozenset[str]:
    """Normalised names in one ``Connection`` value (memoised: ``keep-alive`` on nearly every answer)."""
    found = _LISTED.get(value)
    if found is None:
        found = frozenset(normalise_header_name(n.strip()) for n in value.split(",") if n.strip())
        if len(_LISTED) < 1024:
            _LISTED[value] = found
    return found


def connection_listed(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Normalised names listed in every ``Connection`` header (RFC 9110 §7.6.1; Traefik CVE-2024-45410)."""
    values = headers.getall("Connection", ())
    if len(values) == 1:
        return _listed(values[0])
    return frozenset().union(*(_listed(v) for v in values))


def strip_set(credentials: UpstreamCredentials, extra_strip: Iterable[str]) -> frozenset[str]:
    """Normalised request header names never forwarded (computed once at start-up): hop-by-hop,
    identity headers, whatever the upstream credentials replace, and ``extra_strip``."""
    names = _REQUEST_DROP | IDENTITY_HEADERS | credentials.replaced | {"x-request-id"}
    return frozenset(names | {normalise_header_name(h) for h in extra_strip})


def upstream_headers(
    incoming: CIMultiDictProxy[str],
    *,
    decision: Decision,
    caller: Caller,
    credentials: UpstreamCredentials,
    strip: frozenset[str],
    peer: str | None,
    peer_is_proxy: bool,
    scheme: str,
    host: str | None,
    request_id: str,
    content_length: int | None,
) -> CIMultiDict[str]:
    """The headers sent upstream.

    Removes hop-by-hop headers, every header named in ``Connection``, every
    client-sent identity header (matched case-insensitively with ``_`` read as
    ``-``, every duplicate; ``strip`` from ``strip_set``), the share token, and
    ``X-Forwarded-*``/``Forwarded``
    unless the peer is a trusted proxy. Then lets ``credentials`` name
    ``decision.effective_user`` (exactly one ``X-User-Id``, a static bearer
    token, or a signed assertion), and sets the share headers when acting as
    the owner, ``X-Forwarded-For/Proto/Host`` and ``X-Request-Id``.
    """
    drop = strip
    if "Connection" in incoming:
        drop = drop | connection_listed(incoming)
    if decision.shared:
        drop = drop | _CALLER_CREDENTIALS
    out: CIMultiDict[str] = CIMultiDict()
    prior_xff: list[str] = []
    for name, value in incoming.items():
        norm = name.lower().replace("_", "-")
        if norm in drop:
            continue
        if norm.startswith(FORWARDED_PREFIX) or norm == "forwarded":
            if not peer_is_proxy:
                continue
            if norm == "x-forwarded-for":
                prior_xff.append(value)
                continue
        out.add(name, value)
    credentials.apply(out, decision.effective_user)
    if decision.shared and decision.share is not None:
        out["X-Share-Accessor"] = caller.label
        out["X-Share-Id"] = decision.share.id
    out["X-Forwarded-For"] = ", ".join([*prior_xff, peer] if peer else prior_xff) or "unknown"
    if not peer_is_proxy or "X-Forwarded-Proto" not in out:
        out["X-Forwarded-Proto"] = scheme
    if host and (not peer_is_proxy or "X-Forwarded-Host" not in out):
        out["X-Forwarded-Host"] = host
    out["X-Request-Id"] = request_id
    if content_length is not None:
        out["Content-Length"] = str(content_length)
    return out


def response_headers(
    upstream: CIMultiDictProxy[str], *, decision: Decision, body_replaced: bool
) -> CIMultiDict[str]:
    """Client response headers: upstream's minus hop-by-hop, plus the share headers.

    On responses served with the owner's identity: ``Referrer-Policy:
    no-referrer`` and ``Cache-Control: no-store`` (the URL may carry a token, the
    body is someone else's) and ``X-Share-Read-Only``.
    """
    drop = HOP_BY_HOP | connection_listed(upstream) if "Connection" in upstream else HOP_BY_HOP
    if body_replaced:
        drop = drop | {"content-length", "content-encoding", "etag"}
    out: CIMultiDict[str] = CIMultiDict(
        [(k, v) for k, v in upstream.items() if normalise_header_name(k) not in drop]
    )
    if decision.shared and decision.share is not None:
        out["Referrer-Policy"] = "no-referrer"
        out["Cache-Control"] = "no-store"
        out["X-Share-Read-Only"] = "true" if decision.share.read_only else "false"
    return out
