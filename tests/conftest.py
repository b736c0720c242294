"""Shared fixtures: a real demo agent server (a2a-sdk) and gateways in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import config
from gateway.app import PIPELINE, RECORDER, STORE, create_app, server_options
from gateway.demo.story import free_port, wait_http
from gateway.shares.store import ShareStore

USER = "X-Forwarded-User"
A2A = "/api/a2a/demo/echo/"


@dataclass
class Upstream:
    """The demo agent server, running in its own process."""

    url: str

    def requests(self) -> list[dict[str, Any]]:
        import urllib.request

        with urllib.request.urlopen(self.url + "/_demo/requests") as r:
            return list(json.load(r))

    def clear(self) -> None:
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(self.url + "/_demo/requests", method="DELETE")) as r:
            r.read()


@contextlib.contextmanager
def demo_upstream(tmp_path_factory: pytest.TempPathFactory, *flags: str) -> Iterator[Upstream]:
    """The kagent stand-in (``gateway/demo/agent.py --capture``) in its own process, with ``flags``."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("upstream") / "agent.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo.agent", "--port", str(port), "--capture", *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_demo/requests")
        yield Upstream(url)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """kagent-style demo server with a real a2a-sdk agent, recording what it receives."""
    with demo_upstream(tmp_path_factory) as server:
        yield server


@dataclass
class Gateway:
    """A gateway served in-process on a real loopback port."""

    server: TestServer
    app: web.Application
    settings: config.Settings

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def store(self) -> ShareStore:
        return self.app[STORE]

    async def flush_access(self) -> None:
        await self.app[RECORDER].flush()

    @property
    def pipeline(self) -> Any:
        return self.app[PIPELINE]


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(tmp_path: Any, upstream: Upstream) -> AsyncIterator[GatewayFactory]:
    """Build gateways: trusted-header identity from loopback by default, SQLite in tmp_path."""
    servers: list[TestServer] = []

    async def make(inject_store: ShareStore | None = None, **overrides: Any) -> Gateway:
        settings = config.load(
            overrides={
                "upstream": upstream.url,
                "store": f"sqlite:///{tmp_path}/shares-{len(servers)}.db",
                "auth.mode": "trusted-header",
                "auth.trusted_header.name": USER,
                "auth.trusted_header.trusted_cidrs": "127.0.0.1/32",
                "access.flush_interval": "0.05",
                **{k.replace("__", "."): v for k, v in overrides.items()},
            }
        )
        app = create_app(settings, store=inject_store)
        options = {k: v for k, v in server_options(settings).items() if k != "access_log"}
        server = TestServer(app, host="127.0.0.1", **options)
        await server.start_server()
        servers.append(server)
        return Gateway(server, app, settings)

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Client:
    """Calls a gateway as a named user (the auth proxy's header), optionally with a share token."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        version: str | None = None,
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        h: dict[str, str] = dict(headers or {})
        if user is not None:
            h[USER] = user
        if token is not None:
            h["X-Share-Token"] = token
        if version is not None:
            h["A2A-Version"] = version
        async with self.http.request(
            method, self.base + path, json=json_body, data=data, headers=h
        ) as r:
            text = await r.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            return r.status, body, r.headers

    async def session(self, user: str) -> str:
        status, body, _ = await self.call("POST", "/api/sessions", user=user,
                                          json_body={"agent_ref": "demo/echo"})
        assert status == 201, body
        return str(body["data"]["id"])

    async def share(self, user: str, session: str, **body: Any) -> dict[str, Any]:
        status, out, _ = await self.call("POST", f"/api/sessions/{session}/shares", user=user,
                                         json_body=body or {"read_only": True})
        assert status == 201, out
        return dict(out["data"])

    async def rpc(
        self, method: str, params: dict[str, Any], *, user: str | None, token: str | None = None,
        version: str | None = None, rpc_id: Any = 1,
    ) -> tuple[int, Any]:
        version = version or ("0.3" if "/" in method else "1.0")
        status, body, _ = await self.call(
            "POST", A2A, user=user, token=token, version=version,
            json_body={"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params},
        )
        return status, body

    async def say(
        self, text: str, *, user: str | None, context: str | None = None, token: str | None = None,
        version: str = "1.0", **message: Any,
    ) -> tuple[int, Any]:
        return await self.rpc(
            "SendMessage" if version == "1.0" else "message/send",
            {"message": message_body(text, context, version, **message)},
            user=user, token=token, version=version,
        )


def message_body(text: str, context: str | None, version: str = "1.0", **extra: Any) -> dict[str, Any]:
    """An A2A message in the v1.0 or v0.3 JSON shape."""
    if version == "1.0":
        msg: dict[str, Any] = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER",
                               "parts": [{"text": text}]}
    else:
        msg = {"kind": "message", "messageId": uuid.uuid4().hex, "role": "user",
               "parts": [{"kind": "text", "text": text}]}
    if context is not None:
        msg["contextId"] = context
    msg.update(extra)
    return msg


def task_of(result: dict[str, Any]) -> dict[str, Any]:
    """The Task in a SendMessage result (v1.0 wraps it in ``task``; v0.3 does not)."""
    return dict(result["task"]) if "task" in result else dict(result)


def artifact_text(task: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for a in task.get("artifacts", []) for p in a["parts"])


@pytest.fixture
def client_for(http: aiohttp.ClientSession) -> Callable[[Gateway], Client]:
    return lambda gw: Client(http, gw.url)


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Gateway:
    """A default gateway in front of the demo agent."""
    return await make_gateway()


@pytest.fixture
def c(gw: Gateway, client_for: Callable[[Gateway], Client]) -> Client:
    return client_for(gw)


async def chat(c: Client, user: str) -> tuple[str, dict[str, Any]]:
    """A session of ``user`` with one completed task in it: ``(session_id, task)``."""
    sid = await c.session(user)
    status, body = await c.say("hello", user=user, context=sid)
    assert status == 200, body
    return sid, task_of(body["result"])


POSTGRES_URL = os.environ.get("SHARE_GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema, dropped afterwards.

    Fails (never skips) when PostgreSQL is unreachable: ``make test`` starts a
    throwaway server when none runs; set ``SHARE_GATEWAY_TEST_POSTGRES`` to use another.
    """
    import asyncpg

    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is required for this test and is not reachable at {POSTGRES_URL}: {exc}")
    schema = f"sg_{uuid.uuid4().hex[:12]}"
    await conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@pytest.fixture
async def pg() -> AsyncIterator[str]:
    """A PostgreSQL URL on a fresh schema (see ``postgres_schema``)."""
    async with postgres_schema() as url:
        yield url


REDIS_URL = os.environ.get("SHARE_GATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_url() -> str:
    """The test Redis (fails, never skips, when unreachable). Tests isolate by ``redis_prefix``."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is required for this test and is not reachable at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    return REDIS_URL


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that the test may kill and restart."""

    def __init__(self, workdir: Any) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is required for this test (Debian: apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


class TcpCut:
    """A loopback TCP relay in front of a real server that a test can cut and restore:
    connections are dropped and new ones refused while it is cut (fault injection
    on the real wire, e.g. PostgreSQL going away)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for w in self.writers:
            w.close()
        self.writers.clear()
        self.server = None

    async def restore(self) -> None:
        await self.start()


FAULT_ROWS: list[tuple[str, int, int, int, int, int]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault suite's table (tests/test_faults.py) after the run."""
    if not FAULT_ROWS:
        return
    write = terminalreporter.write_line
    write("")
    width = max(len("fault scenario"), *(len(row[0]) for row in FAULT_ROWS))
    write(f"{'fault scenario':<{width}} {'sent':>7} {'correct':>8} {'wrongly allowed':>16} {'other 5xx':>10} "
          f"{'records lost':>13}")
    for name, sent, correct, wrong, other, lost in FAULT_ROWS:
        write(f"{name:<{width}} {sent:>7} {correct:>8} {wrong:>16} {other:>10} {lost:>13}")
