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
class ShareSummary:
    """A share with its access statistics, as listed to the owner."""

    share: Share
    viewers: int
    access_count: int
    last_accessed_at: float | None


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
    async def create_share(self, share: Share, token_hash: str) -> None:
        """Insert a new share."""

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
    async def list_shares(self, session_id: str, owner_id: str) -> list[ShareSummary]:
        """The owner's shares of a session, newest first, with access statistics."""

    @abc.abstractmethod
    async def revoke(self, share_id: str, at: float) -> bool:
        """Mark a share revoked; ``False`` if it does not exist or was already revoked."""

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
