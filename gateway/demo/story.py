"""``share-gateway demo``: the share story end to end, against a real a2a-sdk agent.

Starts the demo agent server and a gateway (SQLite store, no Redis) on free
loopback ports, then walks through: alice chats, shares read-only, bob reads
the session and a task through the link, is refused a write, alice revokes,
the link stops working. Every step prints its HTTP result.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def demo_stack(workdir: str) -> Iterator[tuple[str, str]]:
    """Run the demo agent and a gateway in front of it; yields ``(gateway_url, agent_url)``."""
    agent_port, gw_port, admin_port = free_port(), free_port(), free_port()
    agent_url = f"http://127.0.0.1:{agent_port}"
    gateway_url = f"http://127.0.0.1:{gw_port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("SHARE_GATEWAY_")}
    log = open(os.path.join(workdir, "demo.log"), "w")  # noqa: SIM115 - closed below
    agent = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo.agent", "--port", str(agent_port)],
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
        wait_http(f"{agent_url}/api/a2a/demo/echo/.well-known/agent-card.json")
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
    ) -> tuple[int, Any]:
        self.step += 1
        headers = {USER_HEADER: who}
        if token:
            headers["X-Share-Token"] = token
        if a2a_version:
            headers["A2A-Version"] = a2a_version
        async with self.http.request(method, self.base + path, json=body, headers=headers) as r:
            text = await r.text()
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
        print(f"{self.step:>2}. {who:<6} {what}")
        print(f"      {method} {path}{' (with share token)' if token else ''} -> HTTP {r.status}")
        return r.status, data


def _say(data: Any) -> str:
    if isinstance(data, dict):
        if "error" in data and isinstance(data["error"], dict):
            return f"JSON-RPC error: {data['error'].get('message')}"
        if data.get("message"):
            return str(data["message"])
    return json.dumps(data)[:120]


def _message(text: str, context_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": str(time.time()),
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": os.urandom(8).hex(),
                "role": "ROLE_USER",
                "parts": [{"text": text}],
                "contextId": context_id,
                **extra,
            }
        },
    }


async def tell(base: str) -> bool:
    """Run the story against a gateway at ``base``; True if every step behaved as expected."""
    a2a = "/api/a2a/demo/echo/"
    results: list[bool] = []

    def expect(ok: bool, detail: str) -> None:
        results.append(ok)
        print(f"      {'ok ' if ok else 'UNEXPECTED'} {detail}")

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


def main(*, keep_running: bool = False) -> int:
    """Run the whole demo; exit status 0 when the story went as expected."""
    with tempfile.TemporaryDirectory(prefix="share-gateway-demo-") as workdir:
        print("starting the demo agent (a2a-sdk) and share-gateway (SQLite, no Redis)…")
        with demo_stack(workdir) as (gateway_url, agent_url):
            print(f"gateway {gateway_url} -> agent {agent_url}\n")
            ok = asyncio.run(tell(gateway_url))
            print("\nthe share story went as expected" if ok else "\nsome steps were unexpected")
            if keep_running:
                print(f"still running: gateway {gateway_url}; Ctrl-C to stop")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            if not ok:
                with open(os.path.join(workdir, "demo.log")) as f:
                    print(f.read()[-4000:], file=sys.stderr)
    return 0 if ok else 1
