"""A2A JSON-RPC parsing and classification (both naming generations), bindings, SSE, cards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import JsonRpcError
from gateway.models import Action
from gateway.pipeline import a2a


def body(method: str, params: Any, rpc_id: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}).encode()


MESSAGE = {"message": {"contextId": "c1", "taskId": "t1", "referenceTaskIds": ["r1", "r2"]}}


@pytest.mark.parametrize(
    ("method", "params", "version", "action", "context", "tasks", "scoped"),
    [
        ("message/send", MESSAGE, "0.3", Action.WRITE, "c1", ("t1", "r1", "r2"), True),
        ("SendMessage", MESSAGE, "1.0", Action.WRITE, "c1", ("t1", "r1", "r2"), True),
        ("message/stream", MESSAGE, "0.3", Action.WRITE, "c1", ("t1", "r1", "r2"), True),
        ("SendStreamingMessage", MESSAGE, "1.0", Action.WRITE, "c1", ("t1", "r1", "r2"), True),
        ("message/send", {"message": {}}, "0.3", Action.WRITE, None, (), True),
        ("tasks/get", {"id": "t1"}, "0.3", Action.READ, None, ("t1",), True),
        ("GetTask", {"id": "t1"}, "1.0", Action.READ, None, ("t1",), True),
        ("ListTasks", {"contextId": "c1"}, "1.0", Action.READ, "c1", (), True),
        ("ListTasks", {}, "1.0", Action.READ, None, (), True),
        ("tasks/cancel", {"id": "t1"}, "0.3", Action.WRITE, None, ("t1",), True),
        ("CancelTask", {"id": "t1"}, "1.0", Action.WRITE, None, ("t1",), True),
        ("tasks/resubscribe", {"id": "t1"}, "0.3", Action.READ, None, ("t1",), True),
        ("SubscribeToTask", {"id": "t1"}, "1.0", Action.READ, None, ("t1",), True),
        ("tasks/pushNotificationConfig/set", {"taskId": "t1", "pushNotificationConfig": {}}, "0.3",
         Action.WRITE, None, ("t1",), True),
        ("CreateTaskPushNotificationConfig", {"taskId": "t1", "id": "cfg"}, "1.0", Action.WRITE, None,
         ("t1",), True),
        ("tasks/pushNotificationConfig/get", {"id": "t1"}, "0.3", Action.READ, None, ("t1",), True),
        ("GetTaskPushNotificationConfig", {"taskId": "t1", "id": "cfg"}, "1.0", Action.READ, None, ("t1",), True),
        ("tasks/pushNotificationConfig/list", {"id": "t1"}, "0.3", Action.READ, None, ("t1",), True),
        ("ListTaskPushNotificationConfigs", {"taskId": "t1"}, "1.0", Action.READ, None, ("t1",), True),
        ("tasks/pushNotificationConfig/delete", {"id": "t1"}, "0.3", Action.WRITE, None, ("t1",), True),
        ("DeleteTaskPushNotificationConfig", {"taskId": "t1", "id": "cfg"}, "1.0", Action.WRITE, None,
         ("t1",), True),
        ("agent/getAuthenticatedExtendedCard", {}, "0.3", Action.READ, None, (), False),
        ("GetExtendedAgentCard", {}, "1.0", Action.READ, None, (), False),
    ],
)
def test_method_table(
    method: str, params: Any, version: str, action: Action, context: str | None,
    tasks: tuple[str, ...], scoped: bool,
) -> None:
    call = a2a.parse_call(body(method, params, rpc_id="x"), strict=True)
    assert call is not None
    assert (call.version, call.action, call.context_id, call.task_ids, call.session_scoped) == (
        version, action, context, tasks, scoped
    )
    assert call.request_id == "x"


def test_unknown_method_is_not_attributable() -> None:
    assert a2a.parse_call(body("tasks/archive", {}), strict=True) is None


@pytest.mark.parametrize(("params", "context"), [({"contextId": "c1", "status": "completed"}, "c1"), ({}, None)])
def test_kagent_v0_tasks_list_is_a_list_read(params: dict[str, Any], context: str | None) -> None:
    """kagent's own v0.3 ``tasks/list`` (a2av0_tasks_list.go): only its contextId filter names a session."""
    call = a2a.parse_call(body("tasks/list", params), strict=True)
    assert call is not None
    assert (call.version, call.action, call.context_id, call.task_ids, call.session_scoped) == (
        "0.3", Action.READ, context, (), True
    )


def test_kagent_v0_tasks_list_rejects_a_snake_case_filter() -> None:
    with pytest.raises(JsonRpcError, match="snake_case"):
        a2a.parse_call(body("tasks/list", {"contextId": "c1", "context_id": "c2"}), strict=True)


@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        (b"{not json", -32700, "not valid JSON"),
        (b"[]", -32600, "batch"),
        (b'[{"jsonrpc":"2.0","method":"GetTask","params":{"id":"t"}}]', -32600, "batch"),
        (b'"text"', -32600, "must be an object"),
        (body("GetTask", ["t1"]), -32602, "params must be an object"),
        (body("SendMessage", {"message": "hi"}), -32602, "params.message"),
        (b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"a","id":"b"}}', -32600, "duplicate"),
        (b'{"jsonrpc":"2.0","id":1,"method":"GetTask","method":"ListTasks","params":{}}', -32600, "duplicate"),
        (body("SendMessage", {"message": {"contextId": "c1", "context_id": "c2"}}), -32600, "snake_case"),
        (body("SendMessage", {"message": {"context_id": "c2"}}), -32600, "snake_case"),
        (body("SendMessage", {"message": {"task_id": "t2"}}), -32600, "snake_case"),
        (body("SendMessage", {"message": {"reference_task_ids": ["t2"]}}), -32600, "snake_case"),
        (body("SendMessage", {"message": {"contextId": 5}}), -32602, "contextId"),
        (body("SendMessage", {"message": {"contextId": ""}}), -32602, "contextId"),
        (body("SendMessage", {"message": {"referenceTaskIds": "t1"}}), -32602, "referenceTaskIds"),
        (body("GetTask", {}), -32602, "params.id is required"),
        (body("CreateTaskPushNotificationConfig", {"task_id": "t1"}), -32600, "snake_case"),
        (b'{"jsonrpc":"2.0","id":9,"method":7}', -32600, "method"),
    ],
)
def test_ambiguous_or_malformed_bodies_are_rejected(raw: bytes, code: int, fragment: str) -> None:
    with pytest.raises(JsonRpcError) as info:
        a2a.parse_call(raw, strict=True)
    assert info.value.code == code
    assert info.value.status == 400
    assert fragment in info.value.public_message


def test_batches_pass_without_a_token() -> None:
    assert a2a.parse_call(b"[]", strict=False) is None


def test_initiated_by_is_injected_and_existing_metadata_kept() -> None:
    call = a2a.parse_call(body("SendMessage", {"message": {"contextId": "c", "metadata": {"k": 1,
                                                                                        "initiated_by": "x"}}}),
                          strict=True)
    assert call is not None
    out = json.loads(a2a.with_initiated_by(call, "bob"))
    assert out["params"]["message"]["metadata"] == {"k": 1, "initiated_by": "bob"}
    assert out["params"]["message"]["contextId"] == "c"


V10_TASK = {"task": {"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_WORKING"},
                     "artifacts": [{"parts": [{"data": {"taskId": "evil", "contextId": "c-evil"}}]}]}}


@pytest.mark.parametrize(
    ("response", "pairs"),
    [
        ({"jsonrpc": "2.0", "id": 1, "result": V10_TASK}, [("t1", "c1")]),
        ({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "t2", "contextId": "c2",
                                                 "status": {"state": "working"}}}, [("t2", "c2")]),
        ({"jsonrpc": "2.0", "id": 1, "result": {"statusUpdate": {"taskId": "t3", "contextId": "c3"}}},
         [("t3", "c3")]),
        ({"jsonrpc": "2.0", "id": 1, "result": {"kind": "artifact-update", "taskId": "t4", "contextId": "c4",
                                                 "artifact": {"parts": []}}}, [("t4", "c4")]),
        ({"jsonrpc": "2.0", "id": 1, "result": {"tasks": [
            {"id": "t5", "contextId": "c5", "status": {}}, {"id": "t6", "contextId": "c6", "status": {}}]}},
         [("t5", "c5"), ("t6", "c6")]),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": -32001}}, []),
        ({"error": False, "data": {"id": "t7", "contextId": "c7", "status": {}}}, [("t7", "c7")]),
        ({"jsonrpc": "2.0", "id": 1, "result": {"id": "t8", "contextId": "c8"}}, []),  # no status: not a Task
    ],
)
def test_bindings_are_read_from_structural_positions_only(response: Any, pairs: list[tuple[str, str]]) -> None:
    assert a2a.bindings_in_json(json.dumps(response).encode()) == pairs


def test_bindings_in_garbage() -> None:
    assert a2a.bindings_in_json(b"<html>") == []
    assert a2a.bindings_in_json(b"[1,2]") == []


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: one\n\ndata: two\n\n"],
        [b"data: one\r\n\r\ndata: two\r\n\r\n"],
        [b"data: one\r", b"\n\r\ndata: t", b"wo\n", b"\n"],
        [b": ping\n\ndata: one\n\n", b"event: x\nid: 5\ndata: two\n\n"],
        [b"data: one\r\rdata:two\r\r", b": ping\n"],  # a trailing CR may be half a CRLF
    ],
)
def test_sse_scanner_framing(chunks: list[bytes]) -> None:
    scanner = a2a.SseScanner()
    events = [e for c in chunks for e in scanner.feed(c)]
    assert events == [b"one", b"two"]


def test_sse_multi_line_data_joined() -> None:
    assert a2a.SseScanner().feed(b"data: a\ndata: b\n\n") == [b"a\nb"]


def test_agent_card_rewrite_both_shapes() -> None:
    card = {
        "name": "x",
        "url": "http://agent:8080/",
        "preferredTransport": "JSONRPC",
        "supportedInterfaces": [
            {"url": "http://agent:8080/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": "grpc://agent:9000", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
        ],
        "additionalInterfaces": [{"url": "http://agent:8080/rest", "transport": "HTTP+JSON"},
                                 {"url": "http://agent:8080/", "transport": "JSONRPC"}],
    }
    out = json.loads(a2a.rewrite_agent_card(json.dumps(card).encode(), "https://gw/api/a2a/ns/a/") or b"")
    assert out["url"] == "https://gw/api/a2a/ns/a/"
    assert out["supportedInterfaces"] == [
        {"url": "https://gw/api/a2a/ns/a/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    assert out["additionalInterfaces"] == [{"url": "https://gw/api/a2a/ns/a/", "transport": "JSONRPC"}]
    assert a2a.rewrite_agent_card(b"nope", "x") is None
