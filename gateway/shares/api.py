"""The share management API on kagent's paths and envelope (DESIGN.md "Share management API").

kagent's own UI drives it unmodified (kagent-dev/kagent release/v0.10.x:
``ui/src/components/chat/ShareButton.tsx``, ``ui/src/app/actions/sessionShares.ts``):
it creates with ``{"read_only": bool}``, lists, copies each row's ``token``
into ``/agents/{ns}/{name}/chat/{id}?share={token}``, revokes by that token,
and shows an error answer's ``error`` string as its toast.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cachetools import TTLCache

from gateway.errors import BadRequest, DependencyUnavailable, NotFound
from gateway.models import Caller, Share
from gateway.pipeline.identify import token_hash
from gateway.profiles import Profile
from gateway.profiles.links import BUILTIN, render, template_names
from gateway.shares import tokens
from gateway.shares.cache import ShareCache
from gateway.shares.store import SealedToken, ShareStore, ShareSummary, StoreError
from gateway.shares.tokens import TokenCipher
from gateway.tasks import Background, uncancelled

MAX_LABEL = 200
MAX_BODY = 16 * 1024
INCLUDE = frozenset({"inactive"})  # values of the list's ?include=


@dataclass(frozen=True, slots=True)
class Ownership:
    """An ownership probe's "yes": ``session`` is what the upstream answered when the
    probe asked it (kagent: ``GET /api/sessions/{id}`` as the caller), else ``None``."""

    session: bytes | None = None


# An ownership probe: (session_id, caller user id) → ``Ownership`` if the caller owns it, else ``None``.
OwnershipProbe = Callable[[str, str], Awaitable[Ownership | None]]


def effective_link_template(configured: str | None, profile: Profile) -> str | None:
    """The share-link template in effect: ``shares.link_template``, else the profile's (``None``: no links).

    Raises ``ValueError`` for placeholders the profile does not provide
    (``{public_url}``, ``{session_id}``, ``{token}`` and its ``links.placeholders``).
    """
    template = configured if configured is not None else profile.links.template
    if template is None:
        return None
    unknown = template_names(template) - profile.links.names
    if unknown:
        raise ValueError(
            f"shares.link_template: unknown placeholders {sorted(unknown)}; "
            f"profile {profile.name} provides {sorted(profile.links.names)}"
        )
    return template


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

    An empty body, or ``read_only`` absent or null, means a read-only share
    (kagent's default). Without ``expires_in`` a share does
    not expire, unless ``max_expires_in`` is set: then that is its lifetime.
    Raises ``BadRequest`` naming the offending field.
    """
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise BadRequest("request body is not valid JSON", reason_id="share_api_bad_body") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", reason_id="share_api_bad_body")
    read_only = body.get("read_only")
    if read_only is None:  # absent or null: read-only, as kagent's *bool (handlers/session_shares.go)
        read_only = True
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
    cached for ``ownership_ttl`` seconds per (session, user) together with the
    link placeholders read from the probe's answer.

    A share's ``url`` follows ``link_template`` (``shares.link_template``,
    default the profile's ``links.template``); it is left out when any of its
    placeholders has no value (no ``public_url``, or the probed session lacks
    the field). ``cipher`` (``shares.token_storage: encrypted``) keeps each
    token sealed for its owner, so the list shows live shares' tokens and urls
    again. Raises ``ValueError`` for a template naming placeholders the
    profile does not provide (at start-up).
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
        link_template: str | None = None,
        cipher: TokenCipher | None = None,
        background: Background | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._probe = probe
        self._links = profile.links
        self._template = effective_link_template(link_template, profile)
        names = template_names(self._template) if self._template is not None else frozenset()
        self._wanted = names - BUILTIN  # the profile placeholders the template uses
        self._public_url = public_url
        self._max_expires_in = max_expires_in
        self._cipher = cipher
        # (session, user) → the link placeholders of a session the user owns.
        self._owners: TTLCache[tuple[str, str], Mapping[str, str]] = TTLCache(
            maxsize=10_000, ttl=max(ownership_ttl, 0.001)
        )
        # Creating and revoking run to completion even if the owner's client goes
        # away mid-way: a revocation stored but never published would leave
        # other replicas serving the share (DESIGN.md "Cancellation-safe").
        self.background = background if background is not None else Background("share-api")

    async def _require_owner(self, session_id: str, user_id: str) -> Mapping[str, str]:
        """The session's link placeholders if ``user_id`` owns it; ``NotFound`` otherwise."""
        key = (session_id, user_id)
        values = self._owners.get(key)
        if values is None:
            ownership = await self._probe(session_id, user_id)
            if ownership is None:
                raise NotFound("session not found", reason_id="share_api_not_owner")
            values = self._owners[key] = self._links.values(ownership.session, self._wanted)
        return values

    def _url(self, session_id: str, token: str, values: Mapping[str, str]) -> str | None:
        """The share link, or ``None`` when the template (if any) cannot be filled."""
        if self._template is None:
            return None
        known = {**values, "session_id": session_id, "token": token}
        if self._public_url:
            known["public_url"] = self._public_url
        return render(self._template, known)

    def _reveal(self, share: Share, sealed: SealedToken | None, now: float) -> str | None:
        """The token of a live share stored encrypted, if a configured key opens it."""
        if self._cipher is None or sealed is None or not share.usable_at(now):
            return None
        return self._cipher.open(sealed, share.id)

    def _listed(self, summary: ShareSummary, values: Mapping[str, str], now: float) -> dict[str, Any]:
        item = _summary_json(summary)
        token = self._reveal(summary.share, summary.sealed, now)
        if token is not None:
            item["token"] = token
            url = self._url(summary.share.session_id, token, values)
            if url is not None:
                item["url"] = url
        return item

    async def handle(
        self, request: web.Request, session_id: str, share_ref: str | None, caller: Caller
    ) -> web.Response:
        """Serve one share API request; raises ``GatewayError`` subclasses on denial."""
        if caller.user_id is None:
            raise NotFound("session not found", reason_id="share_api_not_owner")
        values = await self._require_owner(session_id, caller.user_id)
        try:
            if request.method == "POST":
                body = await request.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise BadRequest("request body too large", reason_id="share_api_bad_body")
                return await self._create(session_id, caller.user_id, body, values)
            if request.method in ("GET", "HEAD"):
                include = request.query.getall("include", [])
                if not INCLUDE.issuperset(include):
                    raise BadRequest("include must be 'inactive'", reason_id="share_api_bad_query")
                now = time.time()
                summaries = await self._store.list_shares(
                    session_id, caller.user_id, live_at=None if include else now
                )
                return envelope([self._listed(s, values, now) for s in summaries], "shares listed")
            assert share_ref is not None
            return await self.handle_revoke(session_id, caller.user_id, share_ref)
        except StoreError as exc:
            raise DependencyUnavailable() from exc

    async def _create(
        self, session_id: str, owner_id: str, raw: bytes, values: Mapping[str, str]
    ) -> web.Response:
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
        sealed = self._cipher.seal(minted.value, share.id) if self._cipher is not None else None
        await uncancelled(self.background.spawn(
            self._record_share(share, minted.hash, sealed), name="create-share", expected=(StoreError,)))
        data = {**share_json(share), "token": minted.value}
        url = self._url(session_id, minted.value, values)
        if url is not None:
            data["url"] = url
        return envelope(data, "share created", status=201)

    async def _record_share(self, share: Share, digest: str, sealed: SealedToken | None) -> None:
        """Store a new share and drop any negative cache entry a guess of its token left."""
        await self._store.create_share(share, digest, sealed)
        await self._cache.forget(digest)

    async def opened_by(
        self, user_id: str, session_ids: list[str] | None = None
    ) -> list[tuple[Share, str | None]]:
        """The live shares ``user_id`` has opened (other owners' sessions), for a sidebar.

        Most recently opened first; a session appears once per share opened
        (kagent's sidebar takes a read-write one first). Each comes with its
        token when tokens are stored encrypted and a configured key opens it,
        else ``None`` (hashed storage: the token cannot be recovered).
        ``session_ids`` limits them to those sessions. Raises
        ``DependencyUnavailable`` when the store cannot answer.
        """
        now = time.time()
        try:
            rows = await self._store.shares_opened_by(user_id, session_ids, now=now)
        except StoreError as exc:
            raise DependencyUnavailable() from exc
        return [(row.share, self._reveal(row.share, row.sealed, now)) for row in rows]

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
