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
- Viewer pages (``/``, ``/session/:id``): the SPA's HTML; ``GET /api/kits``, ``GET /api/theme``.

Each request's method, path, query and headers are kept in ``requests``.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

UNAUTHORIZED_API = "unauthorized — send Authorization: Bearer <token>"
OPEN = frozenset({"/guide", "/setup", "/agent-howto"})
VIEWER = "<!doctype html><html><head><title>sideshow</title></head><body><div id=app></div></body></html>"


def new_id() -> str:
    """server/types.ts ``newId``: 64 random bits, url-safe base64 without padding (11 characters)."""
    return base64.urlsafe_b64encode(os.urandom(8)).rstrip(b"=").decode()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass
class StandIn:
    """sideshow with one deploy token; ``None``: every route open, as sideshow without SIDESHOW_TOKEN."""

    token: str | None = "deploy-token"
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/", self._viewer)
        r.add_get("/session/{id}", self._viewer)
        r.add_get("/guide", self._text)
        r.add_get("/api/kits", self._kits)
        r.add_get("/api/theme", self._theme)
        r.add_get("/api/sessions", self._list)
        r.add_post("/api/sessions", self._create)
        r.add_patch("/api/sessions/{id}", self._rename)
        r.add_delete("/api/sessions/{id}", self._delete)
        for alias in ("posts", "surfaces", "snippets"):
            r.add_get(f"/api/sessions/{{id}}/{alias}", self._session_posts)
        r.add_get("/api/sessions/{id}/trace", self._trace)
        r.add_post("/api/sessions/{id}/trace", self._add_trace)
        r.add_post("/api/posts", self._publish)
        r.add_get("/api/posts/recent", self._recent)
        r.add_get("/api/posts/{id}", self._post)
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
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def _viewer(self, request: web.Request) -> web.Response:
        return web.Response(text=VIEWER, content_type="text/html")

    async def _text(self, request: web.Request) -> web.Response:
        return web.Response(text="# sideshow guide\n")

    async def _kits(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _theme(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "paper", "themes": [{"id": "paper", "label": "Paper"}]})

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
        return web.json_response(session)

    async def _delete(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if self.sessions.pop(sid, None) is None:
            return web.json_response({"error": "session not found"}, status=404)
        self.posts = {k: p for k, p in self.posts.items() if p["sessionId"] != sid}
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
        return web.json_response({"ok": True, "added": len(clean), "count": len(steps)})

    async def _publish(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return web.json_response({"error": "invalid JSON body"}, status=400)
        sid = body.get("session")
        if isinstance(sid, str) and sid not in self.sessions:
            return web.json_response({"error": f'session "{sid}" not found'}, status=404)
        if not isinstance(sid, str):
            sid = self._new_session({"agent": body.get("agent"), "title": body.get("sessionTitle")})["id"]
        stamp = now()
        post: dict[str, Any] = {"id": new_id(), "sessionId": sid, "title": body.get("title") or "Untitled",
                "createdAt": stamp, "updatedAt": stamp, "version": 1}
        self.posts[post["id"]] = post
        return web.json_response({**post, "kinds": ["html"]}, status=201)

    async def _recent(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.posts.values()))

    async def _post(self, request: web.Request) -> web.Response:
        post = self.posts.get(request.match_info["id"])
        if post is None:
            return web.json_response({"error": "post not found"}, status=404)
        return web.json_response(post)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None
