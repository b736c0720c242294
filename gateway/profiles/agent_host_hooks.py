"""The Agent Host Protocol message authorizer: a share holder's WebSocket stays inside one session.

Sources (shared/research/agent-host-protocol.md cites each): AHP spec
(microsoft/agent-host-protocol ``docs/specification/{transport,lifecycle,
subscriptions}.md``, ``types/common/messages.ts``, ``types/channels-chat/
actions.ts``) and VS Code's host (microsoft/vscode
``src/vs/platform/agentHost/node/protocolServerHandler.ts``,
``common/state/sessionState.ts``).

A share's channels (``channels_of``): its session URI (``ahp-session:/<id>``
or the legacy ``<provider>:/<id>``), channels nested under it
(``<session>/annotations``, ``<session>/changeset/<id>``, legacy subagent
sessions), and the chat URIs that name it — ``ahp-chat://<chat>/<b64url(session)>``
and ``ahp-chat://subagent/<b64url(session)>/<toolCallId>`` — decoded strictly
(base64url without padding, round-trip equal, UTF-8). Nothing else: not
``ahp-root://``, terminals, ``mcp://``, spec chat URIs ``ahp-chat:/<id>`` (they
do not name their session), or any other session.

Client → host: ``ping``; ``initialize``/``reconnect`` with the ``clientId``
namespaced per share and holder (a holder can never resume someone else's
client: VS Code resumes by the client-asserted id alone) and subscriptions
cut to the share's channels; ``subscribe``/``unsubscribe``/``fetchTurns`` on
them; ``listSessions`` (the answer is cut to the shared session);
``dispatchAction`` of the chat/session actions in ``WRITE_ACTIONS`` on them,
for read-write shares, with no attachment naming anything outside the
share. Everything else is refused with JSON-RPC error -32009
(PermissionDenied) — or dropped, for notifications.

Host → client: answers to forwarded requests (cut as above), ``action``
envelopes on the share's channels, ``root/session*`` notifications about the
shared session only; host-wide broadcasts (``auth/required``, other root
notifications, MCP and telemetry) are dropped. The holder's own ``clientId``
is restored in the ``origin`` of its own actions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.models import Caller, Share
from gateway.profiles.hooks import Close, Drop, Forward, MessageAuthorizer, Reply, ResponseHook, Verdict

Refuse = Callable[[str], Verdict]  # a refusal: an error answer to a request, or a dropped notification
ROOT = "ahp-root://"
CHAT = "ahp-chat://"
PERMISSION_DENIED = -32009  # AHP types/common/errors.ts
POLICY_VIOLATION = 1008
# A session URI: ahp-session:/<id> or <provider>:/<id> (copilotcli, claude, codex, mock, …).
_SESSION = re.compile(r"^[a-z][a-z0-9+.-]*:/[A-Za-z0-9._~-][A-Za-z0-9._~@-]{0,199}$")
# What may follow "<session>/" in a nested channel: plain segments, no dot segments.
_NESTED = re.compile(r"^[A-Za-z0-9_~@-][A-Za-z0-9._~@-]*(/[A-Za-z0-9_~@-][A-Za-z0-9._~@-]*)*$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_CHAT_ID = re.compile(r"^[A-Za-z0-9._~-]+$")
_TOOL_CALL_ID = re.compile(r"^[A-Za-z0-9._~%-]+$")
# Client-dispatchable actions a read-write holder may send on the share's channels
# (AHP docs/guide/actions.md; not owner settings such as session/configChanged,
# which carries the approval level, nor session/activeClientSet, which joins the
# session as a tool-contributing client).
WRITE_ACTIONS = frozenset(
    {
        "chat/turnStarted",
        "chat/turnCancelled",
        "chat/turnResume",
        "chat/toolCallConfirmed",
        "chat/toolCallResultConfirmed",
        "chat/pendingMessageSet",
        "chat/pendingMessageRemoved",
        "chat/queuedMessagesReordered",
        "chat/draftChanged",
        "chat/inputAnswerChanged",
        "chat/inputCompleted",
        "session/titleChanged",
    }
)
READ_REQUESTS = frozenset({"subscribe", "fetchTurns"})
ROOT_ABOUT_SESSION = {"root/sessionAdded": ("summary", "resource"), "root/sessionRemoved": ("session",),
                      "root/sessionSummaryChanged": ("session",)}
MAX_PENDING = 256  # requests of one holder awaiting the host's answer
HOST_REQUESTS_TO_CLIENT = frozenset({"canvasOpen", "canvasInvokeOperation", "canvasClose"})


def session_of_chat(uri: str) -> str | None:
    """The session a VS Code chat URI names, or ``None`` (strict: anything malformed names none).

    ``ahp-chat://<chatId>/<b64url(session)>``; ``ahp-chat://subagent/<b64url(session)>/<toolCallId>``
    (vscode ``sessionState.ts`` ``buildChatUri``, ``buildSubagentChatUri``, ``parseChatUri``).
    """
    if not uri.startswith(CHAT):
        return None
    authority, _, path = uri[len(CHAT):].partition("/")
    parts = path.split("/")
    if authority == "subagent":
        if len(parts) != 2 or not _TOOL_CALL_ID.match(parts[1]):
            return None
    elif len(parts) != 1 or not _CHAT_ID.match(authority):
        return None
    encoded = parts[0]
    if not _B64URL.match(encoded):
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        session = raw.decode("utf-8", "strict")
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != encoded or not _SESSION.match(session):
        return None
    return session


def in_share(session: str, channel: Any) -> bool:
    """Is ``channel`` one of the channels of ``session`` (its URI, nested channels, its chats)?"""
    if not isinstance(channel, str):
        return False
    if channel == session:
        return True
    if channel.startswith(session + "/"):
        return bool(_NESTED.match(channel[len(session) + 1:]))
    return session_of_chat(channel) == session


@dataclass(slots=True)
class AhpState:
    """One share holder's connection: its session, mode, namespaced client id and open requests."""

    session: str
    read_only: bool
    namespace: str  # prefix of the clientIds the host sees for this holder
    client_id: str | None = None  # the holder's own clientId (as it sent it)
    pending: dict[Any, str] = field(default_factory=dict)  # request id → method, forwarded to the host
    host_requests: set[Any] = field(default_factory=set)  # host → client requests let through


def _error(request_id: Any, reason: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id,
            "error": {"code": PERMISSION_DENIED, "message": f"not allowed through a share link: {reason}"}}


def _uris(value: Any) -> list[str]:
    """Every string in ``value`` that looks like a URI (``scheme:``), recursively."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", item):
            found.append(item)
    return found


class AgentHostAuthorizer(MessageAuthorizer):
    """``MessageAuthorizer`` for the ``agent-host`` profile (see the module docstring)."""

    def open(self, share: Share, caller: Caller) -> AhpState:
        seed = f"{share.id}\0{caller.label}".encode()
        return AhpState(
            session=share.session_id,
            read_only=share.read_only,
            namespace=f"share-{hashlib.sha256(seed).hexdigest()[:24]}-",
        )

    # -- client → host ---------------------------------------------------------

    def from_client(self, state: AhpState, message: Any) -> Verdict:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return Close(POLICY_VIOLATION, "frames must be JSON-RPC 2.0 objects")
        method = message.get("method")
        has_id = "id" in message
        if method is None:  # the holder answering a host → client request
            if has_id and message["id"] in state.host_requests:
                state.host_requests.discard(message["id"])
                return Forward()
            return Drop("answer to no request")
        params = message.get("params")
        if not isinstance(method, str) or (params is not None and not isinstance(params, dict)):
            return Close(POLICY_VIOLATION, "malformed JSON-RPC message")
        params = params or {}

        def refuse(reason: str) -> Verdict:
            return Reply(_error(message["id"], reason), reason) if has_id else Drop(reason)

        if has_id and len(state.pending) >= MAX_PENDING:
            return refuse("too many requests awaiting an answer")
        verdict = self._client_verdict(state, method, params, message, refuse)
        if has_id and isinstance(verdict, Forward):
            state.pending[message["id"]] = method
        return verdict

    def _client_verdict(self, state: AhpState, method: str, params: dict[str, Any], message: dict[str, Any],
                        refuse: Refuse) -> Verdict:
        if method == "ping":
            return Forward()
        if method in ("initialize", "reconnect"):
            return self._handshake(state, method, params, message, refuse)
        if method in READ_REQUESTS or method == "unsubscribe":
            if in_share(state.session, params.get("channel")):
                return Forward()
            return refuse(f"{method} outside the shared session")
        if method == "listSessions":
            return Forward()  # the answer is cut to the shared session
        if method == "dispatchAction":
            return self._dispatch(state, params)
        return refuse(method)

    def _handshake(self, state: AhpState, method: str, params: dict[str, Any], message: dict[str, Any],
                   refuse: Refuse) -> Verdict:
        client_id = params.get("clientId")
        if params.get("channel", ROOT) != ROOT or not isinstance(client_id, str) or not client_id:
            return refuse(f"malformed {method}")
        key = "initialSubscriptions" if method == "initialize" else "subscriptions"
        wanted = params.get(key, [])
        if not isinstance(wanted, list):
            return refuse(f"malformed {method}")
        state.client_id = client_id
        rewritten = {**params, "clientId": state.namespace + client_id,
                     key: [c for c in wanted if in_share(state.session, c)]}
        return Forward({**message, "params": rewritten})

    def _dispatch(self, state: AhpState, params: dict[str, Any]) -> Verdict:
        action = params.get("action")
        kind = action.get("type") if isinstance(action, dict) else None
        if not in_share(state.session, params.get("channel")):
            return Drop("action outside the shared session")
        if state.read_only:
            return Drop("share link is read-only")
        if kind not in WRITE_ACTIONS:
            return Drop(f"action {kind!r} is not for share holders")
        foreign = [u for u in _uris(action) if not in_share(state.session, u)]
        if foreign:
            return Drop("action names something outside the shared session")
        return Forward()

    # -- host → client ---------------------------------------------------------

    def from_upstream(self, state: AhpState, message: Any) -> Verdict:
        if not isinstance(message, dict):
            return Drop("not a JSON-RPC object")
        method = message.get("method")
        raw_params = message.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        if method is None:  # an answer
            asked = state.pending.pop(message.get("id"), None)
            if asked is None:
                return Drop("answer to a request the holder did not send")
            return self._answer(state, asked, message)
        if not isinstance(method, str):
            return Drop("malformed")
        if method == "action":
            if not in_share(state.session, params.get("channel")):
                return Drop("action outside the shared session")
            return self._own_origin(state, message, params)
        if method in ROOT_ABOUT_SESSION:
            value: Any = params
            for key in ROOT_ABOUT_SESSION[method]:
                value = value.get(key) if isinstance(value, dict) else None
            return Forward() if value == state.session else Drop(f"{method} about another session")
        if "id" in message:  # a host → client request
            if method in HOST_REQUESTS_TO_CLIENT and in_share(state.session, params.get("channel")):
                state.host_requests.add(message["id"])
                return Forward()
            return Drop(f"host request {method}")
        channel = params.get("channel")
        if isinstance(channel, str) and channel != ROOT and in_share(state.session, channel):
            return Forward()
        return Drop(f"{method} is not about the shared session")

    def _answer(self, state: AhpState, asked: str, message: dict[str, Any]) -> Verdict:
        result = message.get("result")
        if not isinstance(result, dict) and not (asked == "listSessions" and isinstance(result, list)):
            return Forward()  # an error, or nothing to cut
        if asked == "listSessions":
            items = result if isinstance(result, list) else result.get("items", result.get("sessions"))
            if not isinstance(items, list):
                return Forward({**message, "result": []})
            kept = [s for s in items if isinstance(s, dict) and s.get("resource") == state.session]
            if isinstance(result, list):
                return Forward({**message, "result": kept})
            key = "items" if "items" in result else "sessions"
            return Forward({**message, "result": {**result, key: kept}})
        assert isinstance(result, dict)
        cut = dict(result)
        for key in ("snapshots", "actions"):
            if isinstance(cut.get(key), list):
                cut[key] = [s for s in cut[key] if isinstance(s, dict) and in_share(
                    state.session, s.get("resource", s.get("channel")))]
        if isinstance(cut.get("missing"), list):
            cut["missing"] = [c for c in cut["missing"] if in_share(state.session, c)]
        cut.pop("defaultDirectory", None)  # a path on the host: not the holder's business
        return Forward({**message, "result": cut}) if cut != result else Forward()

    def _own_origin(self, state: AhpState, message: dict[str, Any], params: dict[str, Any]) -> Verdict:
        """Show the holder its own clientId in the ``origin`` of the actions it dispatched."""
        origin = params.get("origin")
        own = None if state.client_id is None else state.namespace + state.client_id
        if isinstance(origin, dict) and own is not None and origin.get("clientId") == own:
            origin = {**origin, "clientId": state.client_id}
            return Forward({**message, "params": {**params, "origin": origin}})
        return Forward()


MESSAGE_AUTHORIZER = AgentHostAuthorizer()
RESPONSE_HOOKS: dict[str, ResponseHook] = {}
