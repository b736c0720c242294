"""The floor for any aiohttp data path: a pass-through reverse proxy with no checks at all.

    python -m bench.bare_proxy --upstream http://127.0.0.1:8081 --listen 127.0.0.1:8080 [--workers N]

Same event loop (uvloop), same server and client library (aiohttp) and the same
pooled ``ClientSession`` settings as the gateway's ``Forwarder``; it drops the
hop-by-hop headers (RFC 9110 §7.6.1), reads small bodies whole both ways, and
does nothing else: no identity, no share lookup, no decision, no metrics, no
access log. ``bench.run`` measures the gateway against it in the same run
(``share_vs_bare_aiohttp_ratio``): what the gateway costs on top is what its
authorization costs.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket

import aiohttp
import uvloop
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

HOP_BY_HOP = frozenset(
    {"connection", "proxy-connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
     "proxy-authenticate", "proxy-authorization", "host", "content-length"}
)


def build_app(upstream: str) -> web.Application:
    base = upstream.rstrip("/")
    app = web.Application()
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def client(app: web.Application):  # type: ignore[no-untyped-def]
        app[session_key] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        yield
        await app[session_key].close()

    async def handle(request: web.Request) -> web.Response:
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        body = await request.read() if request.body_exists else None
        url = URL(base + request.raw_path, encoded=True)
        async with app[session_key].request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            data = await upstream.read()
            out = CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
            )
            return web.Response(body=data, status=upstream.status, headers=out)

    app.cleanup_ctx.append(client)
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, int(port)))
    if args.workers > 1:  # one process per worker, all accepting on one socket; this one waits
        children = []
        for _ in range(args.workers):
            pid = os.fork()
            if pid == 0:
                break
            children.append(pid)
        else:
            signal.signal(signal.SIGTERM, lambda *_: [os.kill(c, signal.SIGTERM) for c in children])
            for child in children:
                os.waitpid(child, 0)
            return
    uvloop.install()
    web.run_app(build_app(args.upstream), sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
