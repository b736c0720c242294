"""`make check-deploy` can fail: each check run on a temporary copy with one thing broken.

The tools come from scripts/deploy-tools.sh (installed once into .deploy-tools/, as
`make check-deploy` does); a tool that cannot be installed fails these tests, never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "scripts/check-deploy.sh"
INSTALL = ROOT / "scripts/deploy-tools.sh"


def env() -> dict[str, str]:
    """The check finds the gateway in the venv running the tests."""
    return {**os.environ, "VENV": str(Path(sys.executable).parent.parent)}


@pytest.fixture(scope="module")
def tools() -> Path:
    proc = subprocess.run([str(INSTALL)], capture_output=True, text=True, env=env(), check=False, timeout=900)
    assert proc.returncode == 0, f"scripts/deploy-tools.sh failed:\n{proc.stderr}"
    return Path(proc.stdout.strip())


@pytest.fixture
def root(tmp_path: Path, tools: Path) -> Path:
    """A copy of everything the check reads."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("helm-chart", "deploy", "scripts", ".ci"):
        shutil.copytree(ROOT / name, copy / name)
    for name in ("Dockerfile", ".yamllint.yaml"):
        shutil.copy(ROOT / name, copy / name)
    return copy


def check(root: Path, only: str, *scenarios: str) -> subprocess.CompletedProcess[str]:
    args = [str(CHECK), "--root", str(root), "--only", only]
    for scenario in scenarios:
        args += ["--scenario", scenario]
    return subprocess.run(args, capture_output=True, text=True, env=env(), check=False, timeout=600)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new, 1))


def test_the_unmodified_copy_passes(root: Path) -> None:
    proc = check(root, "chart,manifests,compose,shell,yaml", "default", "monitoring")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("replicaCount: 2\n", "replicaCount: two\n", "replicaCount"),
        ("  profile: kagent\n", "  profile: kagent\n  profil: kagent\n", "profil"),
        ("live_check_interval: 10\n", "live_check_interval: 0\n", "live_check_interval"),
        ("  port: 8080\n", "  port: 8080\n  port 9000\n", "helm lint"),
    ],
    ids=["wrong-type", "unknown-config-key", "out-of-range", "not-yaml"],
)
def test_a_broken_values_file_fails(root: Path, old: str, new: str, expected: str) -> None:
    edit(root / "helm-chart/values.yaml", old, new)
    proc = check(root, "chart", "default")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL chart default" in proc.stdout
    assert expected in proc.stdout


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("externalRedis:\n  url: redis://r:6379/0\n  existingSecret: redis\n", "set url or existingSecret, not both"),
        ("upstreamAuth:\n  tokenKey: token\n", "upstreamAuth.tokenKey / privateKeyKey"),
        ("config:\n  upstream_auth:\n    mode: bearer\n", "bearer needs the token"),
        ("terminationGracePeriodSeconds: 20\n", "must exceed preStopSleepSeconds + config.shutdown_grace (25)"),
        ("autoscaling:\n  enabled: true\n  minReplicas: 5\n  maxReplicas: 2\n", "must not exceed"),
    ],
    ids=["url-and-secret", "key-without-secret", "bearer-without-token", "grace-too-short", "min-above-max"],
)
def test_a_combination_the_chart_refuses_fails(root: Path, values: str, expected: str) -> None:
    (root / "helm-chart/ci/refused-values.yaml").write_text(values)
    proc = check(root, "chart", "refused")
    assert proc.returncode == 1
    assert "FAIL chart refused" in proc.stdout
    assert expected in proc.stdout


def test_a_chart_config_the_gateway_refuses_fails(root: Path) -> None:
    edit(root / "helm-chart/values.yaml", 'trusted_cidrs: ["127.0.0.1/32", "::1/128"]', "trusted_cidrs: []")
    proc = check(root, "chart", "default")
    assert proc.returncode == 1
    assert "check-config exit 2" in proc.stdout
    assert "trusted_cidrs" in proc.stdout


def test_a_check_config_warning_fails(root: Path) -> None:
    """No auth.mode: the gateway's default `none` on 0.0.0.0, which `serve` refuses."""
    edit(root / "helm-chart/values.yaml", "    mode: trusted-header\n", "")
    proc = check(root, "chart", "default")
    assert proc.returncode == 1
    assert "check-config warns" in proc.stdout
    assert "warning: serve refuses this: auth.mode" in proc.stdout


def test_a_template_with_a_wrong_field_fails(root: Path) -> None:
    edit(root / "helm-chart/templates/deployment.yaml", "terminationGracePeriodSeconds:", "terminationGracePeriod:")
    proc = check(root, "chart", "default")
    assert proc.returncode == 1
    assert "Deployment/share-gateway (Kubernetes 1.35): spec.template.spec" in proc.stdout
    assert "'terminationGracePeriod' was unexpected" in proc.stdout


def test_a_servicemonitor_with_a_wrong_field_fails_against_its_crd(root: Path) -> None:
    edit(root / "helm-chart/templates/servicemonitor.yaml", "scrapeTimeout:", "scrapeTimout:")
    proc = check(root, "chart", "monitoring")
    assert proc.returncode == 1
    assert "ServiceMonitor CRD" in proc.stdout
    assert "'scrapeTimout' was unexpected" in proc.stdout


def test_listen_ports_that_miss_the_container_ports_fail(root: Path) -> None:
    """The image sets SHARE_GATEWAY_LISTEN; a chart that only wrote `listen` into its
    ConfigMap would listen on 8080 whatever service.port says."""
    edit(root / "helm-chart/templates/deployment.yaml", "value: \"0.0.0.0:{{ .Values.service.port }}\"",
         "value: \"0.0.0.0:8080\"")
    proc = check(root, "chart", "everything")
    assert proc.returncode == 1
    assert "the gateway's listen is 0.0.0.0:8080" in proc.stdout
    assert "container port 'http' is 8000" in proc.stdout


def test_a_manifest_with_a_wrong_field_fails(root: Path) -> None:
    edit(root / "deploy/kubernetes/share-gateway.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true")
    proc = check(root, "manifests")
    assert proc.returncode == 1
    assert "FAIL manifests deploy/kubernetes/share-gateway.yaml" in proc.stdout
    assert "'readOnlyRootFileSystem' was unexpected" in proc.stdout


def test_a_manifest_config_the_gateway_refuses_fails(root: Path) -> None:
    edit(root / "deploy/kubernetes/share-gateway.yaml", "max_expires_in: 2592000", "max_expires_in: 0")
    proc = check(root, "manifests")
    assert proc.returncode == 1
    assert "shares.max_expires_in" in proc.stdout


def test_a_compose_file_with_a_wrong_field_fails(root: Path) -> None:
    edit(root / "deploy/docker-compose.yaml", "stop_grace_period: 30s", "stop_grace: 30s")
    proc = check(root, "compose")
    assert proc.returncode == 1
    assert "vendor.compose-spec" in proc.stdout
    assert "stop_grace" in proc.stdout


def test_a_script_with_a_shellcheck_error_fails(root: Path) -> None:
    script = root / "scripts/tidy.sh"
    script.write_text('#!/usr/bin/env bash\nset -euo pipefail\ndir=$1\nrm -rf $dir/build\n')
    proc = check(root, "shell")
    assert proc.returncode == 1
    assert "SC2086" in proc.stdout
    assert "scripts/tidy.sh" in proc.stdout


def test_a_ci_script_without_sh_suffix_is_checked(root: Path) -> None:
    edit(root / ".ci/run", "make test", "make test $UNSET_TARGETS")
    proc = check(root, "shell")
    assert proc.returncode == 1
    assert ".ci/run" in proc.stdout


def test_a_yamllint_error_fails(root: Path) -> None:
    edit(root / "deploy/prometheus/alerts.yaml", "groups:", "groups:\ngroups:")
    proc = check(root, "yaml")
    assert proc.returncode == 1
    assert "key-duplicates" in proc.stdout


def test_a_tool_that_cannot_be_installed_stops_the_check(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(INSTALL)], capture_output=True, text=True, check=False, timeout=300,
        env=env() | {"DEPLOY_TOOLS_DIR": str(tmp_path / "tools"), "DEPLOY_TOOLS_HELM_PACKAGE_VERSION": "0.0.0-missing"},
    )
    assert proc.returncode == 1
    assert "check-deploy: cannot install helm" in proc.stderr
    assert proc.stdout == ""
