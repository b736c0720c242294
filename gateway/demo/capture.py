"""An ASGI wrapper that records every HTTP request a demo upstream receives, for tests to read back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def capturing(app: ASGIApp, note: Callable[[Scope], dict[str, Any]] | None = None) -> ASGIApp:
    """``app`` recording each HTTP request (method, raw path, query, headers, body, plus what
    ``note`` adds) before the app runs; ``GET /_demo/requests`` lists them, ``DELETE`` clears them."""
    captured: list[dict[str, Any]] = []

    async def capture(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["path"] == "/_demo/requests":
            if scope["method"] == "DELETE":
                captured.clear()
            await JSONResponse(captured)(scope, receive, send)
            return
        # Recorded before the app runs, so a request is visible here before its response is sent.
        record: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": "",
            **(note(scope) if note is not None else {}),
        }
        captured.append(record)

        async def tap() -> Message:
            event = await receive()
            record["body"] += event.get("body", b"").decode("utf-8", "replace")
            return event

        await app(scope, tap, send)

    return capture
