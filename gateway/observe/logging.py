"""structlog configuration: JSON (or console on a TTY) with share tokens redacted everywhere."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

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


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact tokens from every string value of an event."""
    for key, value in event_dict.items():
        if key == "share_token":
            event_dict[key] = REDACTED
        elif value is not None and not isinstance(value, int | float | bool):
            event_dict[key] = _redact_value(value)
    return event_dict


def _stdlib_logger_name(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger_name"] = record.name
    return event_dict


def _orjson_dumps(obj: Any, **_kw: Any) -> bytes:
    return orjson.dumps(obj, default=str)


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog (JSON lines, or console on a TTY) and route stdlib logging through it.

    The gateway's own events take structlog's fast path (filtering bound
    logger, orjson, one write per line); aiohttp's and asyncio's stdlib
    records go through the same processors via ``ProcessorFormatter``, so
    redaction applies to every line either way.
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
        structlog.configure(
            processors=[*shared, structlog.processors.JSONRenderer(serializer=_orjson_dumps)],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
            cache_logger_on_first_use=True,
        )
        renderer = structlog.processors.JSONRenderer()
    handler = logging.StreamHandler(sys.stderr)
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
