"""The store-of-record interface shared by every backend, and its value types."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from gateway.models import Share


class StoreError(Exception):
    """The store could not answer (connection lost, timeout, I/O error)."""


@dataclass(frozen=True, slots=True)
class AccessRow:
    """Coalesced accesses of one user to one share (times in epoch seconds)."""

    share_id: str
    user_id: str
    first_accessed_at: float
    last_accessed_at: float
    access_count: int


@dataclass(frozen=True, slots=True)
class SealedToken:
    """A share token encrypted for its owner (``shares.token_storage: encrypted``).

    ``ciphertext`` is URL-safe base64 of nonce + AES-GCM ciphertext and tag;
    ``key_id`` names the key that sealed it (``gateway.shares.tokens.TokenCipher``).
    The store keeps both as they are and never decrypts.
    """

    key_id: str
    ciphertext: str


@dataclass(frozen=True, slots=True)
class ShareSummary:
    """A share with its access statistics, as listed to the owner.

    ``sealed`` is the encrypted token when one is stored (``None`` under
    hashed storage, for shares created before encrypted storage was turned
    on, and for revoked shares, whose ciphertext revocation erases).
    """

    share: Share
    viewers: int
    access_count: int
    last_accessed_at: float | None
    sealed: SealedToken | None = None


@dataclass(frozen=True, slots=True)
class OpenedShare:
    """A live share that a user other than its owner has opened (a ``share_access`` row).

    ``sealed`` as in ``ShareSummary``; times are epoch seconds of that user's
    first and last access, ``access_count`` that user's accesses.
    """

    share: Share
    sealed: SealedToken | None
    first_accessed_at: float
    last_accessed_at: float
    access_count: int


class ShareStore(abc.ABC):
    """Store of record. Every method raises ``StoreError`` when the store cannot answer.

    Every method is cancellation-safe (DESIGN.md "Cancellation-safe"): a caller
    cancelled at any ``await`` (a client disconnected) never leaves a
    connection inside a transaction; the work commits or rolls back whole
    before the caller's ``CancelledError`` is raised.
    """

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (pool/connection); does not migrate."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Wait (bounded) for operations in flight, then release connections."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """A cheap round trip; raises ``StoreError`` when unreachable."""

    @abc.abstractmethod
    async def create_share(self, share: Share, token_hash: str, sealed: SealedToken | None = None) -> None:
        """Insert a new share; ``sealed`` is its encrypted token, kept only under encrypted storage."""

    @abc.abstractmethod
    async def share_by_token_hash(self, token_hash: str) -> Share | None:
        """The share with this token hash, revoked or expired ones included; ``None`` if unknown."""

    @abc.abstractmethod
    async def share_by_id(self, share_id: str) -> Share | None:
        """The share with this id, or ``None``."""

    @abc.abstractmethod
    async def token_hash_of(self, share_id: str) -> str | None:
        """The token hash of a share (to evict caches on revocation)."""

    @abc.abstractmethod
    async def list_shares(
        self, session_id: str, owner_id: str, *, live_at: float | None = None
    ) -> list[ShareSummary]:
        """The owner's shares of a session, newest first, with access statistics.

        With ``live_at`` (epoch seconds) only the shares usable then (neither
        revoked nor expired, as ``Share.usable_at``); without it, all of them.
        """

    @abc.abstractmethod
    async def shares_opened_by(
        self, user_id: str, session_ids: list[str] | None = None, *, now: float | None = None
    ) -> list[OpenedShare]:
        """The live shares ``user_id`` has opened, of other owners, most recently opened first.

        Live at ``now`` (default: the current time): neither revoked nor
        expired. ``session_ids`` limits them to those sessions (``[]``: none).
        A session appears once per share opened (kagent's sidebar picks the
        read-write one first). The token comes as ``sealed`` when stored
        encrypted; decrypting is the caller's (``ShareApi.opened_by``).
        """

    @abc.abstractmethod
    async def revoke(self, share_id: str, at: float) -> bool:
        """Mark a share revoked and erase its encrypted token, if any; ``False`` if it
        does not exist or was already revoked."""

    @abc.abstractmethod
    async def record_access(self, rows: list[AccessRow]) -> None:
        """Upsert coalesced access rows (min first, max last, sum counts), atomically."""

    @abc.abstractmethod
    async def session_owner(self, session_id: str) -> str | None:
        """The owner the gateway recorded for a session, if any."""

    @abc.abstractmethod
    async def set_session_owner(self, session_id: str, owner_id: str, at: float) -> bool:
        """Record a session's owner unless one is recorded; ``True`` if this call set it."""

    @abc.abstractmethod
    async def session_owners(self, session_ids: list[str]) -> dict[str, str]:
        """The recorded owners of the given sessions (sessions without a record are absent)."""

    @abc.abstractmethod
    async def reassign_session_owner(self, session_id: str, owner_id: str, at: float) -> None:
        """Record ``owner_id`` as the session's owner, replacing any earlier record."""
