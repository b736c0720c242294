"""``share-gateway demo``: the share story end to end, against real a2a-sdk agents.

Act 1 (profile ``kagent``): the demo kagent-style server, whose a2a-sdk agent
keeps tasks per user. Act 2 (profile ``a2a``): a plain a2a-sdk agent with no
users at all (``gateway.demo.plain_agent``), to which the gateway adds them.
Each act runs its agent and a gateway (SQLite store, no Redis) on free
loopback ports and walks through: alice chats, shares read-only, bob reads
through the link, is refused a write, alice sees who opened it and revokes it,
the link stops working. Every step prints its HTTP result.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import aiohttp

USER_HEADER = "X-Forwarded-User"  # what an auth proxy such as oauth2-proxy would set


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Block until ``url`` answers 200, or raise ``TimeoutError``."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready")


# profile → (the agent's module, the path of its card, relative to the agent's URL)
AGENTS = {
    "kagent": ("gateway.demo.agent", "/api/a2a/demo/echo/.well-known/agent-card.json"),
    "a2a": ("gateway.demo.plain_agent", "/.well-known/agent-card.json"),
}


@contextmanager
def demo_stack(workdir: str, profile: str = "kagent") -> Iterator[tuple[str, str]]:
    """Run a demo agent and a gateway in front of it; yields ``(gateway_url, agent_url)``."""
    module, card = AGENTS[profile]
    agent_port, gw_port, admin_port = free_port(), free_port(), free_port()
    agent_url = f"http://127.0.0.1:{agent_port}"
    gateway_url = f"http://127.0.0.1:{gw_port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("SHARE_GATEWAY_")}
    log = open(os.path.join(workdir, f"demo-{profile}.log"), "w")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(agent_port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--profile",
            profile,
            "--upstream",
            agent_url,
            "--listen",
            f"127.0.0.1:{gw_port}",
            "--admin_listen",
            f"127.0.0.1:{admin_port}",
            "--store",
            f"sqlite:///{os.path.join(workdir, 'shares.db')}",
            "--public_url",
            gateway_url,
            "--auth.mode",
            "trusted-header",
            "--auth.trusted_header.name",
            USER_HEADER,
            "--auth.trusted_header.trusted_cidrs",
            "127.0.0.1/32",
            "--log.format",
            "json",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_http(agent_url + card)
        wait_http(f"http://127.0.0.1:{admin_port}/readyz")
        yield gateway_url, agent_url
    finally:
        for proc in (gateway, agent):
            proc.terminate()
        for proc in (gateway, agent):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


class Story:
    """A tiny HTTP client that prints each step."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.step = 0

    async def call(
        self,
        who: str,
        what: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = None,
        a2a_version: str | None = None,
        base: str | None = None,
    ) -> tuple[int, Any]:
        """One step; ``base``: another server than the gateway (the agent itself), asked with
        ``X-User-Id: who`` instead of the auth proxy's header."""
        self.step += 1
        headers = {USER_HEADER: who} if base is None else {"X-User-Id": who}
        if token:
            headers["X-Share-Token"] = token
        if a2a_version:
            headers["A2A-Version"] = a2a_version
        async with self.http.request(method, (base or self.base) + path, json=body, headers=headers) as r:
            text = await r.text()
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
        print(f"{self.step:>2}. {who:<6} {what}")
        where = f"{path} (straight at the agent)" if base else path
        print(f"      {method} {where}{' (with share token)' if token else ''} -> HTTP {r.status}")
        return r.status, data


def _say(data: Any) -> str:
    if isinstance(data, dict):
        if "error" in data and isinstance(data["error"], dict):
            return f"JSON-RPC error: {data['error'].get('message')}"
        if data.get("message"):
            return str(data["message"])
    return json.dumps(data)[:120]


def _message(text: str, context_id: str | None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messageId": os.urandom(8).hex(),
        "role": "ROLE_USER",
        "parts": [{"text": text}],
    }
    if context_id is not None:
        message["contextId"] = context_id
    return {
        "jsonrpc": "2.0",
        "id": str(time.time()),
        "method": "SendMessage",
        "params": {"message": {**message, **extra}},
    }


def _rpc(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": str(time.time()), "method": method, "params": params}


def _artifact(data: Any) -> str:
    task = data.get("result", {}).get("task", {}) if isinstance(data, dict) else {}
    return "".join(p.get("text", "") for a in task.get("artifacts", []) for p in a.get("parts", []))


def _expect(results: list[bool], ok: bool, detail: str) -> None:
    """Print one step's outcome and remember it."""
    results.append(ok)
    print(f"      {'ok ' if ok else 'UNEXPECTED'} {detail}")


async def tell(base: str) -> bool:
    """Run the story against a gateway at ``base``; True if every step behaved as expected."""
    a2a = "/api/a2a/demo/echo/"
    results: list[bool] = []
    expect = functools.partial(_expect, results)

    async with aiohttp.ClientSession() as http:
        s = Story(http, base)
        status, data = await s.call(
            "alice",
            "starts a chat session",
            "POST",
            "/api/sessions",
            body={"agent_ref": "demo/echo", "name": "trip planning"},
        )
        session = data["data"]["id"]
        expect(status == 201, f"session {session}")
        status, data = await s.call(
            "alice",
            "talks to the agent in it",
            "POST",
            a2a,
            body=_message("plan a trip to Lisbon", session),
            a2a_version="1.0",
        )
        task = data["result"]["task"]
        expect(status == 200, "agent answered: " + task["artifacts"][0]["parts"][0]["text"])
        status, data = await s.call(
            "alice",
            "creates a read-only share link",
            "POST",
            f"/api/sessions/{session}/shares",
            body={"read_only": True, "label": "for bob"},
        )
        token = data["data"]["token"]
        expect(status == 201, f"share {data['data']['id']} (link: {data['data'].get('url', '-')[:60]}…)")
        status, data = await s.call(
            "bob", "opens alice's session without the link", "GET", f"/api/sessions/{session}"
        )
        expect(status == 404, "not his session: " + _say(data))
        status, data = await s.call(
            "bob", "opens alice's session through the link", "GET", f"/api/sessions/{session}", token=token
        )
        expect(
            status == 200 and data["data"]["session"]["user_id"] == "alice",
            f"sees the {len(data['data']['events'])} events of alice's session",
        )
        status, data = await s.call(
            "bob",
            "reads alice's task over A2A (GetTask)",
            "POST",
            a2a,
            token=token,
            a2a_version="1.0",
            body={"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": task["id"]}},
        )
        expect(
            status == 200 and data.get("result", {}).get("id") == task["id"],
            "task state " + str(data.get("result", {}).get("status", {}).get("state")),
        )
        status, data = await s.call(
            "bob",
            "tries to write into the session",
            "POST",
            a2a,
            body=_message("cancel the trip", session),
            token=token,
            a2a_version="1.0",
        )
        expect(status == 403, "refused: " + _say(data))
        await asyncio.sleep(1.5)  # access records are written asynchronously, off the request path
        status, data = await s.call(
            "alice", "lists her share links and who opened them", "GET", f"/api/sessions/{session}/shares"
        )
        share = data["data"][0]
        expect(
            status == 200 and share["viewers"] == 1,
            f"viewers={share['viewers']} accesses={share['access_count']} (no token shown: "
            f"prefix {share['token_prefix']}…)",
        )
        status, data = await s.call(
            "alice", "revokes the link", "DELETE", f"/api/sessions/{session}/shares/{share['id']}"
        )
        expect(status == 200, _say(data))
        status, data = await s.call(
            "bob", "tries the link again", "GET", f"/api/sessions/{session}", token=token
        )
        expect(status == 403, "refused: " + _say(data))
    return all(results)


async def tell_a2a(base: str, agent_url: str) -> bool:
    """Act 2 against a gateway (profile ``a2a``) in front of a plain a2a-sdk agent with no users."""
    results: list[bool] = []
    expect = functools.partial(_expect, results)

    async with aiohttp.ClientSession() as http:
        s = Story(http, base)
        status, data = await s.call(
            "alice", "starts a conversation (no contextId)", "POST", "/",
            body=_message("plan a trip to Porto", None), a2a_version="1.0",
        )
        task = data["result"]["task"]
        context = task["contextId"]
        expect(status == 200, f"context {context}, recorded as alice's; agent: {_artifact(data)}")
        get_task = _rpc("GetTask", id=task["id"])
        status, data = await s.call(
            "bob", "reads alice's task straight at the agent", "POST", "/",
            body=get_task, a2a_version="1.0", base=agent_url,
        )
        expect(status == 200 and "result" in data, "the agent has no users: anyone reads anything")
        status, data = await s.call(
            "bob", "reads alice's task through the gateway", "POST", "/", body=get_task, a2a_version="1.0"
        )
        expect(status == 200 and "error" in data, "as if it did not exist: " + _say(data))
        status, data = await s.call(
            "bob", "writes into alice's conversation", "POST", "/",
            body=_message("cancel the trip", context), a2a_version="1.0",
        )
        expect(status == 403, "refused: " + _say(data))
        status, data = await s.call(
            "alice", "creates a read-only share link", "POST", f"/api/sessions/{context}/shares",
            body={"read_only": True, "label": "for bob"},
        )
        token = data["data"]["token"]
        expect(status == 201, f"share {data['data']['id']} (link: {data['data'].get('url', '-')[:60]}…)")
        status, data = await s.call(
            "bob", "lists the conversation's tasks through the link", "POST", "/",
            body=_rpc("ListTasks", contextId=context), token=token, a2a_version="1.0",
        )
        expect(status == 200 and len(data.get("result", {}).get("tasks", [])) == 1, "alice's task")
        status, data = await s.call(
            "bob", "tries to write through the read-only link", "POST", "/",
            body=_message("cancel the trip", context), token=token, a2a_version="1.0",
        )
        expect(status == 403, "refused: " + _say(data))
        status, data = await s.call(
            "alice", "creates a read-write share link", "POST", f"/api/sessions/{context}/shares",
            body={"read_only": False},
        )
        rw_token, rw_id = data["data"]["token"], data["data"]["id"]
        expect(status == 201, f"share {rw_id}")
        status, data = await s.call(
            "bob", "continues the conversation through it", "POST", "/",
            body=_message("add a hotel", context), token=rw_token, a2a_version="1.0",
        )
        expect(status == 200 and "initiated_by=bob" in _artifact(data), "agent: " + _artifact(data))
        await asyncio.sleep(1.5)  # access records are written asynchronously, off the request path
        status, data = await s.call(
            "alice", "lists her share links and who opened them", "GET", f"/api/sessions/{context}/shares"
        )
        viewers = sorted(share["viewers"] for share in data["data"])
        expect(status == 200 and viewers == [1, 1], f"viewers per link: {viewers}")
        status, data = await s.call(
            "alice", "revokes the read-write link", "DELETE", f"/api/sessions/{context}/shares/{rw_id}"
        )
        expect(status == 200, _say(data))
        status, data = await s.call(
            "bob", "tries that link again", "POST", "/",
            body=_message("one more thing", context), token=rw_token, a2a_version="1.0",
        )
        expect(status == 403, "refused: " + _say(data))
    return all(results)


def main(*, keep_running: bool = False) -> int:
    """Run the whole demo, both acts; exit status 0 when the story went as expected."""
    with tempfile.TemporaryDirectory(prefix="share-gateway-demo-") as workdir, ExitStack() as stacks:
        print("starting two a2a-sdk agents, each behind share-gateway (SQLite, no Redis)…")
        kagent = stacks.enter_context(demo_stack(workdir, "kagent"))
        plain = stacks.enter_context(demo_stack(workdir, "a2a"))
        print(f"\nAct 1 (profile kagent): gateway {kagent[0]} -> kagent-style server {kagent[1]}\n")
        ok = asyncio.run(tell(kagent[0]))
        print(f"\nAct 2 (profile a2a): gateway {plain[0]} -> a2a-sdk agent with no users {plain[1]}\n")
        ok = asyncio.run(tell_a2a(*plain)) and ok
        print("\nthe share story went as expected" if ok else "\nsome steps were unexpected")
        if keep_running:
            print(f"still running: gateways {kagent[0]} (kagent) and {plain[0]} (a2a); Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        if not ok:
            for profile in AGENTS:
                with open(os.path.join(workdir, f"demo-{profile}.log")) as f:
                    print(f.read()[-4000:], file=sys.stderr)
    return 0 if ok else 1
