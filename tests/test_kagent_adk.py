"""kagent's real agent runtime against the kagent stand-in, and its session shared through the gateway.

Optional: kagent-adk 0.10.x needs a2a-sdk 0.3.x (this project's demo needs
a2a-sdk 1.x) and about 1 GB of dependencies, so it lives in an interpreter of
its own, named by ``KAGENT_ADK_PYTHON``; without it the test fails. ``make
test`` sets one up (``make kagent-adk``: every package pinned in
``scripts/kagent-adk-requirements.txt``, installed with ``--no-deps`` into
``.kagent-adk/``).

The runtime's callbacks (``POST /api/sessions?user_id=``, ``GET /api/sessions/{id}``,
``POST /api/sessions/{id}/events``, ``POST|GET /api/tasks``, all with
``X-Agent-Name``) are kagent-adk's own code, so this checks the stand-in's REST
API against kagent's client.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from gateway.demo.story import free_port, wait_http
from tests.conftest import Client, Upstream

PYTHON = os.environ.get("KAGENT_ADK_PYTHON", "")


@pytest.fixture(autouse=True)
def kagent_adk() -> None:
    """Fails, never skips, without the runtime: ``make test`` installs it (``make kagent-adk``)."""
    if not PYTHON or not Path(PYTHON).exists():
        pytest.fail("kagent-adk is required: run `make kagent-adk` and set KAGENT_ADK_PYTHON="
                    ".kagent-adk/bin/python (make test does both)")


async def test_kagent_adk_session_shared_through_the_gateway(
    c: Client, upstream: Upstream, tmp_path: Path
) -> None:
    port = free_port()
    script = Path(__file__).with_name("kagent_adk_runtime.py")
    with open(tmp_path / "runtime.log", "wb") as log:
        proc = subprocess.Popen([PYTHON, str(script), upstream.url, str(port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=90)
            user, context = f"adk-{uuid.uuid4().hex[:6]}", f"ctx-{uuid.uuid4().hex[:8]}"
            upstream.clear()
            async with httpx.AsyncClient(timeout=60) as h:  # the controller's passthrough, as the user
                r = await h.post(f"http://127.0.0.1:{port}/", headers={"X-User-Id": user}, json={
                    "jsonrpc": "2.0", "id": 1, "method": "message/send",
                    "params": {"message": {"kind": "message", "messageId": "m1", "role": "user",
                                           "parts": [{"kind": "text", "text": "hello kagent"}],
                                           "contextId": context}}})
            assert r.json()["result"]["status"]["state"] == "completed", r.text
            callbacks = upstream.requests()
            assert callbacks and all(["x-agent-name", "demo__NS__echo"] in q["headers"] for q in callbacks)
            assert {q["effective_user"] for q in callbacks} == {user}
        finally:
            proc.terminate()
            proc.wait(10)
    token = (await c.share(user, context))["token"]  # the ownership probe finds the runtime's session
    status, body, _ = await c.call("GET", f"/api/sessions/{context}?order=asc", user="bob", token=token)
    assert (status, body["data"]["session"]["user_id"]) == (200, user)
    assert any("echo: hello kagent" in e["data"] for e in body["data"]["events"])
    status, body, _ = await c.call("GET", f"/api/sessions/{context}/tasks", user="bob", token=token)
    assert status == 200 and body["data"][0]["status"]["state"] == "completed"
