"""Configuration: YAML < env < flags, every problem reported at once, secrets masked."""

from __future__ import annotations

import json
import os
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
    assert "applied migrations: [1, 2]" in first.stdout
    assert "up to date" in again.stdout


# Secure by default: which keys were set explicitly, and what `serve` refuses on a non-loopback listener.

@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SHARE_GATEWAY_* setting from the caller's environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("SHARE_GATEWAY_") and not name.startswith("SHARE_GATEWAY_TEST_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("source", ["yaml", "env", "flag"])
def test_explicit_keys_are_known_from_every_source(
    source: str, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("upstream: http://up:1\nauth:\n  default_user: someone\n")
    overrides: dict[str, str] = {}
    if source == "yaml":
        path.write_text("upstream: http://up:1\nauth:\n  default_user: someone\n  mode: none\n")
    elif source == "env":
        clean_env.setenv("SHARE_GATEWAY_AUTH__MODE", "none")
    else:
        overrides["auth.mode"] = "none"
    s = config.load(path, overrides)
    assert s.explicit("auth.mode") and s.explicit("auth.default_user") and s.explicit("upstream")
    assert not s.explicit("auth.jwt.issuer") and not s.explicit("shares.allow_anonymous")
    assert not s.explicit("listen")


def test_defaults_are_not_explicit(clean_env: pytest.MonkeyPatch) -> None:
    s = config.load()
    assert s.auth.mode == "none" and not s.explicit("auth.mode") and not s.explicit("auth")
    with pytest.raises(KeyError):
        s.explicit("auth.no_such_key")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LOCALHOST", True), ("::1", True),
    ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.1.2.3", False), ("192.168.0.1", False),
    ("gateway.example", False), ("localhost.example", False), ("::ffff:10.0.0.1", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert config.is_loopback_host(host) is loopback


@pytest.mark.parametrize(("listen", "overrides", "expected"), [
    ("0.0.0.0:8080", {}, ["auth.mode: not set"]),
    (":8080", {}, ["auth.mode: not set"]),
    ("[::]:8080", {}, ["auth.mode: not set"]),
    ("10.1.2.3:8080", {"auth.default_user": "x"}, ["auth.mode: not set"]),
    ("0.0.0.0:8080", {"shares.allow_anonymous": "true"}, ["auth.mode: not set", "shares.allow_anonymous"]),
    ("0.0.0.0:8080", {"auth.mode": "none"}, []),
    ("0.0.0.0:8080", {"auth.mode": "none", "shares.allow_anonymous": "true"}, []),
    ("0.0.0.0:8080", {"auth.mode": "jwt", "auth.jwt.secret": "s"}, []),
    ("127.0.0.1:8080", {}, []),
    ("127.0.0.1:8080", {"shares.allow_anonymous": "true"}, []),
    ("[::1]:8080", {}, []),
    ("localhost:8080", {}, []),
])
def test_exposure_problems(listen: str, overrides: dict[str, str], expected: list[str],
                           clean_env: pytest.MonkeyPatch) -> None:
    problems = config.exposure_problems(config.load(overrides={"listen": listen, **overrides}))
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start)
        assert "\n" not in problem and "jwt or trusted-header" in problem


def test_anonymous_with_none_needs_both_explicit(clean_env: pytest.MonkeyPatch) -> None:
    """Guards a future default: allow_anonymous true that nobody chose is refused too."""
    s = config.load(overrides={"auth.mode": "none"})
    implicit = config.SharesSettings.model_construct(_fields_set=set(), allow_anonymous=True)
    s = s.model_copy(update={"shares": implicit})
    assert [p.split(":")[0] for p in config.exposure_problems(s)] == ["shares.allow_anonymous"]


def test_load_refuses_exposure_only_when_asked(clean_env: pytest.MonkeyPatch) -> None:
    config.load(overrides={"upstream": "http://up:1"}, require_upstream=True)
    with pytest.raises(config.ConfigError) as info:
        config.load(refuse_exposed=True, require_upstream=True)
    assert [p.split(":")[0] for p in info.value.problems] == ["upstream", "auth.mode"]  # all at once


def test_check_config_warns_about_what_serve_refuses(clean_env: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARE_GATEWAY_")}
    run = [sys.executable, "-m", "gateway", "check-config", "--upstream", "http://up:1"]
    implicit = subprocess.run(run, capture_output=True, text=True, env=env)
    explicit = subprocess.run([*run, "--auth.mode", "none"], capture_output=True, text=True, env=env)
    assert implicit.returncode == 0 and explicit.returncode == 0
    warnings = [line for line in implicit.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "auth.mode: not set" in warnings[0]
    assert "jwt or trusted-header" in warnings[0]
    assert "warning" not in explicit.stderr
    assert json.loads(implicit.stdout)["auth"]["mode"] == "none"
