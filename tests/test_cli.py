"""The console entry points as an operator runs them: demo, serve + SIGTERM, serve's safe defaults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway import app, cli, config
from gateway.demo.story import free_port, wait_http
from gateway.observe import logging
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


# Secure by default: `serve` refuses auth.mode none on a non-loopback listener unless it was chosen.

@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[config.Settings]:
    """Run `serve` in-process up to the point of binding: the settings it would serve, nothing bound."""
    for name in list(os.environ):
        if name.startswith("SHARE_GATEWAY_") and not name.startswith("SHARE_GATEWAY_TEST_"):
            monkeypatch.delenv(name)
    seen: list[config.Settings] = []

    async def fake_serve(settings: config.Settings, **_: Any) -> None:
        seen.append(settings)

    monkeypatch.setattr(app, "serve", fake_serve)
    monkeypatch.setattr(logging, "configure", lambda *_: None)
    monkeypatch.setattr(cli, "_install_uvloop", lambda: None)
    return seen


def _serve(tmp_path: Path, yaml_text: str = "", *flags: str) -> list[str]:
    path = tmp_path / "gw.yaml"
    path.write_text("upstream: http://up:1\n" + yaml_text)
    return ["serve", "--config", str(path), *flags]


def _refusal(err: str) -> list[str]:
    assert err.startswith("invalid configuration:\n"), err
    return [line.removeprefix("  - ") for line in err.splitlines()[1:]]


@pytest.mark.parametrize(("yaml_text", "env", "flags"), [
    ("", {}, ()),                                                         # nothing set anywhere
    ("listen: 0.0.0.0:8080\nauth:\n  default_user: ops\n", {}, ()),      # YAML has auth, not auth.mode
    ("", {"SHARE_GATEWAY_LISTEN": ":8080", "SHARE_GATEWAY_AUTH__DEFAULT_USER": "ops"}, ()),  # env
    ("", {}, ("--listen", "[::]:8080", "--auth.default_user", "ops")),    # flags
    ("listen: 10.1.2.3:8080\n", {}, ()),
])
def test_serve_refuses_default_auth_none_off_loopback(
    yaml_text: str, env: dict[str, str], flags: tuple[str, ...], tmp_path: Path,
    served: list[config.Settings], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        cli.main(_serve(tmp_path, yaml_text, *flags))
    assert info.value.code == 2 and served == []
    (reason,) = _refusal(capsys.readouterr().err)
    assert reason.startswith("auth.mode: not set")
    assert "jwt or trusted-header" in reason and "owner of every session" in reason


@pytest.mark.parametrize("source", ["yaml", "env", "flag"])
def test_serve_accepts_auth_none_set_explicitly(
    source: str, tmp_path: Path, served: list[config.Settings], monkeypatch: pytest.MonkeyPatch,
) -> None:
    yaml_text, flags = "listen: 0.0.0.0:8080\n", ["--shares.allow_anonymous", "true"]
    if source == "yaml":
        yaml_text += "auth:\n  mode: none\n"
    elif source == "env":
        monkeypatch.setenv("SHARE_GATEWAY_AUTH__MODE", "none")
    else:
        flags += ["--auth.mode", "none"]
    assert cli.main(_serve(tmp_path, yaml_text, *flags)) == 0
    (settings,) = served
    assert settings.auth.mode == "none" and settings.shares.allow_anonymous is True
    assert settings.listen == "0.0.0.0:8080"


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "127.0.0.2:8080", "localhost:8080", "[::1]:8080"])
def test_serve_accepts_default_auth_none_on_loopback(
    listen: str, tmp_path: Path, served: list[config.Settings],
) -> None:
    assert cli.main(_serve(tmp_path, "", "--listen", listen, "--shares.allow_anonymous", "true")) == 0
    (settings,) = served
    assert settings.auth.mode == "none" and not settings.explicit("auth.mode")


def test_serve_refuses_anonymous_shares_with_default_auth_none(
    tmp_path: Path, served: list[config.Settings], capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(_serve(tmp_path, "shares:\n  allow_anonymous: true\n"))
    assert info.value.code == 2 and served == []
    reasons = _refusal(capsys.readouterr().err)
    assert [r.split(":")[0] for r in reasons] == ["auth.mode", "shares.allow_anonymous"]
    assert "set both auth.mode: none and shares.allow_anonymous: true explicitly" in reasons[1]


def test_serve_other_auth_modes_are_unaffected(tmp_path: Path, served: list[config.Settings]) -> None:
    assert cli.main(_serve(tmp_path, "auth:\n  mode: jwt\n  jwt:\n    secret: s\n")) == 0
    assert served[0].auth.mode == "jwt"


def test_real_serve_entry_refuses_default_auth_none(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARE_GATEWAY_")}
    port, admin = free_port(), free_port()
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--upstream", "http://127.0.0.1:9",
         "--listen", f"0.0.0.0:{port}", "--admin_listen", f"127.0.0.1:{admin}",
         "--store", f"sqlite:///{tmp_path}/gw.db"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2, out.stderr
    (reason,) = _refusal(out.stderr)
    assert reason.startswith(f"auth.mode: not set, so it defaults to none and, as listen 0.0.0.0:{port}")
    assert not (tmp_path / "gw.db").exists()
