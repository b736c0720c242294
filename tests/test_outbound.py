"""Upstream and response headers: hop-by-hop removal and spoof-proof identity (pure)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.models import Caller, Decision, Outcome, Share
from gateway.pipeline.credentials import UpstreamCredentials
from gateway.pipeline.outbound import response_headers, strip_set, upstream_headers

SHARE = Share("sh_1", "s1", "alice", True, None, "abc", 0.0)
AS_OWNER = Decision(Outcome.AS_OWNER, "share_read", effective_user="alice", share=SHARE)
AS_CALLER = Decision(Outcome.AS_CALLER, "no_share_token", effective_user="bob")
BOB = Caller("bob", "trusted-header")
HEADER = UpstreamCredentials("header", identity_header="X-User-Id")


def build(pairs: list[tuple[str, str]], decision: Decision = AS_CALLER, *, proxy: bool = False,
          strip: tuple[str, ...] = ("X-Forwarded-User",)) -> CIMultiDict[str]:
    return upstream_headers(
        CIMultiDictProxy(CIMultiDict(pairs)),
        decision=decision,
        caller=BOB,
        credentials=HEADER,
        strip=strip_set(HEADER, strip),
        peer="10.1.2.3",
        peer_is_proxy=proxy,
        scheme="https",
        host="gw.example",
        request_id="rid-1",
        content_length=None,
    )


@pytest.mark.parametrize(
    "spoof",
    [
        [("X-User-Id", "mallory")],
        [("x-user-id", "mallory")],
        [("X-USER-ID", "mallory")],
        [("X_User_Id", "mallory")],
        [("x_user-id", "mallory")],
        [("X-User-Id", "m1"), ("X-User-Id", "m2")],
        [("X-Share-Accessor", "mallory"), ("X_Share_Id", "sh_evil"), ("x-share-read-only", "false")],
        [("X-Forwarded-User", "mallory"), ("X_Forwarded_Email", "m@x")],
        [("X-Auth-Request-User", "mallory"), ("Remote-User", "mallory")],
        [("X-Share-Token", "tok")],
    ],
)
def test_spoofed_identity_headers_never_reach_upstream(spoof: list[tuple[str, str]]) -> None:
    out = build([*spoof, ("Accept", "application/json")])
    assert out.getall("X-User-Id") == ["bob"]
    names = {k.lower().replace("_", "-") for k in out}
    assert not names & {"x-share-accessor", "x-share-id", "x-share-read-only", "x-share-token",
                        "x-forwarded-user", "x-forwarded-email", "x-auth-request-user", "remote-user"}
    assert all("mallory" not in v and "m@x" not in v for v in out.values())
    assert out["Accept"] == "application/json"


def test_connection_listed_and_hop_by_hop_headers_are_removed() -> None:
    out = build([
        ("Connection", "keep-alive, X-Custom, x_user_id"),
        ("Connection", "X-Other"),
        ("X-Custom", "1"), ("X-Other", "2"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Proxy-Authorization", "Basic x"),
        ("Trailer", "X-User-Id"), ("Host", "evil"), ("X-Kept", "yes"),
    ])
    assert set(out) == {"X-Kept", "X-User-Id", "X-Forwarded-For", "X-Forwarded-Proto",
                        "X-Forwarded-Host", "X-Request-Id"}


def test_forwarded_headers_from_untrusted_peer_are_replaced() -> None:
    out = build([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "http"),
                 ("X-Forwarded-Host", "evil"), ("Forwarded", "for=1.1.1.1"), ("X-Forwarded-Port", "1")])
    assert out.getall("X-Forwarded-For") == ["10.1.2.3"]
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "gw.example"
    assert "Forwarded" not in out
    assert "X-Forwarded-Port" not in out


def test_forwarded_headers_from_trusted_proxy_are_extended() -> None:
    out = build([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Proto", "https"),
                 ("X-Forwarded-Host", "app.example"), ("X-Forwarded-User", "alice")], proxy=True)
    assert out.getall("X-Forwarded-For") == ["1.1.1.1, 10.1.2.3"]
    assert out["X-Forwarded-Host"] == "app.example"
    assert "X-Forwarded-User" not in out  # consumed identity, never forwarded


def test_owner_identity_and_share_headers() -> None:
    out = build([("Authorization", "Bearer bobs-jwt"), ("Cookie", "sid=bob")], AS_OWNER)
    assert out.getall("X-User-Id") == ["alice"]
    assert out["X-Share-Accessor"] == "bob"
    assert out["X-Share-Id"] == "sh_1"
    assert "Authorization" not in out  # the caller's own credentials do not travel as the owner
    assert "Cookie" not in out


def test_caller_credentials_pass_when_acting_as_caller() -> None:
    out = build([("Authorization", "Bearer bobs-jwt")])
    assert out["Authorization"] == "Bearer bobs-jwt"


def test_request_id_is_set_once() -> None:
    out = build([("X-Request-Id", "client-supplied"), ("x_request_id", "other")])
    assert out.getall("X-Request-Id") == ["rid-1"]


def test_response_headers_shared_and_hop_by_hop() -> None:
    upstream = CIMultiDictProxy(CIMultiDict([
        ("Content-Type", "application/json"), ("Connection", "close, X-Internal"), ("X-Internal", "1"),
        ("Keep-Alive", "x"), ("Transfer-Encoding", "chunked"), ("Cache-Control", "max-age=60"),
        ("Content-Length", "10"),
    ]))
    shared = response_headers(upstream, decision=AS_OWNER, body_replaced=False)
    assert shared["Referrer-Policy"] == "no-referrer"
    assert shared.getall("Cache-Control") == ["no-store"]
    assert shared["X-Share-Read-Only"] == "true"
    assert "X-Internal" not in shared
    assert "Transfer-Encoding" not in shared
    assert shared["Content-Length"] == "10"
    plain = response_headers(upstream, decision=AS_CALLER, body_replaced=True)
    assert "X-Share-Read-Only" not in plain
    assert plain["Cache-Control"] == "max-age=60"
    assert "Content-Length" not in plain
