"""A2A JSON-RPC parsing and classification, and task→context bindings learned from responses (pure)."""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import JsonRpcError
from gateway.models import A2ACall, Action

# method → (A2A version, action, where the ids are, which params name the task)
# Sources: A2A v0.3 spec §7 (JSON-RPC methods) and v1.0 §9 (JSON-RPC binding);
# a2a-sdk 1.x serves both on one endpoint (enable_v0_3_compat). ``tasks/list``
# is kagent's own v0.3 extension (kagent-dev/kagent release/v0.10.x
# ``go/core/internal/a2a/a2av0_tasks_list.go``): v1.0 ListTasks' params under a
# v0.3 name, answered from kagent's task store; like ListTasks, only its
# ``contextId`` filter can name the shared session.
_MESSAGE, _TASK, _LIST, _NONE = "message", "task", "list", "none"
_ID, _TASK_ID = ("id",), ("taskId",)
METHODS: dict[str, tuple[str, Action, str, tuple[str, ...]]] = {
    "message/send": ("0.3", Action.WRITE, _MESSAGE, ()),
    "message/stream": ("0.3", Action.WRITE, _MESSAGE, ()),
    "tasks/get": ("0.3", Action.READ, _TASK, _ID),
    "tasks/cancel": ("0.3", Action.WRITE, _TASK, _ID),
    "tasks/resubscribe": ("0.3", Action.READ, _TASK, _ID),
    "tasks/list": ("0.3", Action.READ, _LIST, ()),
    "tasks/pushNotificationConfig/set": ("0.3", Action.WRITE, _TASK, _TASK_ID),
    "tasks/pushNotificationConfig/get": ("0.3", Action.READ, _TASK, _ID),
    "tasks/pushNotificationConfig/list": ("0.3", Action.READ, _TASK, _ID),
    "tasks/pushNotificationConfig/delete": ("0.3", Action.WRITE, _TASK, _ID),
    "agent/getAuthenticatedExtendedCard": ("0.3", Action.READ, _NONE, ()),
    "SendMessage": ("1.0", Action.WRITE, _MESSAGE, ()),
    "SendStreamingMessage": ("1.0", Action.WRITE, _MESSAGE, ()),
    "GetTask": ("1.0", Action.READ, _TASK, _ID),
    "ListTasks": ("1.0", Action.READ, _LIST, ()),
    "CancelTask": ("1.0", Action.WRITE, _TASK, _ID),
    "SubscribeToTask": ("1.0", Action.READ, _TASK, _ID),
    "CreateTaskPushNotificationConfig": ("1.0", Action.WRITE, _TASK, _TASK_ID),
    "GetTaskPushNotificationConfig": ("1.0", Action.READ, _TASK, _TASK_ID),
    "ListTaskPushNotificationConfig": ("1.0", Action.READ, _TASK, _TASK_ID),
    "ListTaskPushNotificationConfigs": ("1.0", Action.READ, _TASK, _TASK_ID),
    "DeleteTaskPushNotificationConfig": ("1.0", Action.WRITE, _TASK, _TASK_ID),
    "GetExtendedAgentCard": ("1.0", Action.READ, _NONE, ()),
}
GET_TASK = {"0.3": "tasks/get", "1.0": "GetTask"}
# Calls whose only session id is the ``contextId`` filter (ListTasks, kagent's ``tasks/list``).
LIST_METHODS = frozenset(m for m, (_, _, shape, _) in METHODS.items() if shape == _LIST)
# snake_case spellings some parsers accept as aliases: with a share token a body
# naming both is ambiguous (which one does the upstream read?), so it is rejected.
_SNAKE_TWINS = frozenset({"context_id", "task_id", "reference_task_ids", "task_ids"})


def _invalid(message: str, request_id: Any = None, code: int = -32600) -> JsonRpcError:
    return JsonRpcError(message, code=code, request_id=request_id, reason_id="a2a_malformed", status=400)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _invalid("duplicate keys in JSON object")
    if _SNAKE_TWINS.intersection(obj):
        raise _invalid("snake_case id fields are not accepted; use camelCase")
    return obj


MAX_DEPTH = 32  # JSON nesting accepted in a body read with a share token


def too_deep(value: Any, limit: int) -> bool:
    """True if ``value`` nests objects/arrays deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def request_id_of(raw: bytes) -> Any:
    """Best-effort JSON-RPC ``id`` of a body, for echoing in an error; ``None`` if unreadable."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
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
    (a share token is present, or the gateway records who owns each context:
    profile ``a2a``) ambiguous bodies are rejected: batches, non-object
    ``params``, duplicate keys and snake_case id twins (DESIGN.md "A2A").
    Raises ``JsonRpcError`` (HTTP 400) for malformed input.
    """
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicates if strict else None)
    except JsonRpcError:
        raise
    except ValueError:
        raise _invalid("request body is not valid JSON", code=-32700) from None
    except RecursionError:
        raise _invalid("request body is nested too deeply") from None
    if strict and too_deep(body, MAX_DEPTH):
        raise _invalid("request body is nested too deeply")
    if isinstance(body, list):
        if strict:
            raise _invalid("batch requests are not accepted")
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
    version, action, shape, task_keys = entry
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
    elif shape == _TASK:
        # Where the table names the task ``id``, a ``taskId`` beside it is a task id
        # too: implementations differ on which one they read (fasta2a's
        # tasks/pushNotificationConfig/list and /delete read ``taskId``), so
        # every one present must be attributable.
        keys = (*task_keys, *_TASK_ID) if task_keys == _ID else task_keys
        for key in keys:
            value = _str_id(params.get(key), key, request_id)
            if value is not None and value not in task_ids:
                task_ids.append(value)
        if not task_ids:
            raise _invalid(f"params.{task_keys[0]} is required", request_id, -32602)
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


def get_task_request(version: str, task_id: str) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a ``GetTask`` (v1.0) / ``tasks/get`` (v0.3) call for the binding fallback.

    a2a-sdk reads the protocol version from the ``A2A-Version`` header (absent = 0.3).
    """
    method = GET_TASK.get(version, "GetTask")
    request = {
        "jsonrpc": "2.0",
        "id": "share-gateway-binding",
        "method": method,
        "params": {"id": task_id, "historyLength": 0},
    }
    headers = {"Content-Type": "application/json"}
    if version != "0.3":
        headers["A2A-Version"] = version
    return json.dumps(request).encode(), headers


def _binding(obj: dict[str, Any]) -> tuple[str, str] | None:
    ctx = obj.get("contextId")
    if not isinstance(ctx, str) or not ctx:
        return None
    task = obj.get("taskId")
    if isinstance(task, str) and task:
        return task, ctx  # Message, status-update or artifact-update event
    tid = obj.get("id")
    if isinstance(tid, str) and tid and isinstance(obj.get("status"), dict):
        return tid, ctx  # Task
    return None


def bindings_in(root: Any) -> list[tuple[str, str]]:
    """``(task_id, context_id)`` pairs in a JSON-RPC ``result`` (or a REST body's ``data``).

    Only structural positions are read: the root object, its direct object
    values (v1.0 wrappers ``task``/``message``/``statusUpdate``/``artifactUpdate``)
    and the objects in its direct lists (``ListTasks``' ``tasks``). Nothing
    deeper: artifact data parts are agent output a user can influence, and must
    never be able to bind a task to a context.
    """
    objects: list[Any] = root if isinstance(root, list) else [root]
    if isinstance(root, dict):
        for value in root.values():
            if isinstance(value, dict):
                objects.append(value)
            elif isinstance(value, list):
                objects.extend(value)
    found = []
    for obj in objects:
        if isinstance(obj, dict) and (pair := _binding(obj)) is not None:
            found.append(pair)
    return found


def bindings_in_json(raw: bytes) -> list[tuple[str, str]]:
    """Bindings in a JSON-RPC response or a kagent REST envelope; malformed JSON yields none."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return []
    if not isinstance(body, dict):
        return []
    root = body.get("result") if "jsonrpc" in body else body.get("data")
    return bindings_in(root)


# Where an answer's own context is: the result itself (v0.3 Task, Message and
# stream events), or one of v1.0's wrappers around them. Nothing else: agent
# output (metadata, artifact data) must never name the context an answer is in.
_CONTEXT_WRAPPERS = ("task", "message", "statusUpdate", "artifactUpdate")


def context_in_answer(raw: bytes) -> str | None:
    """The ``contextId`` of a JSON-RPC answer's ``result`` (a JSON body or one SSE event's data).

    Read only from the result object itself or from v1.0's ``task`` /
    ``message`` / ``statusUpdate`` / ``artifactUpdate`` wrapper in it; lists
    (``ListTasks``' tasks) are not looked at. ``None`` for errors, malformed
    JSON and results without a context.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, dict):
        return None
    candidates = [result, *(result.get(key) for key in _CONTEXT_WRAPPERS)]
    for obj in candidates:
        context = obj.get("contextId") if isinstance(obj, dict) else None
        if isinstance(context, str) and context:
            return context
    return None


def task_not_found(request_id: Any, reason_id: str) -> JsonRpcError:
    """The answer for a task that is not the caller's: exactly an A2A agent's own "no such task".

    A2A's ``TaskNotFoundError`` (-32001, "Task not found"; a2a-sdk and fasta2a
    word it so) with HTTP 200, as JSON-RPC servers send their errors: a task of
    someone else's and a task that does not exist cannot be told apart.
    """
    return JsonRpcError("Task not found", code=-32001, request_id=request_id, reason_id=reason_id, status=200)


def rewrite_agent_card(raw: bytes, endpoint: str) -> bytes | None:
    """Point an agent card's JSON-RPC interfaces at ``endpoint`` (the gateway's URL).

    Handles the v1.0 shape (``supportedInterfaces[].url`` with
    ``protocolBinding``) and the v0.3 shape (top-level ``url`` with
    ``preferredTransport``, ``additionalInterfaces[].url`` with ``transport``).
    Interfaces of other bindings (gRPC, HTTP+JSON) are removed: the gateway
    authorizes A2A JSON-RPC only, and a client must not be sent around it.
    Returns ``None`` if the body is not a JSON object.
    """
    try:
        card = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(card, dict):
        return None

    def jsonrpc(iface: Any, key: str) -> bool:
        return isinstance(iface, dict) and str(iface.get(key, "JSONRPC")).upper() == "JSONRPC"

    for field, binding_key in (
        ("supportedInterfaces", "protocolBinding"),
        ("additionalInterfaces", "transport"),
    ):
        interfaces = card.get(field)
        if isinstance(interfaces, list):
            card[field] = [{**iface, "url": endpoint} for iface in interfaces if jsonrpc(iface, binding_key)]
    if "url" in card:
        card["url"] = endpoint
        card["preferredTransport"] = "JSONRPC"
    return json.dumps(card, separators=(",", ":")).encode()


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
