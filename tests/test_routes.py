"""Route table: matching, specificity, ambiguity at start-up, canonical paths."""

from __future__ import annotations

import pytest

from gateway import profiles
from gateway.errors import BadRequest
from gateway.models import Action, Locator, RouteRule
from gateway.pipeline.routes import RouteTable, RouteTableError, canonical_path

KAGENT = RouteTable(profiles.load("kagent").rules)


@pytest.mark.parametrize(
    ("method", "path", "template", "action", "params"),
    [
        ("GET", "/api/sessions", "/api/sessions", Action.OWNER_ONLY, {}),
        ("POST", "/api/sessions", "/api/sessions", Action.OWNER_ONLY, {}),
        ("GET", "/api/sessions/s1", "/api/sessions/{session_id}", Action.READ, {"session_id": "s1"}),
        ("HEAD", "/api/sessions/s1", "/api/sessions/{session_id}", Action.READ, {"session_id": "s1"}),
        ("PUT", "/api/sessions/s1", "/api/sessions/{session_id}", Action.OWNER_ONLY, {"session_id": "s1"}),
        ("PATCH", "/api/sessions/s1", "/api/sessions/{session_id}", Action.OWNER_ONLY, {"session_id": "s1"}),
        ("DELETE", "/api/sessions/s1", "/api/sessions/{session_id}", Action.OWNER_ONLY, {"session_id": "s1"}),
        ("GET", "/api/sessions/s1/tasks", "/api/sessions/{session_id}/tasks", Action.READ, {"session_id": "s1"}),
        ("POST", "/api/sessions/s1/events", "/api/sessions/{session_id}/events", Action.WRITE, {"session_id": "s1"}),
        ("GET", "/api/sessions/s1/shares", "/api/sessions/{session_id}/shares", Action.SHARE_API, {"session_id": "s1"}),
        ("DELETE", "/api/sessions/s1/shares/sh_1", "/api/sessions/{session_id}/shares/{share_ref}", Action.SHARE_API,
         {"session_id": "s1", "share_ref": "sh_1"}),
        ("GET", "/api/tasks/t1", "/api/tasks/{task_id}", Action.READ, {"task_id": "t1"}),
        ("POST", "/api/a2a/ns/agent/", "/api/a2a/{namespace}/{name}/", Action.WRITE, {"namespace": "ns", "name": "agent"}),
        ("POST", "/api/a2a/ns/agent", "/api/a2a/{namespace}/{name}/", Action.WRITE, {"namespace": "ns", "name": "agent"}),
        ("POST", "/api/a2a-sandboxes/ns/a/", "/api/a2a-sandboxes/{namespace}/{name}/", Action.WRITE,
         {"namespace": "ns", "name": "a"}),
        ("GET", "/api/a2a/ns/a/.well-known/agent-card.json", "/api/a2a/{namespace}/{name}/.well-known/agent-card.json",
         Action.PUBLIC, {"namespace": "ns", "name": "a"}),
        ("GET", "/api/a2a/ns/a/.well-known/agent.json", "/api/a2a/{namespace}/{name}/.well-known/agent.json",
         Action.PUBLIC, {"namespace": "ns", "name": "a"}),
        ("GET", "/api/sessions/a%20b", "/api/sessions/{session_id}", Action.READ, {"session_id": "a b"}),
    ],
)
def test_kagent_routes(method: str, path: str, template: str, action: Action, params: dict[str, str]) -> None:
    match = KAGENT.match(method, path)
    assert (match.template, match.action, match.params) == (template, action, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/agents"),  # not in the table
        ("OPTIONS", "/api/sessions/s1"),  # path known, method not
        ("GET", "/api/a2a/ns/agent/"),  # A2A is POST only
        ("DELETE", "/api/tasks/t1"),
        ("GET", "/api/sessions/s1/tasks/extra"),
        ("GET", "/"),
        ("GET", "/api/sessions//tasks"),  # an empty parameter never matches
    ],
)
def test_unmatched_routes(method: str, path: str) -> None:
    match = KAGENT.match(method, path)
    assert match.rule is None
    assert match.action is Action.UNMATCHED


def rule(name: str, template: str, methods: tuple[str, ...] = ("GET",)) -> RouteRule:
    return RouteRule(name, frozenset(methods), template, Action.READ, Locator.NONE)


def test_nested_rules_most_specific_wins() -> None:
    table = RouteTable((rule("param", "/a/{x}"), rule("literal", "/a/b")))
    assert table.match("GET", "/a/b").rule.name == "literal"  # type: ignore[union-attr]
    assert table.match("GET", "/a/c").rule.name == "param"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "rules",
    [
        (rule("one", "/a/{x}"), rule("two", "/a/{y}")),  # identical shape
        (rule("one", "/a/{x}"), rule("two", "/{y}/b")),  # crossing overlap
        (rule("one", "/a/{x}", ("GET", "POST")), rule("two", "/a/{y}", ("POST",))),
        (rule("one", "/a/{x}", ()), rule("two", "/a/{y}", ("DELETE",))),  # empty = every method
    ],
)
def test_ambiguous_tables_fail_at_start_up(rules: tuple[RouteRule, ...]) -> None:
    with pytest.raises(RouteTableError, match="match the same requests"):
        RouteTable(rules)


def test_same_path_different_methods_is_not_ambiguous() -> None:
    table = RouteTable((rule("get", "/a/{x}", ("GET",)), rule("del", "/a/{y}", ("DELETE",))))
    assert table.match("DELETE", "/a/1").rule.name == "del"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "raw",
    [
        "/api/sessions/../tasks/t1",
        "/api/sessions/./s1",
        "/api/sessions/a%2Fb",
        "/api/sessions/a%2fb",
        "/api/sessions/%2e%2e/x",
        "/api/sessions/a%5Cb",
        "/api/sessions/a%00",
        "/api/sessions/a\\b",
        "api/sessions",
    ],
)
def test_ambiguous_paths_are_rejected(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        canonical_path(raw)
    assert info.value.reason_id == "path_ambiguous"


def test_canonical_path_is_returned_unchanged() -> None:
    assert canonical_path("/api/sessions/a%20b") == "/api/sessions/a%20b"


def test_profile_problems_are_reported_together() -> None:
    with pytest.raises(profiles.ProfileError) as info:
        profiles.parse({
            "routes": [
                {"path": "/a", "action": "bogus"},
                {"path": "/b/{x}", "action": "read", "session": "path", "param": "y"},
                {"path": "/c", "action": "read", "hooks": ["nope"]},
            ],
            "ownership": {"mode": "magic"},
        })
    assert len(info.value.problems) == 4
