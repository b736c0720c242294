"""WebSocket benchmark: AHP messages through the gateway's message authorizer vs straight to the host.

    make bench    # runs this after bench.run
    scripts/with-services.sh python -m bench.websocket [--messages 5000] [--sockets 1000]

Starts on loopback a minimal AHP host (answers every ``ping`` request; checks
``?tkn=``) and one gateway worker (profile ``agent-host``, SQLite) in front
of it, and creates a read-only share. Then, side by side:

* latency: one client sends ``--messages`` pings one after another; p50/p99
  round trip through the gateway (as a share holder: every frame parsed and
  authorized both ways) and direct; the difference is the added latency;
* throughput: 20 clients pipelining pings, messages per second each way;
* memory: ``--sockets`` share holders connected and initialized at once; the
  gateway's RSS per open shared socket (``/proc/<pid>/status`` VmRSS).

Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
from aiohttp import web

from gateway.demo.story import free_port, wait_http

TOKEN = "bench-host-token"
SESSION = "mock:/bench"


async def host(port: int) -> None:
    """A minimal agent host: ``initialize`` and ``ping`` answered, token checked."""

    async def ws(request: web.Request) -> web.StreamResponse:
        if request.query.get("tkn") != TOKEN:
            raise web.HTTPForbidden()
        sock = web.WebSocketResponse(max_msg_size=0)
        await sock.prepare(request)
        async for msg in sock:
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "id" in data:
                    result = {"protocolVersion": "0.9.0", "serverSeq": 0, "snapshots": []} if data.get(
                        "method") == "initialize" else {}
                    await sock.send_str(json.dumps({"jsonrpc": "2.0", "id": data["id"], "result": result}))
        return sock

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/{tail:.*}", ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_peer(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url, headers=headers, max_msg_size=0)
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "channel": "ahp-root://", "protocolVersions": ["0.9.0"], "clientId": "bench", "initialSubscriptions": []}}))
    await ws.receive()
    return ws


async def latency(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[float]:
    out = []
    for i in range(1, n + 1):
        started = time.perf_counter()
        await ws.send_str(f'{{"jsonrpc":"2.0","id":{i},"method":"ping","params":{{}}}}')
        await ws.receive()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def throughput(http: aiohttp.ClientSession, url: str, headers: dict[str, str], clients: int, n: int) -> float:
    socks = [await open_peer(http, url, headers) for _ in range(clients)]

    async def run(ws: aiohttp.ClientWebSocketResponse) -> None:
        async def send() -> None:
            for i in range(1, n + 1):
                await ws.send_str(f'{{"jsonrpc":"2.0","id":{i},"method":"ping","params":{{}}}}')

        sender = asyncio.ensure_future(send())
        for _ in range(n):
            await ws.receive()
        await sender

    started = time.perf_counter()
    await asyncio.gather(*(run(ws) for ws in socks))
    elapsed = time.perf_counter() - started
    for ws in socks:
        await ws.close()
    return clients * n / elapsed


async def measure(gw: str, direct: str, token: str, messages: int, sockets: int, gw_pid: int) -> dict[str, float]:
    shared_url, direct_url = f"{gw}/?tkn={quote(token)}", f"{direct}/?tkn={TOKEN}"
    holder = {"X-Forwarded-User": "viewer"}
    out: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)  # one connection per open socket: no pool cap
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        for name, url, headers in (("gateway", shared_url, holder), ("direct", direct_url, {})):
            ws = await open_peer(http, url, headers)
            await latency(ws, 200)  # warm up
            ms = sorted(await latency(ws, messages))
            await ws.close()
            out[f"{name}_p50_ms"] = statistics.median(ms)
            out[f"{name}_p99_ms"] = statistics.quantiles(ms, n=100, method="inclusive")[98]
            out[f"{name}_msgs_per_s"] = await throughput(http, url, headers, 20, max(messages // 10, 100))
        idle = rss_kib(gw_pid)
        socks = []
        for _ in range(sockets):
            socks.append(await open_peer(http, shared_url, holder))
        await asyncio.sleep(1)
        out["rss_kib_per_shared_socket"] = (rss_kib(gw_pid) - idle) / max(len(socks), 1)
        out["sockets_open"] = len(socks)
        for ws in socks:
            await ws.close()
    out["added_p99_ms"] = out["gateway_p99_ms"] - out["direct_p99_ms"]
    out["msgs_per_s_ratio"] = out["gateway_msgs_per_s"] / out["direct_msgs_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sockets", type=int, default=1000)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    sockets = min(args.sockets, (hard - 500) // 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARE_GATEWAY_") or k.startswith("SHARE_GATEWAY_TEST")}
    with tempfile.TemporaryDirectory(prefix="share-gateway-ws-") as tmp:
        work = Path(tmp)
        (work / "token").write_text(TOKEN)
        host_port, port, admin = free_port(), free_port(), free_port()
        procs = [subprocess.Popen([sys.executable, "-c", f"import asyncio, bench.websocket as b; asyncio.run(b.host({host_port}))"],
                                  env=env)]
        try:
            wait_http(f"http://127.0.0.1:{host_port}/health")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--profile", "agent-host", "--upstream",
                 f"http://127.0.0.1:{host_port}", "--upstream_auth.token_file", str(work / "token"),
                 "--listen", f"127.0.0.1:{port}", "--admin_listen", f"127.0.0.1:{admin}",
                 "--store", f"sqlite:///{work}/shares.db", "--default_owner", "owner",
                 "--auth.mode", "trusted-header", "--auth.trusted_header.trusted_cidrs", "127.0.0.1/32",
                 "--log.level", "warning", "--limits.ws_frames_per_second", "1000000",
                 "--limits.ws_frame_burst", "1000000"],
                env=env, stdout=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{admin}/readyz")
            import urllib.request

            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/sessions/{quote(SESSION, safe='')}/shares", method="POST",
                data=b'{"read_only": true}', headers={"X-Forwarded-User": "owner", "Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                token = json.load(r)["data"]["token"]
            out = asyncio.run(measure(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{host_port}", token,
                                      args.messages, sockets, procs[1].pid))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
    print(f"{'':24}{'gateway (share holder)':>24}{'direct':>12}")
    print(f"{'round trip p50 (ms)':24}{out['gateway_p50_ms']:>24.3f}{out['direct_p50_ms']:>12.3f}")
    print(f"{'round trip p99 (ms)':24}{out['gateway_p99_ms']:>24.3f}{out['direct_p99_ms']:>12.3f}")
    print(f"{'messages/s (20 clients)':24}{out['gateway_msgs_per_s']:>24.0f}{out['direct_msgs_per_s']:>12.0f}")
    print(f"added p99 {out['added_p99_ms']:.3f} ms per message; throughput ratio {out['msgs_per_s_ratio']:.2f}; "
          f"{out['rss_kib_per_shared_socket']:.1f} KiB RSS per open shared socket ({out['sockets_open']:.0f} open)")
    print(json.dumps({k: round(v, 3) for k, v in out.items()}))


if __name__ == "__main__":
    main()
