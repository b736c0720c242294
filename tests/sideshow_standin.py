"""A stand-in for sideshow's server (modem-dev/sideshow at PR #261, 0.13.0), written from its source as
/work/shared/research/sideshow.md describes it (read, not copied); only the routes the profile classifies:

- server/app.ts, ``// --- auth ---`` middleware: one deploy token (``SIDESHOW_TOKEN``), accepted as
  ``Authorization: Bearer <token>``, cookie ``sideshow_key=<token>`` or ``?key=<token>`` (a matching
  ``?key=`` also answers ``Set-Cookie: sideshow_key=…; Max-Age=7776000; Path=/; HttpOnly;
  SameSite=Lax``); ``/guide``, ``/setup``, ``/agent-howto`` always open; otherwise 401, JSON
  ``{"error": "unauthorized — send Authorization: Bearer <token>"}`` under ``/api`` and ``/mcp``,
  text elsewhere. Every answer carries ``Referrer-Policy: no-referrer`` (#253).
- server/app.ts, ``// --- sessions ---``: ``GET /api/sessions`` answers a bare JSON list of every
  session with ``postCount``/``surfaceCount``; ``POST /api/sessions`` (``{agent?, title?, cwd?}``)
  answers 201 with the Session itself; ``PATCH /api/sessions/:id`` needs ``{title: string}`` (400
  ``body must include "title" string``), 404 ``{"error": "session not found"}``; ``DELETE`` answers
  ``{"ok": true}``; ``GET /api/sessions/:id/posts`` (legacy ``/surfaces``, ``/snippets``) lists the
  session's posts' metadata; ``GET``/``POST /api/sessions/:id/trace`` (``{steps: [...], reset?}``,
  400 ``body must include "steps" array``). There is no ``GET /api/sessions/:id``.
- server/app.ts ``publishSurface``: ``POST /api/posts`` with body ``session`` (else a new session),
  ``title``, ``surfaces``; answers 201 with the write result (``id``, ``sessionId``, …).
  ``GET /api/posts/recent`` lists posts of every session; ``GET /api/posts/:id`` one post.
- server/types.ts ``newId``: 64 random bits as 11 url-safe base64 characters (``-`` and ``_`` included).
- Viewer pages (``/``, ``/session/:id``, ``/session/:id/p/:postId``): the SPA's HTML; ``/p/:id`` (and
  legacy ``/s/:id``): 404 ``Surface not found`` for an unknown post, else the viewer HTML. Each page
  passes through ``withViewerConfig``, which puts a ``<script>`` of viewer globals before the page's
  last ``</head>`` (``injectHead``): ``__SIDESHOW_BASE_PATH__`` always, ``__SIDESHOW_READONLY__`` and
  ``__SIDESHOW_PUBLIC_READ__`` only for unauthenticated readers in public-read mode (never here: the
  gateway always authenticates);
  ``GET /api/kits``, ``GET /api/theme``; ``PUT /api/theme`` ``{id}`` (400 ``unknown theme id``),
  broadcasting ``theme-changed``.
- server/app.ts ``reviseSurface`` / ``remove``: ``PUT``/``PATCH``/``DELETE /api/posts/:id`` (aliases
  ``/api/surfaces/:id``, ``/api/snippets/:id``), 404 ``surface not found``; writes answer
  ``writeResult`` plus ``userFeedback`` (``collectFeedback``: user comments after the session's
  ``agentSeq``, which it advances). ``POST /api/posts/:id/surfaces`` adds a part; ``GET
  /api/posts/:id/viewer``, ``/markdown`` and ``/surfaces/:target/raw`` (35aaf4b4) read one post.
- server/app.ts ``// --- comments ---``: ``POST /api/comments`` ``{text, surface (legacy snippet),
  author?}``: the author is ``user``/``surface`` only with ``sec-fetch-site: same-origin`` (#254), else
  the session's agent; ``GET /api/comments?session=&surface=&author=&after=&wait=`` answers
  ``{comments, lastSeq}`` and, with ``author=user`` and ``session``, ``markAgentSeen`` (the agent's
  feedback cursor; ``waitForComments``); ``DELETE /api/comments/:id``.
- server/app.ts ``// --- assets ---``: ``POST /api/assets``, a JSON envelope ``{data (base64),
  contentType, session?}`` or raw bytes with ``?session=``; no session → a new one; answers the
  asset's metadata with ``sessionId`` and ``url``. ``GET /a/:id`` serves the bytes.
- server/app.ts ``// --- live feed ---`` and server/events.ts: ``GET /api/events`` is SSE: ``event:
  hello``, then one ``data:`` JSON FeedEvent per event; with ``?session=`` only that session's events
  (``eventSessionId``: ``sessionId``, or ``id`` for ``session-*``), ``theme-changed`` dropped.
- server/mcpHttp.ts ``registerMcp``: ``POST /mcp`` JSON-RPC (no batches: 400), ``initialize``,
  ``tools/list``, ``tools/call`` answering ``{content: [{type: "text", text: <JSON>}]}`` (errors:
  ``isError``); tools ``publish_post``, ``update_post``, ``get_post``, ``list_posts``,
  ``wait_for_feedback`` (``author: "user"``: advances ``agentSeq``), ``reply_to_user``,
  ``upload_asset``, ``get_design_guide``.

Each request's method, path, query and headers are kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

UNAUTHORIZED_API = "unauthorized — send Authorization: Bearer <token>"
OPEN = frozenset({"/guide", "/setup", "/agent-howto"})
VIEWER = ('<!doctype html><html><head><title>sideshow</title><script>window.__SIDESHOW_BASE_PATH__="";</script>'
          "</head><body><div id=app></div></body></html>")
THEMES = ("paper", "ink")
MAX_WAIT_SECONDS = 300.0  # server/app.ts: a comment long poll's longest wait


def new_id() -> str:
    """server/types.ts ``newId``: 64 random bits, url-safe base64 without padding (11 characters)."""
    return base64.urlsafe_b64encode(os.urandom(8)).rstrip(b"=").decode()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def event_session(event: dict[str, Any]) -> str | None:
    """server/events.ts ``eventSessionId``."""
    if isinstance(event.get("sessionId"), str):
        return str(event["sessionId"])
    if str(event.get("type", "")).startswith("session-"):
        return str(event["id"])
    return None


@dataclass
class StandIn:
    """sideshow with one deploy token; ``None``: every route open, as sideshow without SIDESHOW_TOKEN."""

    token: str | None = "deploy-token"
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    theme: str = "paper"
    requests: list[dict[str, Any]] = field(default_factory=list)
    subscribers: list[asyncio.Queue[dict[str, Any]]] = field(default_factory=list)
    seq: int = 0
    waiting: int = 0  # comment long polls being held

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        for path in ("/", "/session/{id}", "/session/{id}/p/{post}", "/session/{id}/s/{post}"):
            r.add_get(path, self._viewer)
        r.add_get("/p/{id}", self._post_page)
        r.add_get("/s/{id}", self._post_page)
        r.add_get("/guide", self._text)
        r.add_get("/api/kits", self._kits)
        r.add_get("/api/theme", self._theme)
        r.add_put("/api/theme", self._set_theme)
        r.add_get("/api/sessions", self._list)
        r.add_post("/api/sessions", self._create)
        r.add_patch("/api/sessions/{id}", self._rename)
        r.add_delete("/api/sessions/{id}", self._delete)
        for alias in ("posts", "surfaces", "snippets"):
            r.add_get(f"/api/sessions/{{id}}/{alias}", self._session_posts)
            r.add_post(f"/api/{alias}", self._publish)
            r.add_get(f"/api/{alias}/{{id}}", self._post)
            r.add_put(f"/api/{alias}/{{id}}", self._revise)
            r.add_delete(f"/api/{alias}/{{id}}", self._remove)
        r.add_get("/api/posts/recent", self._recent)
        r.add_patch("/api/posts/{id}", self._revise)
        r.add_post("/api/posts/{id}/surfaces", self._add_part)
        r.add_get("/api/posts/{id}/viewer", self._post)
        r.add_get("/api/posts/{id}/markdown", self._markdown)
        r.add_get("/api/posts/{id}/surfaces/{target}/raw", self._markdown)
        r.add_get("/api/sessions/{id}/trace", self._trace)
        r.add_post("/api/sessions/{id}/trace", self._add_trace)
        r.add_get("/api/comments", self._list_comments)
        r.add_post("/api/comments", self._add_comment)
        r.add_delete("/api/comments/{id}", self._delete_comment)
        r.add_post("/api/assets", self._upload)
        r.add_get("/a/{id}", self._asset)
        r.add_get("/api/events", self._events)
        r.add_post("/mcp", self._mcp)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append({
            "method": request.method, "path": request.path, "query": dict(request.query),
            "headers": dict(request.headers),
        })
        response: web.StreamResponse
        set_cookie = False
        authenticated = self.token is None or request.path in OPEN or (
            request.headers.get("Authorization") == f"Bearer {self.token}"
            or request.cookies.get("sideshow_key") == self.token
        )
        if authenticated:
            response = await handler(request)
        elif request.query.get("key") == self.token:
            set_cookie = True
            response = await handler(request)
        elif request.path.startswith("/api") or request.path == "/mcp":
            response = web.json_response({"error": UNAUTHORIZED_API}, status=401)
        else:
            response = web.Response(text="unauthorized — open this page as /?key=<your token>", status=401)
        if set_cookie:
            response.set_cookie("sideshow_key", str(self.token), max_age=7776000, path="/",
                                httponly=True, samesite="Lax")
        if not response.prepared:
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    # -- events (server/events.ts EventBus) --

    def broadcast(self, event: dict[str, Any]) -> None:
        for queue in self.subscribers:
            queue.put_nowait(event)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        session = request.query.get("session")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "Referrer-Policy": "no-referrer"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.append(queue)
        try:
            await response.write(b"event: hello\ndata: {}\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    await response.write(b"event: ping\ndata: {}\n\n")
                    continue
                if session is not None and event_session(event) != session:
                    continue  # scoped streams drop other sessions and theme-changed
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self.subscribers.remove(queue)

    # -- pages, theme --

    async def _viewer(self, request: web.Request) -> web.Response:
        return web.Response(text=VIEWER, content_type="text/html")

    async def _post_page(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.posts:
            return web.Response(text="Surface not found", status=404)
        return web.Response(text=VIEWER, content_type="text/html")

    async def _text(self, request: web.Request) -> web.Response:
        return web.Response(text="# sideshow guide\n")

    async def _kits(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _theme(self, request: web.Request) -> web.Response:
        return web.json_response({"id": self.theme, "themes": [{"id": t, "label": t} for t in THEMES]})

    async def _set_theme(self, request: web.Request) -> web.Response:
        body = await _json(request)
        theme = body.get("id") if isinstance(body, dict) else None
        if theme not in THEMES:
            return web.json_response({"error": "unknown theme id"}, status=400)
        self.theme = str(theme)
        self.broadcast({"type": "theme-changed", "id": theme})
        return web.json_response({"id": theme})

    # -- sessions --

    async def _list(self, request: web.Request) -> web.Response:
        counts: dict[str, int] = {}
        for post in self.posts.values():
            counts[post["sessionId"]] = counts.get(post["sessionId"], 0) + 1
        return web.json_response([
            {**s, "postCount": counts.get(s["id"], 0), "surfaceCount": counts.get(s["id"], 0)}
            for s in self.sessions.values()
        ])

    def _new_session(self, body: dict[str, Any]) -> dict[str, Any]:
        stamp = now()
        session: dict[str, Any] = {
            "id": new_id(),
            "agent": body["agent"] if isinstance(body.get("agent"), str) else "agent",
            "title": body["title"] if isinstance(body.get("title"), str) else "Untitled session",
            "cwd": body.get("cwd") if isinstance(body.get("cwd"), str) else None,
            "createdAt": stamp, "lastActiveAt": stamp, "agentSeq": 0,
        }
        self.sessions[session["id"]] = session
        self.broadcast({"type": "session-created", "id": session["id"]})
        return session

    async def _create(self, request: web.Request) -> web.Response:
        body = await _json(request)
        return web.json_response(self._new_session(body if isinstance(body, dict) else {}), status=201)

    async def _rename(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("title"), str):
            return web.json_response({"error": 'body must include "title" string'}, status=400)
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return web.json_response({"error": "session not found"}, status=404)
        session["title"] = body["title"]
        self.broadcast({"type": "session-updated", "id": session["id"]})
        return web.json_response(session)

    async def _delete(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if self.sessions.pop(sid, None) is None:
            return web.json_response({"error": "session not found"}, status=404)
        self.posts = {k: p for k, p in self.posts.items() if p["sessionId"] != sid}
        self.broadcast({"type": "session-deleted", "id": sid})
        return web.json_response({"ok": True})

    async def _session_posts(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.sessions:
            return web.json_response({"error": "session not found"}, status=404)
        return web.json_response([p for p in self.posts.values() if p["sessionId"] == sid])

    async def _trace(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.sessions:
            return web.json_response({"error": "session not found"}, status=404)
        return web.json_response({"steps": self.traces.get(sid, [])})

    async def _add_trace(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.sessions:
            return web.json_response({"error": "session not found"}, status=404)
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("steps"), list):
            return web.json_response({"error": 'body must include "steps" array'}, status=400)
        clean = [{"label": s["label"]} for s in body["steps"] if isinstance(s, dict) and isinstance(s.get("label"), str)]
        steps = ([] if body.get("reset") is True else self.traces.get(sid, [])) + clean
        self.traces[sid] = steps
        self.broadcast({"type": "trace-updated", "sessionId": sid, "count": len(steps)})
        return web.json_response({"ok": True, "added": len(clean), "count": len(steps)})

    # -- posts --

    def _feedback(self, sid: str) -> list[dict[str, Any]] | None:
        """server/app.ts ``collectFeedback``: comments after agentSeq; the cursor advances."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        fresh = [c for c in self.comments if c["sessionId"] == sid and c["seq"] > session["agentSeq"]]
        if not fresh:
            return None
        session["agentSeq"] = fresh[-1]["seq"]
        mine = [{"surfaceId": c["surfaceId"], "text": c["text"]} for c in fresh if c["author"] == "user"]
        return mine or None

    def publish(self, body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, int]:
        """server/app.ts ``publishSurface``: (write result, error, status)."""
        sid = body.get("session")
        if isinstance(sid, str) and sid not in self.sessions:
            return None, f'session "{sid}" not found', 404
        if not isinstance(sid, str):
            sid = self._new_session({"agent": body.get("agent"), "title": body.get("sessionTitle")})["id"]
        stamp = now()
        post: dict[str, Any] = {"id": new_id(), "sessionId": sid, "title": body.get("title") or "Untitled",
                                "createdAt": stamp, "updatedAt": stamp, "version": 1}
        self.posts[post["id"]] = post
        self.broadcast({"type": "post-created", "id": post["id"], "sessionId": sid, "version": 1})
        feedback = self._feedback(sid)
        return {**post, "kinds": ["html"], **({"userFeedback": feedback} if feedback else {})}, None, 201

    async def _publish(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return web.json_response({"error": "invalid JSON body"}, status=400)
        result, error, status = self.publish(body)
        return web.json_response(result if result is not None else {"error": error}, status=status)

    def revise(self, post_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        post = self.posts.get(post_id)
        if post is None:
            return None
        if isinstance(body.get("title"), str):
            post["title"] = body["title"]
        post["version"] += 1
        post["updatedAt"] = now()
        self.broadcast({"type": "post-updated", "id": post_id, "sessionId": post["sessionId"],
                        "version": post["version"]})
        feedback = self._feedback(post["sessionId"])
        return {**post, "kinds": ["html"], **({"userFeedback": feedback} if feedback else {})}

    async def _revise(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return web.json_response({"error": "invalid JSON body"}, status=400)
        result = self.revise(request.match_info["id"], body)
        if result is None:
            return web.json_response({"error": "surface not found"}, status=404)
        return web.json_response(result)

    async def _add_part(self, request: web.Request) -> web.Response:
        result = self.revise(request.match_info["id"], {})
        if result is None:
            return web.json_response({"error": "surface not found"}, status=404)
        return web.json_response(result, status=201)

    async def _remove(self, request: web.Request) -> web.Response:
        post = self.posts.pop(request.match_info["id"], None)
        if post is None:
            return web.json_response({"error": "surface not found"}, status=404)
        self.broadcast({"type": "post-deleted", "id": post["id"], "sessionId": post["sessionId"]})
        return web.json_response({"ok": True})

    async def _recent(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.posts.values()))

    async def _post(self, request: web.Request) -> web.Response:
        post = self.posts.get(request.match_info["id"])
        if post is None:
            return web.json_response({"error": "surface not found"}, status=404)
        return web.json_response(post)

    async def _markdown(self, request: web.Request) -> web.Response:
        post = self.posts.get(request.match_info["id"])
        if post is None:
            return web.json_response({"error": "surface not found"}, status=404)
        return web.Response(text=f"# {post['title']}\n", content_type="text/markdown")

    # -- comments --

    def add_comment(self, text: str, post_id: str, author: str) -> dict[str, Any] | None:
        post = self.posts.get(post_id)
        if post is None:
            return None
        self.seq += 1
        comment = {"id": new_id(), "sessionId": post["sessionId"], "surfaceId": post_id, "author": author,
                   "text": text, "seq": self.seq, "createdAt": now()}
        self.comments.append(comment)
        self.broadcast({"type": "comment-created", "id": comment["id"], "sessionId": post["sessionId"],
                        "surfaceId": post_id, "seq": self.seq})
        return comment

    async def _add_comment(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            return web.json_response({"error": 'body must include non-empty "text" string'}, status=400)
        surface = body["surface"] if isinstance(body.get("surface"), str) else body.get("snippet")
        if not isinstance(surface, str):
            return web.json_response({"error": 'provide a "surface" id'}, status=400)
        post = self.posts.get(surface)
        if post is None:
            return web.json_response({"error": "surface not found"}, status=404)
        author = body.get("author") if isinstance(body.get("author"), str) else "user"
        if author in ("user", "surface") and request.headers.get("sec-fetch-site") != "same-origin":
            author = self.sessions[post["sessionId"]]["agent"]  # #254: only the browser is the user
        comment = self.add_comment(body["text"].strip(), surface, str(author))
        assert comment is not None
        feedback = None if author == "user" else self._feedback(comment["sessionId"])
        return web.json_response({**comment, **({"userFeedback": feedback} if feedback else {})}, status=201)

    async def _delete_comment(self, request: web.Request) -> web.Response:
        found = [c for c in self.comments if c["id"] == request.match_info["id"]]
        if not found:
            return web.json_response({"error": "comment not found"}, status=404)
        self.comments.remove(found[0])
        self.broadcast({"type": "comment-deleted", "id": found[0]["id"], "sessionId": found[0]["sessionId"]})
        return web.json_response({"ok": True})

    def wait_comments(self, session: str | None, surface: str | None, author: str | None,
                      after: int | None, *, mark: bool = True) -> dict[str, Any]:
        """server/app.ts ``waitForComments`` without the wait (``mark=False``: only look)."""
        if after is None and author == "user" and session:
            after = self.sessions[session]["agentSeq"] if session in self.sessions else None
        found = [c for c in self.comments
                 if (not session or c["sessionId"] == session) and (not surface or c["surfaceId"] == surface)
                 and (after is None or c["seq"] > after) and (not author or c["author"] == author)]
        last = found[-1]["seq"] if found else (after or 0)
        if mark and author == "user" and session and found and session in self.sessions:
            self.sessions[session]["agentSeq"] = last  # markAgentSeen
        return {"comments": found, "lastSeq": last}

    async def _list_comments(self, request: web.Request) -> web.Response:
        """server/app.ts ``GET /api/comments``: ``?wait=N`` (at most ``MAX_WAIT_SECONDS``) holds the
        answer until a ``comment-created`` event of that session (and surface) or the timeout, when
        nothing matched at first (``waitForComments``)."""
        q = request.query
        after = q.get("after")
        args = (q.get("session"), q.get("surface") or q.get("snippet"), q.get("author"),
                int(after) if after else None)
        try:
            wait = min(max(float(q.get("wait") or 0), 0.0), MAX_WAIT_SECONDS)
        except ValueError:
            wait = 0.0
        if wait > 0 and not self.wait_comments(*args, mark=False)["comments"]:
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self.subscribers.append(queue)
            self.waiting += 1
            try:
                async with asyncio.timeout(wait):
                    while True:
                        event = await queue.get()
                        if event.get("type") == "comment-created" and (
                            not args[0] or event.get("sessionId") == args[0]) and (
                                not args[1] or event.get("surfaceId") == args[1]):
                            break
            except TimeoutError:
                pass
            finally:
                self.waiting -= 1
                self.subscribers.remove(queue)
        return web.json_response(self.wait_comments(*args))

    # -- assets --

    def put_asset(self, data: bytes, content_type: str, session: str | None) -> tuple[dict[str, Any] | None, int]:
        if session is not None and session not in self.sessions:
            return {"error": f'session "{session}" not found'}, 404
        if session is None:
            session = self._new_session({})["id"]
        asset_id = hashlib.sha256(data).hexdigest()  # server/types.ts hashAssetId: lowercase hex SHA-256
        meta = {"id": asset_id, "sessionId": session, "contentType": content_type, "byteLength": len(data),
                "kind": "image" if content_type.startswith("image/") else "file"}
        self.assets[asset_id] = {**meta, "data": data}
        return meta, 201

    async def _upload(self, request: web.Request) -> web.Response:
        raw = await request.read()
        mime = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        envelope = None
        if mime == "application/json":
            try:
                decoded = json.loads(raw)
                envelope = decoded if isinstance(decoded, dict) and isinstance(decoded.get("data"), str) else None
            except ValueError:
                envelope = None
        if envelope is not None:
            session = envelope["session"] if isinstance(envelope.get("session"), str) else None
            meta, status = self.put_asset(base64.b64decode(envelope["data"]),
                                          str(envelope.get("contentType") or "application/octet-stream"), session)
        else:
            meta, status = self.put_asset(raw, mime or "application/octet-stream", request.query.get("session"))
        assert meta is not None
        if status == 201:
            meta = {**meta, "url": f"http://localhost:8228/a/{meta['id']}"}
        return web.json_response(meta, status=status)

    async def _asset(self, request: web.Request) -> web.Response:
        asset = self.assets.get(request.match_info["id"])
        if asset is None:
            return web.Response(text="Asset not found", status=404)
        return web.Response(body=asset["data"], content_type=asset["contentType"])

    # -- MCP (server/mcpHttp.ts) --

    async def _mcp(self, request: web.Request) -> web.Response:
        try:
            msg = json.loads(await request.read())
        except ValueError:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}},
                                     status=400)
        if isinstance(msg, list):
            return web.json_response({"jsonrpc": "2.0", "id": None,
                                      "error": {"code": -32600, "message": "batch requests are not supported"}},
                                     status=400)
        rid = msg.get("id")
        if msg.get("method") == "initialize":
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {"serverInfo": {"name": "sideshow"}}})
        if msg.get("method") == "tools/list":
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {"tools": []}})
        if msg.get("method") != "tools/call":
            return web.json_response({"jsonrpc": "2.0", "id": rid,
                                      "error": {"code": -32601, "message": f"method not found: {msg.get('method')}"}})
        name, args = msg["params"]["name"], msg["params"].get("arguments") or {}
        try:
            text = self._tool(name, args)
        except LookupError as exc:
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {
                "content": [{"type": "text", "text": f"error: {exc}"}], "isError": True}})
        return web.json_response({"jsonrpc": "2.0", "id": rid,
                                  "result": {"content": [{"type": "text", "text": text}]}})

    def _tool(self, name: str, args: dict[str, Any]) -> str:
        if name == "publish_post":
            result, error, _ = self.publish(args)
            if result is None:
                raise LookupError(error)
            return json.dumps({"id": result["id"], "sessionId": result["sessionId"], "version": 1})
        if name == "update_post":
            revised = self.revise(str(args.get("id", "")), args)
            if revised is None:
                raise LookupError("surface not found")
            return json.dumps({"id": revised["id"], "sessionId": revised["sessionId"]})
        if name == "get_post":
            post = self.posts.get(str(args.get("id", "")))
            if post is None:
                raise LookupError("surface not found")
            return json.dumps(post)
        if name == "list_posts":
            sid = args.get("session") if isinstance(args.get("session"), str) else None
            return json.dumps([p for p in self.posts.values() if sid is None or p["sessionId"] == sid])
        if name == "wait_for_feedback":
            out = self.wait_comments(str(args.get("session") or ""), None, "user", args.get("afterSeq"))
            return json.dumps({"comments": [{"surfaceId": c["surfaceId"], "text": c["text"]} for c in out["comments"]],
                               "lastSeq": out["lastSeq"]})
        if name == "reply_to_user":
            comment = self.add_comment(str(args.get("message", "")), str(args.get("postId") or args.get("surfaceId")),
                                       "agent")
            if comment is None:
                raise LookupError("surface not found")
            return json.dumps(comment)
        if name == "upload_asset":
            meta, status = self.put_asset(base64.b64decode(args.get("data", "")), str(args.get("contentType", "")),
                                          args.get("session") if isinstance(args.get("session"), str) else None)
            if status != 201 or meta is None:
                raise LookupError("session not found")
            return json.dumps(meta)
        if name == "get_design_guide":
            return "# design guide"
        raise LookupError(f"unknown tool: {name}")


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None
