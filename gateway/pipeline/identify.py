"""Verified caller identity and the share token; the spoofable-header rules live here too."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable
from urllib.parse import unquote_plus

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from multidict import CIMultiDictProxy

from gateway.config import AuthSettings, JwtSettings, Network, ip_literal
from gateway.errors import BadRequest, Unauthenticated
from gateway.models import Caller

SHARE_TOKEN_HEADER = "X-Share-Token"
MAX_VERIFIED = 50_000  # verified bearer tokens remembered (``JwtVerifier``)
VERIFIED_TTL = 60.0  # seconds a verification is trusted, at most (never past the token's exp)
MAX_TOKEN_LENGTH = 256
# Identity headers a client must never be able to set (DESIGN.md "Spoof-proofing").
# Names are compared after lower-casing and mapping "_" to "-", because some
# servers treat X_User_Id as X-User-Id (oauth2-proxy CVE-2025-64484).
IDENTITY_HEADERS = frozenset(
    {
        "x-user-id",
        "x-share-accessor",
        "x-share-id",
        "x-share-read-only",
        "x-share-token",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-forwarded-access-token",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-auth-request-access-token",
        "x-remote-user",
        "remote-user",
    }
)
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="share-gateway"'}


_NORMALISED: dict[str, str] = {}


def normalise_header_name(name: str) -> str:
    """Header name as compared for stripping: lower case, ``_`` read as ``-``.

    Memoised (the same few names arrive on every request; at most 4,096 kept).
    """
    found = _NORMALISED.get(name)
    if found is None:
        found = name.lower().replace("_", "-")
        if len(_NORMALISED) < 4096:
            _NORMALISED[name] = found
    return found


def in_networks(address: str | None, networks: Iterable[Network]) -> bool:
    """True if ``address`` (an IP literal, possibly IPv4-mapped IPv6) is in any network."""
    ip = ip_literal(address) if address else None
    return ip is not None and any(ip in net for net in networks)


def peer_address(request: web.Request) -> str | None:
    """The TCP peer's address (never derived from forwarded headers)."""
    transport = request.transport
    if transport is None:
        return None
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


def token_hash(token: str) -> str:
    """SHA-256 hex of a share token: the only form in which tokens are stored or cached."""
    return hashlib.sha256(token.encode()).hexdigest()


def _single(headers: CIMultiDictProxy[str], name: str) -> str | None:
    values = headers.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"more than one {name} header", reason_id="duplicate_header")
    return values[0] if values else None


def query_key(name: str) -> str:
    """A query parameter name as compared with identity carriers: percent-decoded
    (``+`` is a space), lower case. ``user%5Fid`` and ``USER_ID`` are ``user_id``."""
    return unquote_plus(name).lower()


def _names_carrier(part: str, carriers: frozenset[str]) -> bool:
    """Does one ``&``-separated query part name an identity carrier? A part is also
    read as ``;``-separated pairs, as servers that split on ``;`` would read it."""
    return any(query_key(pair.partition("=")[0]) in carriers for pair in part.split(";"))


def extract_share_token(
    request: web.Request, share_param: str | None, carriers: frozenset[str]
) -> tuple[str | None, str]:
    """Return ``(token, query)`` where ``query`` is the raw query string to forward.

    The token comes from ``X-Share-Token`` or the ``share_param`` query
    parameter (``shares.query_param`` when ``shares.allow_query_param`` is on,
    else ``None``: browser ``EventSource`` cannot send headers; a profile may
    name another, e.g. agent-host's ``tkn``); that parameter is removed from
    the forwarded query. Two differing
    tokens, or repeated ones, are a 400. Every parameter named in ``carriers``
    (the profile's identity query parameters, keys as ``query_key`` gives them)
    is removed, every duplicate and spelling of it (DESIGN.md "Identity
    carriers are profile data"; kagent's unsecure mode reads ``?user_id=``
    before ``X-User-Id``). The rest of the query is forwarded byte for byte.
    """
    token = _single(request.headers, SHARE_TOKEN_HEADER)
    raw_query = request.rel_url.raw_query_string
    if not raw_query or (share_param is None and not carriers):
        return (token or None), raw_query
    kept: list[str] = []
    found: list[str] = []
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if share_param is not None and unquote_plus(name) == share_param:
            found.append(unquote_plus(value))
        elif not carriers or not _names_carrier(part, carriers):
            kept.append(part)
    if len(found) > 1 or (found and token is not None and found[0] != token):
        raise BadRequest("more than one share token", reason_id="share_token_ambiguous")
    if found:
        token = found[0]
    return (token or None), "&".join(kept)


class JwtVerifier:
    """Verifies bearer JWTs with PyJWT (RFC 7519; ``exp`` required, ``nbf``/``iss``/``aud`` checked).

    Key material is loaded once. With ``jwks_url`` the JWKS is fetched by
    PyJWT's ``PyJWKClient`` (cached for ``jwks_cache_seconds``, re-fetched on an
    unknown ``kid``, at most once per ``jwks_refresh_cooldown_seconds`` so forged
    ``kid``s cannot trigger a fetch storm) in a worker thread, since its HTTP client is blocking.
    Successful verifications are cached by token hash until the token's ``exp``
    (at most 60 s), so a busy client's token is verified once, not per request.
    """

    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        self._jwks: jwt.PyJWKClient | None = None
        self._key: object | None = None
        algorithms = list(settings.algorithms)
        if settings.secret is not None:
            self._key = settings.secret.get_secret_value().encode()
            algorithms = algorithms or ["HS256", "HS384", "HS512"]
        elif settings.public_key is not None:
            key = load_pem_public_key(settings.public_key.encode())
            self._key = key
            if isinstance(key, rsa.RSAPublicKey):
                algorithms = algorithms or ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
            elif isinstance(key, ec.EllipticCurvePublicKey):
                algorithms = algorithms or ["ES256", "ES384", "ES512"]
            elif isinstance(key, ed25519.Ed25519PublicKey):
                algorithms = algorithms or ["EdDSA"]
            else:
                raise ValueError("unsupported public key type")
        else:
            assert settings.jwks_url is not None
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url,
                cache_keys=True,
                lifespan=settings.jwks_cache_seconds,
                cooldown_duration=settings.jwks_refresh_cooldown_seconds,
                timeout=5,
            )
            algorithms = algorithms or ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
        self._algorithms = algorithms
        self._audience = list(settings.audience) or None
        self._options: jwt.types.Options = {
            "require": ["exp"],
            "verify_aud": self._audience is not None,
        }
        # token hash → (user, until): until is the token's exp, at most 60 s from verification
        self._verified: dict[str, tuple[str, float]] = {}

    async def verify(self, token: str) -> str:
        """Return the user id from ``user_claim``; raise ``Unauthenticated`` if invalid."""
        digest = token_hash(token)
        cached = self._verified.get(digest)
        now = time.time()
        if cached is not None:
            if cached[1] > now:
                return cached[0]
            self._verified.pop(digest, None)
        try:
            if self._jwks is not None:
                signing = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key: object = signing.key
            else:
                key = self._key
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options=self._options,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthenticated(
                "invalid bearer token", reason_id="identity_invalid", headers=WWW_AUTHENTICATE
            ) from exc
        user = claims.get(self._settings.user_claim)
        if not isinstance(user, str) or not user:
            raise Unauthenticated(
                "bearer token has no user claim",
                reason_id="identity_invalid",
                headers=WWW_AUTHENTICATE,
            )
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()  # many distinct live tokens: start over rather than grow
        self._verified[digest] = (user, min(float(claims["exp"]), now + VERIFIED_TTL))
        return user


class Identifier:
    """Turns a request into a verified ``Caller`` (or ``None``) per ``auth.mode``."""

    def __init__(self, settings: AuthSettings) -> None:
        self._mode = settings.mode
        self._default = Caller(settings.default_user, "none")
        self._header = settings.trusted_header.name
        self._cidrs = tuple(settings.trusted_header.trusted_cidrs)
        self._jwt = JwtVerifier(settings.jwt) if settings.mode == "jwt" else None
        # The trusted header is consumed here and must never reach the upstream.
        self.consumed_headers = frozenset({normalise_header_name(self._header)})

    async def identify(self, request: web.Request) -> Caller | None:
        """Return the caller, ``None`` when no identity was presented.

        Raises ``Unauthenticated`` for a presented but invalid identity, and
        ``BadRequest`` for duplicated identity headers.
        """
        if self._mode == "none":
            return self._default
        if self._mode == "trusted-header":
            if not in_networks(peer_address(request), self._cidrs):
                return None  # the header is spoofable from here: ignore (and strip) it
            user = _single(request.headers, self._header)
            return Caller(user.strip(), "trusted-header") if user and user.strip() else None
        auth = _single(request.headers, "Authorization")
        if auth is None:
            return None
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthenticated(
                "bearer token required", reason_id="identity_invalid", headers=WWW_AUTHENTICATE
            )
        assert self._jwt is not None
        return Caller(await self._jwt.verify(credentials.strip()), "jwt")
