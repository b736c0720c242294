"""Response hooks: a profile's own functions that rewrite an upstream answer, kept out of the pipeline core.

A profile names a module of this package (``hook_module: kagent_hooks``);
that module exports ``RESPONSE_HOOKS``, a mapping from hook name to an async
function. A route lists the hooks it uses (``hooks: [read_only_flag]``). For a
2xx JSON answer on such a route, the pipeline reads the body whole (at most
``limits.max_learned_response`` bytes), calls the hook, and sends what it
returns. Hooks see the request only through ``HookContext``: who asked, what
the gateway decided, the route's path parameters, and two narrow services
(fetch from the upstream as a given user; the shares a user has opened).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.models import Caller, Decision, Share

# (method, path, user) → (status, body); the path is the upstream's, already encoded.
Fetch = Callable[[str, str, str], Awaitable[tuple[int, bytes]]]
# user → [(share, token or None)]: live shares the user has opened, with the
# token when the store keeps tokens (``shares.token_storage: encrypted``).
OpenedShares = Callable[[str], Awaitable[list[tuple[Share, str | None]]]]


@dataclass(frozen=True, slots=True)
class HookContext:
    """What a response hook may know and do."""

    caller: Caller
    decision: Decision
    params: Mapping[str, str]
    fetch_as: Fetch
    opened_shares: OpenedShares


ResponseHook = Callable[[HookContext, bytes], Awaitable[bytes]]


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
