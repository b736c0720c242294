"""Every Prometheus metric the gateway exports, in one registry (prefix ``share_gateway_``).

Labels are bounded: route templates, methods, status classes, decisions and
reason ids. Never tokens, user ids or raw paths. With ``--workers N`` the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` for its workers and ``/metrics``
aggregates every worker's values (prometheus-client's multiprocess mode;
gauges declare how they aggregate).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from gateway import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
_P = "share_gateway_"

REQUESTS = Counter(
    _P + "requests_total",
    "Requests handled, by route template, method, status class and decision.",
    ["route", "method", "status_class", "decision"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    _P + "request_duration_seconds",
    "Time from request received to response headers sent (streams: to first byte).",
    ["route", "decision"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    _P + "requests_in_flight", "Requests being handled.", registry=REGISTRY, multiprocess_mode="livesum"
)
DECISIONS = Counter(_P + "decisions_total", "Decisions by reason id.", ["reason_id"], registry=REGISTRY)
UPSTREAM_DURATION = Histogram(
    _P + "upstream_request_duration_seconds",
    "Time until the upstream's response headers arrived.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    _P + "upstream_errors_total",
    "Upstream failures by kind (unreachable, timeout, stream_aborted).",
    ["kind"],
    registry=REGISTRY,
)
SHARE_LOOKUPS = Counter(
    _P + "share_lookups_total",
    "Share token lookups by tier (l1, redis, store) and result (hit, miss, negative, error).",
    ["tier", "result"],
    registry=REGISTRY,
)
ACCESS_RECORDS = Counter(
    _P + "access_records_total",
    "Share access records by result (queued, written, dropped, retried).",
    ["result"],
    registry=REGISTRY,
)
ACCESS_QUEUE_DEPTH = Gauge(
    _P + "access_queue_depth",
    "Distinct (share, user) pairs awaiting write.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
OPEN_STREAMS = Gauge(
    _P + "open_streams",
    "Streaming (SSE/chunked) responses being relayed.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
STREAMS_ENDED = Counter(
    _P + "streams_ended_total",
    "Live connections the gateway ended: share revoked, share expired, or drain on shutdown.",
    ["reason"],
    registry=REGISTRY,
)
WS_CONNECTIONS = Counter(
    _P + "websocket_connections_total",
    "WebSocket connections relayed: through a share (frames checked) or direct.",
    ["kind"],
    registry=REGISTRY,
)
WS_MESSAGES = Counter(
    _P + "websocket_messages_total",
    "Text frames of share holders' connections by direction and verdict (forward, drop, reply, close).",
    ["direction", "verdict"],
    registry=REGISTRY,
)
DEPENDENCY_UP = Gauge(
    _P + "dependency_up",
    "1 if a dependency (store, redis, upstream) answered its last use or probe (min over workers).",
    ["dependency"],
    registry=REGISTRY,
    multiprocess_mode="livemin",
)
BUILD = Gauge(
    _P + "build_info",
    "Build information (always 1).",
    ["version"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
BUILD.labels(__version__).set(1)


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, memoised: label sets are bounded, and the hot path
    then skips prometheus-client's validation and lock on every request."""
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


def status_class(status: int) -> str:
    """``404`` → ``"4xx"``."""
    return f"{status // 100}xx"


def exposition(multiprocess_dir: str | None = None) -> bytes:
    """The registry in Prometheus text format; with ``multiprocess_dir``, every worker's values."""
    if multiprocess_dir is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
