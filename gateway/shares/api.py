"""The share management API on kagent's paths and envelope (DESIGN.md "Share management API")."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from cachetools import TTLCache

from gateway.errors import BadRequest, DependencyUnavailable, NotFound
from gateway.models import Caller, Share
from gateway.pipeline.identify import token_hash
from gateway.profiles import Profile
from gateway.shares import tokens
from gateway.shares.cache import ShareCache
from gateway.shares.store import ShareStore, ShareSummary, StoreError
from gateway.tasks import Background, uncancelled

MAX_LABEL = 200
MAX_BODY = 16 * 1024
# An ownership probe: (session_id, caller user id) → True if the caller owns it.
OwnershipProbe = Callable[[str, str], Awaitable[bool]]


def envelope(data: Any, message: str = "", status: int = 200) -> web.Response:
    """kagent's response envelope ``{"error": false, "data": ..., "message": ...}``."""
    return web.json_response(
        {"error": False, "data": data, "message": message},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def share_json(share: Share) -> dict[str, Any]:
    """A share as the API shows it (never the token)."""
    return {
        "id": share.id,
        "session_id": share.session_id,
        "user_id": share.owner_id,
        "read_only": share.read_only,
        "label": share.label,
        "token_prefix": share.token_prefix,
        "created_at": _iso(share.created_at),
        "expires_at": _iso(share.expires_at),
        "revoked_at": _iso(share.revoked_at),
        "active": share.usable_at(time.time()),
    }


def _summary_json(summary: ShareSummary) -> dict[str, Any]:
    return {
        **share_json(summary.share),
        "viewers": summary.viewers,
        "access_count": summary.access_count,
        "last_accessed_at": _iso(summary.last_accessed_at),
    }


def parse_create_body(raw: bytes, max_expires_in: int | None) -> tuple[bool, int | None, str | None]:
    """Validate ``{"read_only": bool, "expires_in": seconds?, "label": str?}``.

    An empty body means a read-only share. Without ``expires_in`` a share does
    not expire, unless ``max_expires_in`` is set: then that is its lifetime.
    Raises ``BadRequest`` naming the offending field.
    """
    if not raw.strip():
        return True, None, None
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("request body is not valid JSON", reason_id="share_api_bad_body") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", reason_id="share_api_bad_body")
    read_only = body.get("read_only", True)
    if not isinstance(read_only, bool):
        raise BadRequest("read_only must be a boolean", reason_id="share_api_bad_body")
    expires_in = body.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0
    ):
        raise BadRequest("expires_in must be a positive number of seconds", reason_id="share_api_bad_body")
    if max_expires_in is not None:
        if expires_in is None:
            expires_in = max_expires_in  # no share outlives the configured maximum
        elif expires_in > max_expires_in:
            raise BadRequest(
                f"expires_in must be at most {max_expires_in} seconds", reason_id="share_api_bad_body"
            )
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
        raise BadRequest(
            f"label must be a string of at most {MAX_LABEL} characters", reason_id="share_api_bad_body"
        )
    return read_only, expires_in, label


class ShareApi:
    """Create, list and revoke share links for one session.

    Only the session owner may call it; everyone else gets 404, so the API
    never reveals whether a session exists. Ownership comes from ``probe``
    (kagent: the upstream answers ``GET /api/sessions/{id}`` as the caller),
    cached for ``ownership_ttl`` seconds per (session, user).
    """

    def __init__(
        self,
        store: ShareStore,
        cache: ShareCache,
        probe: OwnershipProbe,
        profile: Profile,
        *,
        public_url: str | None,
        max_expires_in: int | None,
        ownership_ttl: float,
        background: Background | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._probe = probe
        self._profile = profile
        self._public_url = public_url
        self._max_expires_in = max_expires_in
        self._owners: TTLCache[tuple[str, str], bool] = TTLCache(
            maxsize=10_000, ttl=max(ownership_ttl, 0.001)
        )
        # Creating and revoking run to completion even if the owner's client goes
        # away mid-way: a revocation stored but never published would leave
        # other replicas serving the share (DESIGN.md "Cancellation-safe").
        self.background = background if background is not None else Background("share-api")

    async def _require_owner(self, session_id: str, user_id: str) -> None:
        key = (session_id, user_id)
        if key not in self._owners:
            if not await self._probe(session_id, user_id):
                raise NotFound("session not found", reason_id="share_api_not_owner")
            self._owners[key] = True

    async def handle(
        self, request: web.Request, session_id: str, share_ref: str | None, caller: Caller
    ) -> web.Response:
        """Serve one share API request; raises ``GatewayError`` subclasses on denial."""
        if caller.user_id is None:
            raise NotFound("session not found", reason_id="share_api_not_owner")
        await self._require_owner(session_id, caller.user_id)
        try:
            if request.method == "POST":
                body = await request.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise BadRequest("request body too large", reason_id="share_api_bad_body")
                return await self._create(session_id, caller.user_id, body)
            if request.method in ("GET", "HEAD"):
                summaries = await self._store.list_shares(session_id, caller.user_id)
                return envelope([_summary_json(s) for s in summaries])
            assert share_ref is not None
            return await self.handle_revoke(session_id, caller.user_id, share_ref)
        except StoreError as exc:
            raise DependencyUnavailable() from exc

    async def _create(self, session_id: str, owner_id: str, raw: bytes) -> web.Response:
        read_only, expires_in, label = parse_create_body(raw, self._max_expires_in)
        minted = tokens.mint()
        now = time.time()
        share = Share(
            id=tokens.new_share_id(),
            session_id=session_id,
            owner_id=owner_id,
            read_only=read_only,
            label=label,
            token_prefix=minted.prefix,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        await uncancelled(self.background.spawn(
            self._record_share(share, minted.hash), name="create-share", expected=(StoreError,)))
        data = {**share_json(share), "token": minted.value}
        if self._public_url and self._profile.share_url:
            data["url"] = self._profile.share_url.format(
                public_url=self._public_url, session_id=session_id, token=minted.value
            )
        return envelope(data, "share created", status=201)

    async def _record_share(self, share: Share, digest: str) -> None:
        """Store a new share and drop any negative cache entry a guess of its token left."""
        await self._store.create_share(share, digest)
        await self._cache.forget(digest)

    async def _revoke_everywhere(self, share: Share, digest: str | None) -> None:
        """Revoke in the store, then evict the share and end its live connections on every replica."""
        if share.revoked_at is None:
            now = time.time()
            await self._store.revoke(share.id, now)
            share = dataclasses.replace(share, revoked_at=now)
        if digest is not None:
            await self._cache.revoked(digest, share)
        elif self._cache.live is not None:
            self._cache.live.end_share(share.id)

    async def handle_revoke(self, session_id: str, owner_id: str, ref: str) -> web.Response:
        """Revoke the owner's share ``ref`` (share id or token) of ``session_id``; 404 if none."""
        if ref.startswith("sh_"):
            share = await self._store.share_by_id(ref)
            digest = await self._store.token_hash_of(ref) if share else None
        elif tokens.plausible(ref):
            digest = token_hash(ref)
            share = await self._store.share_by_token_hash(digest)
        else:
            share, digest = None, None
        if share is None or share.session_id != session_id or share.owner_id != owner_id:
            raise NotFound("share not found", reason_id="share_api_unknown_share")
        await uncancelled(self.background.spawn(
            self._revoke_everywhere(share, digest), name="revoke-share", expected=(StoreError,)))
        return envelope({"id": share.id, "revoked": True}, "share revoked")
