"""kagent's response hooks: what kagent's UI reads from answers that kagent fills from its own share tables.

Behind the gateway kagent's ``session_share`` tables stay empty, so the
fields its UI reads about sharing are filled here (kagent-dev/kagent,
release/v0.10.x):

* ``read_only_flag`` — ``GET /api/sessions/{id}`` answers
  ``{"error": false, "data": {"session": …, "events": …, "read_only"?: bool}}``
  (``go/core/internal/httpserver/handlers/sessions.go`` ``SessionResponse``);
  the UI disables its composer when ``data.read_only === true``
  (``ui/src/components/chat/ChatInterface.tsx``). On an answer served through
  a share the gateway sets ``data.read_only`` to the share's mode.
* ``shared_sessions`` — the sidebar, ``GET /api/sessions/agent/{namespace}/{name}``,
  lists the caller's sessions of that agent plus the sessions of others they
  opened through a share, each with ``share_token`` and ``share_read_only``
  (``go/core/internal/database/queries/sessions.sql`` ``ListSessionsForAgent``:
  one share per session, read-write before read-only, then newest; sessions
  whose ``source`` is ``agent`` left out; newest activity first). The UI links
  such a row to ``/agents/{ns}/{name}/chat/{id}?share={share_token}``
  (``ui/src/components/sidebars/ChatItem.tsx``). The gateway adds them from its
  access records; only a share whose token it can show (``shares.token_storage:
  encrypted``) makes a row — without the token the row's link would open
  nothing, so with hashed storage opened shares are not listed.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from gateway.profiles.hooks import HookContext, ResponseHook


def _envelope(body: bytes) -> dict[str, Any] | None:
    """kagent's ``{"error": false, "data": {...}}`` success envelope, or ``None``."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        return data
    return None


async def read_only_flag(ctx: HookContext, body: bytes) -> bytes:
    """Set ``data.read_only`` on a session served through a share; other answers unchanged."""
    share = ctx.decision.share
    if not ctx.decision.shared or share is None:
        return body
    envelope = _envelope(body)
    if envelope is None:
        return body
    envelope["data"]["read_only"] = share.read_only
    return json.dumps(envelope, separators=(",", ":")).encode()


MAX_OPENED = 100  # opened shares looked at per sidebar answer (most recently opened first)


def python_identifier(namespace: str, name: str) -> str:
    """kagent's agent id for ``namespace/name`` (``go/core/internal/utils/common.go``
    ``ConvertToPythonIdentifier``: ``-`` → ``_``, ``/`` → ``__NS__``)."""
    return f"{namespace}/{name}".replace("-", "_").replace("/", "__NS__")


async def shared_sessions(ctx: HookContext, body: bytes) -> bytes:
    """Add the sessions the caller opened through a share to kagent's sidebar listing."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return body
    user = ctx.caller.user_id
    if user is None or not isinstance(envelope, dict) or envelope.get("error") is not False:
        return body
    rows = envelope.get("data", [])  # Go's omitempty drops an empty list
    if not isinstance(rows, list):
        return body
    listed = {(r.get("id"), r.get("user_id")) for r in rows if isinstance(r, dict)}
    best: dict[str, tuple[Any, str]] = {}
    for share, token in (await ctx.opened_shares(user))[:MAX_OPENED]:
        if token is None or share.owner_id == user:
            continue
        held = best.get(share.session_id)
        if held is None or (held[0].read_only, -held[0].created_at) > (share.read_only, -share.created_at):
            best[share.session_id] = (share, token)
    agent_id = python_identifier(ctx.params.get("namespace", ""), ctx.params.get("name", ""))
    added = False
    for session_id, (share, token) in best.items():
        if (session_id, share.owner_id) in listed:
            continue
        session = await _session_as_owner(ctx, session_id, share.owner_id)
        if session is None or session.get("agent_id") != agent_id or session.get("source") == "agent":
            continue
        rows.append({**session, "share_token": token, "share_read_only": share.read_only})
        added = True
    if not added:
        return body
    envelope["data"] = rows
    rows.sort(key=lambda r: (str(r.get("updated_at") or ""), str(r.get("created_at") or "")), reverse=True)
    return json.dumps(envelope, separators=(",", ":")).encode()


async def _session_as_owner(ctx: HookContext, session_id: str, owner: str) -> dict[str, Any] | None:
    """kagent's session row, read as its owner (``?limit=1``: the events are not needed)."""
    status, raw = await ctx.fetch_as("GET", f"/api/sessions/{quote(session_id, safe='')}?limit=1", owner)
    envelope = _envelope(raw) if 200 <= status < 300 else None
    session = envelope["data"].get("session") if envelope is not None else None
    return session if isinstance(session, dict) else None


RESPONSE_HOOKS: dict[str, ResponseHook] = {
    "read_only_flag": read_only_flag,
    "shared_sessions": shared_sessions,
}
