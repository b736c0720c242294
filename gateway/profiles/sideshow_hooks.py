"""sideshow's hooks: no answer rewriters yet, and a WebSocket authorizer that lets no share through.

sideshow has no WebSocket endpoint (modem-dev/sideshow, PR #261: the live feed
is SSE ``GET /api/events``; ``liveTransport: "ws"`` in ``viewer/src/host.ts``
expects the host to serve the socket itself). The profile's board-wide
catch-all is a ``session: share`` route so that, without a share, only the
board's operator (``default_owner``) reaches it; such a route needs a message
authorizer, and this one closes every share holder's socket (1008, policy
violation). It is not reached today: the catch-all is ``owner-only``, so a
share token is ignored there.
"""

from __future__ import annotations

from typing import Any

from gateway.models import Caller, Share
from gateway.profiles.hooks import Close, MessageAuthorizer, ResponseHook, Verdict

CLOSED = Close(1008, "sideshow has no WebSocket a share may use")


class NoShareSockets(MessageAuthorizer):
    """Closes every WebSocket opened through a share, at its first frame either way."""

    def open(self, share: Share, caller: Caller) -> Any:
        return None

    def from_client(self, state: Any, message: Any) -> Verdict:
        return CLOSED

    def from_upstream(self, state: Any, message: Any) -> Verdict:
        return CLOSED


RESPONSE_HOOKS: dict[str, ResponseHook] = {}
MESSAGE_AUTHORIZER = NoShareSockets()
