"""Public read of one session: a read-only share record every visitor implicitly holds.

An owner turns public read on with ``PATCH /api/sessions/{id}`` and
``{"<public_read.field>": true}`` (sideshow: ``shared``, the flag of its
sharing draft, modem-dev/sideshow PR #114, which sideshow's own
``PATCH /api/sessions/:id`` rejects: ``server/app.ts`` requires ``title``).
The gateway stores a share of that session like any other (read-only, label
``public read``, an unguessable token nobody is shown) and marks it with the
token prefix ``public:``, which no real token has (tokens are URL-safe base64,
``shares/tokens.py``). A visitor without a share link (anonymous, or signed
in but not the owner) reading that session is served through that share, so
everything a read-only share holder may read, and nothing else, is public:
access is recorded against it, live feeds are registered under it, and
turning public read off revokes it, which evicts it from every replica's
cache and ends every feed opened through it at once (``ShareCache.revoked``).

Which share is a session's public one is looked up in the store (its owner's
live shares) and remembered for ``ttl`` seconds per session: turning public
read *on* reaches other replicas within ``ttl``; turning it off reaches them
at once (the remembered share's revocation is what they see).
"""

from __future__ import annotations

import dataclasses
import time

from cachetools import TTLCache

from gateway.errors import BadRequest, DependencyUnavailable
from gateway.models import Share
from gateway.pipeline.locate import json_body
from gateway.shares import tokens
from gateway.shares.cache import ShareCache
from gateway.shares.owners import OwnerDirectory
from gateway.shares.store import ShareStore, StoreError
from gateway.tasks import Background, uncancelled

PUBLIC_PREFIX = "public:"  # token_prefix of public-read shares (never a real token's prefix)
PUBLIC_LABEL = "public read"


def flag_of(body: bytes | None, field: str) -> bool | None:
    """The public-read flag a request body sets: ``{"<field>": true|false}``, alone; ``None`` for
    a body without ``field`` (sideshow's rename, ``{"title": …}``, goes upstream). Raises
    ``BadRequest`` for a non-boolean flag or one sent with other fields (sideshow's PATCH would
    take only the title and the answer could not say which part happened)."""
    decoded = json_body(body)
    if not isinstance(decoded, dict) or field not in decoded:
        return None
    value = decoded[field]
    if not isinstance(value, bool) or len(decoded) != 1:
        raise BadRequest(f'body must be {{"{field}": true|false}} alone', reason_id="public_flag_bad_body")
    return value


def is_public(share: Share) -> bool:
    """Is this the public-read share of its session?"""
    return share.token_prefix == PUBLIC_PREFIX


class PublicRead:
    """Public-read shares by session (see the module docstring).

    Every method raises ``DependencyUnavailable`` (503) when the store cannot
    answer: a session is never public because a dependency failed.
    """

    def __init__(
        self,
        store: ShareStore,
        cache: ShareCache,
        owners: OwnerDirectory,
        *,
        ttl: float = 5.0,
        background: Background | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._owners = owners
        # session id → token hash of its public share ("" for none), for ``ttl`` seconds
        self._pointer: TTLCache[str, str] = TTLCache(maxsize=100_000, ttl=max(ttl, 0.001))
        self._tasks = background if background is not None else Background("public-read")

    async def _live(self, session_id: str) -> list[Share]:
        """The session's live public shares (normally at most one)."""
        owner = await self._owners.owner_of(session_id)
        if owner is None:
            return []
        try:
            rows = await self._store.list_shares(session_id, owner, live_at=time.time())
        except StoreError as exc:
            raise DependencyUnavailable() from exc
        return [row.share for row in rows if is_public(row.share)]

    async def _digest(self, session_id: str) -> str:
        pointer = self._pointer.get(session_id)
        if pointer is None:
            live = await self._live(session_id)
            pointer = ""
            if live:
                try:
                    pointer = await self._store.token_hash_of(live[0].id) or ""
                except StoreError as exc:
                    raise DependencyUnavailable() from exc
            self._pointer[session_id] = pointer
        return pointer

    async def share_of(self, session_id: str) -> Share | None:
        """The session's usable public-read share, or ``None`` when it is not public."""
        digest = await self._digest(session_id)
        if not digest:
            return None
        share = await self._cache.lookup(digest)  # revoked on every replica at once
        return share if share is not None and share.usable_at(time.time()) else None

    async def public(self, session_ids: list[str]) -> set[str]:
        """The subset of ``session_ids`` open to public read."""
        return {s for s in session_ids if await self.share_of(s) is not None}

    async def set(self, session_id: str, owner_id: str, on: bool) -> bool:
        """Turn public read of ``session_id`` (owned by ``owner_id``) on or off; returns ``on``.

        Idempotent. Runs to completion even if the caller is cancelled (a
        revocation stored but not published would leave replicas serving it).
        """
        work = self._tasks.spawn(self._set(session_id, owner_id, on), name="public-read",
                                 expected=(StoreError, DependencyUnavailable))
        try:
            await uncancelled(work)
        except StoreError as exc:
            raise DependencyUnavailable() from exc
        return on

    async def _set(self, session_id: str, owner_id: str, on: bool) -> None:
        live = await self._live(session_id)
        if on and not live:
            minted = tokens.mint()
            now = time.time()
            share = Share(
                id=tokens.new_share_id(), session_id=session_id, owner_id=owner_id, read_only=True,
                label=PUBLIC_LABEL, token_prefix=PUBLIC_PREFIX, created_at=now,
            )
            await self._store.create_share(share, minted.hash)
            await self._cache.forget(minted.hash)
            self._pointer[session_id] = minted.hash
        elif not on:
            for share in live:
                now = time.time()
                await self._store.revoke(share.id, now)
                digest = await self._store.token_hash_of(share.id)
                if digest is not None:
                    await self._cache.revoked(digest, dataclasses.replace(share, revoked_at=now))
            self._pointer[session_id] = ""
