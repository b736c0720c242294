"""Identity through a running gateway: JWT (HS/RS/ES, JWKS with key rotation), trusted header, none."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import USER, GatewayFactory, Upstream

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def pem(public_key: Any) -> str:
    return str(public_key.public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 300, **extra}


async def seen_user(http: aiohttp.ClientSession, base: str, upstream: Upstream,
                    headers: dict[str, str]) -> tuple[int, list[str], dict[str, str]]:
    """Call an unmatched route (plain pass-through) and return what identity the upstream saw."""
    upstream.clear()
    async with http.get(base + "/api/sessions", headers=headers) as r:
        status, resp_headers = r.status, dict(r.headers)
        await r.read()
    seen = [v for req in upstream.requests() for k, v in req["headers"] if k == "x-user-id"]
    return status, seen, resp_headers


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
async def test_jwt_static_keys(
    algorithm: str, make_gateway: GatewayFactory, http: aiohttp.ClientSession, upstream: Upstream
) -> None:
    if algorithm == "HS256":
        signing: Any = SECRET
        setting = {"auth__jwt__secret": SECRET}
    elif algorithm == "RS256":
        signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        setting = {"auth__jwt__public_key": pem(signing.public_key())}
    else:
        signing = ec.generate_private_key(ec.SECP256R1())
        setting = {"auth__jwt__public_key": pem(signing.public_key())}
    gw = await make_gateway(auth__mode="jwt", auth__jwt__issuer="https://idp", auth__jwt__audience="gw",
                            auth__jwt__user_claim="email", **setting)
    good = jwt.encode(claims(iss="https://idp", aud="gw", email="alice@example.com"), signing, algorithm)
    status, seen, _ = await seen_user(http, gw.url, upstream, {"Authorization": f"Bearer {good}"})
    assert (status, seen) == (200, ["alice@example.com"])
    bad_tokens = [
        jwt.encode(claims(iss="https://idp", aud="gw", email="a", exp=int(time.time()) - 120), signing, algorithm),
        jwt.encode(claims(iss="https://other", aud="gw", email="a"), signing, algorithm),
        jwt.encode(claims(iss="https://idp", aud="not-gw", email="a"), signing, algorithm),
        jwt.encode(claims(iss="https://idp", aud="gw", email="a", nbf=int(time.time()) + 600), signing, algorithm),
        jwt.encode(claims(iss="https://idp", aud="gw"), signing, algorithm),  # no user claim
        jwt.encode({"iss": "https://idp", "aud": "gw", "email": "a"}, signing, algorithm),  # no exp
        jwt.encode(claims(iss="https://idp", aud="gw", email="a"), "wrong-secret-wrong-secret-wrong!!", "HS256"),
        good[:-4] + "AAAA",
        "not-a-jwt",
    ]
    for token in bad_tokens:
        status, seen, headers = await seen_user(http, gw.url, upstream, {"Authorization": f"Bearer {token}"})
        assert (status, seen) == (401, []), token
        assert headers["WWW-Authenticate"].startswith("Bearer")
    status, seen, headers = await seen_user(http, gw.url, upstream, {})
    assert (status, seen) == (401, [])
    assert "WWW-Authenticate" in headers


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A JWKS endpoint whose key set the test can rotate; counts fetches."""
    state: dict[str, Any] = {"keys": [], "fetches": 0}

    async def serve(_request: web.Request) -> web.Response:
        state["fetches"] += 1
        return web.json_response({"keys": state["keys"]})

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/jwks.json")), state
    await server.close()


def jwk(private: Any, kid: str) -> dict[str, Any]:
    data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


async def test_jwks_cached_and_refetched_on_unknown_kid(
    jwks: tuple[str, dict[str, Any]], make_gateway: GatewayFactory, http: aiohttp.ClientSession,
    upstream: Upstream,
) -> None:
    url, state = jwks
    key1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    state["keys"] = [jwk(key1, "k1")]
    gw = await make_gateway(auth__mode="jwt", auth__jwt__jwks_url=url,
                            auth__jwt__jwks_refresh_cooldown_seconds="0")
    for user in ("alice", "bob", "carol"):
        token = jwt.encode(claims(sub=user), key1, "RS256", headers={"kid": "k1"})
        status, seen, _ = await seen_user(http, gw.url, upstream, {"Authorization": f"Bearer {token}"})
        assert (status, seen) == (200, [user])
    assert state["fetches"] == 1  # cached across tokens
    state["keys"] = [jwk(key1, "k1"), jwk(key2, "k2")]  # the IdP rotates in a new key
    token = jwt.encode(claims(sub="dave"), key2, "RS256", headers={"kid": "k2"})
    status, seen, _ = await seen_user(http, gw.url, upstream, {"Authorization": f"Bearer {token}"})
    assert (status, seen) == (200, ["dave"])
    assert state["fetches"] == 2
    forged = jwt.encode(claims(sub="eve"), rsa.generate_private_key(public_exponent=65537, key_size=2048),
                        "RS256", headers={"kid": "k2"})
    status, seen, _ = await seen_user(http, gw.url, upstream, {"Authorization": f"Bearer {forged}"})
    assert (status, seen) == (401, [])


async def test_trusted_header_only_from_trusted_peers(
    make_gateway: GatewayFactory, http: aiohttp.ClientSession, upstream: Upstream
) -> None:
    trusted = await make_gateway()  # loopback is trusted
    status, seen, _ = await seen_user(http, trusted.url, upstream, {USER: "alice"})
    assert (status, seen) == (200, ["alice"])
    status, seen, _ = await seen_user(http, trusted.url, upstream, {})
    assert (status, seen) == (401, [])
    untrusted = await make_gateway(auth__trusted_header__trusted_cidrs="10.0.0.0/8")
    status, seen, _ = await seen_user(http, untrusted.url, upstream,
                                      {USER: "alice", "X-User-Id": "alice"})
    assert (status, seen) == (401, [])  # the header is spoofable from here: ignored, and 401


async def test_mode_none_is_the_default_user(
    make_gateway: GatewayFactory, http: aiohttp.ClientSession, upstream: Upstream
) -> None:
    gw = await make_gateway(auth__mode="none", auth__default_user="admin@kagent.dev")
    status, seen, _ = await seen_user(http, gw.url, upstream, {"X-User-Id": "mallory", USER: "mallory"})
    assert (status, seen) == (200, ["admin@kagent.dev"])
