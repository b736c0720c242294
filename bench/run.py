"""The benchmark: gateway vs direct upstream vs a bare aiohttp proxy vs nginx ``proxy_pass``, in one run.

    make bench            # = scripts/with-services.sh python -m bench.run

Starts on loopback: a fast upstream (nginx returning small JSON bodies), nginx
``proxy_pass`` to it (as many workers as the gateway), a bare aiohttp pass-through
proxy (``bench.bare_proxy``: the gateway's own event loop and HTTP stack with no
checks, the floor for its data path), and the gateway with a
production-like configuration (JWT auth, Redis, PostgreSQL, metrics, access log
to a file). Drives ``wrk`` (maximum throughput) and ``hey -q`` (latency at a
fixed 500 req/s) per scenario, reads the gateway's CPU time and peak RSS from
/proc, then holds N concurrent SSE streams through one worker. Prints a table
and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

SECRET = "bench-secret-bench-secret-bench-secret!"
CLK_TCK = os.sysconf("SC_CLK_TCK")
UPSTREAM_JSON = '{"error":false,"data":{"id":"sess-1","user_id":"alice"},"message":""}'
A2A_JSON = ('{"jsonrpc":"2.0","id":1,"result":{"id":"task-1","contextId":"sess-1",'
            '"status":{"state":"TASK_STATE_COMPLETED"}}}')
GET_TASK = '{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"task-1"}}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        sys.exit(f"bench needs {binary}: apt-get install nginx wrk hey (Debian)")
    return path


def nginx_conf(work: Path, name: str, port: int, workers: int, body: str) -> Path:
    d = work / name
    d.mkdir()
    for sub in ("client", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir()
    conf = d / "nginx.conf"
    conf.write_text(f"""
daemon off; master_process on; worker_processes {workers}; pid {d}/nginx.pid;
error_log {d}/error.log warn; user root; worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
http {{
  access_log off;
  client_body_temp_path {d}/client; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  {body.replace("PORT", str(port))}
}}
""")
    return conf


UPSTREAM_SERVER = f"""server {{ listen 127.0.0.1:PORT;
    default_type application/json;
    location /api/a2a/ {{ return 200 '{A2A_JSON}'; }}
    location / {{ return 200 '{UPSTREAM_JSON}'; }} }}"""


def proxy_server(upstream_port: int) -> str:
    return f"""upstream u {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
  server {{ listen 127.0.0.1:PORT;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""


@dataclass
class Process:
    popen: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        out = [self.popen.pid]
        try:
            children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text().split()
            out += [int(c) for c in children]
        except OSError:
            pass
        return out

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return total / CLK_TCK

    def status_kb(self, key: str) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    def raise_limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    with open(log, "wb") as out:
        popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 preexec_fn=raise_limit)
    return Process(popen)


@dataclass
class Scenario:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    process: Process | None = None  # whose CPU/RSS to read


def wrk(s: Scenario, seconds: int, work: Path) -> tuple[float, int]:
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"]
    for k, v in s.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if s.body is not None:
        script = work / f"{s.name}.lua"
        script.write_text(f"wrk.method = 'POST'\nwrk.body = '{s.body}'\n"
                          "wrk.headers['Content-Type'] = 'application/json'\n")
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, s.url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{s.name}: {errors.group(1)} non-2xx responses under wrk")
    return rps, total


def hey(s: Scenario, seconds: int, rate: int) -> tuple[float, float]:
    # One connection at an even pace: hey -q is per connection, and several
    # connections tick together, sending bursts instead of a fixed rate.
    cmd = ["hey", "-z", f"{seconds}s", "-c", "1", "-q", str(rate)]
    for k, v in s.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if s.body is not None:
        cmd += ["-m", "POST", "-T", "application/json", "-d", s.body]
    out = subprocess.run([*cmd, s.url], capture_output=True, text=True, check=True).stdout
    p50 = float(re.search(r"50% in ([\d.]+) secs", out).group(1)) * 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"99% in ([\d.]+) secs", out).group(1)) * 1000  # type: ignore[union-attr]
    return p50, p99


def post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request) as r:
        return dict(json.load(r))


def get(url: str, headers: dict[str, str]) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
        r.read()
        return int(r.status)


def gateway_cmd(port: int, admin: int, upstream: int, store: str, redis: str, workers: int, log_level: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "serve", "--upstream", f"http://127.0.0.1:{upstream}",
            "--listen", f"127.0.0.1:{port}", "--admin_listen", f"127.0.0.1:{admin}", "--store", store,
            "--redis", redis, "--redis_prefix", f"bench-{uuid.uuid4().hex[:8]}", "--auth.mode", "jwt",
            "--auth.jwt.secret", SECRET, "--log.format", "json", "--log.level", log_level,
            "--workers", str(workers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="per wrk/hey run")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-sse", action="store_true")
    parser.add_argument("--sse-only", action="store_true")
    args = parser.parse_args()
    for binary in ("nginx", "wrk", "hey"):
        need(binary)
    store = os.environ.get("SHARE_GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    redis = os.environ.get("SHARE_GATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", store, "-qc", f"CREATE SCHEMA {schema}"], check=True)
    store_url = f"{store}{'&' if '?' in store else '?'}search_path={schema}"
    work = Path(tempfile.mkdtemp(prefix="share-gateway-bench-"))
    results: dict[str, Any] = {}
    rows: list[tuple[str, str, str, str, str, str]] = []
    alice = jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, SECRET, "HS256")
    bob = jwt.encode({"sub": "bob", "exp": int(time.time()) + 3600}, SECRET, "HS256")
    with ExitStack() as stack:
        up_port, px_port = free_port(), free_port()
        upstream = start(["nginx", "-c", str(nginx_conf(work, "upstream", up_port, 1, UPSTREAM_SERVER))],
                         work / "upstream.log")
        stack.callback(upstream.stop)
        proxy = start(["nginx", "-c", str(nginx_conf(work, "proxy", px_port, args.workers,
                                                      proxy_server(up_port)))], work / "proxy.log")
        stack.callback(proxy.stop)
        bare_port = free_port()
        bare = start([sys.executable, "-m", "bench.bare_proxy", "--upstream", f"http://127.0.0.1:{up_port}",
                      "--listen", f"127.0.0.1:{bare_port}", "--workers", str(args.workers)], work / "bare.log")
        stack.callback(bare.stop)

        def run_gateway(workers: int) -> tuple[Process, int]:
            port, admin = free_port(), free_port()
            gw = start(gateway_cmd(port, admin, up_port, store_url, redis, workers, "info"),
                       work / f"gateway-{workers}.log")
            stack.callback(gw.stop)
            wait_port(port)
            wait_port(admin)
            time.sleep(0.5 * workers)
            return gw, port

        wait_port(up_port)
        wait_port(px_port)
        wait_port(bare_port)
        gw, gw_port = run_gateway(args.workers)
        base = f"http://127.0.0.1:{gw_port}"
        share = post_json(f"{base}/api/sessions/sess-1/shares", {"read_only": True},
                          {"Authorization": f"Bearer {alice}"})["data"]
        token = share["token"]
        as_bob = {"Authorization": f"Bearer {bob}"}
        shared = {**as_bob, "X-Share-Token": token}
        a2a = {**shared, "A2A-Version": "1.0"}
        assert get(f"{base}/api/sessions/sess-1", shared) == 200
        post_json(f"{base}/api/a2a/bench/agent/", json.loads(GET_TASK), a2a)  # learns task-1 → sess-1
        scenarios = [
            Scenario("direct", f"http://127.0.0.1:{up_port}/api/sessions/sess-1"),
            Scenario("nginx", f"http://127.0.0.1:{px_port}/api/sessions/sess-1"),
            Scenario("bare_aiohttp", f"http://127.0.0.1:{bare_port}/api/sessions/sess-1", as_bob, process=bare),
            Scenario("gateway_no_token", f"{base}/api/sessions/sess-1", as_bob, process=gw),
            Scenario("gateway_share", f"{base}/api/sessions/sess-1", shared, process=gw),
            Scenario("gateway_a2a_get_task", f"{base}/api/a2a/bench/agent/", a2a, GET_TASK, process=gw),
            Scenario("gateway_invalid_token", f"{base}/api/sessions/sess-1",
                     {**as_bob, "X-Share-Token": "x" * 43}, process=gw),
        ]
        if not args.sse_only:
            results |= http_scenarios(scenarios, args, work, rows)
            gw.stop()
            if args.workers == 1:
                results |= two_workers(run_gateway, shared, args.seconds, work, rows,
                                       results["cpu_seconds_per_1k"])
        if not args.skip_sse:
            results |= sse(work, stack, store_url, redis, args.streams, shared, rows)
    subprocess.run(["psql", store, "-qc", f"DROP SCHEMA {schema} CASCADE"], check=False)
    print(f"\n{'scenario':<30} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU s/1k':>9} {'peak RSS kB':>12}")
    for row in rows:
        print(f"{row[0]:<30} {row[1]:>10} {row[2]:>8} {row[3]:>8} {row[4]:>9} {row[5]:>12}")
    print(f"(p50/p99 at a fixed {args.rate} req/s with hey; req/s with wrk -t2 -c64; logs in {work})")
    ratios = [k for k in results if k.endswith("_ratio") or k.startswith("added_p99")]
    print("ratios (same run): " + ", ".join(f"{k}={results[k]}" for k in ratios))
    compare_with_last(results)
    print(json.dumps(results))


def compare_with_last(results: dict[str, Any]) -> None:
    """Flag figures more than 10 % worse than ``bench/last-results.json`` (noisy 2-core machine:
    judge by ratios measured in the same run first)."""
    path = Path(__file__).with_name("last-results.json")
    if not path.is_file():
        return
    last = json.loads(path.read_text())
    worse = []
    for key, value in results.items():
        old = last.get(key)
        if not isinstance(value, int | float) or not isinstance(old, int | float) or not old:
            continue
        higher_is_better = key.endswith("_rps") or (key.endswith("ratio") and "cpu" not in key)
        change = value / old
        if (higher_is_better and change < 0.9) or (not higher_is_better and change > 1.1):
            worse.append(f"{key}: {old} -> {value}")
    print("vs last recorded: " + ("; ".join(worse) if worse else "nothing more than 10 % worse"))


def http_scenarios(scenarios: list[Scenario], args: argparse.Namespace, work: Path,
                   rows: list[Any]) -> dict[str, Any]:
    """Throughput (wrk), latency at a fixed rate (hey), CPU per 1,000 requests and peak RSS."""
    results: dict[str, Any] = {}
    for s in scenarios:
        if s.name == "gateway_invalid_token":
            s_rps = _invalid_rps(s, args.seconds)
            rows.append((s.name, f"{s_rps:,.0f}", "-", "-", "-", "403, then 429"))
            results[f"{s.name}_rps"] = round(s_rps)
            continue
        cpu0 = s.process.cpu_seconds() if s.process else 0.0
        rps, total = wrk(s, args.seconds, work)
        cpu = (s.process.cpu_seconds() - cpu0) / total * 1000 if s.process else None
        p50, p99 = hey(s, args.seconds, args.rate)
        rss = s.process.status_kb("VmHWM") if s.process else None
        results[f"{s.name}_rps"] = round(rps)
        results[f"{s.name}_p50_ms_at_{args.rate}rps"] = round(p50, 3)
        results[f"{s.name}_p99_ms_at_{args.rate}rps"] = round(p99, 3)
        if cpu is not None:
            results[f"{s.name}_cpu_seconds_per_1k"] = round(cpu, 4)
            results[f"{s.name}_peak_rss_kb"] = rss
        rows.append((s.name, f"{rps:,.0f}", f"{p50:.2f}", f"{p99:.2f}",
                     "-" if cpu is None else f"{cpu:.3f}", "-" if rss is None else f"{rss:,}"))
    results["share_vs_nginx_throughput_ratio"] = round(results["gateway_share_rps"] / results["nginx_rps"], 3)
    bare = results["bare_aiohttp_rps"]
    results["share_vs_bare_aiohttp_ratio"] = round(results["gateway_share_rps"] / bare, 3)
    results["no_token_vs_bare_aiohttp_ratio"] = round(results["gateway_no_token_rps"] / bare, 3)
    results["a2a_vs_bare_aiohttp_ratio"] = round(results["gateway_a2a_get_task_rps"] / bare, 3)
    results["added_p99_ms_over_bare_aiohttp"] = round(
        results[f"gateway_share_p99_ms_at_{args.rate}rps"] - results[f"bare_aiohttp_p99_ms_at_{args.rate}rps"], 3)
    results["added_p99_ms_at_500rps"] = round(
        results[f"gateway_share_p99_ms_at_{args.rate}rps"] - results[f"direct_p99_ms_at_{args.rate}rps"], 3)
    results["cpu_seconds_per_1k"] = results["gateway_share_cpu_seconds_per_1k"]
    results["cpu_vs_bare_aiohttp_ratio"] = round(
        results["gateway_share_cpu_seconds_per_1k"] / results["bare_aiohttp_cpu_seconds_per_1k"], 3)
    results["workers"] = args.workers
    return results


def two_workers(run_gateway: Any, shared: dict[str, str], seconds: int, work: Path, rows: list[Any],
                one_worker_cpu: float) -> dict[str, Any]:
    """The share scenario with --workers 2: throughput and CPU per 1,000 requests."""
    gw2, port2 = run_gateway(2)
    s2 = Scenario("gateway_share_2_workers", f"http://127.0.0.1:{port2}/api/sessions/sess-1", shared,
                  process=gw2)
    get(s2.url, shared)
    cpu0 = gw2.cpu_seconds()
    rps2, total2 = wrk(s2, seconds, work)
    cpu2 = (gw2.cpu_seconds() - cpu0) / total2 * 1000
    rows.append(("gateway_share, --workers 2", f"{rps2:,.0f}", "-", "-", f"{cpu2:.3f}",
                 f"{gw2.status_kb('VmHWM'):,}"))
    gw2.stop()
    return {"two_workers_share_rps": round(rps2), "two_workers_cpu_seconds_per_1k": round(cpu2, 4),
            "two_workers_cpu_ratio": round(cpu2 / one_worker_cpu, 3)}


def _invalid_rps(s: Scenario, seconds: int) -> float:
    flags = [part for k, v in s.headers.items() for part in ("-H", f"{k}: {v}")]
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", *flags, s.url], capture_output=True,
                         text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def sse(work: Path, stack: ExitStack, store: str, redis: str, streams: int, shared: dict[str, str],
        rows: list[Any]) -> dict[str, Any]:
    """N concurrent SSE streams through one worker: RSS per stream and the delay added per event."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    streams = min(streams, (hard - 1000) // 2)  # two sockets per stream, and room for the rest
    up_port = free_port()
    upstream = start([sys.executable, "-m", "bench.sse", "upstream", "--port", str(up_port), "--interval", "4"],
                     work / "sse-upstream.log")
    stack.callback(upstream.stop)
    wait_port(up_port)
    port, admin = free_port(), free_port()
    gw = start(gateway_cmd(port, admin, up_port, store, redis, 1, "warning"), work / "gateway-sse.log")
    stack.callback(gw.stop)
    wait_port(port)
    time.sleep(0.5)
    headers = [f"{k}: {v}" for k, v in shared.items()]

    def client(url: str) -> tuple[dict[str, Any], int]:
        proc = subprocess.Popen([sys.executable, "-m", "bench.sse", "client", "--url", url, "--streams",
                                 str(streams), "--events", "3", "--timeout", "60",
                                 *[part for h in headers for part in ("-H", h)]],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        connected = json.loads(proc.stdout.readline())
        time.sleep(2.5)
        rss_open = gw.status_kb("VmRSS")
        done = json.loads(proc.stdout.readline())
        proc.wait()
        return done | {"connected": connected["streams"]}, rss_open

    direct, _ = client(f"http://127.0.0.1:{up_port}/api/sessions/sess-1/events")
    rss_idle = gw.status_kb("VmRSS")
    through, rss_open = client(f"http://127.0.0.1:{port}/api/sessions/sess-1/events")
    per_stream = (rss_open - rss_idle) / max(through["streams"], 1)
    added = through["delay_ms_p99"] - direct["delay_ms_p99"]
    rows.append((f"SSE x{through['streams']} via 1 worker", "-", f"{through['delay_ms_p50']:.2f}",
                 f"{through['delay_ms_p99']:.2f}", "-", f"{per_stream:.1f}/stream"))
    rows.append((f"SSE x{direct['streams']} direct", "-", f"{direct['delay_ms_p50']:.2f}",
                 f"{direct['delay_ms_p99']:.2f}", "-", "-"))
    return {
        "sse_streams": through["streams"],
        "sse_streams_complete": through["complete"],
        "rss_kb_per_stream": round(per_stream, 2),
        "sse_added_p99_ms_per_event": round(added, 3),
        "sse_direct_p99_ms": direct["delay_ms_p99"],
        "sse_gateway_p99_ms": through["delay_ms_p99"],
        "fd_hard_limit": hard,
    }


if __name__ == "__main__":
    main()
