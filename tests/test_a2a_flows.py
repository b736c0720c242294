"""A2A through the gateway: task bindings, both method generations, SSE, and a standard a2a-sdk client."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import httpx
import pytest

from tests.conftest import (
    A2A,
    USER,
    Client,
    Gateway,
    Upstream,
    artifact_text,
    chat,
    message_body,
    task_of,
)


async def direct_task(upstream: Upstream, user: str, context: str) -> str:
    """A task created straight at the upstream, so the gateway never saw it."""
    async with httpx.AsyncClient() as h:
        r = await h.post(upstream.url + A2A, headers={"X-User-Id": user, "A2A-Version": "1.0"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                               "params": {"message": message_body("direct", context)}})
    return str(r.json()["result"]["task"]["id"])


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_read_methods_through_a_bound_task(c: Client, version: str) -> None:
    sid, task = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    get = "GetTask" if version == "1.0" else "tasks/get"
    status, body = await c.rpc(get, {"id": task["id"]}, user="bob", token=token)
    assert status == 200, body
    assert (body["result"]["id"], body["result"]["contextId"]) == (task["id"], sid)
    status, body = await c.rpc(get, {"id": task["id"]}, user="bob")  # without the token: bob's own view
    assert body["error"]["code"] == -32001


async def test_list_tasks_needs_the_context_filter(c: Client) -> None:
    sid, task = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    status, body = await c.rpc("ListTasks", {"contextId": sid}, user="bob", token=token)
    assert status == 200
    assert [t["id"] for t in body["result"]["tasks"]] == [task["id"]]
    status, body = await c.rpc("ListTasks", {}, user="bob", token=token)
    assert task["id"] not in [t["id"] for t in body["result"].get("tasks", [])]  # no filter: bob's own only


async def test_unbound_task_never_gets_the_owner(c: Client, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    carols_ctx = await c.session("carol")
    carols_task = await direct_task(upstream, "carol", carols_ctx)
    token = (await c.share("alice", sid))["token"]
    status, body = await c.rpc("GetTask", {"id": carols_task}, user="bob", token=token)
    assert body["error"]["code"] == -32001  # forwarded as bob: not found
    status, body = await c.rpc("GetTask", {"id": "never-existed"}, user="bob", token=token)
    assert body["error"]["code"] == -32001


async def test_binding_fallback_asks_upstream_as_owner(c: Client, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    hidden = await direct_task(upstream, "alice", sid)  # the gateway never saw this task
    token = (await c.share("alice", sid))["token"]
    upstream.clear()
    status, body = await c.rpc("GetTask", {"id": hidden}, user="bob", token=token)
    assert status == 200
    assert body["result"]["id"] == hidden
    methods = [json.loads(r["body"])["method"] for r in upstream.requests()]
    assert methods == ["GetTask", "GetTask"]  # the owner probe, then bob's call as the owner
    probe = upstream.requests()[0]
    assert ("x-share-accessor", "bob") not in [tuple(h) for h in probe["headers"]]


async def test_other_alice_session_task_is_not_the_shared_one(c: Client) -> None:
    shared, _ = await chat(c, "alice")
    private, private_task = await chat(c, "alice")
    token = (await c.share("alice", shared))["token"]
    status, body = await c.rpc("GetTask", {"id": private_task["id"]}, user="bob", token=token)
    assert body["error"]["code"] == -32001  # bound to alice's *other* session: bob stays bob


@pytest.mark.parametrize("field", ["taskId", "referenceTaskIds"])
async def test_task_ids_pointing_into_another_session(c: Client, field: str) -> None:
    sid, _ = await chat(c, "alice")
    _, carols_task = await chat(c, "carol")
    token = (await c.share("alice", sid, read_only=False))["token"]
    value: Any = carols_task["id"] if field == "taskId" else [carols_task["id"]]
    status, body = await c.rpc("SendMessage", {"message": message_body("x", sid, **{field: value})},
                               user="bob", token=token)
    # Forwarded as bob: carol's task is not his (kagent's task store is per user); a
    # reference alone names nothing, so bob writes into his own session of that id.
    if field == "taskId":
        assert body["error"]["code"] == -32001, body
    else:
        assert "user=bob initiated_by=-" in artifact_text(task_of(body["result"])), body


async def test_task_only_write_through_binding(c: Client) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid, read_only=False))["token"]
    status, body = await c.rpc("SendMessage", {"message": {**message_body("slow", sid),
                                                           "metadata": {"delaySeconds": 5}},
                                               "configuration": {"returnImmediately": True}},
                               user="alice")
    running = task_of(body["result"])
    status, body = await c.rpc("CancelTask", {"id": running["id"]}, user="bob", token=token)
    assert status == 200, body
    assert body["result"]["status"]["state"] == "TASK_STATE_CANCELED"


@pytest.mark.parametrize(
    ("method", "params", "writes"),
    [
        ("tasks/pushNotificationConfig/set", {"taskId": "{task}", "pushNotificationConfig": {"url": "http://x"}}, True),
        ("CreateTaskPushNotificationConfig", {"taskId": "{task}", "url": "http://x"}, True),
        ("tasks/pushNotificationConfig/delete", {"id": "{task}", "pushNotificationConfigId": "c"}, True),
        ("DeleteTaskPushNotificationConfig", {"taskId": "{task}", "id": "c"}, True),
        ("tasks/cancel", {"id": "{task}"}, True),
        ("tasks/pushNotificationConfig/get", {"id": "{task}"}, False),
        ("tasks/pushNotificationConfig/list", {"id": "{task}"}, False),
        ("ListTaskPushNotificationConfigs", {"taskId": "{task}"}, False),
        ("GetTaskPushNotificationConfig", {"taskId": "{task}", "id": "c"}, False),
        ("tasks/resubscribe", {"id": "{task}"}, False),
    ],
)
async def test_task_methods_on_a_read_only_share(c: Client, upstream: Upstream, method: str,
                                                params: dict[str, Any], writes: bool) -> None:
    """Writes are refused before the upstream; reads reach it as the owner."""
    sid, task = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    upstream.clear()
    filled = json.loads(json.dumps(params).replace("{task}", task["id"]))
    status, body = await c.rpc(method, filled, user="bob", token=token)
    if writes:
        assert (status, body["error"]["message"]) == (403, "share link is read-only")
        assert upstream.requests() == []
        return
    assert status == 200
    assert "Task not found" not in json.dumps(body)  # the agent found the task as its owner
    [seen] = upstream.requests()
    assert ["x-user-id", "alice"] in seen["headers"]


async def test_extended_card_is_not_session_scoped(c: Client, upstream: Upstream) -> None:
    sid, _ = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    upstream.clear()
    await c.rpc("GetExtendedAgentCard", {}, user="bob", token=token)
    [seen] = upstream.requests()
    assert ["x-user-id", "bob"] in seen["headers"]


@pytest.mark.parametrize("version", ["1.0", "0.3"])
async def test_sse_events_arrive_as_produced_and_teach_bindings(
    gw: Gateway, c: Client, http: aiohttp.ClientSession, version: str
) -> None:
    sid = await c.session("alice")
    token = (await c.share("alice", sid))["token"]
    method = "SendStreamingMessage" if version == "1.0" else "message/stream"
    payload = {"jsonrpc": "2.0", "id": 5, "method": method,
               "params": {"message": message_body("stream please", sid, version)}}
    arrivals: list[float] = []
    events: list[dict[str, Any]] = []
    buffer = b""
    async with http.post(gw.url + A2A, json=payload,
                         headers={USER: "alice", "A2A-Version": version}) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        async for chunk in r.content.iter_any():
            buffer += chunk
            while b"\r\n\r\n" in buffer or b"\n\n" in buffer:
                sep = b"\r\n\r\n" if b"\r\n\r\n" in buffer else b"\n\n"
                raw, buffer = buffer.split(sep, 1)
                data = b"".join(line[5:].strip() for line in raw.splitlines() if line.startswith(b"data:"))
                events.append(json.loads(data))
                arrivals.append(time.monotonic())
    assert len(events) >= 4
    assert arrivals[-1] - arrivals[0] > 0.03  # relayed as produced, not buffered until the end
    first = events[0]["result"]
    task_id = first["task"]["id"] if "task" in first else first["id"]
    get = "GetTask" if version == "1.0" else "tasks/get"
    status, body = await c.rpc(get, {"id": task_id}, user="bob", token=token)
    assert (status, body["result"]["id"]) == (200, task_id)  # binding learned from the stream


async def test_sse_through_a_share_keeps_streaming(gw: Gateway, c: Client, http: aiohttp.ClientSession) -> None:
    sid, task = await chat(c, "alice")
    token = (await c.share("alice", sid))["token"]
    payload = {"jsonrpc": "2.0", "id": 6, "method": "SubscribeToTask", "params": {"id": task["id"]}}
    async with http.post(gw.url + A2A, json=payload,
                         headers={USER: "bob", "A2A-Version": "1.0", "X-Share-Token": token}) as r:
        assert r.status == 200
        text = (await r.read()).decode()
        assert r.headers["X-Share-Read-Only"] == "true"
    assert task["id"] in text


async def test_agent_card_points_at_the_gateway(gw: Gateway, c: Client) -> None:
    status, card, _ = await c.call("GET", A2A + ".well-known/agent-card.json")  # public: no identity needed
    assert status == 200
    assert card["url"] == gw.url + A2A
    assert {i["url"] for i in card["supportedInterfaces"]} == {gw.url + A2A}
    # kagent serves no card at agent.json: that path is the agent's JSON-RPC endpoint.
    status, body, _ = await c.call("GET", A2A + ".well-known/agent.json", user="alice")
    assert (status, body["error"]["code"]) == (200, -32600)


async def test_standard_a2a_client_with_a_share_token(gw: Gateway, c: Client) -> None:
    from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
    from a2a.helpers import new_text_message
    from a2a.types import GetTaskRequest, ListTasksRequest, Role, SendMessageRequest

    sid, task = await chat(c, "alice")
    ro_token = (await c.share("alice", sid, read_only=True))["token"]
    rw_token = (await c.share("alice", sid, read_only=False))["token"]
    base = gw.url + A2A
    for token, may_write in ((ro_token, False), (rw_token, True)):
        async with httpx.AsyncClient(headers={"X-Share-Token": token, USER: "bob"}, timeout=10) as h:
            card = await A2ACardResolver(h, base).get_agent_card()
            assert {i.url for i in card.supported_interfaces} == {base}
            client = await ClientFactory(ClientConfig(httpx_client=h, streaming=True)).create_from_url(base)
            got = await client.get_task(GetTaskRequest(id=task["id"]))
            assert got.context_id == sid
            listed = await client.list_tasks(ListTasksRequest(context_id=sid))
            assert task["id"] in [t.id for t in listed.tasks]
            message = new_text_message("one more stop", context_id=sid, role=Role.ROLE_USER)
            if may_write:
                texts = []
                async for event in client.send_message(SendMessageRequest(message=message)):
                    texts.append(str(event))
                assert any("initiated_by=bob" in t for t in texts)
            else:
                with pytest.raises(Exception, match="403"):  # DESIGN.md: policy denials are HTTP 403
                    async for _ in client.send_message(SendMessageRequest(message=message)):
                        pass
            await client.close()


async def test_without_token_alice_keeps_her_own_view(c: Client) -> None:
    sid, task = await chat(c, "alice")
    status, body = await c.rpc("GetTask", {"id": task["id"]}, user="alice")
    assert (status, body["result"]["id"]) == (200, task["id"])
    assert "user=alice initiated_by=-" in artifact_text(task)
