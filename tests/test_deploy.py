"""Deployment artefacts: Helm chart (schema, template syntax, value references), alerts,
dashboard, compose and Kubernetes examples — checked as text, no cluster or helm binary needed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway import config
from gateway.observe import metrics

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm-chart"
TEMPLATES = sorted((CHART / "templates").glob("*"))
ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
BLOCK_OPEN = re.compile(r"^(if|range|with|define|block)\b")


def values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def metric_names() -> set[str]:
    """Every series name the registry can expose (with _total, _bucket, _count … suffixes)."""
    return set(metrics.REGISTRY._names_to_collectors)


def test_values_match_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(values(), schema)
    bad = values() | {"replicaCount": 0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values() | {"unknownKey": 1}, schema)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_actions_are_balanced(template: Path) -> None:
    text = template.read_text()
    assert text.count("{{") == text.count("}}")
    depth = 0
    for action in ACTION.findall(text):
        if action.startswith("/*"):
            continue
        if BLOCK_OPEN.match(action):
            depth += 1
        elif action == "end":
            depth -= 1
            assert depth >= 0, f"{template.name}: 'end' without an opening action"
    assert depth == 0, f"{template.name}: {depth} unclosed block(s)"


def test_every_value_a_template_uses_exists() -> None:
    defined = values()
    missing = []
    for template in TEMPLATES:
        for ref in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", template.read_text()):
            node: Any = defined
            for part in ref.strip(".").split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(f"{template.name}: .Values{ref}")
                    break
                node = node[part]
    assert missing == []


def test_every_top_level_value_is_documented() -> None:
    readme = (CHART / "README.md").read_text()
    assert [k for k in values() if f"`{k}" not in readme] == []


def test_chart_config_is_a_valid_gateway_config(tmp_path: Path) -> None:
    rendered = dict(values()["config"]) | {"listen": "0.0.0.0:8080", "admin_listen": "0.0.0.0:9090"}
    rendered["auth"]["trusted_header"]["trusted_cidrs"] = ["10.244.0.0/16"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered))
    settings = config.load(path, require_upstream=True)
    assert settings.auth.mode == "trusted-header"


def test_chart_alerts_are_the_deploy_alerts() -> None:
    assert (CHART / "files/alerts.yaml").read_text() == (ROOT / "deploy/prometheus/alerts.yaml").read_text()


def test_alerts_and_dashboard_use_real_metrics() -> None:
    known = metric_names()
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "ShareGatewayHighDenyRate", "ShareGatewayStoreDown", "ShareGatewayRedisDown",
        "ShareGatewayAccessRecordsDropped", "ShareGatewayUpstreamErrors", "ShareGatewayHighLatencyP99",
    }
    dashboard = json.loads((ROOT / "deploy/grafana/share-gateway-dashboard.json").read_text())
    exprs = [r["expr"] for r in rules] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"share_gateway_[a-z_]+", e)}
    assert used - known == set()
    assert len(used) >= 10
    for e in exprs:
        assert e.count("(") == e.count(")"), e


def test_compose_stack_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yaml").read_text())
    assert set(compose["services"]) == {"gateway", "agent", "redis", "postgres"}
    env = compose["services"]["gateway"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = config.load(require_upstream=True)
    assert settings.redis == "redis://redis:6379/0"
    assert settings.store.startswith("postgresql://")


def test_kubernetes_examples() -> None:
    docs = [d for f in sorted((ROOT / "deploy/kubernetes").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", "Ingress"}
    gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "share-gateway")
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["terminationGracePeriodSeconds"] > 5 + 20
    cfg = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"]
    parsed = yaml.safe_load(cfg)
    assert parsed["auth"]["mode"] == "trusted-header"


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001", final_stage, re.M)
    assert "HEALTHCHECK" in final_stage
    assert "/healthz" in final_stage


def test_docker_agent_example_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import profiles
    from gateway.app import upstream_credentials

    text = (ROOT / "deploy/docker-agent/share-gateway.yaml").read_text()
    token = tmp_path / "agent-token"
    token.write_text("t0ken\n")
    path = tmp_path / "gw.yaml"
    path.write_text(text.replace("/etc/share-gateway/agent-token", str(token)))
    settings = config.load(path, require_upstream=True)
    credentials = upstream_credentials(settings, profiles.load(settings.profile))
    assert (settings.profile, credentials.mode, settings.default_owner) == ("docker-agent", "bearer", "ops@example.com")
