"""sideshow's hooks: MCP tools classified, session listings with ``shared``, board-wide answers cut down.

Sources (modem-dev/sideshow, PR #261, research/sideshow.md §1):
``server/app.ts`` (REST answers: ``surfaceMeta``, ``writeResult``, comments
as ``{comments, lastSeq}``, ``POST /api/assets`` answers the asset's
metadata with ``sessionId``), ``server/mcpHttp.ts`` (``callTool``: each tool's
arguments, and its result as one JSON text content), ``server/mcpSpec.ts``
(tool names).

Answer hooks (``RESPONSE_HOOKS``, for 2xx JSON answers):

* ``sessions``: ``GET /api/sessions`` (a JSON list of sessions) keeps the
  sessions the caller owns, each with ``shared`` (public read on or off);
* ``owned_only``: a list of posts, or ``{"comments": [...]}``, keeps the items
  whose ``sessionId`` is a session of the user the request was forwarded as
  (board-wide ``GET /api/posts/recent``, ``GET /api/comments`` without a
  session), and learns their bindings;
* ``learn``: learns post, comment and asset bindings (``id`` → ``sessionId``);
* ``viewer_config`` (HTML): a viewer page served through a share opens in
  sideshow's one-session, read-only mode;
* ``published``: a write's answer (REST, or an MCP tool result) names the
  session it went to: learned, and recorded as the user's when new (a publish
  or upload without ``session`` creates one). An answer naming another user's
  session is never relayed (502).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import GatewayError, JsonRpcError
from gateway.models import Action, Named
from gateway.pipeline.locate import pairs_in
from gateway.profiles.hooks import HookContext, ResponseHook, html

SESSION = "sessionId"  # the field naming a post's, comment's or asset's session
UNEXPECTED = "upstream listing has an unexpected shape"

# MCP tools (server/mcpSpec.ts names; server/mcpHttp.ts callTool arguments), by what they touch:
# an optional session (absent: a new session is created), a required session, or a post id.
_PUBLISH = frozenset({"publish_post", "publish_surface", "publish_snippet", "upload_asset"})
_LIST = frozenset({"list_posts", "list_surfaces", "list_snippets"})
_BY_ID = {  # tool → (argument names holding the post id, action)
    "update_post": (("id",), Action.WRITE),
    "update_surface": (("id",), Action.WRITE),
    "update_snippet": (("id",), Action.WRITE),
    "get_post": (("id",), Action.READ),
    "reply_to_user": (("postId", "surfaceId"), Action.WRITE),
    "add_surface": (("postId",), Action.WRITE),
    "edit_surface": (("postId",), Action.WRITE),
    "remove_surface": (("postId",), Action.WRITE),
    "reorder_surfaces": (("postId",), Action.WRITE),
}
_NO_SESSION = frozenset({"get_design_guide"})
_PROTOCOL = frozenset({"initialize", "ping", "tools/list"})


def _refuse(
    request_id: Any, message: str, reason_id: str, code: int = -32602, status: int = 403
) -> JsonRpcError:
    return JsonRpcError(message, code=code, request_id=request_id, reason_id=reason_id, status=status)


def classify_mcp(body: Any) -> Named:
    """What one MCP JSON-RPC request touches, and its action (``session: call``).

    * ``initialize``, ``ping``, ``tools/list``, notifications, ``get_design_guide``:
      no session (the caller's own, a share never applies);
    * ``publish_*``, ``upload_asset``: write; ``session`` if a string, else a new session;
    * ``wait_for_feedback``: a write (it advances the agent's feedback cursor,
      ``waitForComments`` with ``author: "user"``), of its required ``session``;
    * ``list_*``: read of its required ``session`` (without one it lists every session);
    * post-id tools (``update_*``, ``get_post``, ``reply_to_user``, ``*_surface(s)``):
      the post's session, read for ``get_post``, write otherwise.

    Refused (``JsonRpcError``, echoing the request id): a body that is not one
    JSON-RPC object (sideshow refuses batches too); ``wait_for_feedback`` or
    ``list_*`` without a session (they would read every session: a session-less
    ``wait_for_feedback`` waits on all of them, ``String(args.session ?? "")``);
    a post-id tool whose id is not a string; ``send_test_post`` (its welcome
    session is one per board); unknown tools and methods.
    """
    if not isinstance(body, dict):
        raise _refuse(None, "request must be one JSON-RPC object", "mcp_bad_body", code=-32600, status=400)
    request_id = body.get("id")
    method = body.get("method")
    if method in _PROTOCOL or (isinstance(method, str) and method.startswith("notifications/")):
        return Named(action=Action.OWNER_ONLY)
    if method != "tools/call":
        raise _refuse(request_id, f"method not found: {method}", "mcp_method_unknown", code=-32601)
    params = body.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    args = params.get("arguments", {}) if isinstance(params, dict) else None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _refuse(request_id, "tool arguments must be an object", "mcp_bad_body", status=400)
    session = args.get("session")
    if name in _NO_SESSION:
        return Named(action=Action.OWNER_ONLY)
    if name in _PUBLISH:
        return Named(sessions=(session,) if isinstance(session, str) else (), action=Action.WRITE)
    if name == "wait_for_feedback" or name in _LIST:
        if not isinstance(session, str) or not session:
            raise _refuse(request_id, f"{name} needs a session", "mcp_unscoped")
        return Named(sessions=(session,), action=Action.WRITE if name == "wait_for_feedback" else Action.READ)
    if isinstance(name, str) and name in _BY_ID:
        fields, action = _BY_ID[name]
        ids = [args[f] for f in fields if f in args and args[f] is not None]
        if not ids or not all(isinstance(i, str) and i for i in ids):
            raise _refuse(request_id, f"{name} needs a post id", "mcp_bad_body", status=400)
        return Named(objects=tuple(dict.fromkeys(ids)), action=action)
    raise _refuse(request_id, f"tool not available through the gateway: {name}", "mcp_tool_refused")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _tool_results(data: Any) -> list[Any]:
    """An MCP answer's decoded text contents (``{"result": {"content": [{"type": "text", "text": …}]}}``)."""
    result = data.get("result") if isinstance(data, dict) else None
    content = result.get("content") if isinstance(result, dict) else None
    if not isinstance(content, list):
        return []
    found = []
    for item in content:
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            decoded = _decode(item["text"].encode())
            if decoded is not None:
                found.append(decoded)
    return found


async def learn(ctx: HookContext, raw: bytes) -> bytes:
    """Learn object bindings from a JSON answer (or an MCP tool result); the answer is unchanged."""
    if ctx.sessions is not None:
        data = _decode(raw)
        for item in [data, *_tool_results(data)]:
            await ctx.sessions.learn(pairs_in(item, SESSION))
    return raw


async def published(ctx: HookContext, raw: bytes) -> bytes:
    """Learn the answer's bindings; record each session it names as the user's (new ones only).

    The user is whoever the request was forwarded as (a read-write share
    holder's writes go to the share owner's session). Raises ``GatewayError``
    502 when the answer names a session another user owns.
    """
    sessions = ctx.sessions
    user = ctx.decision.effective_user
    if sessions is None:
        return raw
    data = _decode(raw)
    pairs = [pair for item in [data, *_tool_results(data)] for pair in pairs_in(item, SESSION)]
    await sessions.learn(pairs)
    if user is not None:
        for session_id in dict.fromkeys(s for _, s in pairs):
            if await sessions.record_owner(session_id, user) != user:
                raise GatewayError(
                    "upstream answered with another user's session", reason_id="session_taken", status=502
                )
    return raw


def _owned(owners: dict[str, str | None], session_id: Any, user: str | None) -> bool:
    return user is not None and isinstance(session_id, str) and owners.get(session_id) == user


async def owned_only(ctx: HookContext, raw: bytes) -> bytes:
    """Keep the posts or comments of the user's sessions (a JSON list, or ``{"comments": [...]}``)."""
    sessions, user = ctx.sessions, ctx.decision.effective_user
    if sessions is None or not raw:  # not recorded here, or a HEAD answer
        return raw
    data = _decode(raw)
    items = data.get("comments") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise GatewayError(UNEXPECTED, reason_id="owner_listing_unparsable", status=502)
    ids = list({i[SESSION] for i in items if isinstance(i, dict) and isinstance(i.get(SESSION), str)})
    owners = await sessions.owners_of(ids)
    kept = [i for i in items if isinstance(i, dict) and _owned(owners, i.get(SESSION), user)]
    await sessions.learn(pairs_in(kept, SESSION))
    out = {**data, "comments": kept} if isinstance(data, dict) else kept
    return json.dumps(out, separators=(",", ":")).encode()


async def session_list(ctx: HookContext, raw: bytes) -> bytes:
    """``GET /api/sessions``: the caller's sessions only, each with ``shared`` (public read on/off)."""
    sessions, user = ctx.sessions, ctx.caller.user_id
    if sessions is None or not raw:  # not recorded here, or a HEAD answer
        return raw
    data = _decode(raw)
    if not isinstance(data, list):
        raise GatewayError(UNEXPECTED, reason_id="owner_listing_unparsable", status=502)
    ids = [s["id"] for s in data if isinstance(s, dict) and isinstance(s.get("id"), str)]
    owners = await sessions.owners_of(ids)
    mine = [s for s in data if isinstance(s, dict) and _owned(owners, s.get("id"), user)]
    public = await sessions.public([s["id"] for s in mine])
    return json.dumps([{**s, "shared": s["id"] in public} for s in mine], separators=(",", ":")).encode()


_HEAD_CLOSE = b"</head>"


@html
async def viewer_config(ctx: HookContext, page: bytes) -> bytes:
    """The viewer page served through a share (or public read) opens in sideshow's one-session mode.

    sideshow tells its viewer SPA how to behave with globals it injects before
    the page's last ``</head>`` (``server/app.ts`` ``withViewerConfig`` and
    ``injectHead``): ``__SIDESHOW_PUBLIC_READ__ = "session"`` shows one
    session's stream, without the session list (``viewer/src/api.ts``:
    ``layout`` is ``"stream"``), and ``__SIDESHOW_READONLY__`` hides write
    controls and scopes the live feed to ``?session=``. sideshow sets them for
    unauthenticated readers only, and through the gateway every request is
    authenticated, so the gateway sets them itself: both for a read-only share
    (and public read), the one-session layout alone for a read-write share.
    Pages served to their owner are unchanged.
    """
    share = ctx.decision.share
    if not ctx.decision.shared or share is None or not page:  # an owner's page, or a HEAD answer
        return page
    config = ('window.__SIDESHOW_READONLY__=true;window.__SIDESHOW_PUBLIC_READ__="session";'
              if share.read_only else 'window.__SIDESHOW_PUBLIC_READ__="session";')
    script = f"<script>{config}</script>".encode()
    at = page.rfind(_HEAD_CLOSE)
    return page[:at] + script + page[at:] if at >= 0 else script + page


RESPONSE_HOOKS: dict[str, ResponseHook] = {
    "viewer_config": viewer_config,
    "sessions": session_list,
    "owned_only": owned_only,
    "learn": learn,
    "published": published,
}
REQUEST_CLASSIFIER = classify_mcp
