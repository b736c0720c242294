"""Every Prometheus metric the gateway exports, in one registry (prefix ``share_gateway_``).

Labels are bounded: route templates, methods, status classes, decisions and
reason ids. Never tokens, user ids or raw paths. With ``--workers N`` the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` for its workers and ``/metrics``
aggregates every worker's values (prometheus-client's multiprocess mode;
gauges declare how they aggregate).
"""

from __future__ import annotations

from bisect import bisect_left
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


class _Folder:
    """Registered first: every collection of ``REGISTRY`` folds the tallies (``fold``) before
    the metrics registered after it are read."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        fold()
        return []


REGISTRY.register(_Folder())
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


class _Tally:
    """A counter or histogram child whose updates are plain additions in this process.

    prometheus-client takes a lock and runs several checks per update; on the
    request path the gateway adds to integers instead, and the sums are folded
    into the real child (``fold``) whenever the registry is collected — a
    scrape, ``get_sample_value`` — and every second (``app.py``), so a
    multiprocess scrape lags one worker's updates by at most that.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_sum", "pending")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.pending = 0.0
        bounds = getattr(child, "_upper_bounds", None)
        self._bounds: list[float] | None = list(bounds) if bounds is not None else None
        self._counts = [0] * len(bounds) if bounds is not None else []
        self._sum = 0.0

    def inc(self, amount: float = 1) -> None:
        self.pending += amount

    def observe(self, amount: float) -> None:
        """A histogram observation: counted in the first bucket whose upper bound is >= amount."""
        assert self._bounds is not None
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def fold(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self._child.inc(amount)
        if self._sum or any(self._counts):
            counts, total = self._counts, self._sum
            self._counts, self._sum = [0] * len(counts), 0.0
            for index, count in enumerate(counts):
                if count:
                    self._child._buckets[index].inc(count)
            self._child._sum.inc(total)


class _InFlight:
    """``requests_in_flight`` kept as an integer, set on the gauge when folded."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


IN_FLIGHT_NOW = _InFlight()
_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}
_TALLIES: list[_Tally] = []


def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, memoised: label sets are bounded. Counter and histogram
    children come back as tallies (plain additions, folded into the registry when it is read)."""
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = metric.labels(*labels)
        if isinstance(metric, Counter | Histogram):
            found = _Tally(found)
            _TALLIES.append(found)
        _CHILDREN[key] = found
    return found


def fold() -> None:
    """Move every tally's pending updates into prometheus-client (idempotent, cheap when idle)."""
    IN_FLIGHT.set(IN_FLIGHT_NOW.value)
    for tally in _TALLIES:
        tally.fold()


_REQUEST_CHILDREN: dict[tuple[str, str, int, str, str], tuple[Any, Any, Any]] = {}


def request_done(route: str, method: str, status: int, decision: str, reason_id: str, seconds: float) -> None:
    """Count one handled request: ``requests_total``, ``request_duration_seconds`` and
    ``decisions_total``, their tallies found with one dict lookup per request."""
    key = (route, method, status // 100, decision, reason_id)
    found = _REQUEST_CHILDREN.get(key)
    if found is None:
        found = _REQUEST_CHILDREN[key] = (
            child(REQUESTS, route, method, status_class(status), decision),
            child(REQUEST_DURATION, route, decision),
            child(DECISIONS, reason_id),
        )
    found[0].pending += 1
    found[1].observe(seconds)
    found[2].pending += 1


def status_class(status: int) -> str:
    """``404`` → ``"4xx"``."""
    return f"{status // 100}xx"


def exposition(multiprocess_dir: str | None = None) -> bytes:
    """The registry in Prometheus text format; with ``multiprocess_dir``, every worker's values."""
    if multiprocess_dir is None:
        return generate_latest(REGISTRY)
    fold()  # this worker's own updates, at once; the others' within a second
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
