"""A2A JSON-RPC parsing and classification, and task→context bindings learned from responses (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gateway.errors import JsonRpcError
from gateway.models import A2ACall, Action

# method → (A2A version, action, where the ids are)
# Sources: A2A v0.3 spec §7 (JSON-RPC methods) and v1.0 §9 (JSON-RPC binding).
_MESSAGE, _TASK, _LIST, _CONFIG, _NONE = "message", "task", "list", "config", "none"
METHODS: dict[str, tuple[str, Action, str]] = {
    "message/send": ("0.3", Action.WRITE, _MESSAGE),
    "message/stream": ("0.3", Action.WRITE, _MESSAGE),
    "tasks/get": ("0.3", Action.READ, _TASK),
    "tasks/cancel": ("0.3", Action.WRITE, _TASK),
    "tasks/resubscribe": ("0.3", Action.READ, _TASK),
    "tasks/pushNotificationConfig/set": ("0.3", Action.WRITE, _CONFIG),
    "tasks/pushNotificationConfig/get": ("0.3", Action.READ, _TASK),
    "tasks/pushNotificationConfig/list": ("0.3", Action.READ, _TASK),
    "tasks/pushNotificationConfig/delete": ("0.3", Action.WRITE, _TASK),
    "agent/getAuthenticatedExtendedCard": ("0.3", Action.READ, _NONE),
    "SendMessage": ("1.0", Action.WRITE, _MESSAGE),
    "SendStreamingMessage": ("1.0", Action.WRITE, _MESSAGE),
    "GetTask": ("1.0", Action.READ, _TASK),
    "ListTasks": ("1.0", Action.READ, _LIST),
    "CancelTask": ("1.0", Action.WRITE, _TASK),
    "SubscribeToTask": ("1.0", Action.READ, _TASK),
    "CreateTaskPushNotificationConfig": ("1.0", Action.WRITE, _CONFIG),
    "GetTaskPushNotificationConfig": ("1.0", Action.READ, _CONFIG),
    "ListTaskPushNotificationConfig": ("1.0", Action.READ, _CONFIG),
    "ListTaskPushNotificationConfigs": ("1.0", Action.READ, _CONFIG),
    "DeleteTaskPushNotificationConfig": ("1.0", Action.WRITE, _CONFIG),
    "GetExtendedAgentCard": ("1.0", Action.READ, _NONE),
}
GET_TASK = {"0.3": "tasks/get", "1.0": "GetTask"}
# snake_case spellings some parsers accept as aliases: with a share token a body
# naming both is ambiguous (which one does the upstream read?), so it is rejected.
_SNAKE_TWINS = frozenset({"context_id", "task_id", "reference_task_ids", "task_ids"})


def _invalid(message: str, request_id: Any = None, code: int = -32600) -> JsonRpcError:
    return JsonRpcError(
        message, code=code, request_id=request_id, reason_id="a2a_malformed", status=400
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _invalid("duplicate keys in JSON object")
    if _SNAKE_TWINS.intersection(obj):
        raise _invalid("snake_case id fields are not accepted; use camelCase")
    return obj


def request_id_of(raw: bytes) -> Any:
    """Best-effort JSON-RPC ``id`` of a body, for echoing in an error; ``None`` if unreadable."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body.get("id") if isinstance(body, dict) else None


def _str_id(value: Any, name: str, request_id: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{name} must be a non-empty string", request_id, -32602)
    return value


def parse_call(raw: bytes, *, strict: bool) -> A2ACall | None:
    """Parse one A2A JSON-RPC request body.

    Returns ``None`` for a well-formed request whose method is not in the A2A
    method table (it can never be attributed to a session). With ``strict``
    (a share token is present) ambiguous bodies are rejected: batches, non-object
    ``params``, duplicate keys and snake_case id twins (DESIGN.md "A2A").
    Raises ``JsonRpcError`` (HTTP 400) for malformed input.
    """
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicates if strict else None)
    except JsonRpcError:
        raise
    except ValueError:
        raise _invalid("request body is not valid JSON", code=-32700) from None
    if isinstance(body, list):
        if strict:
            raise _invalid("batch requests are not accepted with a share token")
        return None
    if not isinstance(body, dict):
        raise _invalid("JSON-RPC request must be an object")
    request_id = body.get("id")
    method = body.get("method")
    if not isinstance(method, str):
        raise _invalid("JSON-RPC method must be a string", request_id)
    entry = METHODS.get(method)
    if entry is None:
        return None
    version, action, shape = entry
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise _invalid("params must be an object", request_id, -32602)
    context_id: str | None = None
    task_ids: list[str] = []
    has_message = False
    if shape == _MESSAGE:
        message = params.get("message")
        if not isinstance(message, dict):
            raise _invalid("params.message must be an object", request_id, -32602)
        has_message = True
        context_id = _str_id(message.get("contextId"), "message.contextId", request_id)
        task_id = _str_id(message.get("taskId"), "message.taskId", request_id)
        if task_id:
            task_ids.append(task_id)
        refs = message.get("referenceTaskIds") or []
        if not isinstance(refs, list):
            raise _invalid("message.referenceTaskIds must be a list", request_id, -32602)
        task_ids.extend(s for r in refs if (s := _str_id(r, "referenceTaskIds[]", request_id)))
    elif shape == _LIST:
        context_id = _str_id(params.get("contextId"), "contextId", request_id)
    elif shape in (_TASK, _CONFIG):
        keys = ("id",) if shape == _TASK else ("taskId",)
        if version == "1.0" or shape == _CONFIG:
            keys = ("id", "taskId")
        named = {v for k in keys if (v := _str_id(params.get(k), k, request_id))}
        if len(named) > 1:
            raise _invalid("request names more than one task", request_id, -32602)
        task_ids.extend(named)
    return A2ACall(
        method=method,
        version=version,
        action=action,
        request_id=request_id,
        context_id=context_id,
        task_ids=tuple(task_ids),
        session_scoped=shape != _NONE,
        has_message=has_message,
        body=body,
    )


def with_initiated_by(call: A2ACall, accessor: str) -> bytes:
    """The request body with ``params.message.metadata.initiated_by = accessor`` (kagent's convention)."""
    body = dict(call.body)
    params = dict(body["params"])
    message = dict(params["message"])
    metadata = message.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    metadata["initiated_by"] = accessor
    message["metadata"] = metadata
    params["message"] = message
    body["params"] = params
    return json.dumps(body, separators=(",", ":")).encode()


def get_task_body(version: str, task_id: str) -> bytes:
    """A ``GetTask``/``tasks/get`` request for the binding fallback."""
    method = GET_TASK.get(version, "GetTask")
    request = {"jsonrpc": "2.0", "id": "share-gateway-binding", "method": method,
               "params": {"id": task_id}}
    return json.dumps(request).encode()


def bindings_in(obj: Any, depth: int = 0) -> Iterator[tuple[str, str]]:
    """Yield ``(task_id, context_id)`` pairs found in a JSON-RPC result or SSE event.

    Recognises Task objects (``id`` + ``contextId`` + ``status``), and Messages
    and status/artifact update events (``taskId`` + ``contextId``), in both v0.3
    and v1.0 shapes, at any nesting depth up to 8.
    """
    if depth > 8:
        return
    if isinstance(obj, dict):
        ctx = obj.get("contextId")
        if isinstance(ctx, str) and ctx:
            task = obj.get("taskId")
            if isinstance(task, str) and task:
                yield task, ctx
            tid = obj.get("id")
            if isinstance(tid, str) and tid and "status" in obj:
                yield tid, ctx
        for value in obj.values():
            if isinstance(value, dict | list):
                yield from bindings_in(value, depth + 1)
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict | list):
                yield from bindings_in(item, depth + 1)


def bindings_in_json(raw: bytes) -> list[tuple[str, str]]:
    """Bindings in a JSON body; malformed JSON yields none (the client sees it as-is)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return []
    result = body.get("result") if isinstance(body, dict) else None
    return list(bindings_in(result))


class SseScanner:
    """Incremental Server-Sent Events scanner (WHATWG HTML §9.2.6 framing).

    ``feed(chunk)`` returns the ``data`` payload of every event completed by
    the chunk. Lines may end in LF, CRLF or CR; events end at a blank line.
    The buffered partial event is bounded by ``limit`` bytes.
    """

    def __init__(self, limit: int = 4 << 20) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._limit = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        events: list[bytes] = []
        buf = self._buf + chunk
        if b"\r" in buf:
            if buf.endswith(b"\r"):
                buf, held = buf[:-1], b"\r"  # might be half of a CRLF
            else:
                held = b""
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        *lines, rest = buf.split(b"\n")
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        self._buf = rest if len(rest) <= self._limit else b""
        return events


def bindings_in_sse_event(data: bytes) -> list[tuple[str, str]]:
    """Bindings in one SSE event's data (a JSON-RPC response per A2A §7.2)."""
    return bindings_in_json(data)
