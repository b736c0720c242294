"""Operating it: exact metric deltas, denial logs, SIGTERM with open streams, --workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import METRICS_FOLD_INTERVAL
from gateway.demo.story import free_port, wait_http
from gateway.health import Health, create_admin_app
from tests.conftest import Client, Gateway, GatewayFactory, Upstream, chat

SLOW_SECONDS = 3.0  # an in-flight request outlasting the stream's end by a margin a loaded CI survives


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse an exposition with prometheus-client's own parser: {(sample, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def metrics_text(health: Health | None = None) -> str:
    server = TestServer(create_admin_app(health or Health()), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as s, s.get(server.make_url("/metrics")) as r:
            return await r.text()
    finally:
        await server.close()


def delta(after: dict[Any, float], before: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_scripted_scenario_exact_metric_deltas(
    make_gateway: GatewayFactory, client_for: Callable[[Gateway], Client]
) -> None:
    gw = await make_gateway(access__flush_interval="3600")  # only the explicit flush writes
    c = client_for(gw)
    sid, _ = await chat(c, "alice")
    ro = (await c.share("alice", sid))["token"]
    await c.call("GET", f"/api/sessions/{sid}", user="bob", token=ro)  # warm the cache
    before = scrape(await metrics_text())
    r = "/api/sessions/{session_id}"
    for _ in range(3):
        assert (await c.call("GET", f"/api/sessions/{sid}", user="bob", token=ro))[0] == 200
    assert (await c.say("no", user="bob", context=sid, token=ro))[0] == 403
    assert (await c.say("no", user="bob", context=sid, token=ro))[0] == 403
    assert (await c.call("GET", f"/api/sessions/{sid}", user="bob", token="x" * 43))[0] == 403
    assert (await c.call("GET", f"/api/sessions/{sid}", user="alice"))[0] == 200
    assert (await c.call("GET", f"/api/sessions/{sid}"))[0] == 401
    await gw.flush_access()
    after = scrape(await metrics_text())
    total = "share_gateway_requests_total"
    assert delta(after, before, total, route=r, method="GET", status_class="2xx", decision="as_owner") == 3
    assert delta(after, before, total, route="/api/a2a/{namespace}/{name}/{rest*}", method="POST",
                 status_class="4xx", decision="deny") == 2
    assert delta(after, before, total, route=r, method="GET", status_class="4xx", decision="deny") == 2
    assert delta(after, before, total, route=r, method="GET", status_class="2xx", decision="as_caller") == 1
    decisions = "share_gateway_decisions_total"
    assert delta(after, before, decisions, reason_id="share_read") == 3
    assert delta(after, before, decisions, reason_id="share_read_only") == 2
    assert delta(after, before, decisions, reason_id="share_invalid") == 1
    assert delta(after, before, decisions, reason_id="identity_missing") == 1
    assert delta(after, before, decisions, reason_id="no_share_token") == 1
    lookups = "share_gateway_share_lookups_total"
    assert delta(after, before, lookups, tier="l1", result="hit") == 5
    assert delta(after, before, lookups, tier="l1", result="miss") == 1
    assert delta(after, before, lookups, tier="store", result="negative") == 1
    assert delta(after, before, "share_gateway_access_records_total", result="queued") == 3
    assert delta(after, before, "share_gateway_access_records_total", result="written") == 1  # one pair
    assert delta(after, before, "share_gateway_request_duration_seconds_count", route=r, decision="as_owner") == 3
    assert after[("share_gateway_requests_in_flight", ())] == 0
    assert after[("share_gateway_access_queue_depth", ())] == 0
    for (_name, labels) in after:
        values = " ".join(v for _, v in labels)
        assert ro not in values
        assert "alice" not in values
        assert sid not in values


async def test_every_denial_logs_a_reason_and_never_a_token(gw: Gateway, c: Client) -> None:
    sid, task = await chat(c, "alice")
    ro = (await c.share("alice", sid))["token"]
    with structlog.testing.capture_logs() as logs:
        await c.say("no", user="bob", context=sid, token=ro)
        await c.call("GET", f"/api/sessions/{sid}", user="bob", token="y" * 43)
        await c.call("GET", f"/api/sessions/{sid}")
        await c.call("GET", f"/api/sessions/{sid}/shares", user="bob")
        await c.call("GET", f"/api/sessions/{sid}?share={ro}&share=other", user="bob")
        await c.call("GET", "/api/sessions/a%2Fb", user="bob")
        await c.rpc("GetTask", {"id": task["id"], "id2": 1}, user="bob", token=ro, rpc_id="z")
        await c.call("POST", "/api/a2a/demo/echo/", user="bob", token=ro, data=b"[1, 2]")
    lines = [e for e in logs if e["event"] == "request"]
    denials = [e for e in lines if e["status"] >= 400]
    assert len(denials) == 7
    assert {e["reason_id"] for e in denials} == {
        "share_read_only", "share_invalid", "identity_missing", "share_api_not_owner",
        "share_token_ambiguous", "path_ambiguous", "a2a_malformed",
    }
    assert ro not in json.dumps(logs, default=str)


@pytest.fixture
async def slow_upstream() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Serves an endless SSE stream and a slow (``SLOW_SECONDS``) request."""
    state: dict[str, Any] = {"stream_ended": asyncio.Event(), "slow_started": asyncio.Event()}

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i in range(10_000):
                await resp.write(f"id: {i}\ndata: {{\"n\": {i}}}\n\n".encode())
                await asyncio.sleep(0.05)
        finally:
            state["stream_ended"].set()
        return resp

    async def slow(_request: web.Request) -> web.Response:
        state["slow_started"].set()
        await asyncio.sleep(SLOW_SECONDS)
        return web.json_response({"slow": True})

    app = web.Application()
    app.router.add_get("/events", events)
    app.router.add_get("/slow", slow)
    async def root(_request: web.Request) -> web.Response:  # the readiness probe's target
        return web.json_response({})

    app.router.add_get("/", root)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), state
    await server.close()


async def wait_ready(url: str, timeout: float = 20.0) -> None:
    """Poll without blocking the loop: an in-process upstream must stay able to answer."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready")


async def start_gateway(tmp_path: Path, upstream: str, *extra: str) -> tuple[subprocess.Popen[str], str, str]:
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARE_GATEWAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--upstream", upstream, "--listen", f"127.0.0.1:{port}",
         "--admin_listen", f"127.0.0.1:{admin}", "--store", f"sqlite:///{tmp_path}/gw.db",
         "--log.format", "json", "--auth.mode", "none", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    await wait_ready(f"http://127.0.0.1:{admin}/readyz")  # ready: the main listener accepts too
    return proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"


async def test_sigterm_ends_streams_cleanly_and_lets_requests_finish(
    tmp_path: Path, slow_upstream: tuple[str, dict[str, Any]]
) -> None:
    url, state = slow_upstream
    proc, base, admin = await start_gateway(tmp_path, url, "--shutdown_grace", "10")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/events") as stream:
                first = await stream.content.readuntil(b"\n\n")
                assert first.startswith(b"id: 0")
                slow = asyncio.ensure_future(http.get(base + "/slow"))
                await asyncio.wait_for(state["slow_started"].wait(), 5)  # the slow request is in flight
                proc.send_signal(signal.SIGTERM)
                sent = time.monotonic()
                rest = await asyncio.wait_for(stream.content.read(), 5)  # ends cleanly, no error
                ended = time.monotonic() - sent
                assert rest == b"" or rest.endswith(b"\n\n")  # stopped between whole events
                async with http.get(admin + "/readyz") as ready:  # the slow request keeps it draining
                    assert ready.status == 503
                    assert (await ready.json())["checks"]["lifecycle"] == "draining"
            response = await slow
            assert response.status == 200
            assert await response.json() == {"slow": True}
            response.release()
        await asyncio.wait_for(state["stream_ended"].wait(), 5)  # the upstream stream was closed too
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert ended < SLOW_SECONDS - 1, stderr  # streams end at once; they do not wait for other requests
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    draining = next(e for e in events if e["event"] == "draining")
    assert draining["open_streams"] == 1


async def test_workers_share_the_port_and_aggregate_metrics(tmp_path: Path, upstream: Upstream) -> None:
    proc, base, admin = await start_gateway(tmp_path, upstream.url, "--workers", "2")
    try:
        pids = set()
        sent = 0
        deadline = time.monotonic() + 20
        while len(pids) < 2:
            assert time.monotonic() < deadline, "a second worker never answered"
            wait_http(admin + "/readyz")
            with urllib.request.urlopen(admin + "/readyz") as r:
                assert r.status == 200
            async with aiohttp.ClientSession() as http:  # new connections: the kernel spreads them
                for _ in range(20):
                    async with http.get(base + "/api/sessions", headers={"Connection": "close"}) as r:
                        assert r.status == 200
                    sent += 1
            pids = set(_worker_pids(proc.pid))
        # Counts from both workers, whichever answers /metrics: each worker folds its request
        # counts into the shared files at least once a second (gateway/observe/metrics.py).
        total = 0.0
        folded = time.monotonic() + 2 * METRICS_FOLD_INTERVAL + 1
        while total < sent and time.monotonic() < folded:
            text = urllib.request.urlopen(admin + "/metrics").read().decode()
            total = sum(v for (name, labels), v in scrape(text).items()
                        if name == "share_gateway_requests_total" and ("route", "/api/sessions") in labels)
            await asyncio.sleep(0.1)
        assert total >= sent  # every request sent, though the two workers served them
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr


def _worker_pids(supervisor: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(supervisor)], capture_output=True, text=True)
    return out.stdout.split()



def test_library_and_error_logs_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from gateway.observe.logging import configure

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    token = "Zr0dKq9X2mP4vN8sT1uW6yB3cE5fH7jL0aQ2gI9oR4k"
    try:
        configure("info", "json")
        logging.getLogger("aiohttp.server").error("Error handling request GET /api/s?x=1&share=%s HTTP/1.1", token)
        try:
            raise ValueError(f"bad header X-Share-Token: {token}")
        except ValueError:
            logging.getLogger("asyncio").exception("task failed")
        structlog.get_logger("gateway.test").warning("revoking", path=f"/api/sessions/s1/shares/{token}",
                                                      share_token=token)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        structlog.reset_defaults()
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    assert token not in err
    assert err.count("[redacted]") >= 4


async def test_workers_share_one_assertion_key(tmp_path: Path, upstream: Upstream) -> None:
    proc, _, admin = await start_gateway(tmp_path, upstream.url, "--workers", "2", "--upstream_auth.mode",
                                   "jwt-assertion")
    try:
        kids = set()
        deadline = time.monotonic() + 20
        while len(_worker_pids(proc.pid)) < 2 or time.monotonic() < deadline - 15:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        wait_http(admin + "/readyz")
        for _ in range(30):  # new connections: the kernel spreads them over both workers
            request = urllib.request.Request(admin + "/.well-known/jwks.json", headers={"Connection": "close"})
            with urllib.request.urlopen(request) as r:
                kids.update(k["kid"] for k in json.load(r)["keys"])
        assert len(kids) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
