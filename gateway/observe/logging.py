"""structlog configuration: JSON (or console on a TTY) with share tokens redacted everywhere."""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

# A share= query value, an X-Share-Token header value, or a token in a share
# API path: whatever text carries them, only the redacted form is ever logged.
_QUERY = re.compile(r"((?:^|[?&;\s])share=)[^&\s\"']+", re.IGNORECASE)
_HEADER = re.compile(r"(x[-_]share[-_]token[\"']?\s*[:=,]\s*[\"']?)[^\"'\s,}]+", re.IGNORECASE)
_SHARE_PATH = re.compile(r"(/shares/)(?!sh_)[A-Za-z0-9_-]{16,}")
REDACTED = "[redacted]"
_TOKEN_FORMS = ("share=", "share-token", "share_token", "/shares/")


def redact(text: str) -> str:
    """Remove share tokens from free text (URLs, header dumps, exception messages)."""
    text = _QUERY.sub(rf"\1{REDACTED}", text)
    text = _HEADER.sub(rf"\1{REDACTED}", text)
    return _SHARE_PATH.sub(rf"\1{REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        # Fast path: only text with one of the three token-carrying forms is scanned.
        if "hare" in value or "HARE" in value:
            lowered = value.lower()
            if (
                "share=" in lowered
                or "share-token" in lowered
                or "share_token" in lowered
                or "/shares/" in lowered
            ):
                return redact(value)
        return value
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


_SCALARS = frozenset({int, float, bool, type(None)})
# Fields whose values are the gateway's own constants (``no_share_token``) or route templates,
# never request data: not scanned.
_CODE_FIELDS = frozenset({"level", "logger_name", "reason_id", "decision", "route", "method"})


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact tokens from every string value of an event.

    Runs on every access line: plain strings without ``hare``/``HARE`` and
    scalars are passed over with one type check each.
    """
    for key, value in event_dict.items():
        kind = type(value)
        if kind is str:
            if key in _CODE_FIELDS:
                continue
            if "hare" in value or "HARE" in value:
                event_dict[key] = _redact_value(value)
        elif kind not in _SCALARS:
            event_dict[key] = _redact_value(value)
    if "share_token" in event_dict:
        event_dict["share_token"] = REDACTED
    return event_dict


_SECOND: list[Any] = [None, ""]  # the current second and its ISO 8601 text


def _iso_now() -> str:
    """``2026-11-22T05:19:22.846747Z``, as ``TimeStamper(fmt="iso", utc=True)`` writes it;
    the date and time of day are formatted once per second."""
    now = time.time()
    second = int(now)
    if second != _SECOND[0]:
        _SECOND[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_SECOND[1]}.{int((now - second) * 1_000_000):06d}Z"


def json_event(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """JSON mode's one processor: ``level``, ``timestamp``, a formatted ``exc_info`` and redaction
    (``add_log_level``, ``TimeStamper``, ``format_exc_info`` and ``redact_processor`` in one call)."""
    event_dict["level"] = _LEVELS.get(method_name, method_name)
    event_dict["timestamp"] = _iso_now()
    if "exc_info" in event_dict:
        event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
    return redact_processor(logger, method_name, event_dict)


_LEVELS = {"warn": "warning", "exception": "error"}  # structlog's add_log_level names


def _stdlib_logger_name(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger_name"] = record.name
    return event_dict


def _orjson_dumps(obj: Any, **_kw: Any) -> bytes:
    return orjson.dumps(obj, default=str)


class LineWriter:
    """Log lines gathered in memory and written in batches, off the request path.

    ``msg(line)`` (structlog's logger interface; every level method is the
    same) appends one rendered line; the batch is written to ``stream`` when
    it reaches ``max_bytes``, ``interval`` seconds after its first line (a
    timer on the running event loop), or at once when no event loop runs in
    the calling thread. ``flush()`` writes what is pending: at shutdown
    (``serve`` calls it after the last request), at interpreter exit
    (``atexit``), and before a ``critical`` line. A process killed with
    SIGKILL loses at most ``interval`` seconds of lines. Thread-safe.
    """

    def __init__(self, stream: BinaryIO, *, max_bytes: int = 64 * 1024, interval: float = 0.1) -> None:
        self.stream = stream
        self._max = max_bytes
        self._interval = interval
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def msg(self, message: bytes | str) -> None:
        line = (message.encode() if isinstance(message, str) else message) + b"\n"
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            due = self._size >= self._max
        if due:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._timer is None or self._loop is not loop:  # none yet, or one on a loop now gone
            self._loop = loop
            self._timer = loop.call_later(self._interval, self.flush)

    log = debug = info = warn = warning = err = error = exception = msg

    def critical(self, message: bytes | str) -> None:
        self.msg(message)
        self.flush()

    fatal = critical

    def flush(self) -> None:
        """Write every pending line now."""
        with self._lock:
            lines, self._lines, self._size = self._lines, [], 0
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if lines:
            try:
                self.stream.write(b"".join(lines))
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed: nowhere left to write
                pass


class _LineHandler(logging.Handler):
    """stdlib records (aiohttp, asyncio) rendered by structlog into the same ``LineWriter``."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.msg(self.format(record))
        except Exception:  # logging must never raise into its caller
            self.handleError(record)


_WRITER: LineWriter | None = None


def flush() -> None:
    """Write every buffered log line (JSON mode); a no-op otherwise."""
    if _WRITER is not None:
        _WRITER.flush()


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog (JSON lines, or console on a TTY) and route stdlib logging through it.

    The gateway's own events take structlog's fast path (filtering bound
    logger, orjson); in JSON mode every line, the gateway's and the stdlib's,
    goes through one ``LineWriter`` that writes in batches off the request
    path. aiohttp's and asyncio's stdlib records go through the same
    processors via ``ProcessorFormatter``, so redaction applies to every line
    either way.
    """
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    numeric = logging.getLevelName(level.upper())
    if use_console:
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            cache_logger_on_first_use=True,
        )
        renderer: Any = structlog.dev.ConsoleRenderer()
    else:
        global _WRITER
        if _WRITER is None:
            _WRITER = LineWriter(sys.stderr.buffer)
            atexit.register(_WRITER.flush)
        else:
            _WRITER.flush()  # what was written so far goes where it was meant to
            _WRITER.stream = sys.stderr.buffer  # stderr may have been replaced since
        writer = _WRITER
        structlog.configure(
            processors=[json_event, structlog.processors.JSONRenderer(serializer=_orjson_dumps)],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=lambda *_args: writer,
            cache_logger_on_first_use=True,
        )
        renderer = structlog.processors.JSONRenderer()
    handler: logging.Handler = _LineHandler(_WRITER) if _WRITER is not None and not use_console else (
        logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared[:-1], _stdlib_logger_name, redact_processor],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print raw URLs; the gateway writes its own.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    """A structlog logger whose events carry ``logger_name=name``."""
    return structlog.get_logger(logger_name=name)  # bound lazily: configure() may come later
