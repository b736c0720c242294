"""SSE load pieces for the benchmark: a broadcasting upstream and a many-connection client.

    python -m bench.sse upstream --port P --interval 1.0
    python -m bench.sse client --url http://127.0.0.1:G/path --streams N --events E [-H 'Name: value']

The upstream answers every GET with an endless ``text/event-stream`` (no
Content-Length, connection-delimited) and writes ``data: {"t": <send time>}``
to each open stream every ``interval`` seconds, each stream at its own random
phase (a steady N/interval events per second). The client opens N streams,
waits for E events on each, and prints one JSON object: streams connected,
events received and the delay distribution (receive time - send time, ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import statistics
import sys
import time
from urllib.parse import urlsplit


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Feeder(asyncio.Protocol):
    """One stream: an event every ``interval`` seconds, at a random phase, so the
    load is a steady N / interval events per second rather than one burst."""

    interval = 1.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""
        self.task: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf and self.task is None:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n: hello\n\n")
            self.task = asyncio.get_running_loop().create_task(self.feed())

    async def feed(self) -> None:
        await asyncio.sleep(random.uniform(0, self.interval))
        while not self.transport.is_closing():
            self.transport.write(b'data: {"t": %.6f}\n\n' % time.time())
            await asyncio.sleep(self.interval)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()


async def upstream(port: int, interval: float) -> None:
    raise_fd_limit()
    Feeder.interval = interval
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Feeder, "127.0.0.1", port, backlog=4096)
    async with server:
        await asyncio.Event().wait()


class Reader(asyncio.Protocol):
    """Counts events and their delays once ``measuring[0]`` is set (steady state only:
    events that arrive while thousands of other streams are still connecting say
    more about connection set-up than about relaying)."""

    def __init__(self, sink: list[float], wanted: int, done: asyncio.Event, counter: list[int],
                 measuring: list[bool]) -> None:
        self.sink, self.wanted, self.done, self.counter = sink, wanted, done, counter
        self.measuring = measuring
        self.buf = b""
        self.got = 0
        self.headers_seen = False

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buf += data
        if not self.headers_seen:
            if b"\r\n\r\n" not in self.buf:
                return
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.headers_seen = head.startswith(b"HTTP/1.1 200")
            if self.headers_seen:
                self.counter[0] += 1
        while b'"t": ' in self.buf:
            _, rest = self.buf.split(b'"t": ', 1)
            end = rest.find(b"}")
            if end < 0:
                break
            self.buf = rest[end:]
            if not self.measuring[0]:
                continue
            self.sink.append((now - float(rest[:end])) * 1000)
            self.got += 1
            if self.got == self.wanted:
                self.counter[1] += 1
                if self.counter[1] >= self.counter[2]:
                    self.done.set()


async def client(url: str, streams: int, events: int, headers: list[str], timeout: float) -> None:
    raise_fd_limit()
    parts = urlsplit(url)
    request = (f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
               f"Host: {parts.netloc}\r\nAccept: text/event-stream\r\n"
               + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    done = asyncio.Event()
    counter = [0, 0, streams]  # connected, finished, target
    measuring = [False]
    transports = []
    started = time.monotonic()
    for i in range(streams):
        transport, _ = await loop.create_connection(
            lambda: Reader(delays, events, done, counter, measuring), parts.hostname, parts.port)
        transport.write(request)
        transports.append(transport)
        if i % 200 == 199:
            await asyncio.sleep(0.02)  # let the far side accept
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(1.0)  # let the last connections settle
    measuring[0] = True
    print(json.dumps({"phase": "connected", "streams": len(transports)}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout)
    for transport in transports:
        transport.close()
    delays.sort()
    q = statistics.quantiles(delays, n=100) if len(delays) > 1 else [0.0] * 99
    print(json.dumps({
        "phase": "done", "streams": counter[0], "complete": counter[1], "events": len(delays),
        "connect_seconds": round(connect_seconds, 2),
        "delay_ms_p50": round(q[49], 3), "delay_ms_p99": round(q[98], 3),
        "delay_ms_max": round(delays[-1], 3) if delays else None,
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--interval", type=float, default=1.0)
    cl = sub.add_parser("client")
    cl.add_argument("--url", required=True)
    cl.add_argument("--streams", type=int, required=True)
    cl.add_argument("--events", type=int, default=3)
    cl.add_argument("--timeout", type=float, default=60)
    cl.add_argument("-H", dest="headers", action="append", default=[])
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.role == "upstream":
        asyncio.run(upstream(args.port, args.interval))
    else:
        asyncio.run(client(args.url, args.streams, args.events, args.headers, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
