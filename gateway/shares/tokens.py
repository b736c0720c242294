"""Share tokens: 256 bits from ``secrets``, looked up by SHA-256, optionally sealed for their owner."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.pipeline.identify import MAX_TOKEN_LENGTH, token_hash
from gateway.shares.store.base import SealedToken

TOKEN_BYTES = 32  # 256 bits
PREFIX_LENGTH = 8
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # AES-GCM's standard nonce (NIST SP 800-38D §8.2.2: random 96-bit nonces)
_URLSAFE = frozenset(string.ascii_letters + string.digits + "-_")
# Associated data: a sealed token opens only as the token of the share it was sealed for.
_AAD = b"share-gateway token v1\x00"


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A new token: ``value`` is shown to the owner; ``hash``/``prefix`` are stored."""

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


def key_id(key: bytes) -> str:
    """A key's public name, stored beside what it sealed: 16 hex digits of a SHA-256 of the key.

    Derived from the key itself, so the order of ``shares.token_keys`` may
    change without orphaning anything; it reveals nothing usable about a
    256-bit key.
    """
    return hashlib.sha256(b"share-gateway token key id\x00" + key).hexdigest()[:16]


class TokenCipher:
    """AES-256-GCM for the tokens kept for their owners (``shares.token_storage: encrypted``).

    ``keys`` are raw 32-byte keys: the first seals, every one opens (key
    rotation: put the new key first, keep the old ones until nothing they
    sealed is live). Each token is sealed with a fresh random 96-bit nonce and
    the share id as associated data, so a ciphertext copied onto another row
    does not open. Lookups never use this: they go by the token's SHA-256.
    Raises ``ValueError`` for no keys or a key that is not 32 bytes.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("token encryption needs at least one key")
        if any(len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"token encryption keys must be {KEY_BYTES} bytes")
        self._aeads = {key_id(k): AESGCM(k) for k in keys}
        self.current = key_id(keys[0])

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of every key that opens (the current one included)."""
        return frozenset(self._aeads)

    def seal(self, token: str, share_id: str) -> SealedToken:
        """Encrypt ``token`` of share ``share_id`` under the current key."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[self.current].encrypt(nonce, token.encode(), _AAD + share_id.encode())
        return SealedToken(key_id=self.current, ciphertext=base64.urlsafe_b64encode(nonce + sealed).decode())

    def open(self, sealed: SealedToken, share_id: str) -> str | None:
        """The token ``sealed`` for share ``share_id``; ``None`` if its key is gone or it does not
        authenticate (tampered, truncated, or sealed for another share)."""
        aead = self._aeads.get(sealed.key_id)
        if aead is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed.ciphertext.encode())
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD + share_id.encode())
            return plain.decode()
        except (InvalidTag, ValueError, binascii.Error):
            return None
