"""How the upstream learns the effective user: an identity header, a static bearer token, or a
short-lived JWT the gateway signs (published as JWKS on the admin listener)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict

from gateway.observe.logging import get_logger

log = get_logger("gateway.credentials")
MODES = frozenset({"header", "bearer", "jwt-assertion", "query"})


class AssertionSigner:
    """Signs ``{sub: user, iss, aud, iat, exp}`` with the gateway's EC P-256 key (ES256).

    An assertion lives ``ttl`` seconds and is reused for half of that, so the
    signing cost is paid about once per user per ``ttl / 2``. Without a
    configured key an ephemeral one is generated: fine for one replica, but
    replicas must share a key because the upstream trusts one JWKS.
    """

    def __init__(
        self,
        private_key_pem: str | None,
        *,
        issuer: str,
        audience: str | None,
        ttl: float,
        user_claim: str,
    ) -> None:
        if private_key_pem is None:
            log.warning(
                "jwt_assertion_ephemeral_key",
                note="set upstream_auth.jwt.private_key so every replica signs with one key",
            )
            key: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("upstream_auth.jwt.private_key must be an EC P-256 private key")
        self._key = key
        public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.kid = uuid.uuid5(uuid.NAMESPACE_OID, public["x"] + public["y"]).hex[:16]
        self.jwks = {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES256"}]}
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._claim = user_claim
        self._cache: TTLCache[str, str] = TTLCache(maxsize=50_000, ttl=max(ttl / 2, 1))

    def assertion(self, user: str) -> str:
        """A signed JWT naming ``user`` (cached for half its lifetime)."""
        token = self._cache.get(user)
        if token is None:
            now = int(time.time())
            claims: dict[str, Any] = {
                self._claim: user,
                "iss": self._issuer,
                "iat": now,
                "exp": now + int(self._ttl),
            }
            if self._claim != "sub":
                claims["sub"] = user
            if self._audience:
                claims["aud"] = self._audience
            token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})
            self._cache[user] = token
        return token


class UpstreamCredentials:
    """Sets the upstream's view of the effective user on an outgoing request.

    ``header``: ``identity_header: <user>`` (kagent's ``X-User-Id``).
    ``bearer``: ``Authorization: Bearer <static token>`` (docker-agent's
    ``--auth-token``); the identity header too if one is named.
    ``jwt-assertion``: ``Authorization: Bearer <JWT for the user>`` signed by
    the gateway (kagent's trusted-proxy mode reads the user from a claim).
    ``query``: the static token in the query parameter ``query_param`` (VS
    Code's agent host checks ``?tkn=`` at the WebSocket upgrade); the
    client's own value of it never travels (the profile lists it as an
    identity carrier).
    In the token modes the client's own ``Authorization`` never travels.
    """

    def __init__(
        self,
        mode: str,
        *,
        identity_header: str | None,
        token: str | None = None,
        signer: AssertionSigner | None = None,
        query_param: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"upstream_auth.mode must be one of {sorted(MODES)}")
        if mode == "bearer" and not token:
            raise ValueError(
                "upstream_auth.mode bearer needs upstream_auth.token or upstream_auth.token_file"
            )
        if mode == "jwt-assertion" and signer is None:
            raise ValueError("upstream_auth.mode jwt-assertion needs a signer")
        if mode == "query" and not (token and query_param):
            raise ValueError(
                "upstream_auth.mode query needs upstream_auth.token or upstream_auth.token_file"
                " and the profile's query parameter"
            )
        self.mode = mode
        self._query = ""
        if mode == "query":
            self._query = f"{quote(query_param or '', safe='')}={quote(token or '', safe='')}"
        self.identity_header = identity_header
        self._bearer = f"Bearer {token}" if token and mode == "bearer" else None
        self.signer = signer
        replaced = {"authorization"} if mode in ("bearer", "jwt-assertion") else set()
        if identity_header:
            replaced.add(identity_header.lower().replace("_", "-"))
        self.replaced = frozenset(replaced)  # names stripped from the client's request

    def query(self, forwarded: str) -> str:
        """The upstream's query string: ``forwarded`` plus the token in ``query`` mode."""
        if not self._query:
            return forwarded
        return f"{forwarded}&{self._query}" if forwarded else self._query

    def apply(self, headers: CIMultiDict[str], user: str | None) -> None:
        """Add the credentials for ``user`` (``None``: an anonymous caller on a public route)."""
        if self.identity_header and user is not None:
            headers[self.identity_header] = user
        if self._bearer is not None:
            headers["Authorization"] = self._bearer
        elif self.signer is not None and user is not None:
            headers["Authorization"] = "Bearer " + self.signer.assertion(user)


def read_secret(value: str | None, path: str | None) -> str | None:
    """A secret given inline or as a file (trailing newline removed)."""
    if value:
        return value
    if path:
        return Path(path).read_text().strip()
    return None
