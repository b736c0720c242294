"""A profile's own hooks, kept out of the pipeline core: answer rewriters and WebSocket message authorizers.

A profile names a module of this package (``hook_module: kagent_hooks``);
that module exports ``RESPONSE_HOOKS``, a mapping from hook name to an async
function. A route lists the hooks it uses (``hooks: [read_only_flag]``). For a
2xx JSON answer (HTML for a hook marked ``html``) on such a route, the
pipeline reads the body whole (at most
``limits.max_learned_response`` bytes), calls the hook, and sends what it
returns. Hooks see the request only through ``HookContext``: who asked, what
the gateway decided, the route's path parameters, and two narrow services
(fetch from the upstream as a given user; the shares a user has opened).

The same module may export ``MESSAGE_AUTHORIZER``, a ``MessageAuthorizer``
that decides, frame by frame, what a WebSocket connection opened through a
share may send and receive, and ``REQUEST_CLASSIFIER``, a pure function from a
decoded JSON request body to the ``Named`` sessions and objects it touches and
its action (``session: call`` routes: JSON-RPC tools such as MCP's).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.models import Caller, Decision, Named, Share

# (method, path, user) → (status, body); the path is the upstream's, already encoded.
Fetch = Callable[[str, str, str], Awaitable[tuple[int, bytes]]]
# user → [(share, token or None)]: live shares the user has opened, with the
# token when the store keeps tokens (``shares.token_storage: encrypted``).
OpenedShares = Callable[[str], Awaitable[list[tuple[Share, str | None]]]]


@dataclass(frozen=True, slots=True)
class Sessions:
    """What a response hook may ask and tell about sessions (gateway-recorded ownership).

    ``owners_of(ids)`` → owner per session (``None``: nobody); ``record_owner(session,
    user)`` → the owner of record after recording ``user`` as the creator (first
    record wins); ``learn([(object id, session id)])`` records object bindings
    (first binding wins); ``public(ids)`` → the subset open to public read.
    Each raises ``DependencyUnavailable`` when the store cannot answer.
    """

    owners_of: Callable[[list[str]], Awaitable[dict[str, str | None]]]
    record_owner: Callable[[str, str], Awaitable[str]]
    learn: Callable[[list[tuple[str, str]]], Awaitable[None]]
    public: Callable[[list[str]], Awaitable[set[str]]]


@dataclass(frozen=True, slots=True)
class HookContext:
    """What a response hook may know and do."""

    caller: Caller
    decision: Decision
    params: Mapping[str, str]
    fetch_as: Fetch
    opened_shares: OpenedShares
    sessions: Sessions | None = None  # gateway-recorded ownership profiles only


ResponseHook = Callable[[HookContext, bytes], Awaitable[bytes]]


def html(hook: ResponseHook) -> ResponseHook:
    """Mark a response hook as one that rewrites ``text/html`` answers (hooks see JSON by default)."""
    hook.media_type = "text/html"  # type: ignore[attr-defined]
    return hook


def accepts(hook: ResponseHook, content_type: str) -> bool:
    """Does ``hook`` rewrite answers of this ``Content-Type``? (JSON, or HTML for ``html`` hooks)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if getattr(hook, "media_type", None) == "text/html":
        return media == "text/html"
    return media == "application/json" or media.endswith("+json")
# A decoded JSON request body → what it names and its action; raises ``GatewayError``
# (e.g. ``JsonRpcError``) for a body it refuses. Pure: no I/O.
RequestClassifier = Callable[[Any], Named]


def load(module: str | None) -> Mapping[str, ResponseHook]:
    """The ``RESPONSE_HOOKS`` of ``gateway.profiles.<module>`` (empty for ``None``).

    Raises ``ValueError`` when the module or its mapping is missing.
    """
    if module is None:
        return {}
    if not module.isidentifier():
        raise ValueError(f"hook_module {module!r} is not a module name")
    try:
        loaded: Any = importlib.import_module(f"{__package__}.{module}")
    except ImportError as exc:
        raise ValueError(f"hook_module {module!r}: {exc}") from None
    hooks = getattr(loaded, "RESPONSE_HOOKS", None)
    if not isinstance(hooks, Mapping):
        raise ValueError(f"hook_module {module!r} has no RESPONSE_HOOKS mapping")
    return hooks


# -- message authorizers (WebSocket; DESIGN.md "WebSocket and message-level authorization") --


@dataclass(frozen=True, slots=True)
class Forward:
    """Relay the message; ``message`` replaces it when the authorizer rewrote it."""

    message: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """Relay nothing (``reason`` is logged and counted)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Relay nothing; answer the sender with ``message`` (e.g. a JSON-RPC error)."""

    message: dict[str, Any]
    reason: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with a WebSocket close ``code`` and ``reason``."""

    code: int
    reason: str


Verdict = Forward | Drop | Reply | Close


class MessageAuthorizer:
    """A profile's per-frame policy for WebSocket connections opened through a share.

    Subclasses are pure: ``open`` builds the connection's state from the share
    and the caller; ``from_client`` and ``from_upstream`` map (state, parsed
    JSON message) to a ``Verdict`` and may update the state (subscriptions,
    pending requests); none of them does I/O. Owner connections (no share)
    never reach an authorizer: they are relayed as they are.
    """

    binary_allowed = False  # may share holders send binary frames?

    def open(self, share: Share, caller: Caller) -> Any:
        """The connection's state."""
        raise NotImplementedError

    def from_client(self, state: Any, message: Any) -> Verdict:
        """A frame from the share holder, bound for the upstream."""
        raise NotImplementedError

    def from_upstream(self, state: Any, message: Any) -> Verdict:
        """A frame from the upstream, bound for the share holder."""
        raise NotImplementedError


def load_authorizer(module: str | None) -> MessageAuthorizer | None:
    """The ``MESSAGE_AUTHORIZER`` of ``gateway.profiles.<module>``, if it has one."""
    if module is None:
        return None
    loaded: Any = importlib.import_module(f"{__package__}.{module}")
    authorizer = getattr(loaded, "MESSAGE_AUTHORIZER", None)
    if authorizer is not None and not isinstance(authorizer, MessageAuthorizer):
        raise ValueError(f"hook_module {module!r}: MESSAGE_AUTHORIZER is not a MessageAuthorizer")
    return authorizer


def load_classifier(module: str | None) -> RequestClassifier | None:
    """The ``REQUEST_CLASSIFIER`` of ``gateway.profiles.<module>``, if it has one."""
    if module is None:
        return None
    loaded: Any = importlib.import_module(f"{__package__}.{module}")
    classifier = getattr(loaded, "REQUEST_CLASSIFIER", None)
    if classifier is not None and not callable(classifier):
        raise ValueError(f"hook_module {module!r}: REQUEST_CLASSIFIER is not callable")
    return classifier
