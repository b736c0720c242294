"""``--workers N``: a small supervisor that runs N serving processes on the same ports.

Workers bind with SO_REUSEPORT, so the kernel spreads connections over them.
The supervisor applies store migrations once, gives every worker one
prometheus multiprocess directory (so ``/metrics`` on any worker reports the
sum of all), restarts a worker that dies, and on SIGTERM/SIGINT passes the
signal on and waits for every worker to drain.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

from prometheus_client import multiprocess

from gateway.config import Settings
from gateway.observe.logging import get_logger
from gateway.shares.store import opened

log = get_logger("gateway.workers")


def mark_process_dead(pid: int, metrics_dir: str) -> None:
    """Drop a dead worker's live gauges from the aggregate."""
    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]


async def _migrate(url: str) -> list[int]:
    async with opened(url, migrate=False) as store:
        return await store.migrate()


def ephemeral_key_pem() -> str:
    """A fresh EC P-256 private key, PEM-encoded, shared by the workers of one supervisor."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def supervise(settings: Settings, argv: Sequence[str]) -> int:
    """Run ``settings.workers`` copies of ``share-gateway serve argv``; returns the exit status."""
    applied = asyncio.run(_migrate(settings.store))
    if applied:
        log.info("store_migrated", versions=applied)
    if settings.redis is None:
        log.warning(
            "workers_without_redis",
            note="each worker caches shares for shares.cache_ttl seconds; a revocation reaches "
            "the others only when that expires. Configure redis for instant revocation.",
        )
    metrics_dir = tempfile.mkdtemp(prefix="share-gateway-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    if settings.upstream_auth.mode == "jwt-assertion" and settings.upstream_auth.jwt.private_key is None:
        # One key for every worker: the upstream trusts one JWKS, whichever worker serves it.
        env["SHARE_GATEWAY_UPSTREAM_AUTH__JWT__PRIVATE_KEY"] = ephemeral_key_pem()
    command = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        *argv,
        "--workers",
        "1",
        "--worker-of",
        str(os.getpid()),
        "--metrics-dir",
        metrics_dir,
    ]
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and module

    workers = [spawn() for _ in range(settings.workers)]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("workers_started", workers=settings.workers, pids=[p.pid for p in workers])
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, proc in enumerate(workers):
                code = proc.poll()
                if code is not None and not stopping:
                    log.error("worker_exited", pid=proc.pid, status=code, action="restarting")
                    mark_process_dead(proc.pid, metrics_dir)
                    time.sleep(1.0)
                    workers[i] = spawn()
        deadline = time.monotonic() + settings.shutdown_grace + 15
        for proc in workers:
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            # -SIGTERM: a worker still starting up when the signal came (nothing to drain yet).
            status = status or (0 if code == -signal.SIGTERM else code)
            mark_process_dead(proc.pid, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("workers_stopped", status=status)
    return status
