"""Profiles: route tables and per-server settings shipped as YAML data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gateway.models import Action, Locator, RouteRule
from gateway.profiles import hooks as response_hooks
from gateway.profiles.hooks import MessageAuthorizer, RequestClassifier, ResponseHook
from gateway.profiles.links import Links
from gateway.profiles.links import parse as parse_links

# Built-in route hooks: the pipeline's own (``gateway/pipeline``), any profile may use them.
HOOKS = frozenset({
    "agent_card", "record_owner", "filter_owned", "owned_ids",
    "scope_query",  # a share holder's query parameter ``param`` is set to the share's session
    "filter_events",  # an unscoped SSE feed is filtered to the caller's sessions (``pipeline/events.py``)
    "public_flag",  # ``{<public_read.field>: bool}`` is answered by the gateway (``pipeline/public.py``)
    "long_poll",  # an answer that may wait long: a share's revocation or expiry cuts the wait (403)
})
OWNERSHIP_MODES = frozenset({"upstream-probe", "gateway-recorded"})


class ProfileError(ValueError):
    """A profile that cannot be used; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class Profile:
    """A loaded profile: the route table and how session ownership is established."""

    name: str
    rules: tuple[RouteRule, ...]
    ownership_mode: str
    probe_method: str
    probe_path: str
    identity_header: str | None
    upstream_auth_mode: str
    links: Links  # share links: URL template and placeholders (``gateway/profiles/links.py``)
    owner_from: str | None  # JSON field of a create-session response holding the new session id
    # Identity carriers (DESIGN.md): every header and query parameter the upstream
    # reads a user from; removed from client requests (names as written; the
    # pipeline compares them as ``identify.normalise_header_name`` / ``query_key`` do).
    carrier_headers: frozenset[str] = frozenset()
    carrier_query: frozenset[str] = frozenset()
    # The profile's own answer rewriters (``hook_module``), by hook name.
    response_hooks: Mapping[str, ResponseHook] = field(default_factory=dict)
    # Its WebSocket message authorizer (``hook_module``'s ``MESSAGE_AUTHORIZER``).
    authorizer: MessageAuthorizer | None = None
    # The query parameter a share token may come in, if not ``shares.query_param``
    # (agent-host: ``tkn``, where an unmodified client sends its connection token).
    share_query_param: str | None = None
    upstream_query_param: str | None = None  # ``upstream_auth.mode: query``: the token's parameter
    # Object bindings (``session: object`` routes; ``gateway/pipeline/locate.py``): the JSON
    # field of an upstream answer naming the session of the object whose ``id`` it carries,
    # and the upstream path (with ``{id}``) that answers one object when no binding is known.
    binding_field: str | None = None
    binding_probe: str | None = None
    # ``public_read.field``: the request body field that turns public read of a session on/off
    # (``gateway/pipeline/public.py``), also set in the answer hooks' session listings.
    public_flag: str | None = None
    # ``share_cookie``: the cookie a share link's token is handed back in (``gateway/pipeline/cookie.py``)
    share_cookie: str | None = None
    # Its request classifier (``hook_module``'s ``REQUEST_CLASSIFIER``) for ``session: call`` routes.
    classifier: RequestClassifier | None = None

    def response_hook(self, rule: RouteRule | None) -> ResponseHook | None:
        """The response hook a route uses, if any (at most one per route)."""
        if rule is None or not rule.hooks or not self.response_hooks:
            return None
        for name in rule.hooks:
            hook = self.response_hooks.get(name)
            if hook is not None:
                return hook
        return None


def _rule(index: int, raw: Any, problems: list[str], known: frozenset[str] = HOOKS) -> RouteRule | None:
    where = f"routes[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping")
        return None
    try:
        action = Action(raw.get("action"))
        locator = Locator(raw.get("session", "none"))
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if action is Action.UNMATCHED:
        problems.append(f"{where}: action 'unmatched' is reserved")
        return None
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        problems.append(f"{where}: path must start with '/'")
        return None
    param = raw.get("param")
    object_param = raw.get("object")
    if isinstance(object_param, str):
        object_param = [object_param]
    if object_param is not None and (
        not isinstance(object_param, list) or not all(isinstance(o, str) and o for o in object_param)
    ):
        problems.append(f"{where}: object must name query parameters or body fields")
        object_param = None
    if locator in (Locator.PATH, Locator.TASK, Locator.OBJECT) and f"{{{param}}}" not in path:
        problems.append(f"{where}: session {locator.value} needs param naming a path parameter")
    if locator in (Locator.QUERY, Locator.BODY) and not (param or object_param):
        problems.append(f"{where}: session {locator.value} needs param or object")
    if object_param is not None and locator not in (Locator.QUERY, Locator.BODY):
        problems.append(f"{where}: object names a query parameter or body field: session query or body only")
    write_when = raw.get("write_when") or {}
    if not isinstance(write_when, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in write_when.items()
    ):
        problems.append(f"{where}: write_when must map query parameters to values")
        write_when = {}
    hooks = frozenset(raw.get("hooks", []))
    if hooks - known:
        problems.append(f"{where}: unknown hooks {sorted(hooks - known)}")
    elif len(hooks - HOOKS) > 1:
        problems.append(f"{where}: at most one response hook per route")
    methods = frozenset(m.upper() for m in raw.get("methods", []))
    return RouteRule(
        name=str(raw.get("name", where)),
        methods=methods,
        template=path,
        action=action,
        locator=locator,
        param=param,
        hooks=hooks,
        object_params=tuple(object_param or ()),
        write_when=frozenset(write_when.items()),
    )


def parse(data: Any) -> Profile:
    """Build a ``Profile`` from decoded YAML; raises ``ProfileError`` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ProfileError(["profile must be a mapping"])
    try:
        module_hooks = response_hooks.load(data.get("hook_module"))
    except ValueError as exc:
        problems.append(str(exc))
        module_hooks = {}
    known = HOOKS | frozenset(module_hooks)
    try:
        authorizer = response_hooks.load_authorizer(data.get("hook_module"))
    except (ValueError, ImportError) as exc:
        problems.append(str(exc))
        authorizer = None
    rules = [_rule(i, raw, problems, known) for i, raw in enumerate(data.get("routes") or [])]
    ownership = data.get("ownership") or {}
    upstream_auth = data.get("upstream_auth") or {}
    mode = ownership.get("mode", "gateway-recorded")
    if mode not in OWNERSHIP_MODES:
        problems.append(f"ownership.mode: must be one of {sorted(OWNERSHIP_MODES)}")
    carriers = data.get("identity_carriers") or {}
    carrier_headers = _names(carriers, "headers", problems)
    carrier_query = _names(carriers, "query", problems)
    links = parse_links(data, problems)
    if links.placeholders and mode != "upstream-probe":
        problems.append("links.placeholders: need ownership.mode upstream-probe (they come from its answer)")
    if authorizer is None and any(r is not None and r.locator is Locator.SHARE for r in rules):
        problems.append("session: share needs a hook_module with a MESSAGE_AUTHORIZER")
    try:
        classifier = response_hooks.load_classifier(data.get("hook_module"))
    except ValueError as exc:
        problems.append(str(exc))
        classifier = None
    if classifier is None and any(r is not None and r.locator is Locator.CALL for r in rules):
        problems.append("session: call needs a hook_module with a REQUEST_CLASSIFIER")
    bindings = data.get("bindings") or {}
    probe = bindings.get("probe") if isinstance(bindings, dict) else None
    binding_field = bindings.get("session_field") if isinstance(bindings, dict) else None
    if probe is not None and (not isinstance(probe, str) or "{id}" not in probe or not probe.startswith("/")):
        problems.append("bindings.probe: an upstream path with {id}")
    if any(r is not None and r.locator is Locator.OBJECT for r in rules) and not binding_field:
        problems.append("session: object needs bindings.session_field")
    public = data.get("public_read") or {}
    public_flag = public.get("field") if isinstance(public, dict) else None
    if any(r is not None and "public_flag" in r.hooks for r in rules) and not public_flag:
        problems.append("hooks: public_flag needs public_read.field")
    share_cookie = data.get("share_cookie")
    if share_cookie is not None and (
        not isinstance(share_cookie, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", share_cookie)
    ):
        problems.append("share_cookie must be a cookie name (letters, digits, _ and -)")
    elif share_cookie is not None and "cookie" not in {h.lower() for h in carrier_headers}:
        # the gateway's cookie must never reach the upstream: Cookie has to be a dropped carrier
        problems.append("share_cookie needs Cookie in identity_carriers.headers")
    if problems:
        raise ProfileError(problems)
    return Profile(
        name=str(data.get("name", "custom")),
        rules=tuple(r for r in rules if r is not None),
        ownership_mode=mode,
        probe_method=str(ownership.get("probe_method", "GET")).upper(),
        probe_path=str(ownership.get("probe_path", "/api/sessions/{session_id}")),
        identity_header=upstream_auth.get("header", "X-User-Id"),
        upstream_auth_mode=str(upstream_auth.get("mode", "header")),
        links=links,
        owner_from=ownership.get("session_id_field"),
        carrier_headers=frozenset(carrier_headers),
        carrier_query=frozenset(carrier_query),
        response_hooks=dict(module_hooks),
        authorizer=authorizer,
        share_query_param=data.get("share_query_param"),
        upstream_query_param=upstream_auth.get("param"),
        binding_field=binding_field,
        binding_probe=probe,
        public_flag=public_flag,
        classifier=classifier,
        share_cookie=share_cookie,
    )


def _names(carriers: Any, key: str, problems: list[str]) -> list[str]:
    """``identity_carriers.<key>``: a list of non-empty names."""
    if not isinstance(carriers, dict):
        problems.append("identity_carriers: must be a mapping with headers and query lists")
        return []
    names = carriers.get(key) or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        problems.append(f"identity_carriers.{key}: must be a list of names")
        return []
    return [n.strip() for n in names]


def load(name_or_path: str) -> Profile:
    """Load a shipped profile by name (``kagent``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        text = path.read_text()
    else:
        ref = resources.files(__package__).joinpath(f"{name_or_path}.yaml")
        if not ref.is_file():
            raise ProfileError([f"profile {name_or_path!r}: no such shipped profile or file"])
        text = ref.read_text()
    return parse(yaml.safe_load(text))
