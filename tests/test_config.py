"""Configuration: YAML < env < flags, every problem reported at once, secrets masked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import config


def test_precedence_yaml_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "upstream: http://from-yaml:1\nprofile: kagent\nshares:\n  allow_anonymous: true\n"
        "  cache_ttl: 9\nauth:\n  mode: none\n  default_user: yaml-user\n"
    )
    monkeypatch.setenv("SHARE_GATEWAY_SHARES__CACHE_TTL", "3")
    monkeypatch.setenv("SHARE_GATEWAY_AUTH__DEFAULT_USER", "env-user")
    s = config.load(path, {"auth.default_user": "flag-user"})
    assert s.upstream == "http://from-yaml:1"
    assert s.shares.allow_anonymous is True
    assert s.shares.cache_ttl == 3.0
    assert s.auth.default_user == "flag-user"


def test_every_problem_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARE_GATEWAY_SHARES__NO_SUCH_KEY", "1")
    monkeypatch.setenv("SHARE_GATEWAY_NO_SUCH_SECTION", "1")
    with pytest.raises(config.ConfigError) as info:
        config.load(overrides={
            "listen": "nowhere", "store": "mysql://x", "redis": "http://x", "auth.mode": "jwt",
            "shares.cache_ttl": "-1", "upstream": "ftp://x",
        })
    text = "\n".join(info.value.problems)
    for key in ("listen", "store", "redis", "auth", "shares.cache_ttl", "upstream",
                "shares.no_such_key", "SHARE_GATEWAY_NO_SUCH_SECTION"):
        assert key in text
    assert len(info.value.problems) == 8


def test_unknown_yaml_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("upstream: http://x:1\nshares:\n  alow_anonymous: true\n")
    with pytest.raises(config.ConfigError, match="alow_anonymous"):
        config.load(path)


def test_trusted_header_needs_cidrs() -> None:
    with pytest.raises(config.ConfigError, match="trusted_cidrs"):
        config.load(overrides={"auth.mode": "trusted-header"})


def test_upstream_required_for_serving() -> None:
    with pytest.raises(config.ConfigError, match="upstream: required"):
        config.load(require_upstream=True)


def test_lists_accept_commas() -> None:
    s = config.load(overrides={"auth.mode": "trusted-header",
                               "auth.trusted_header.trusted_cidrs": "10.0.0.0/8, 127.0.0.1/32"})
    assert [str(n) for n in s.auth.trusted_header.trusted_cidrs] == ["10.0.0.0/8", "127.0.0.1/32"]


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--upstream", "http://up:1",
         "--auth.mode", "jwt", "--auth.jwt.secret", "s3cr3t-value",
         "--store", "postgresql://gw:hunter2@db:5432/gw",
         "--upstream_auth.mode", "bearer", "--upstream_auth.token", "upstream-t0ken"],
        capture_output=True, text=True, check=True,
    )
    assert "s3cr3t-value" not in out.stdout + out.stderr
    assert "hunter2" not in out.stdout + out.stderr
    assert "upstream-t0ken" not in out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["store"] == "postgresql://gw:***@db:5432/gw"
    assert data["auth"]["jwt"]["secret"] == "***"


def test_check_config_exit_status_and_all_errors() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--auth.mode", "jwt", "--listen", "x"],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert "listen" in out.stderr
    assert "auth.jwt.secret" in out.stderr
    assert "upstream: required" in out.stderr


def test_migrate_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    first = subprocess.run([sys.executable, "-m", "gateway", "migrate", "--store", url],
                           capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-m", "gateway", "migrate", "--store", url],
                           capture_output=True, text=True, check=True)
    assert "applied migrations: [1]" in first.stdout
    assert "up to date" in again.stdout
