"""Soak benchmark (not a test): mixed traffic for a long time with periodic revocations and Redis
restarts, sampling the gateway's RSS and open file descriptors.

    scripts/with-services.sh .venv/bin/python -m bench.soak [--minutes 10] [--rate 300]

Reports, per sample: RSS, fds, requests, errors and wrong allows (a revoked or
unknown token, or a write through a read-only link, answered 2xx — must stay 0).
Last line: one JSON object with the run's totals and the RSS/fd drift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from bench.run import SECRET, UPSTREAM_SERVER, free_port, gateway_cmd, nginx_conf, start, wait_port


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="share-gateway-soak-"))
    store = os.environ.get("SHARE_GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"soak_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", store, "-qc", f"CREATE SCHEMA {schema}"], check=True)
    store_url = f"{store}{'&' if '?' in store else '?'}search_path={schema}"
    redis_port = free_port()
    redis_bin = shutil.which("redis-server") or sys.exit("soak needs redis-server")

    def redis_start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL)

    redis = redis_start()
    up_port, gw_port, admin = free_port(), free_port(), free_port()
    upstream = start(["nginx", "-c", str(nginx_conf(work, "upstream", up_port, 1, UPSTREAM_SERVER))],
                     work / "upstream.log")
    wait_port(redis_port)
    wait_port(up_port)
    cmd = gateway_cmd(gw_port, admin, up_port, store_url, f"redis://127.0.0.1:{redis_port}/0", 1, "warning")
    cmd[cmd.index("--admin_listen") + 1] = f"127.0.0.1:{admin}"
    gateway = start(cmd, work / "gateway.log")
    wait_port(gw_port)
    base = f"http://127.0.0.1:{gw_port}"
    alice = {"Authorization": "Bearer " + jwt.encode({"sub": "alice", "exp": int(time.time()) + 86400}, SECRET)}
    bob = {"Authorization": "Bearer " + jwt.encode({"sub": "bob", "exp": int(time.time()) + 86400}, SECRET)}
    totals = {"requests": 0, "errors": 0, "wrong_allows": 0, "revocations": 0, "redis_restarts": 0}
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.minutes * 60
    async with aiohttp.ClientSession() as http:

        async def new_share() -> str:
            async with http.post(f"{base}/api/sessions/sess-1/shares", json={"read_only": True},
                                 headers=alice) as r:
                return str((await r.json())["data"]["token"])

        live, revoked = await new_share(), None

        async def one(i: int) -> None:
            kind = i % 5
            headers = dict(bob)
            method, path, forbidden = "GET", "/api/sessions/sess-1", False
            if kind == 0:
                headers["X-Share-Token"] = live
            elif kind == 1:
                headers["X-Share-Token"], method, path, forbidden = live, "POST", "/api/sessions/sess-1/events", True
            elif kind == 2:
                headers["X-Share-Token"], forbidden = uuid.uuid4().hex + "x" * 11, True
            elif kind == 3 and revoked:
                headers["X-Share-Token"], forbidden = revoked, True
            try:
                async with http.request(method, base + path, headers=headers) as r:
                    await r.read()
                    totals["requests"] += 1
                    if forbidden and 200 <= r.status < 300:
                        totals["wrong_allows"] += 1
                    if r.status >= 500 and r.status not in (502, 503, 504):
                        totals["errors"] += 1
            except aiohttp.ClientError:
                totals["errors"] += 1

        async def traffic() -> None:
            i = 0
            interval = 1 / args.rate
            while time.monotonic() < deadline:
                asyncio.get_running_loop().create_task(one(i))
                i += 1
                await asyncio.sleep(interval)

        async def churn() -> None:
            nonlocal live, revoked, redis
            last_redis = time.monotonic()
            while time.monotonic() < deadline:
                await asyncio.sleep(args.revoke_every)
                fresh = await new_share()
                async with http.delete(f"{base}/api/sessions/sess-1/shares/{live}", headers=alice) as r:
                    await r.read()
                revoked, live = live, fresh
                totals["revocations"] += 1
                if time.monotonic() - last_redis >= args.redis_restart_every:
                    redis.kill()
                    redis.wait()
                    await asyncio.sleep(2)
                    redis = redis_start()
                    totals["redis_restarts"] += 1
                    last_redis = time.monotonic()

        async def sample() -> None:
            started = time.monotonic()
            while time.monotonic() < deadline:
                samples.append({"t": round(time.monotonic() - started), "rss_kb": gateway.status_kb("VmRSS"),
                                "fds": len(os.listdir(f"/proc/{gateway.popen.pid}/fd")), **totals})
                print(json.dumps(samples[-1]), flush=True)
                await asyncio.sleep(args.sample_every)

        await asyncio.gather(traffic(), churn(), sample())
        await asyncio.sleep(1)
    gateway.stop()
    upstream.stop()
    redis.kill()
    subprocess.run(["psql", store, "-qc", f"DROP SCHEMA {schema} CASCADE"], check=False, capture_output=True)
    warm = [s for s in samples if s["t"] >= 60] or samples
    return {
        **totals,
        "minutes": args.minutes,
        "rss_kb_first": warm[0]["rss_kb"], "rss_kb_last": warm[-1]["rss_kb"],
        "rss_kb_max": max(s["rss_kb"] for s in warm),
        "fds_first": warm[0]["fds"], "fds_last": warm[-1]["fds"], "fds_max": max(s["fds"] for s in warm),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=300, help="requests per second")
    parser.add_argument("--revoke-every", type=float, default=15, help="seconds")
    parser.add_argument("--redis-restart-every", type=float, default=120, help="seconds")
    parser.add_argument("--sample-every", type=float, default=10, help="seconds")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(soak(args))))


if __name__ == "__main__":
    main()
