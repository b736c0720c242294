"""structlog configuration: JSON (or console on a TTY) with share tokens redacted everywhere."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# A share= query value, an X-Share-Token header value, or a token in a share
# API path: whatever text carries them, only the redacted form is ever logged.
_QUERY = re.compile(r"((?:^|[?&;\s])share=)[^&\s\"']+", re.IGNORECASE)
_HEADER = re.compile(r"(x[-_]share[-_]token[\"']?\s*[:=,]\s*[\"']?)[^\"'\s,}]+", re.IGNORECASE)
_SHARE_PATH = re.compile(r"(/shares/)(?!sh_)[A-Za-z0-9_-]{16,}")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Remove share tokens from free text (URLs, header dumps, exception messages)."""
    text = _QUERY.sub(rf"\1{REDACTED}", text)
    text = _HEADER.sub(rf"\1{REDACTED}", text)
    return _SHARE_PATH.sub(rf"\1{REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
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
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and route stdlib logging (aiohttp, asyncio) through it."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print raw URLs; the gateway writes its own.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
