"""The AHP message authorizer as tables (pure): every method and action a share holder may or may not send,
every host message a holder may or may not see, strict chat URI decoding, and a property over
generated host streams: no frame about another session ever reaches a holder."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.models import Caller, Share
from gateway.profiles.agent_host_hooks import MESSAGE_AUTHORIZER as AUTH
from gateway.profiles.agent_host_hooks import AhpState, in_share, session_of_chat
from gateway.profiles.hooks import Close, Drop, Forward, Reply

S = "mock:/s1"
OTHER = "ahp-session:/s2"


def b64(uri: str) -> str:
    return base64.urlsafe_b64encode(uri.encode()).rstrip(b"=").decode()


DEFAULT_CHAT = f"ahp-chat://default/{b64(S)}"
PEER_CHAT = f"ahp-chat://c7/{b64(S)}"
SUBAGENT_CHAT = f"ahp-chat://subagent/{b64(S)}/call%2D1"
OTHER_CHAT = f"ahp-chat://default/{b64(OTHER)}"


def state(read_only: bool = False) -> AhpState:
    share = Share("sh_1", S, "owner", read_only, None, "abcdefgh", 0.0)
    st_ = AUTH.open(share, Caller("bob", "jwt"))
    assert isinstance(st_, AhpState)
    return st_


def req(method: str, rid: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def dispatch(channel: str, kind: str, **action: Any) -> dict[str, Any]:
    return note("dispatchAction", channel=channel, clientSeq=1, action={"type": kind, **action})


@pytest.mark.parametrize(("uri", "session"), [
    (DEFAULT_CHAT, S), (PEER_CHAT, S), (SUBAGENT_CHAT, S), (OTHER_CHAT, OTHER),
    (f"ahp-chat://default/{b64(S)}=", None),  # padding is not base64url-no-pad
    (f"ahp-chat://default/{b64(S)}/x", None),  # extra segment
    ("ahp-chat://subagent/" + b64(S), None),  # a subagent chat needs its tool call
    ("ahp-chat:/c7", None),  # spec chat URIs do not name a session
    (f"ahp-chat:///{b64(S)}", None),  # empty authority
    ("ahp-chat://default/" + b64("not a session"), None),
    ("ahp-chat://default/" + b64(S + "/../s2"), None),
    ("ahp-chat://default/!!", None),
    (f"AHP-CHAT://default/{b64(S)}", None),
])
def test_chat_uris_are_decoded_strictly(uri: str, session: str | None) -> None:
    assert session_of_chat(uri) == session


@pytest.mark.parametrize(("channel", "allowed"), [
    (S, True), (DEFAULT_CHAT, True), (PEER_CHAT, True), (SUBAGENT_CHAT, True), (S + "/annotations", True),
    (S + "/changeset/branch", True), (S + "/subagent/call-1", True),
    (OTHER, False), (OTHER_CHAT, False), ("ahp-root://", False), ("ahp-terminal:/t1", False),
    ("mcp://copilot/s1/server", False), (S + "x", False), (S + "/../s2", False), (S + "//x", False),
    (S + "/./x", False), (S + "/a%2Fb", False), ("mock:/s1?x", False), (None, False), (3, False),
])
def test_the_share_s_channels(channel: Any, allowed: bool) -> None:
    assert in_share(S, channel) is allowed


# -- client → host -----------------------------------------------------------------------------

REFUSED_REQUESTS = [
    req("createSession", channel="ahp-session:/new", provider="mock"),
    req("disposeSession", channel=S),
    req("createChat", channel=S, chat=PEER_CHAT),
    req("disposeChat", channel=PEER_CHAT),
    req("authenticate", channel="ahp-root://", resource="https://api", token="t"),
    req("resourceRead", channel="ahp-root://", uri="file:///etc/passwd"),
    req("resourceList", channel="ahp-root://", uri="file:///"),
    req("resourceWrite", channel="ahp-root://", uri="file:///x", data="y"),
    req("resourceDelete", channel="ahp-root://", uri="file:///x"),
    req("resourceRequest", channel="ahp-root://"),
    req("createResourceWatch", channel="ahp-root://"),
    req("createTerminal", channel="ahp-terminal:/t9"),
    req("disposeTerminal", channel="ahp-terminal:/t1"),
    req("createTcpConnection", channel="ahp-tcp:/x", host="10.0.0.1", port=22),
    req("invokeChangesetOperation", channel=S + "/changeset/branch", operationId="commit"),
    req("resolveSessionConfig", channel="ahp-root://", provider="mock"),
    req("completions", channel=DEFAULT_CHAT, text="@", offset=1),
    req("shutdown"), req("getNetworkDiagnosticsInfo"), req("diagnosticsFetch", url="http://x"),
    req("tools/call", channel="mcp://copilot/s1/server"),
    req("subscribe", channel=OTHER), req("subscribe", channel="ahp-root://"),
    req("subscribe", channel="ahp-terminal:/t1"), req("subscribe", channel=OTHER_CHAT),
    req("fetchTurns", channel=OTHER_CHAT, cursor=None),
]


@pytest.mark.parametrize("message", REFUSED_REQUESTS, ids=lambda m: f"{m['method']}:{m['params'].get('channel')}")
def test_requests_a_holder_may_not_make_get_permission_denied(message: dict[str, Any]) -> None:
    verdict = AUTH.from_client(state(), message)
    assert isinstance(verdict, Reply)
    assert verdict.message["id"] == message["id"] and verdict.message["error"]["code"] == -32009


@pytest.mark.parametrize("message", [
    req("ping"), req("subscribe", channel=S), req("subscribe", channel=DEFAULT_CHAT),
    req("subscribe", channel=SUBAGENT_CHAT), req("subscribe", channel=S + "/annotations"),
    req("fetchTurns", channel=PEER_CHAT, cursor="c"), req("listSessions", channel="ahp-root://"),
    note("unsubscribe", channel=DEFAULT_CHAT),
], ids=lambda m: f"{m['method']}:{m['params'].get('channel')}")
def test_reads_on_the_share_pass(message: dict[str, Any]) -> None:
    for read_only in (True, False):
        assert AUTH.from_client(state(read_only), message) == Forward()


def test_initialize_namespaces_the_client_and_cuts_subscriptions() -> None:
    s = state()
    message = req("initialize", channel="ahp-root://", protocolVersions=["0.9.0"], clientId="vscode-1",
                  initialSubscriptions=["ahp-root://", S, OTHER, DEFAULT_CHAT, "ahp-terminal:/t1"])
    verdict = AUTH.from_client(s, message)
    assert isinstance(verdict, Forward) and verdict.message is not None
    params = verdict.message["params"]
    assert params["clientId"].startswith("share-") and params["clientId"].endswith("-vscode-1")
    assert params["initialSubscriptions"] == [S, DEFAULT_CHAT]
    # another holder (or another share) never gets the same client id, so cannot resume it
    other = AUTH.open(Share("sh_2", S, "owner", False, None, "p", 0.0), Caller("bob", "jwt"))
    again = AUTH.from_client(other, req("reconnect", channel="ahp-root://", clientId="vscode-1",
                                        lastSeenServerSeq=3, subscriptions=[S]))
    assert isinstance(again, Forward) and again.message is not None
    assert again.message["params"]["clientId"] != params["clientId"]
    owner_id = AUTH.from_client(state(), req("reconnect", channel="ahp-root://", clientId="owner-window",
                                             lastSeenServerSeq=0, subscriptions=[]))
    assert isinstance(owner_id, Forward) and owner_id.message is not None
    assert owner_id.message["params"]["clientId"] != "owner-window"


WRITES = [
    dispatch(DEFAULT_CHAT, "chat/turnStarted", turnId="t1", message={"text": "hi", "attachments": []}),
    dispatch(PEER_CHAT, "chat/toolCallConfirmed", turnId="t1", toolCallId="c1", approved=True, confirmed=True),
    dispatch(SUBAGENT_CHAT, "chat/toolCallConfirmed", turnId="t1", toolCallId="c2", approved=False, reason="no"),
    dispatch(DEFAULT_CHAT, "chat/turnCancelled", turnId="t1"),
    dispatch(DEFAULT_CHAT, "chat/pendingMessageSet", message={"text": "next"}),
    dispatch(S, "session/titleChanged", title="renamed"),
]


@pytest.mark.parametrize("message", WRITES, ids=lambda m: m["params"]["action"]["type"])
def test_writes_on_the_share_need_a_read_write_share(message: dict[str, Any]) -> None:
    assert AUTH.from_client(state(read_only=False), message) == Forward()
    assert AUTH.from_client(state(read_only=True), message) == Drop("share link is read-only")


@pytest.mark.parametrize("message", [
    dispatch(OTHER_CHAT, "chat/turnStarted", turnId="t", message={"text": "x"}),
    dispatch(OTHER, "session/titleChanged", title="x"),
    dispatch("ahp-root://", "root/configChanged", config={}),
    dispatch("ahp-terminal:/t1", "terminal/input", data="rm -rf /\n"),
    dispatch(S, "session/configChanged", config={"autoApprove": True}),
    dispatch(S, "session/activeClientSet", client={"clientId": "x", "tools": []}),
    dispatch(S, "session/modelChanged", model="x"),
    dispatch(DEFAULT_CHAT, "chat/toolCallComplete", toolCallId="c"),
    dispatch(DEFAULT_CHAT, "chat/truncated", turnId="t"),
    dispatch(DEFAULT_CHAT, "chat/turnStarted", turnId="t",
             message={"text": "read this", "attachments": [{"type": "chat", "resource": OTHER_CHAT}]}),
    dispatch(DEFAULT_CHAT, "chat/turnStarted", turnId="t",
             message={"text": "x", "attachments": [{"type": "file", "resource": "file:///home/owner/.ssh/id_rsa"}]}),
    dispatch(DEFAULT_CHAT, "chat/pendingMessageSet", message={"attachments": [{"uri": OTHER}]}),
], ids=lambda m: f"{m['params']['action']['type']}:{m['params']['channel']}")
def test_writes_outside_the_share_or_not_for_holders_are_dropped(message: dict[str, Any]) -> None:
    assert isinstance(AUTH.from_client(state(read_only=False), message), Drop)


@pytest.mark.parametrize("message", [[], "x", {"id": 1, "method": "ping"}, {"jsonrpc": "2.0", "method": 3},
                                     {"jsonrpc": "2.0", "method": "ping", "params": []}])
def test_malformed_client_messages_close_the_connection(message: Any) -> None:
    assert isinstance(AUTH.from_client(state(), message), Close)


# -- host → client -------------------------------------------------------------------------------


def envelope(channel: str, kind: str = "chat/delta", client: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"channel": channel, "serverSeq": 9, "action": {"type": kind}}
    if client:
        params["origin"] = {"clientId": client, "clientSeq": 1}
    return note("action", **params)


@pytest.mark.parametrize(("message", "passes"), [
    (envelope(DEFAULT_CHAT), True), (envelope(SUBAGENT_CHAT), True), (envelope(S, "session/ready"), True),
    (envelope(S + "/annotations", "annotations/added"), True),
    (envelope(OTHER_CHAT), False), (envelope(OTHER, "session/ready"), False),
    (envelope("ahp-root://", "root/terminalsChanged"), False), (envelope("ahp-terminal:/t1", "terminal/data"), False),
    (note("root/sessionAdded", channel="ahp-root://", summary={"resource": S, "title": "x"}), True),
    (note("root/sessionAdded", channel="ahp-root://", summary={"resource": OTHER, "title": "y"}), False),
    (note("root/sessionRemoved", channel="ahp-root://", session=OTHER), False),
    (note("root/sessionSummaryChanged", channel="ahp-root://", session=S, changes={}), True),
    (note("root/sessionSummaryChanged", channel="ahp-root://", session=OTHER, changes={}), False),
    (note("root/progress", channel="ahp-root://", progressToken="p"), False),
    (note("auth/required", channel="ahp-root://", resource="https://api"), False),
    (note("notifications/message", channel="mcp://copilot/s1/server"), False),
    (note("otlp/exportLogs", channel="ahp-otlp:/logs"), False),
    (req("resourceRead", rid=77, channel="ahp-root://", uri="file:///"), False),
    (req("canvasOpen", rid=78, channel=S, canvas="ahp-canvas:/c"), True),
])
def test_what_a_holder_receives(message: dict[str, Any], passes: bool) -> None:
    assert isinstance(AUTH.from_upstream(state(), message), Forward) is passes


def test_answers_are_cut_to_the_shared_session() -> None:
    s = state()
    AUTH.from_client(s, req("listSessions", rid=5, channel="ahp-root://"))
    answer = {"jsonrpc": "2.0", "id": 5, "result": {"items": [{"resource": S}, {"resource": OTHER}]}}
    verdict = AUTH.from_upstream(s, answer)
    assert isinstance(verdict, Forward) and verdict.message is not None
    assert verdict.message["result"]["items"] == [{"resource": S}]
    AUTH.from_client(s, req("reconnect", rid=6, channel="ahp-root://", clientId="c", lastSeenServerSeq=1,
                            subscriptions=[S]))
    replay = {"jsonrpc": "2.0", "id": 6, "result": {"type": "replay", "missing": [OTHER],
                                                    "actions": [envelope(S)["params"], envelope(OTHER)["params"]]}}
    verdict = AUTH.from_upstream(s, replay)
    assert isinstance(verdict, Forward) and verdict.message is not None
    assert [a["channel"] for a in verdict.message["result"]["actions"]] == [S]
    assert verdict.message["result"]["missing"] == []
    # an answer to a request the gateway answered itself (or never saw) does not pass
    assert isinstance(AUTH.from_upstream(s, {"jsonrpc": "2.0", "id": 99, "result": {}}), Drop)


def test_the_holder_sees_its_own_client_id_in_its_actions() -> None:
    s = state()
    verdict = AUTH.from_client(s, req("initialize", channel="ahp-root://", protocolVersions=["0.9.0"],
                                      clientId="mine", initialSubscriptions=[]))
    assert isinstance(verdict, Forward) and verdict.message is not None
    namespaced = verdict.message["params"]["clientId"]
    back = AUTH.from_upstream(s, envelope(DEFAULT_CHAT, "chat/turnStarted", client=namespaced))
    assert isinstance(back, Forward) and back.message is not None
    assert back.message["params"]["origin"]["clientId"] == "mine"
    others = AUTH.from_upstream(s, envelope(DEFAULT_CHAT, "chat/turnStarted", client="owner-window"))
    assert others == Forward()


# -- the property: nothing about another session reaches a holder --------------------------------

CHANNELS = st.sampled_from([S, DEFAULT_CHAT, PEER_CHAT, SUBAGENT_CHAT, S + "/annotations", OTHER, OTHER_CHAT,
                            "ahp-root://", "ahp-terminal:/t1", "mcp://x/y/z", "ahp-chat:/c1", S + "x",
                            f"ahp-chat://default/{b64(OTHER)}x"])
SESSIONS = st.sampled_from([S, OTHER, "mock:/s3"])


@st.composite
def host_messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["action", "root/sessionAdded", "root/sessionRemoved", "root/sessionSummaryChanged",
                                 "auth/required", "other", "answer", "request"]))
    if kind == "action":
        return envelope(draw(CHANNELS), draw(st.sampled_from(["chat/delta", "session/ready", "root/configChanged"])))
    if kind == "root/sessionAdded":
        return note(kind, channel="ahp-root://", summary={"resource": draw(SESSIONS)})
    if kind in ("root/sessionRemoved", "root/sessionSummaryChanged"):
        return note(kind, channel="ahp-root://", session=draw(SESSIONS))
    if kind == "answer":
        return {"jsonrpc": "2.0", "id": draw(st.integers(0, 3)), "result": {
            "items": [{"resource": draw(SESSIONS)} for _ in range(draw(st.integers(0, 3)))]}}
    if kind == "request":
        return req(draw(st.sampled_from(["resourceRead", "canvasOpen"])), rid=draw(st.integers(100, 103)),
                   channel=draw(CHANNELS))
    return note(draw(st.sampled_from(["auth/required", "x/y"])), channel=draw(CHANNELS))


def names_another_session(message: dict[str, Any]) -> bool:
    params = message.get("params") or {}
    named = [params.get("channel"), params.get("session"), (params.get("summary") or {}).get("resource")]
    result = message.get("result")
    if isinstance(result, dict):
        named += [i.get("resource") for i in result.get("items", [])]
    return any(isinstance(n, str) and n != "ahp-root://" and not in_share(S, n) for n in named)


@given(st.lists(host_messages(), max_size=30), st.lists(st.integers(0, 3), max_size=4))
def test_no_frame_about_another_session_ever_reaches_a_holder(stream: list[dict[str, Any]], asked: list[int]) -> None:
    s = state()
    for rid in asked:  # the holder asked for the session list with these ids
        AUTH.from_client(s, req("listSessions", rid=rid, channel="ahp-root://"))
    for message in stream:
        verdict = AUTH.from_upstream(s, message)
        if isinstance(verdict, Forward):
            sent = verdict.message if verdict.message is not None else message
            assert not names_another_session(sent), sent
