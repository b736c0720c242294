"""The console entry points as an operator runs them: demo, serve + SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from gateway.demo.story import free_port, wait_http
from tests.conftest import Upstream


def test_demo_tells_the_whole_story() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway", "demo"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the share story went as expected" in out.stdout
    assert "UNEXPECTED" not in out.stdout
    assert "share link is read-only" in out.stdout


def test_serve_and_graceful_sigterm(tmp_path: Path, upstream: Upstream) -> None:
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARE_GATEWAY_")}
    env["SHARE_GATEWAY_AUTH__MODE"] = "none"
    config = tmp_path / "gw.yaml"
    config.write_text(f"upstream: {upstream.url}\nlisten: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\n"
                      f"store: sqlite:///{tmp_path}/gw.db\nlog:\n  format: json\n")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{admin}/readyz")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions") as r:
            assert json.load(r)["error"] is False
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert events.index("listening") < events.index("draining") < events.index("stopped")
    assert "request" in events


def test_sessions_claim(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/claim.db"
    run = [sys.executable, "-m", "gateway", "sessions", "claim", "s-old", "--store", store]
    first = subprocess.run([*run, "--owner", "alice"], capture_output=True, text=True)
    other = subprocess.run([*run, "--owner", "bob"], capture_output=True, text=True)
    forced = subprocess.run([*run, "--owner", "bob", "--force"], capture_output=True, text=True)
    assert (first.returncode, other.returncode, forced.returncode) == (0, 1, 0)
    assert "already owned by alice" in other.stderr
    assert "owned by bob" in forced.stdout
