"""Share tokens: minting, and sealing for their owner under ``shares.token_storage: encrypted``."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Callable

import pytest

from gateway.config import SharesSettings
from gateway.pipeline.identify import token_hash
from gateway.shares import tokens
from gateway.shares.store import SealedToken
from gateway.shares.tokens import TokenCipher, key_id

K1, K2, K3 = os.urandom(32), os.urandom(32), os.urandom(32)


def test_mint_is_256_bits_url_safe_and_only_its_hash_and_prefix_are_kept() -> None:
    minted = tokens.mint()
    assert len(minted.value) == 43 and tokens.plausible(minted.value)
    assert minted.hash == token_hash(minted.value) and minted.prefix == minted.value[:8]
    assert len({tokens.mint().value for _ in range(100)}) == 100


def test_seal_and_open() -> None:
    cipher = TokenCipher([K1])
    sealed = cipher.seal("the-token", "sh_1")
    assert sealed.key_id == key_id(K1) == cipher.current
    assert "the-token" not in sealed.ciphertext
    assert cipher.open(sealed, "sh_1") == "the-token"
    again = cipher.seal("the-token", "sh_1")
    assert again.ciphertext != sealed.ciphertext  # a fresh nonce every time


def test_a_ciphertext_opens_only_for_its_own_share() -> None:
    cipher = TokenCipher([K1])
    sealed = cipher.seal("the-token", "sh_1")
    assert cipher.open(sealed, "sh_2") is None  # copied onto another row: does not open


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: dataclasses.replace(s, ciphertext=s.ciphertext[:-2] + ("AA" if s.ciphertext[-2:] != "AA" else "BB")),
        lambda s: dataclasses.replace(s, ciphertext=s.ciphertext[:10]),
        lambda s: dataclasses.replace(s, ciphertext=""),
        lambda s: dataclasses.replace(s, ciphertext="%%% not base64 %%%"),
        lambda s: dataclasses.replace(s, key_id="ffffffffffffffff"),
    ],
)
def test_tampered_truncated_or_unknown_key_opens_nothing(tamper: Callable[[SealedToken], SealedToken]) -> None:
    cipher = TokenCipher([K1])
    sealed = cipher.seal("the-token", "sh_1")
    assert cipher.open(tamper(sealed), "sh_1") is None


def test_rotation_the_first_key_seals_every_key_opens() -> None:
    old = TokenCipher([K1])
    sealed_old = old.seal("old-token", "sh_1")
    rotated = TokenCipher([K2, K1])
    assert rotated.current == key_id(K2) and rotated.key_ids == {key_id(K1), key_id(K2)}
    assert rotated.open(sealed_old, "sh_1") == "old-token"  # the old key still decrypts
    sealed_new = rotated.seal("new-token", "sh_2")
    assert sealed_new.key_id == key_id(K2)  # the new key encrypts
    assert old.open(sealed_new, "sh_2") is None  # a replica without the new key cannot open it
    retired = TokenCipher([K2])
    assert retired.open(sealed_old, "sh_1") is None and retired.open(sealed_new, "sh_2") == "new-token"
    wrong = TokenCipher([K3])
    assert wrong.open(sealed_new, "sh_2") is None


def test_key_ids_depend_on_the_key_not_its_position() -> None:
    assert key_id(K1) == key_id(bytes(K1)) != key_id(K2)
    assert len(key_id(K1)) == 16
    assert TokenCipher([K1, K2]).key_ids == TokenCipher([K2, K1]).key_ids


@pytest.mark.parametrize("keys", [[], [b"short"], [K1, os.urandom(16)], [os.urandom(33)]])
def test_cipher_needs_32_byte_keys(keys: list[bytes]) -> None:
    with pytest.raises(ValueError, match="key"):
        TokenCipher(keys)


def test_a_sealed_token_is_plain_text_for_the_store() -> None:
    sealed = TokenCipher([K1]).seal("t", "sh_1")
    assert isinstance(sealed, SealedToken)
    assert base64.urlsafe_b64decode(sealed.ciphertext)  # URL-safe base64, a TEXT column


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(K1).decode(),
        base64.urlsafe_b64encode(K1).decode(),
        base64.urlsafe_b64encode(K1).decode().rstrip("="),
        f"  {base64.b64encode(K1).decode()}\n",
    ],
)
def test_config_keys_are_standard_or_url_safe_base64(text: str) -> None:
    assert SharesSettings.decode_token_key(text) == K1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "decodes to 0 bytes"),
        ("not base64!", "is not base64"),
        (base64.b64encode(os.urandom(16)).decode(), "decodes to 16 bytes, not 32"),
        (base64.b64encode(os.urandom(48)).decode(), "decodes to 48 bytes, not 32"),
        (K1.hex(), "decodes to 48 bytes, not 32"),  # hex is not base64 of the key
    ],
)
def test_config_rejects_keys_that_are_not_32_bytes_of_base64(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SharesSettings.decode_token_key(text)
