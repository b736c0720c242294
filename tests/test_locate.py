"""What a request names (gateway/pipeline/locate.py), feed events' sessions (pipeline/events.py), the
``deny`` row of the decision table, sideshow's MCP classifier, and the profile checks for them: pure tables."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import profiles
from gateway.errors import BadRequest, JsonRpcError
from gateway.models import Action, Caller, Locator, Named, RouteRule, Target
from gateway.pipeline import events, locate
from gateway.pipeline.decide import decide
from gateway.profiles.sideshow_hooks import classify_mcp


def rule(locator: Locator, param: str | None = None, objects: tuple[str, ...] = (),
         action: Action = Action.READ, write_when: frozenset[tuple[str, str]] = frozenset()) -> RouteRule:
    return RouteRule("r", frozenset(), "/x", action, locator, param, object_params=objects, write_when=write_when)


@pytest.mark.parametrize(("r", "params", "query", "body", "expected"), [
    (rule(Locator.PATH, "id"), {"id": "s1"}, "", None, Named(sessions=("s1",))),
    (rule(Locator.OBJECT, "post"), {"post": "p1"}, "session=s9", None, Named(objects=("p1",))),
    (rule(Locator.QUERY, "session", ("surface",)), {}, "session=s1&surface=p1&session=s1", None,
     Named(sessions=("s1",), objects=("p1",))),
    (rule(Locator.QUERY, "session"), {}, "session=s1&session=s2", None, Named(sessions=("s1", "s2"))),
    (rule(Locator.QUERY, "session"), {}, "", {"session": "s1"}, Named()),  # a query rule never reads the body
    (rule(Locator.BODY, "session"), {}, "", {"session": "s1"}, Named(sessions=("s1",))),
    (rule(Locator.BODY, "session"), {}, "session=s2", {"session": "s1"}, Named(sessions=("s2", "s1"))),
    (rule(Locator.BODY, "session"), {}, "", {"session": 7}, Named()),  # sideshow ignores a non-string
    (rule(Locator.BODY, "session"), {}, "", [{"session": "s1"}], Named()),
    (rule(Locator.BODY, None, ("surface", "snippet")), {}, "", {"surface": "p1", "snippet": "p2"},
     Named(objects=("p1", "p2"))),
    (rule(Locator.NONE), {}, "session=s1", {"session": "s1"}, Named()),
])
def test_named(r: RouteRule, params: dict[str, str], query: str, body: Any, expected: Named) -> None:
    assert locate.named(r, params, query, body) == expected


def test_named_caps_the_names() -> None:
    with pytest.raises(BadRequest):
        locate.named(rule(Locator.QUERY, "session"), {}, "&".join(f"session=s{i}" for i in range(17)), None)


@pytest.mark.parametrize(("found", "bound", "expected"), [
    (Named(sessions=("s1",)), {}, Target("s1")),
    (Named(objects=("p1",)), {"p1": "s1"}, Target("s1")),
    (Named(sessions=("s1",), objects=("p1",)), {"p1": "s1"}, Target("s1")),
    (Named(sessions=("s1",), objects=("p1",)), {"p1": "s2"}, Target(None, "share_other_session")),
    (Named(sessions=("s1", "s2")), {}, Target(None, "share_other_session")),
    (Named(objects=("p1",)), {"p1": None}, Target(None, "share_object_unbound")),
    (Named(), {}, Target(None, "share_no_target")),
])
def test_target(found: Named, bound: dict[str, str | None], expected: Target) -> None:
    assert locate.target(found, bound) == expected


COMMENTS = rule(Locator.QUERY, "session", write_when=frozenset({("author", "user")}))


@pytest.mark.parametrize(("r", "query", "found", "expected"), [
    (COMMENTS, "session=s1", Named(), Action.READ),
    (COMMENTS, "session=s1&author=user", Named(), Action.WRITE),
    (COMMENTS, "author=agent&author=user", Named(), Action.WRITE),
    (COMMENTS, "author=User", Named(), Action.READ),
    (COMMENTS, "", Named(action=Action.OWNER_ONLY), Action.OWNER_ONLY),
    (rule(Locator.QUERY, "session", action=Action.WRITE), "", Named(), Action.WRITE),
])
def test_action_of(r: RouteRule, query: str, found: Named, expected: Action) -> None:
    assert locate.action_of(r, query, found) == expected


def test_scoped_query_keeps_one_session() -> None:
    assert locate.scoped_query("", "session", "s1") == "session=s1"
    assert locate.scoped_query("session=a&x=1&session=b", "session", "s-1_") == "x=1&session=s-1_"


def test_pairs_in_answers() -> None:
    answer = {"comments": [{"id": "c1", "sessionId": "s1"}, {"id": "c2"}], "lastSeq": 2}
    assert locate.pairs_in(answer, "sessionId") == [("c1", "s1")]
    write = {"id": "w1", "sessionId": "s2", "userFeedback": [{"id": "x", "sessionId": "s9"}]}
    assert locate.pairs_in(write, "sessionId") == [("w1", "s2")]
    assert locate.pairs_in([{"id": "p1", "sessionId": "s1"}, "x", {"id": 3, "sessionId": "s"}], "sessionId") == [
        ("p1", "s1")]
    assert locate.pairs_in({"type": "session-created", "id": "s1"}, "sessionId") == []


@pytest.mark.parametrize(("data", "expected"), [
    ({"type": "post-created", "id": "p1", "sessionId": "s1", "version": 1}, "s1"),
    ({"type": "session-deleted", "id": "s2"}, "s2"),
    ({"type": "trace-updated", "sessionId": "s3", "count": 1}, "s3"),
    ({"type": "theme-changed", "id": "ink"}, None),
    ({}, None),
    (None, None),
])
def test_event_session(data: Any, expected: str | None) -> None:
    assert events.event_session(data) == expected


def test_event_data() -> None:
    assert events.event_data(b'data: {"a":\ndata: 1}') == {"a": 1}
    assert events.event_data(b"event: ping\ndata: {}") == {}
    assert events.event_data(b"event: hello") is None
    assert events.event_data(b"data: not json") is None


def test_deny_routes_refuse_everyone() -> None:
    for caller, token in ((Caller("alice", "jwt"), False), (Caller(None, "anonymous"), True)):
        decision = decide(caller, token_present=token, share=None, action=Action.DENY, target=None, now=0)
        assert (decision.outcome.value, decision.reason_id, decision.status) == ("deny", "route_denied", 403)


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": name, "arguments": args}}


@pytest.mark.parametrize(("body", "expected"), [
    ({"jsonrpc": "2.0", "id": 1, "method": "initialize"}, Named(action=Action.OWNER_ONLY)),
    ({"jsonrpc": "2.0", "method": "notifications/initialized"}, Named(action=Action.OWNER_ONLY)),
    (call("get_design_guide"), Named(action=Action.OWNER_ONLY)),
    (call("publish_post", title="x"), Named(action=Action.WRITE)),
    (call("publish_post", session="s1"), Named(sessions=("s1",), action=Action.WRITE)),
    (call("upload_asset", session=5), Named(action=Action.WRITE)),
    (call("wait_for_feedback", session="s1"), Named(sessions=("s1",), action=Action.WRITE)),
    (call("list_posts", session="s1"), Named(sessions=("s1",), action=Action.READ)),
    (call("get_post", id="p1"), Named(objects=("p1",), action=Action.READ)),
    (call("update_post", id="p1"), Named(objects=("p1",), action=Action.WRITE)),
    (call("reply_to_user", postId="p1", surfaceId="p2"), Named(objects=("p1", "p2"), action=Action.WRITE)),
    (call("edit_surface", postId="p1"), Named(objects=("p1",), action=Action.WRITE)),
])
def test_mcp_tools(body: Any, expected: Named) -> None:
    assert classify_mcp(body) == expected


@pytest.mark.parametrize(("body", "status", "reason"), [
    ([call("get_post", id="p1")], 400, "mcp_bad_body"),
    (None, 400, "mcp_bad_body"),
    (call("wait_for_feedback"), 403, "mcp_unscoped"),
    (call("wait_for_feedback", session=""), 403, "mcp_unscoped"),
    (call("list_posts"), 403, "mcp_unscoped"),
    (call("get_post"), 400, "mcp_bad_body"),
    (call("update_post", id=5), 400, "mcp_bad_body"),
    (call("send_test_post"), 403, "mcp_tool_refused"),
    (call("no_such_tool"), 403, "mcp_tool_refused"),
    ({"jsonrpc": "2.0", "id": 9, "method": "resources/list"}, 403, "mcp_method_unknown"),
])
def test_mcp_refusals(body: Any, status: int, reason: str) -> None:
    with pytest.raises(JsonRpcError) as err:
        classify_mcp(body)
    assert (err.value.status, err.value.reason_id) == (status, reason)


@pytest.mark.parametrize(("extra", "route", "problem"), [
    ({}, {"path": "/p/{id}", "action": "read", "session": "object", "param": "id"}, "bindings.session_field"),
    ({}, {"path": "/mcp", "action": "write", "session": "call"}, "REQUEST_CLASSIFIER"),
    ({}, {"path": "/s/{id}", "action": "owner-only", "session": "path", "param": "id", "hooks": ["public_flag"]},
     "public_read.field"),
    ({}, {"path": "/c", "action": "read", "session": "query"}, "needs param or object"),
    ({}, {"path": "/c", "action": "read", "session": "none", "object": "surface"}, "session query or body only"),
    ({}, {"path": "/c", "action": "read", "session": "query", "param": "s", "write_when": ["author"]},
     "write_when"),
    ({"bindings": {"session_field": "sessionId", "probe": "/api/posts"}},
     {"path": "/p/{id}", "action": "read", "session": "object", "param": "id"}, "bindings.probe"),
])
def test_profile_checks(extra: dict[str, Any], route: dict[str, Any], problem: str) -> None:
    with pytest.raises(profiles.ProfileError) as err:
        profiles.parse({"name": "x", "routes": [route], **extra})
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_pairs_in_never_reads_user_shaped_content() -> None:
    """A post's parts are the user's to shape: an object inside them binds nothing."""
    post = {"id": "p1", "sessionId": "s1", "parts": [{"kind": "diff", "id": "victim", "sessionId": "s1"}]}
    assert locate.pairs_in([post], "sessionId") == [("p1", "s1")]
    assert locate.pairs_in(post, "sessionId") == [("p1", "s1")]
    assert locate.pairs_in({"x": {"id": "victim", "sessionId": "s1"}}, "sessionId") == []
