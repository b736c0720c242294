"""Properties and fuzzing (hypothesis) over the pure steps: routes, A2A parsing, headers, decisions.

The central property: the owner's identity is sent upstream only if the target
session equals the share's session and the action is allowed by the share.
Budgets: ``HYPOTHESIS_PROFILE=fuzz`` multiplies them (the default is sized for CI).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway import profiles
from gateway.errors import BadRequest, JsonRpcError
from gateway.models import Action, Caller, Outcome, Share
from gateway.pipeline import a2a
from gateway.pipeline.credentials import AssertionSigner, UpstreamCredentials
from gateway.pipeline.decide import decide, target_of
from gateway.pipeline.identify import IDENTITY_HEADERS
from gateway.pipeline.outbound import strip_set, upstream_headers
from gateway.pipeline.routes import RouteTable, canonical_path

settings.register_profile("ci", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=4_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
LARGE = settings(max_examples=settings.default.max_examples * 5)

KAGENT = RouteTable(profiles.load("kagent").rules)
HEADER = UpstreamCredentials("header", identity_header="X-User-Id")
IDS = st.sampled_from(["s1", "s2", "s3", "t1", "t2"])
NOW = 1_000_000.0


# -- the central property ----------------------------------------------------


@st.composite
def a2a_calls(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    method = draw(st.sampled_from(sorted(a2a.METHODS)))
    version, _, shape, keys = a2a.METHODS[method]
    params: dict[str, Any] = {}
    if shape == "message":
        message: dict[str, Any] = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]}
        if draw(st.booleans()):
            message["contextId"] = draw(IDS)
        if draw(st.booleans()):
            message["taskId"] = draw(IDS)
        if draw(st.booleans()):
            message["referenceTaskIds"] = draw(st.lists(IDS, max_size=3))
        params["message"] = message
    elif shape == "list":
        if draw(st.booleans()):
            params["contextId"] = draw(IDS)
    elif shape == "task":
        params[keys[0]] = draw(IDS)
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, method


@LARGE
@given(
    body_method=a2a_calls(),
    bindings=st.dictionaries(IDS, IDS),
    share_session=IDS,
    read_only=st.booleans(),
    caller=st.sampled_from([Caller("bob", "jwt"), Caller(None, "anonymous")]),
)
def test_owner_identity_only_for_the_shared_session(
    body_method: tuple[dict[str, Any], str], bindings: dict[str, str], share_session: str,
    read_only: bool, caller: Caller,
) -> None:
    body, method = body_method
    share = Share("sh_1", share_session, "alice", read_only, None, "abcdefgh", NOW - 1)
    call = a2a.parse_call(json.dumps(body).encode(), strict=True)
    assert call is not None
    target = None
    if call.session_scoped:
        target = target_of(call.context_id, [bindings.get(t) for t in call.task_ids])
    decision = decide(caller, token_present=True, share=share, action=call.action, target=target, now=NOW)
    headers = upstream_headers(
        CIMultiDictProxy(CIMultiDict([("X-User-Id", "alice")])), decision=decision, caller=caller,
        credentials=HEADER, strip=strip_set(HEADER, ()), peer="10.0.0.1",
        peer_is_proxy=False, scheme="http", host="gw", request_id="r", content_length=None,
    )
    sent_as_owner = headers.getall("X-User-Id", []) == ["alice"]
    named = [c for c in (call.context_id, *call.task_ids) if c is not None]
    contexts = {call.context_id} | {bindings.get(t) for t in call.task_ids}
    contexts.discard(None) if call.context_id is None else None
    provable = (call.session_scoped and bool(named) and contexts == {share_session}
                and all(t in bindings for t in call.task_ids))
    allowed = call.action is Action.READ or (call.action is Action.WRITE and not read_only)
    assert sent_as_owner == (provable and allowed), (method, body, bindings, decision)
    if sent_as_owner:
        assert decision.outcome is Outcome.AS_OWNER
        assert headers["X-Share-Accessor"] == caller.label


# -- A2A parsing never fails in an unexpected way ------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "taskId", "contextId", "context_id", "message", "params", "method",
                         "referenceTaskIds", "jsonrpc", "x"]), children, max_size=5),
    max_leaves=20,
)


@LARGE
@given(value=JSON, method=st.sampled_from([*sorted(a2a.METHODS), "nope", 3]))
def test_a2a_parser_fuzz_structured(value: Any, method: Any) -> None:
    for body in ({"jsonrpc": "2.0", "id": 1, "method": method, "params": value}, value):
        raw = json.dumps(body).encode()
        try:
            call = a2a.parse_call(raw, strict=True)
        except JsonRpcError as exc:
            assert exc.status == 400
            continue
        if call is not None:
            assert all(isinstance(t, str) and t for t in call.task_ids)
            assert call.context_id is None or isinstance(call.context_id, str)


@LARGE
@given(raw=st.binary(max_size=300))
def test_a2a_parser_fuzz_bytes(raw: bytes) -> None:
    try:
        a2a.parse_call(raw, strict=True)
    except JsonRpcError as exc:
        assert exc.status == 400
    a2a.bindings_in_json(raw)
    a2a.rewrite_agent_card(raw, "http://gw/")
    scanner = a2a.SseScanner()
    for event in scanner.feed(raw):
        assert isinstance(event, bytes)


# -- header stripping ------------------------------------------------------------


def spellings(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).flatmap(
        lambda upper: st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
            lambda under: "".join(
                ("_" if (c == "-" and u2) else c.upper() if u else c.lower())
                for c, u, u2 in zip(name, upper, under, strict=True)
            )
        )
    )


HEADER_NAMES = st.sampled_from(sorted(IDENTITY_HEADERS | {"x-forwarded-for", "accept", "x-custom"})).flatmap(
    spellings)


@LARGE
@given(headers=st.lists(st.tuples(HEADER_NAMES, st.text("abcXYZ-_ ", min_size=1, max_size=6)), max_size=12),
       connection=st.lists(HEADER_NAMES, max_size=3), shared=st.booleans())
def test_identity_headers_never_survive_stripping(
    headers: list[tuple[str, str]], connection: list[str], shared: bool
) -> None:
    incoming = CIMultiDict(headers)
    if connection:
        incoming.add("Connection", ", ".join(connection))
    share = Share("sh_1", "s1", "alice", True, None, "p", 0.0)
    decision = (decide(Caller("bob", "jwt"), token_present=True, share=share, action=Action.READ,
                       target=target_of("s1", []), now=NOW) if shared
                else decide(Caller("bob", "jwt"), token_present=False, share=None, action=Action.READ,
                            target=None, now=NOW))
    out = upstream_headers(CIMultiDictProxy(incoming), decision=decision, caller=Caller("bob", "jwt"),
                           credentials=HEADER, strip=strip_set(HEADER, ("X-Forwarded-User",)),
                           peer="10.0.0.1", peer_is_proxy=False, scheme="http", host="gw", request_id="r",
                           content_length=None)
    user = "alice" if shared else "bob"
    assert out.getall("X-User-Id") == [user]
    set_by_gateway = {("x-user-id", user), ("x-share-accessor", "bob"), ("x-share-id", "sh_1")}
    for name, value in out.items():
        norm = name.lower().replace("_", "-")
        if norm in IDENTITY_HEADERS:
            assert (norm, value) in set_by_gateway
        if norm in {c.lower().replace("_", "-") for c in connection}:  # named in Connection: hop-by-hop
            assert (norm, value) in set_by_gateway or norm.startswith("x-forwarded") or norm == "x-request-id"


# -- route matching and canonical paths ------------------------------------------

SEGMENT = st.sampled_from(["api", "sessions", "tasks", "shares", "a2a", "s1", "x%20y", "%2F", "%2e", ".", "..",
                           "", ";", "a;b", "%3B", "%EF%BC%8F", "%C3%A9", "%25", "%0A", "\\", "%5C", "events"])


@LARGE
@given(segments=st.lists(SEGMENT, min_size=1, max_size=6), trailing=st.booleans(),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_matched_path_is_the_forwarded_path(segments: list[str], trailing: bool, method: str) -> None:
    raw = "/" + "/".join(segments) + ("/" if trailing else "")
    try:
        path = canonical_path(raw)
    except BadRequest:
        return
    assert path == raw  # never rewritten: what is matched is what is forwarded
    decoded = unquote(raw)
    assert "/./" not in decoded + "/" and "/../" not in decoded + "/"
    match = KAGENT.match(method, path)
    template = match.rule.template if match.rule is not None else ""
    rest = template.rsplit("{", 1)[-1].removesuffix("*}") if template.endswith("*}") else None
    for name, value in match.params.items():
        if name == rest:  # a prefix rule's rest: exactly the path below the prefix, or nothing
            fixed = len(template.split("/")) - 2
            tail = [p for p in raw.split("/")[1:][fixed:] if p]
            assert value == "/".join(unquote(p) for p in tail)
            continue
        assert value and "/" not in value
    if match.rule is not None and trailing and rest is None:
        assert match.rule.template.endswith("/")  # a trailing slash only matches such templates


# -- the upstream's effective user (identity carriers) -----------------------------

CARRIER_PARTS = st.sampled_from([
    "user_id=alice", "user_id=carol", "user%5Fid=carol", "user%5fid=carol", "%75ser%5Fid=carol", "USER_ID=carol",
    "user_id=", "user_id", "user_id=carol;x=1", "x=1;user_id=carol", "a=1", "order=asc", "share=tok", "q=a%20b",
])
CARRIER_HEADERS = st.sampled_from(["X-User-Id", "x-user-id", "X_User_Id", "X-Agent-Name", "x_agent_name",
                                   "X-AGENT-NAME", "Authorization", "X-Other"])
KAGENT_PROFILE = profiles.load("kagent")
BEARER = UpstreamCredentials("bearer", identity_header="X-User-Id", token="static-upstream-token")
PROXY_MODE = UpstreamCredentials("jwt-assertion", identity_header=None,
                                 signer=AssertionSigner(None, issuer="gw", audience=None, ttl=60, user_claim="sub"))


@LARGE
@given(parts=st.lists(CARRIER_PARTS, max_size=6),
       headers=st.lists(st.tuples(CARRIER_HEADERS, st.sampled_from(["carol", "Bearer x.eyJzdWIiOiJjYXJvbCJ9.x"])),
                        max_size=5),
       shared=st.booleans(), target=IDS, mode=st.sampled_from(["header", "bearer", "jwt-assertion"]))
def test_upstream_effective_user_is_the_caller_or_the_owner_of_the_shared_session(
    parts: list[str], headers: list[tuple[str, str]], shared: bool, target: str, mode: str
) -> None:
    """Whatever carriers a client adds, the user kagent computes (``resolve_user``, written from
    kagent's authn.go/proxy_authn.go) is the caller, or the owner only for the shared session, in
    every upstream credential mode (``jwt-assertion`` against kagent's trusted-proxy mode)."""
    from aiohttp.test_utils import make_mocked_request

    from gateway.config import SharesSettings
    from gateway.demo.agent import resolve_user
    from gateway.pipeline.identify import extract_share_token, normalise_header_name, query_key

    credentials = {"header": HEADER, "bearer": BEARER, "jwt-assertion": PROXY_MODE}[mode]
    request = make_mocked_request("GET", "/api/sessions/s1?" + "&".join(parts), headers=CIMultiDict(headers))
    try:
        _, query = extract_share_token(request, SharesSettings().query_param,
                                       frozenset(query_key(q) for q in KAGENT_PROFILE.carrier_query))
    except BadRequest:
        return  # two share tokens: answered 400, nothing is forwarded
    share = Share("sh_1", "s1", "alice", True, None, "p", 0.0)
    decision = decide(Caller("bob", "jwt"), token_present=shared, share=share if shared else None,
                      action=Action.READ, target=target_of(target, []), now=NOW)
    out = upstream_headers(
        request.headers, decision=decision, caller=Caller("bob", "jwt"), credentials=credentials,
        strip=strip_set(credentials, {normalise_header_name(h) for h in KAGENT_PROFILE.carrier_headers}),
        peer="10.0.0.1", peer_is_proxy=False, scheme="http", host="gw", request_id="r", content_length=None,
    )
    asgi_headers = [(k.lower().encode(), v.encode()) for k, v in out.items()]
    effective = resolve_user("trusted-proxy" if mode == "jwt-assertion" else "unsecure", query, asgi_headers)
    assert effective == ("alice" if shared and target == "s1" else "bob"), (parts, headers, query, out)
