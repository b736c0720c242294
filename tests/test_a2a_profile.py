"""Profile ``a2a``: users, per-user isolation and share links for A2A agents that have none.

The upstreams (``tests/a2a_agents.py``) are unmodified: a2a-sdk's own
``DefaultRequestHandler`` and ``InMemoryTaskStore`` with no authentication, and
pydantic's fasta2a with its in-memory storage. Straight at the agent, anyone
reads anyone's task; through the gateway each user reaches only the
conversations they opened, or a share of one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import httpx
import pytest

from gateway import cli
from gateway.demo.story import free_port, wait_http
from tests.conftest import USER, Gateway, GatewayFactory, Upstream, artifact_text, message_body, task_of

AGENTS = ("a2a-sdk", "fasta2a")
TERMINAL = {"completed", "canceled", "failed", "TASK_STATE_COMPLETED", "TASK_STATE_CANCELED", "TASK_STATE_FAILED"}
NOT_FOUND = {"code": -32001, "message": "Task not found"}


@pytest.fixture(scope="session")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    """Both agents, each in its own process, recording what they receive."""
    logdir = tmp_path_factory.mktemp("a2a-agents")
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for kind in AGENTS:
            port = free_port()
            log = open(logdir / f"{kind}.log", "wb")  # noqa: SIM115 - the process owns it
            procs.append(subprocess.Popen([sys.executable, "-m", "tests.a2a_agents", kind, "--port", str(port)],
                                          stdout=log, stderr=subprocess.STDOUT))
            log.close()
            urls[kind] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            wait_http(url + "/_demo/requests")
        yield {kind: Upstream(url) for kind, url in urls.items()}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


GwFor = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def gateway_for(make_gateway: GatewayFactory, agents: dict[str, Upstream]) -> GwFor:
    async def make(kind: str = "a2a-sdk", **overrides: Any) -> Gateway:
        return await make_gateway(upstream=agents[kind].url, profile="a2a", **overrides)

    return make


def sse(text: str) -> list[dict[str, Any]]:
    """The JSON data of every event of an SSE body."""
    blocks = text.replace("\r\n", "\n").split("\n\n")
    datas = ["".join(line[5:].strip() for line in b.split("\n") if line.startswith("data:")) for b in blocks]
    return [json.loads(d) for d in datas if d]


class A2A:
    """JSON-RPC calls to an agent behind a gateway (or straight at the agent), as a named user."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def rpc(self, method: str, params: dict[str, Any], *, user: str | None, token: str | None = None,
                  query: str = "", rpc_id: Any = 1, headers: dict[str, str] | None = None,
                  ) -> tuple[int, Any]:
        """``(status, body)``; an SSE answer's body is its list of events."""
        h = dict(headers or {})
        if user is not None:
            h[USER] = user
        if token is not None:
            h["X-Share-Token"] = token
        h["A2A-Version"] = "0.3" if "/" in method else "1.0"
        payload = {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}
        async with self.http.post(self.base + "/" + query, json=payload, headers=h) as r:
            text = await r.text()
            if r.headers.get("Content-Type", "").startswith("text/event-stream"):
                return r.status, sse(text)
            return r.status, json.loads(text)

    async def say(self, text: str, *, user: str, context: str | None = None, version: str = "1.0",
                  token: str | None = None, **message: Any) -> tuple[int, Any]:
        method = "SendMessage" if version == "1.0" else "message/send"
        return await self.rpc(method, {"message": message_body(text, context, version, **message)},
                              user=user, token=token)

    async def start(self, user: str, text: str = "hello", *, context: str | None = None,
                    version: str = "1.0") -> tuple[str, dict[str, Any]]:
        """A conversation of ``user`` with one finished task: ``(context id, task)``."""
        status, body = await self.say(text, user=user, context=context, version=version)
        assert status == 200 and "result" in body, body
        task = task_of(body["result"])
        return task["contextId"], await self.finished(task["id"], user)

    async def finished(self, task_id: str, user: str, token: str | None = None) -> dict[str, Any]:
        """The task once it reached a final state (fasta2a answers ``message/send`` at once)."""
        deadline = time.monotonic() + 10
        while True:
            status, body = await self.rpc("GetTask", {"id": task_id}, user=user, token=token)
            assert status == 200 and "result" in body, body
            if body["result"]["status"]["state"] in TERMINAL or time.monotonic() > deadline:
                return dict(body["result"])
            await asyncio.sleep(0.02)


@pytest.fixture
def a2a_for(http: aiohttp.ClientSession) -> Callable[[str], A2A]:
    return lambda base: A2A(http, base)


def seen_users(agent: Upstream) -> list[str | None]:
    """The ``X-User-Id`` of every request the agent received since the last ``clear()``."""
    out = []
    for request in agent.requests():
        users = [v for k, v in request["headers"] if k == "x-user-id"]
        out.append(users[0] if users else None)
    return out


def refused_task(status: int, body: Any, rpc_id: Any = 1) -> bool:
    """The gateway's answer for a task that is not the caller's: an agent's own "Task not found"."""
    return status == 200 and body == {"jsonrpc": "2.0", "id": rpc_id, "error": NOT_FOUND}


def refused_context(status: int, body: Any) -> bool:
    return status == 403 and body["error"]["code"] == -32003


@pytest.mark.parametrize("kind", AGENTS)
async def test_two_users_cannot_reach_each_others_conversations(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream], kind: str
) -> None:
    gw, agent = await gateway_for(kind), agents[kind]
    c = a2a_for(gw.url)
    alices_ctx, alices_task = await c.start("alice")
    bobs_ctx, bobs_task = await c.start("bob")
    # Straight at the agent there are no users: bob's name on the request changes nothing.
    direct = a2a_for(agent.url)
    status, body = await direct.rpc("GetTask", {"id": alices_task["id"]}, user=None,
                                    headers={"X-User-Id": "bob"})
    assert body["result"]["contextId"] == alices_ctx
    agent.clear()
    status, body = await c.rpc("GetTask", {"id": alices_task["id"]}, user="bob")
    assert refused_task(status, body), body
    status, body = await c.rpc("CancelTask", {"id": alices_task["id"]}, user="bob")
    assert refused_task(status, body), body
    status, body = await c.say("and now for me", user="bob", context=alices_ctx)
    assert refused_context(status, body), body
    status, body = await c.say("continue", user="bob", taskId=alices_task["id"])
    assert refused_task(status, body), body
    status, body = await c.rpc("ListTasks", {"contextId": alices_ctx}, user="bob")
    assert refused_context(status, body), body
    assert agent.requests() == []  # every refusal before the agent
    nowhere = str(uuid.uuid4())
    status, body = await c.rpc("CancelTask", {"id": nowhere}, user="bob")
    assert refused_task(status, body), body  # no task at all: the very same answer
    [probe] = agent.requests()  # the gateway asked which context the unknown task is in
    assert json.loads(probe["body"])["method"] == "GetTask" and nowhere in probe["body"]
    agent.clear()
    status, body = await c.rpc("GetTask", {"id": alices_task["id"]}, user="alice")
    assert body["result"]["id"] == alices_task["id"]
    status, body = await c.rpc("GetTask", {"id": bobs_task["id"]}, user="bob")
    assert body["result"]["contextId"] == bobs_ctx
    assert seen_users(agent) == ["alice", "bob"]
    assert await gw.store.session_owner(alices_ctx) == "alice"
    assert await gw.store.session_owner(bobs_ctx) == "bob"


MSG = "{message}"  # params.message, filled per case
# (method, params, how a stranger is refused: "task" = an agent's own "Task not found", "context" = 403)
A2A_SDK_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("SendMessage", {"message": {"contextId": "{ctx}"}}, "context"),
    ("SendMessage", {"message": {"taskId": "{task}"}}, "task"),
    ("SendMessage", {"message": {"referenceTaskIds": ["{task}"]}}, "task"),
    ("SendStreamingMessage", {"message": {"contextId": "{ctx}"}}, "context"),
    ("GetTask", {"id": "{task}"}, "task"),
    ("ListTasks", {"contextId": "{ctx}"}, "context"),
    ("CancelTask", {"id": "{task}"}, "task"),
    ("SubscribeToTask", {"id": "{task}"}, "task"),
    ("CreateTaskPushNotificationConfig", {"taskId": "{task}", "id": "c2", "url": "http://127.0.0.1:9/hook"}, "task"),
    ("GetTaskPushNotificationConfig", {"taskId": "{task}", "id": "c1"}, "task"),
    ("ListTaskPushNotificationConfigs", {"taskId": "{task}"}, "task"),
    ("DeleteTaskPushNotificationConfig", {"taskId": "{task}", "id": "c1"}, "task"),
    ("message/send", {"message": {"contextId": "{ctx}"}}, "context"),
    ("message/send", {"message": {"taskId": "{task}"}}, "task"),
    ("message/stream", {"message": {"contextId": "{ctx}"}}, "context"),
    ("tasks/get", {"id": "{task}"}, "task"),
    ("tasks/cancel", {"id": "{task}"}, "task"),
    ("tasks/resubscribe", {"id": "{task}"}, "task"),
    ("tasks/pushNotificationConfig/set",
     {"taskId": "{task}", "pushNotificationConfig": {"id": "c2", "url": "http://127.0.0.1:9/hook"}}, "task"),
    ("tasks/pushNotificationConfig/get", {"id": "{task}", "pushNotificationConfigId": "c1"}, "task"),
    ("tasks/pushNotificationConfig/list", {"id": "{task}"}, "task"),
    ("tasks/pushNotificationConfig/delete", {"id": "{task}", "pushNotificationConfigId": "c1"}, "task"),
]
# fasta2a answers these (v0.3 names, and the v1.0 names it maps onto them).
FASTA2A_CASES = [case for case in A2A_SDK_CASES if case[0] in {
    "SendMessage", "SendStreamingMessage", "GetTask", "CancelTask", "SubscribeToTask", "ListTasks",
    "message/send", "message/stream", "tasks/get", "tasks/cancel", "tasks/resubscribe"}] + [
    ("tasks/list", {"contextId": "{ctx}"}, "context"),  # kagent's v0.3 extension, served by fasta2a too
    # fasta2a reads the task from taskId here, where A2A v0.3 has id: the gateway checks both.
    ("tasks/pushNotificationConfig/list", {"taskId": "{task}"}, "task"),
]
CASES = [("a2a-sdk", *case) for case in A2A_SDK_CASES] + [("fasta2a", *case) for case in FASTA2A_CASES]


def fill(params: dict[str, Any], method: str, ctx: str, task: str) -> dict[str, Any]:
    filled = json.loads(json.dumps(params).replace("{ctx}", ctx).replace("{task}", task))
    if "message" in filled:
        version = "0.3" if "/" in method else "1.0"
        extra = filled.pop("message")
        filled["message"] = message_body("one more", extra.pop("contextId", None), version, **extra)
    return filled


@pytest.mark.parametrize(("kind", "method", "params", "refusal"), CASES,
                         ids=[f"{k}-{m}-{next(iter(p.get('message', p)))}" for k, m, p, _ in CASES])
async def test_every_method_reaches_the_agent_only_for_the_owner(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream],
    kind: str, method: str, params: dict[str, Any], refusal: str,
) -> None:
    gw, agent = await gateway_for(kind), agents[kind]
    c = a2a_for(gw.url)
    ctx, task = await c.start("alice")
    if kind == "a2a-sdk":  # a config for the get/delete calls, made straight at the agent
        await a2a_for(agent.url).rpc("CreateTaskPushNotificationConfig", {
            "taskId": task["id"], "id": "c1", "url": "http://127.0.0.1:9/hook"}, user=None)
    filled = fill(params, method, ctx, task["id"])
    agent.clear()
    status, body = await c.rpc(method, filled, user="bob", rpc_id="r-7")
    if refusal == "task":
        assert refused_task(status, body, "r-7"), body
    else:
        assert refused_context(status, body) and body["id"] == "r-7", body
    assert agent.requests() == []
    status, body = await c.rpc(method, filled, user="alice", rpc_id="r-8")
    assert status == 200, body
    answers = body if isinstance(body, list) else [body]
    assert answers and all(a["id"] == "r-8" for a in answers), body
    assert all(a.get("error") != NOT_FOUND for a in answers), body  # the agent found alice's task
    assert seen_users(agent)[0] == "alice"  # the call itself (task lookups may follow it)


@pytest.mark.parametrize("kind", AGENTS)
async def test_cards_are_public_and_point_at_the_gateway(
    gateway_for: GwFor, agents: dict[str, Upstream], http: aiohttp.ClientSession, kind: str
) -> None:
    gw = await gateway_for(kind)
    async with http.get(gw.url + "/.well-known/agent-card.json") as r:  # no identity at all
        card = await r.json()
    assert r.status == 200
    assert {i["url"] for i in card["supportedInterfaces"]} == {gw.url + "/"}
    assert card.get("url", gw.url + "/") == gw.url + "/"  # a2a-sdk's v0.3 field too
    assert agents[kind].url not in json.dumps(card)


@pytest.mark.parametrize("method", ["GetExtendedAgentCard", "agent/getAuthenticatedExtendedCard"])
async def test_the_extended_card_needs_a_user(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], method: str
) -> None:
    gw = await gateway_for(shares__allow_anonymous="true")
    c = a2a_for(gw.url)
    ctx, _ = await c.start("alice")
    async with c.http.post(f"{gw.url}/api/sessions/{ctx}/shares", json={}, headers={USER: "alice"}) as r:
        token = (await r.json())["data"]["token"]
    status, body = await c.rpc(method, {}, user=None, token=token)
    assert status == 403 and body["error"]["code"] == -32003, body  # a share grants it nothing
    status, body = await c.rpc(method, {}, user=None)
    assert status == 401 and body["error"]["code"] == -32600, body
    status, body = await c.rpc(method, {}, user="bob")
    assert status == 200 and "shout" in json.dumps(body["result"]), body


async def test_new_conversation_over_sse_is_recorded_from_the_first_event(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream]
) -> None:
    gw = await gateway_for("a2a-sdk")
    c = a2a_for(gw.url)
    for method in ("SendStreamingMessage", "message/stream"):
        version = "1.0" if method[0].isupper() else "0.3"
        status, events = await c.rpc(method, {"message": message_body("stream it", None, version)},
                                     user="alice")
        assert status == 200 and len(events) >= 3, events
        first = events[0]["result"]
        ctx = first["task"]["contextId"] if "task" in first else first["contextId"]
        assert await gw.store.session_owner(ctx) == "alice"
        status, body = await c.rpc("ListTasks", {"contextId": ctx}, user="alice")
        assert len(body["result"]["tasks"]) == 1, body
        status, body = await c.say("mine now?", user="bob", context=ctx)
        assert refused_context(status, body), body


async def test_a_client_chosen_context_is_the_first_writers(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream]
) -> None:
    gw = await gateway_for("a2a-sdk")
    c = a2a_for(gw.url)
    ctx = f"trip-{uuid.uuid4()}"
    status, body = await c.say("my own id", user="alice", context=ctx)
    assert task_of(body["result"])["contextId"] == ctx
    assert await gw.store.session_owner(ctx) == "alice"
    status, body = await c.say("me too", user="bob", context=ctx)
    assert refused_context(status, body), body
    # Two users racing for one new id: exactly one gets it, the other reaches nothing.
    race = f"race-{uuid.uuid4()}"
    agents["a2a-sdk"].clear()
    results = await asyncio.gather(*(c.say("first!", user=u, context=race) for u in ("carol", "dave") * 3))
    winners = {u for u, (status, body) in zip(("carol", "dave") * 3, results, strict=True) if status == 200}
    assert len(winners) == 1
    assert await gw.store.session_owner(race) in winners
    assert set(seen_users(agents["a2a-sdk"])) == winners


async def test_list_tasks_needs_one_of_the_callers_contexts(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A]
) -> None:
    gw = await gateway_for("a2a-sdk")
    c = a2a_for(gw.url)
    ctx, task = await c.start("alice")
    await c.say("again", user="alice", context=ctx)
    other_ctx, other_task = await c.start("bob")
    status, body = await c.rpc("ListTasks", {}, user="alice")
    assert status == 403 and body["error"]["code"] == -32602, body
    status, body = await c.rpc("ListTasks", {"contextId": ctx}, user="alice")
    ids = [t["id"] for t in body["result"]["tasks"]]
    assert task["id"] in ids and len(ids) == 2 and other_task["id"] not in ids
    status, foreign = await c.rpc("ListTasks", {"contextId": ctx}, user="bob")
    status2, unknown = await c.rpc("ListTasks", {"contextId": "no-such-ctx"}, user="bob")
    assert (status, foreign) == (status2, unknown) and status == 403  # no oracle


@pytest.mark.parametrize("kind", AGENTS)
async def test_share_links_read_only_and_read_write(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream], kind: str
) -> None:
    gw, agent = await gateway_for(kind), agents[kind]
    c = a2a_for(gw.url)
    ctx, task = await c.start("alice", "plan a trip")
    status, body = await c.rpc("GetTask", {"id": task["id"]}, user="bob")  # bob's own view: nothing
    assert refused_task(status, body)

    async def share(read_only: bool) -> str:
        async with c.http.post(f"{gw.url}/api/sessions/{ctx}/shares", json={"read_only": read_only},
                               headers={USER: "alice"}) as r:
            assert r.status == 201
            return str((await r.json())["data"]["token"])

    ro, rw = await share(True), await share(False)
    agent.clear()
    status, body = await c.rpc("GetTask", {"id": task["id"]}, user="bob", token=ro)
    assert status == 200 and body["result"]["id"] == task["id"]
    [seen] = agent.requests()
    assert ["x-user-id", "alice"] in seen["headers"] and ["x-share-accessor", "bob"] in seen["headers"]
    status, body = await c.say("cancel it", user="bob", context=ctx, token=ro)
    assert status == 403 and body["error"]["message"] == "share link is read-only"
    status, body = await c.say("and a hotel", user="bob", context=ctx, token=rw)
    assert status == 200, body
    written = await c.finished(task_of(body["result"])["id"], "bob", token=rw)  # its binding was learned
    assert "initiated_by=bob" in artifact_text(written)
    status, body = await c.rpc("GetTask", {"id": written["id"]}, user="bob")
    assert refused_task(status, body)  # without the link bob still has nothing
    status, body = await c.rpc("GetTask", {"id": task["id"]}, user="carol", token=str(uuid.uuid4()))
    assert status == 403
    if kind == "a2a-sdk":
        status, body = await c.rpc("ListTasks", {"contextId": ctx}, user="bob", token=ro)
        assert {t["id"] for t in body["result"]["tasks"]} == {task["id"], written["id"]}
    async with c.http.delete(f"{gw.url}/api/sessions/{ctx}/shares/{rw}", headers={USER: "alice"}) as r:
        assert r.status == 200
    status, body = await c.rpc("GetTask", {"id": task["id"]}, user="bob", token=rw)
    assert status == 403 and body["error"]["message"] == "share link is invalid, expired or revoked"


async def test_share_api_is_the_context_owners_and_links_point_at_the_agent(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream]
) -> None:
    gw = await gateway_for("a2a-sdk", public_url="https://agents.example.com", shares__allow_anonymous="true")
    c = a2a_for(gw.url)
    ctx, task = await c.start("alice")
    async with c.http.post(f"{gw.url}/api/sessions/{ctx}/shares", json={}, headers={USER: "bob"}) as r:
        assert r.status == 404  # not his: as if it did not exist
    async with c.http.post(f"{gw.url}/api/sessions/{ctx}/shares", json={"label": "for the team"},
                           headers={USER: "alice"}) as r:
        data = (await r.json())["data"]
    url = urlsplit(data["url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "agents.example.com", "/")
    assert dict(parse_qsl(url.query)) == {"contextId": ctx, "share": data["token"]}
    assert (data["session_id"], data["user_id"], data["read_only"]) == (ctx, "alice", True)
    # The link as it is, from code that cannot set headers (a browser): anonymous, streaming.
    status, body = await c.rpc("SendMessage", {
        "message": message_body("a long one", ctx, metadata={"ticks": 4, "tickSeconds": 0.05}),
        "configuration": {"returnImmediately": True}}, user="alice")
    running = task_of(body["result"])
    agents["a2a-sdk"].clear()
    status, events = await c.rpc("SubscribeToTask", {"id": running["id"]}, user=None, query="?" + url.query)
    assert status == 200, events
    assert events[0]["result"]["task"]["id"] == running["id"], events
    assert events[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED", events
    [seen] = agents["a2a-sdk"].requests()
    assert "share" not in dict(parse_qsl(seen["query"]))  # the token never reaches the agent
    assert ["x-share-accessor", "anonymous"] in seen["headers"]
    async with c.http.get(f"{gw.url}/api/sessions/{ctx}/shares", headers={USER: "alice"}) as r:
        [listed] = (await r.json())["data"]
    assert listed["id"] == data["id"] and listed["access_count"] >= 0


async def test_standard_a2a_sdk_client_end_to_end(gateway_for: GwFor) -> None:
    from a2a.client import ClientConfig, ClientFactory
    from a2a.helpers import new_text_message
    from a2a.types import GetTaskRequest, ListTasksRequest, Role, SendMessageRequest

    gw = await gateway_for("a2a-sdk")
    base = gw.url + "/"

    async def client(h: httpx.AsyncClient) -> Any:
        return await ClientFactory(ClientConfig(httpx_client=h, streaming=True)).create_from_url(base)

    async def send(a2a: Any, text: str, ctx: str | None) -> list[Any]:
        message = new_text_message(text, context_id=ctx, role=Role.ROLE_USER)
        return [event async for event in a2a.send_message(SendMessageRequest(message=message))]

    async with httpx.AsyncClient(headers={USER: "alice"}, timeout=10) as h:
        alice = await client(h)
        events = await send(alice, "plan a trip", None)
        task = next(e.task for e in events if e.HasField("task"))
        ctx = task.context_id
        r = await h.post(f"{gw.url}/api/sessions/{ctx}/shares", json={"read_only": True})
        ro = r.json()["data"]["token"]
        r = await h.post(f"{gw.url}/api/sessions/{ctx}/shares", json={"read_only": False})
        rw = r.json()["data"]["token"]
        await alice.close()
    async with httpx.AsyncClient(headers={USER: "bob"}, timeout=10) as h:
        bob = await client(h)
        with pytest.raises(Exception, match="Task not found"):
            await bob.get_task(GetTaskRequest(id=task.id))
        await bob.close()
    for token, may_write in ((ro, False), (rw, True)):
        async with httpx.AsyncClient(headers={USER: "bob", "X-Share-Token": token}, timeout=10) as h:
            bob = await client(h)
            got = await bob.get_task(GetTaskRequest(id=task.id))
            assert got.context_id == ctx
            listed = await bob.list_tasks(ListTasksRequest(context_id=ctx))
            assert task.id in [t.id for t in listed.tasks]
            if may_write:
                assert any("initiated_by=bob" in str(e) for e in await send(bob, "add a hotel", ctx))
            else:
                with pytest.raises(Exception, match="403"):
                    await send(bob, "add a hotel", ctx)
            await bob.close()


async def test_refused_before_the_agent_what_cannot_be_attributed(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream], http: aiohttp.ClientSession
) -> None:
    gw, agent = await gateway_for("a2a-sdk"), agents["a2a-sdk"]
    c = a2a_for(gw.url)
    ctx, task = await c.start("alice")
    # Straight at the agent a snake_case twin names the context (protobuf reads both spellings).
    direct = a2a_for(agent.url)
    status, body = await direct.rpc("SendMessage", {"message": {**message_body("hi", None), "context_id": ctx}},
                                    user=None)
    assert task_of(body["result"])["contextId"] == ctx
    agent.clear()
    status, body = await c.rpc("SendMessage", {"message": {**message_body("hi", None), "context_id": ctx}},
                               user="bob")
    assert status == 400 and body["error"]["code"] == -32600, body
    status, body = await c.rpc("tasks/pushNotification/set", {"id": task["id"]}, user="bob")  # not in A2A's table
    assert status == 403 and body["error"]["code"] == -32601, body
    async with http.post(gw.url + "/", json=[{"jsonrpc": "2.0", "id": 1, "method": "GetTask",
                                              "params": {"id": task["id"]}}], headers={USER: "bob"}) as r:
        assert r.status == 400  # a batch
    async with http.get(f"{gw.url}/tasks/{task['id']}", headers={USER: "bob"}) as r:  # the REST binding
        assert r.status == 400 and (await r.json())["error"]["code"] == -32700
    assert agent.requests() == []


async def test_claim_and_default_owner_cover_conversations_from_before_the_gateway(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], agents: dict[str, Upstream], tmp_path: Any
) -> None:
    direct = a2a_for(agents["a2a-sdk"].url)
    old_ctx, old_task = await direct.start("-")  # made straight at the agent: the gateway never saw it
    claimed_ctx, claimed_task = await direct.start("-")
    store = f"sqlite:///{tmp_path}/owners.db"
    gw = await gateway_for("a2a-sdk", store=store, default_owner="alice")
    c = a2a_for(gw.url)
    status, body = await c.rpc("GetTask", {"id": old_task["id"]}, user="alice")
    assert body["result"]["contextId"] == old_ctx  # default_owner: the unrecorded context is alice's
    status, body = await c.rpc("GetTask", {"id": old_task["id"]}, user="bob")
    assert refused_task(status, body)
    status, body = await c.say("mine", user="bob", context=old_ctx)
    assert refused_context(status, body)  # no claiming what default_owner holds
    bobs_ctx, _ = await c.start("bob")  # a new conversation is still bob's
    assert await gw.store.session_owner(bobs_ctx) == "bob"
    code = await asyncio.to_thread(cli.main, ["sessions", "claim", claimed_ctx, "--owner", "bob", "--store", store])
    assert code == 0
    status, body = await c.rpc("GetTask", {"id": claimed_task["id"]}, user="bob")
    assert body["result"]["contextId"] == claimed_ctx
    status, body = await c.rpc("GetTask", {"id": claimed_task["id"]}, user="alice")
    assert refused_task(status, body)


async def test_owners_recorded_on_one_replica_hold_on_another(
    gateway_for: GwFor, a2a_for: Callable[[str], A2A], tmp_path: Any, redis_url: str
) -> None:
    common = {"store": f"sqlite:///{tmp_path}/shared.db", "redis": redis_url,
              "redis_prefix": f"sg-a2a-{uuid.uuid4().hex[:8]}"}
    one, two = await gateway_for("a2a-sdk", **common), await gateway_for("a2a-sdk", **common)
    ctx, task = await a2a_for(one.url).start("alice")
    status, body = await a2a_for(two.url).rpc("GetTask", {"id": task["id"]}, user="bob")
    assert refused_task(status, body)
    status, body = await a2a_for(two.url).say("more", user="alice", context=ctx)
    assert status == 200 and task_of(body["result"])["contextId"] == ctx


@pytest.mark.parametrize(
    ("answer", "context"),
    [
        ({"result": {"id": "t", "contextId": "c", "status": {}}}, "c"),  # v0.3 Task
        ({"result": {"task": {"id": "t", "contextId": "c"}}}, "c"),  # v1.0 SendMessage
        ({"result": {"statusUpdate": {"taskId": "t", "contextId": "c"}}}, "c"),  # v1.0 stream event
        ({"result": {"kind": "artifact-update", "taskId": "t", "contextId": "c"}}, "c"),  # v0.3 event
        # agent output never names the context an answer is in
        ({"result": {"task": {"id": "t", "metadata": {"contextId": "x"}}, "metadata": {"contextId": "x"}}}, None),
        ({"result": {"tasks": [{"id": "t", "contextId": "x"}]}}, None),  # a listing
        ({"error": {"code": -32001, "message": "Task not found"}}, None),
    ],
)
def test_context_of_an_answer(answer: dict[str, Any], context: str | None) -> None:
    from gateway.pipeline import a2a

    assert a2a.context_in_answer(json.dumps(answer).encode()) == context


@pytest.mark.parametrize(
    ("method", "params", "tasks"),
    [
        ("tasks/get", {"id": "a"}, ("a",)),
        ("tasks/pushNotificationConfig/list", {"taskId": "b"}, ("b",)),  # fasta2a's spelling
        ("tasks/pushNotificationConfig/delete", {"id": "a", "taskId": "b"}, ("a", "b")),
        ("GetTask", {"id": "a", "taskId": "b"}, ("a", "b")),
        ("GetTaskPushNotificationConfig", {"taskId": "b", "id": "config"}, ("b",)),  # v1.0: id is the config
    ],
)
def test_every_task_id_a_call_may_be_read_for_is_attributed(
    method: str, params: dict[str, Any], tasks: tuple[str, ...]
) -> None:
    from gateway.pipeline import a2a

    raw = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    call = a2a.parse_call(raw, strict=True)
    assert call is not None and call.task_ids == tasks


async def test_an_answer_naming_someone_elses_conversation_is_never_relayed(
    make_gateway: GatewayFactory, a2a_for: Callable[[str], A2A]
) -> None:
    """An agent that puts every new conversation in one context (a broken or hostile upstream)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def rpc(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        task = {"id": uuid.uuid4().hex, "contextId": "the-only-context", "status": {"state": "TASK_STATE_WORKING"}}
        if body["method"] == "SendStreamingMessage":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b"data: " + json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"task": task}}).encode()
                                 + b"\n\n")
            return response
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {"task": task}})

    app = web.Application()
    app.router.add_post("/", rpc)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        gw = await make_gateway(upstream=str(server.make_url("")).rstrip("/"), profile="a2a")
        c = a2a_for(gw.url)
        status, body = await c.say("hi", user="alice")
        assert status == 200 and task_of(body["result"])["contextId"] == "the-only-context"
        status, body = await c.say("hi", user="bob")
        assert status == 502 and "result" not in body, body
        with pytest.raises(aiohttp.ClientPayloadError):
            await c.rpc("SendStreamingMessage", {"message": message_body("hi", None)}, user="bob")
        assert await gw.store.session_owner("the-only-context") == "alice"
    finally:
        await server.close()
