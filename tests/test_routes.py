"""Route table: matching, specificity, ambiguity at start-up, canonical paths."""

from __future__ import annotations

import pytest

from gateway import profiles
from gateway.errors import BadRequest
from gateway.models import Action, Locator, RouteRule
from gateway.pipeline.routes import RouteTable, RouteTableError, canonical_path

KAGENT = RouteTable(profiles.load("kagent").rules)
A2A_PREFIX = "/api/a2a/{namespace}/{name}/{rest*}"


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
        ("POST", "/api/a2a/ns/agent/", A2A_PREFIX, Action.WRITE, {"namespace": "ns", "name": "agent", "rest": ""}),
        ("POST", "/api/a2a/ns/agent", A2A_PREFIX, Action.WRITE, {"namespace": "ns", "name": "agent", "rest": ""}),
        ("POST", "/api/a2a/ns/agent/v1/rpc", A2A_PREFIX, Action.WRITE,
         {"namespace": "ns", "name": "agent", "rest": "v1/rpc"}),
        ("POST", "/api/a2a/ns/agent/a%20b/", A2A_PREFIX, Action.WRITE,
         {"namespace": "ns", "name": "agent", "rest": "a b"}),
        # kagent's A2A handler serves agent.json as JSON-RPC, not as a card (research R8)
        ("POST", "/api/a2a/ns/agent/.well-known/agent.json", A2A_PREFIX, Action.WRITE,
         {"namespace": "ns", "name": "agent", "rest": ".well-known/agent.json"}),
        ("POST", "/api/a2a-sandboxes/ns/a/", "/api/a2a-sandboxes/{namespace}/{name}/{rest*}", Action.WRITE,
         {"namespace": "ns", "name": "a", "rest": ""}),
        ("GET", "/api/a2a/ns/a/.well-known/agent-card.json", "/api/a2a/{namespace}/{name}/.well-known/agent-card.json",
         Action.PUBLIC, {"namespace": "ns", "name": "a"}),
        ("GET", "/api/a2a-sandboxes/ns/a/.well-known/agent-card.json",
         "/api/a2a-sandboxes/{namespace}/{name}/.well-known/agent-card.json", Action.PUBLIC,
         {"namespace": "ns", "name": "a"}),
        ("GET", "/api/sessions/agent/ns/a", "/api/sessions/agent/{namespace}/{name}", Action.OWNER_ONLY,
         {"namespace": "ns", "name": "a"}),
        ("GET", "/api/sessions/agent", "/api/sessions/{session_id}", Action.READ, {"session_id": "agent"}),
        ("POST", "/api/tasks", "/api/tasks", Action.OWNER_ONLY, {}),
        ("DELETE", "/api/tasks/t1", "/api/tasks/{task_id}", Action.OWNER_ONLY, {"task_id": "t1"}),
        ("GET", "/api/me", "/api/me", Action.OWNER_ONLY, {}),
        ("GET", "/version", "/version", Action.PUBLIC, {}),
        ("GET", "/health", "/health", Action.PUBLIC, {}),
        ("GET", "/api/agents", "/api/agents", Action.OWNER_ONLY, {}),
        ("GET", "/api/agentharnesses/ns/h", "/api/agentharnesses/{namespace}/{name}", Action.OWNER_ONLY,
         {"namespace": "ns", "name": "h"}),
        ("POST", "/api/agentharnesses/ns/h/sessions/s1/ensure",
         "/api/agentharnesses/{namespace}/{name}/sessions/{session_id}/ensure", Action.OWNER_ONLY,
         {"namespace": "ns", "name": "h", "session_id": "s1"}),
        ("GET", "/api/agentharnesses/ns/h/acp/s1", "/api/agentharnesses/{namespace}/{name}/{rest*}",
         Action.OWNER_ONLY, {"namespace": "ns", "name": "h", "rest": "acp/s1"}),
        ("POST", "/mcp", "/mcp/{rest*}", Action.OWNER_ONLY, {"rest": ""}),
        ("GET", "/api/sessions/a%20b", "/api/sessions/{session_id}", Action.READ, {"session_id": "a b"}),
    ],
)
def test_kagent_routes(method: str, path: str, template: str, action: Action, params: dict[str, str]) -> None:
    match = KAGENT.match(method, path)
    assert (match.template, match.action, match.params) == (template, action, params)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/unknown"),  # not a kagent route
        ("OPTIONS", "/api/sessions/s1"),  # path known, method not
        ("GET", "/api/a2a/ns/agent/"),  # A2A JSON-RPC is POST only
        ("GET", "/api/a2a/ns/agent/x/.well-known/agent-card.json"),  # a card below the prefix: not rewritten
        ("GET", "/api/a2a/ns/agent/.well-known/agent.json"),  # not a card in kagent (R8): no public rule
        ("POST", "/api/a2a/ns"),  # the prefix needs both namespace and name
        ("GET", "/api/sessions/s1/events"),  # not registered in kagent (R2)
        ("PUT", "/api/tasks/t1"),
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


# -- prefix rules: a final "{name*}" segment (gorilla/mux PathPrefix) -------------------------


def prefix(name: str, template: str, methods: tuple[str, ...] = ("GET",)) -> RouteRule:
    return RouteRule(name, frozenset(methods), template, Action.READ, Locator.NONE)


PREFIX_TABLE = RouteTable((
    prefix("agent", "/a/{ns}/{name}/{rest*}"),
    prefix("card", "/a/{ns}/{name}/card"),
    prefix("pinned", "/b/{ns}/fixed/{rest*}"),
    prefix("other", "/b/{ns}/{name}/{rest*}"),
    prefix("deeper", "/a/{ns}/{name}/deep/{rest*}"),
    prefix("root", "/{all*}", ("POST",)),
))


@pytest.mark.parametrize(
    ("method", "path", "name", "params"),
    [
        ("GET", "/a/n/x", "agent", {"ns": "n", "name": "x", "rest": ""}),
        ("GET", "/a/n/x/", "agent", {"ns": "n", "name": "x", "rest": ""}),
        ("GET", "/a/n/x/y/z/", "agent", {"ns": "n", "name": "x", "rest": "y/z"}),
        ("GET", "/a/n/x/y%20z", "agent", {"ns": "n", "name": "x", "rest": "y z"}),
        ("GET", "/a/n/x/card", "card", {"ns": "n", "name": "x"}),  # exact beats prefix
        ("GET", "/a/n/x/card/more", "agent", {"ns": "n", "name": "x", "rest": "card/more"}),
        ("GET", "/b/n/fixed/q", "pinned", {"ns": "n", "rest": "q"}),  # a literal beats a parameter
        ("GET", "/b/n/fixed", "pinned", {"ns": "n", "rest": ""}),
        ("GET", "/b/n/free/q", "other", {"ns": "n", "name": "free", "rest": "q"}),
        ("GET", "/a/n/x/deep/q", "deeper", {"ns": "n", "name": "x", "rest": "q"}),  # a longer prefix wins
        ("GET", "/a/n/x/deep", "deeper", {"ns": "n", "name": "x", "rest": ""}),
        ("POST", "/", "root", {"all": ""}),
        ("POST", "/a/n/x", "root", {"all": "a/n/x"}),
    ],
)
def test_prefix_rules(method: str, path: str, name: str, params: dict[str, str]) -> None:
    match = PREFIX_TABLE.match(method, path)
    assert match.rule is not None
    assert (match.rule.name, match.params) == (name, params)


@pytest.mark.parametrize(("method", "path"), [("GET", "/a/n"), ("GET", "/a"), ("DELETE", "/a/n/x/y")])
def test_prefix_rules_do_not_reach_shorter_paths(method: str, path: str) -> None:
    assert PREFIX_TABLE.match(method, path).rule is None


@pytest.mark.parametrize(
    "rules",
    [
        (prefix("one", "/a/{x}/{rest*}"), prefix("two", "/a/{y}/{more*}")),  # identical prefixes
        (prefix("one", "/a/{x}/{rest*}"), prefix("two", "/{y}/b/{more*}")),  # crossing prefixes
        (prefix("card", "/a/{x}/{y}/card"), prefix("pinned", "/a/{x}/fixed/{rest*}")),  # /a/n/fixed/card
        (prefix("one", "/{x}/b"), prefix("two", "/a/{rest*}")),  # an exact rule not inside the prefix
        (prefix("one", "/a/{x}/c", ()), prefix("two", "/{y}/{z}/{rest*}", ("GET",)), prefix("three", "/a/{rest*}")),
    ],
)
def test_ambiguous_prefix_tables_fail_at_start_up(rules: tuple[RouteRule, ...]) -> None:
    with pytest.raises(RouteTableError, match="match the same requests"):
        RouteTable(rules)


@pytest.mark.parametrize(
    "rules",
    [
        (prefix("one", "/a/{x}/{rest*}", ("GET",)), prefix("two", "/a/{y}/{more*}", ("POST",))),  # methods differ
        (prefix("one", "/a/b"), prefix("two", "/a/{rest*}")),  # exact nested in the prefix
        (prefix("one", "/a/b/{rest*}"), prefix("two", "/a/{rest*}")),  # prefix nested in a shorter one
        (prefix("one", "/x/{rest*}"), prefix("two", "/y/{rest*}")),
        (prefix("one", "/a"), prefix("two", "/a/b/{rest*}")),  # the exact path is shorter than the prefix
    ],
)
def test_nested_or_disjoint_prefix_tables_are_accepted(rules: tuple[RouteRule, ...]) -> None:
    RouteTable(rules)


@pytest.mark.parametrize(
    "template",
    ["/a/{rest*}/b", "/a/{rest*}/", "/a/b{x}", "/a/{x*y}", "/a/*"],
)
def test_malformed_templates_fail_at_start_up(template: str) -> None:
    with pytest.raises(RouteTableError, match="not a literal"):
        RouteTable((prefix("bad", template),))


def test_kagent_table_has_no_dead_rules() -> None:
    """research R2, R8: GET …/events and .well-known/agent.json cards are not kagent routes."""
    templates = {r.template for r in profiles.load("kagent").rules}
    assert "/api/sessions/{session_id}/events" in templates
    assert not any(t.endswith("/agent.json") for t in templates)
    assert not [r for r in profiles.load("kagent").rules if r.template.endswith("/events") and "GET" in r.methods]
