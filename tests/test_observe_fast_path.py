"""The request path's bookkeeping done cheaply: batched log lines and metric tallies lose nothing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.observe import metrics
from gateway.observe.logging import LineWriter
from tests.conftest import Upstream
from tests.test_operate import start_gateway


async def test_lines_are_written_in_batches_after_the_interval_not_per_line() -> None:
    out = io.BytesIO()
    writer = LineWriter(out, interval=0.05)  # type: ignore[arg-type]
    for i in range(100):
        writer.msg(f'{{"n":{i}}}'.encode())
    assert out.getvalue() == b""  # nothing written on the request path
    await asyncio.sleep(0.1)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(100))  # all, in order, once


def test_outside_an_event_loop_every_line_is_written_as_it_comes() -> None:
    out = io.BytesIO()
    writer = LineWriter(out, max_bytes=1000, interval=3600)  # type: ignore[arg-type]
    writer.msg(b'{"cli":true}')  # e.g. the CLI before or after serving: no timer could write it later
    assert out.getvalue() == b'{"cli":true}\n'


async def test_batches_reach_max_bytes_then_write_and_critical_lines_flush() -> None:
    out = io.BytesIO()
    writer = LineWriter(out, max_bytes=1000, interval=3600)  # type: ignore[arg-type]
    for _ in range(9):
        writer.msg(b"x" * 99)
    assert out.getvalue() == b""
    writer.msg(b"x" * 99)  # the tenth line fills the batch
    assert len(out.getvalue()) == 1000
    writer.msg(b"pending")
    writer.critical(b"fatal")
    assert out.getvalue().endswith(b"pending\nfatal\n")


def test_lines_from_other_threads_are_written_whole() -> None:
    out = io.BytesIO()
    writer = LineWriter(out, max_bytes=4096, interval=3600)  # type: ignore[arg-type]

    def log(name: str) -> None:
        for i in range(500):
            writer.msg(json.dumps({"thread": name, "i": i}).encode())

    threads = [threading.Thread(target=log, args=(str(t),)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.flush()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(events) == 2000
    for t in range(4):
        assert [e["i"] for e in events if e["thread"] == str(t)] == list(range(500))


async def test_every_access_line_is_written_before_the_process_exits(tmp_path: Path, upstream: Upstream) -> None:
    """SIGTERM right after the last answer: every request still has its access line on stderr."""
    proc, base, _ = await start_gateway(tmp_path, upstream.url)
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(60):
                async with http.get(f"{base}/api/sessions", headers={"X-Request-Id": f"req-{i}"}) as r:
                    assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    logged = [e["request_id"] for e in events if e.get("event") == "request"]
    assert logged == [f"req-{i}" for i in range(60)]
    assert events[-1]["event"] == "stopped"  # the lines after the last request too


def test_tallies_report_exactly_what_prometheus_client_would() -> None:
    """The same observations through a tally and straight into prometheus-client give the same samples."""
    values = [0.0001, 0.0005, 0.00051, 0.001, 0.003, 0.7, 2.5, 11.0, 0.0005]
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    h_direct = Histogram("h", "h", ["route"], buckets=buckets, registry=direct)
    h_tallied = Histogram("h", "h", ["route"], buckets=buckets, registry=tallied)
    c_direct = Counter("c", "c", ["kind"], registry=direct)
    c_tallied = Counter("c", "c", ["kind"], registry=tallied)
    tally_h, tally_c = metrics.child(h_tallied, "r"), metrics.child(c_tallied, "k")
    for v in values:
        h_direct.labels("r").observe(v)
        tally_h.observe(v)
        c_direct.labels("k").inc()
        tally_c.inc()
    c_direct.labels("k").inc(2.5)
    tally_c.inc(2.5)
    metrics.fold()

    def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in registry.collect() for s in family.samples if not s.name.endswith("_created")}

    assert samples(tallied) == samples(direct)
    metrics.fold()  # folding again adds nothing
    assert samples(tallied) == samples(direct)


def test_reading_the_registry_folds_the_request_path_tallies_first() -> None:
    route = "/tally-test/{id}"
    before = metrics.REGISTRY.get_sample_value(
        "share_gateway_requests_total", {"route": route, "method": "GET", "status_class": "2xx", "decision": "x"}
    ) or 0.0
    metrics.IN_FLIGHT_NOW.inc()
    for _ in range(3):
        metrics.request_done(route, "GET", 200, "x", "tally_test", 0.002)
    after = metrics.REGISTRY.get_sample_value(
        "share_gateway_requests_total", {"route": route, "method": "GET", "status_class": "2xx", "decision": "x"}
    )
    assert after == before + 3
    assert metrics.REGISTRY.get_sample_value("share_gateway_decisions_total", {"reason_id": "tally_test"}) == 3
    assert metrics.REGISTRY.get_sample_value(
        "share_gateway_request_duration_seconds_bucket", {"route": route, "decision": "x", "le": "0.0025"}
    ) == 3
    in_flight = metrics.REGISTRY.get_sample_value("share_gateway_requests_in_flight")
    metrics.IN_FLIGHT_NOW.dec()
    assert in_flight == metrics.REGISTRY.get_sample_value("share_gateway_requests_in_flight") + 1


def test_configuring_again_writes_to_the_stderr_of_the_moment(monkeypatch: Any) -> None:
    """Each configure() (a test's captured stderr, a re-exec'd worker) writes where stderr is now."""
    from gateway.observe import logging as gateway_logging

    streams = [io.TextIOWrapper(io.BytesIO(), write_through=True) for _ in range(2)]
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        for i, stream in enumerate(streams):
            monkeypatch.setattr(sys, "stderr", stream)
            gateway_logging.configure("info", "json")
            gateway_logging.get_logger("gateway.test").info(f"line {i}")
            gateway_logging.flush()
    finally:  # the rest of the suite captures logs with structlog's defaults
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()
    first, second = (s.buffer.getvalue().decode() for s in streams)  # type: ignore[attr-defined]
    assert '"event":"line 0"' in first and "line 1" not in first
    assert '"event":"line 1"' in second and "line 0" not in second
