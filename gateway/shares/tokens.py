"""Share token minting: 256 bits from ``secrets``, URL-safe; only the SHA-256 is ever stored."""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass

from gateway.pipeline.identify import MAX_TOKEN_LENGTH, token_hash

TOKEN_BYTES = 32  # 256 bits
PREFIX_LENGTH = 8
_URLSAFE = frozenset(string.ascii_letters + string.digits + "-_")


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A new token: ``value`` is shown to the owner once; ``hash``/``prefix`` are stored."""

    value: str
    hash: str
    prefix: str


def mint() -> MintedToken:
    """A fresh share token (``secrets.token_urlsafe(32)``: 43 characters, 256 bits)."""
    value = secrets.token_urlsafe(TOKEN_BYTES)
    return MintedToken(value=value, hash=token_hash(value), prefix=value[:PREFIX_LENGTH])


def new_share_id() -> str:
    """A share id: public, not a secret (``sh_`` + 128-bit random hex)."""
    return "sh_" + uuid.uuid4().hex


def plausible(token: str) -> bool:
    """Cheap shape check before hashing: URL-safe and not absurdly long."""
    return 0 < len(token) <= MAX_TOKEN_LENGTH and _URLSAFE.issuperset(token)
