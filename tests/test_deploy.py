"""Deployment artefacts: Helm chart (schema, template syntax, value references), alerts,
dashboard, compose and Kubernetes examples — checked as text here; `make check-deploy`
(scripts/check_deploy.py, tests/test_check_deploy.py) runs the real tools on them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

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


def schema() -> dict[str, Any]:
    return dict(json.loads((CHART / "values.schema.json").read_text()))


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``("a.b.c", value)`` for every value; an empty mapping is a value of its own."""
    if isinstance(node, dict) and node:
        return [leaf for key, child in node.items() for leaf in leaves(child, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), node)]


def schema_node(path: str) -> tuple[str, dict[str, Any]] | None:
    """The schema of ``path`` and the key the README documents it under: ``path`` itself, or
    the free-form object (no ``properties``) that holds it; None when the schema lacks it."""
    node = schema()
    walked: list[str] = []
    for part in path.split("."):
        if "properties" not in node:
            break
        if part not in node["properties"]:
            return None
        node = node["properties"][part]
        walked.append(part)
    return ".".join(walked), node


def test_every_value_is_in_the_schema_and_the_readme_table() -> None:
    readme = (CHART / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    not_in_schema, not_documented = [], []
    for path, _ in leaves(values()):
        found = schema_node(path)
        if found is None:
            not_in_schema.append(path)
        elif not any(f"`{found[0]}`" in row.split(" | ")[0] for row in table):
            not_documented.append(found[0])
    assert not_in_schema == []
    assert not_documented == []


def test_every_schema_key_is_a_value_or_documented() -> None:
    """The schema has no key that values.yaml and the README both forget (config keys excepted:
    the schema lists every gateway key, the README points at the project README for them)."""
    readme = (CHART / "README.md").read_text()
    missing = []
    for path, _ in leaves(_schema_paths(schema())):
        if not path.startswith("config.") and f"`{path}`" not in readme:
            missing.append(path)
    assert missing == []


def _schema_paths(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _schema_paths(v) if "properties" in v else None for k, v in node.get("properties", {}).items()}


# Keys the chart sets itself or takes from Secrets: not allowed under `config`.
CHART_OWNED = {"listen", "admin_listen", "store", "redis", "auth.jwt.secret", "upstream_auth.token", "shares.token_keys"}
# `config` defaults that differ from the gateway's on purpose.
CHART_DEFAULTS = {"upstream", "auth.mode", "auth.trusted_header.trusted_cidrs", "log.format"}


def gateway_fields(model: type[BaseModel] = config.Settings, prefix: str = "") -> dict[str, FieldInfo]:
    out: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out |= gateway_fields(info.annotation, f"{prefix}{name}.")
        else:
            out[f"{prefix}{name}"] = info
    return out


def test_chart_config_schema_has_every_gateway_key_with_its_bounds() -> None:
    fields = gateway_fields()
    chart = {path for path, _ in leaves(_schema_paths(schema()["properties"]["config"]))}
    assert chart == set(fields) - CHART_OWNED
    mismatched: list[tuple[str, Any, Any]] = []
    for path in sorted(chart):
        found = schema_node(f"config.{path}")
        assert found is not None
        node = found[1]
        expected: dict[str, Any] = {}
        for meta in fields[path].metadata:
            for attr, key in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"), ("lt", "exclusiveMaximum")):
                if getattr(meta, attr, None) is not None:
                    expected[key] = getattr(meta, attr)
        actual = {k: node[k] for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum") if k in node}
        if actual != expected:
            mismatched.append((path, actual, expected))
        if "enum" in node and list(node["enum"]) != [a for a in getattr(fields[path].annotation, "__args__", ())]:
            mismatched.append((path, node["enum"], fields[path].annotation))
    assert mismatched == []


def test_chart_config_defaults_are_the_gateways() -> None:
    fields = gateway_fields()
    differ = []
    for path, value in leaves(values()["config"]):
        default = fields[path].get_default(call_default_factory=True)
        if path not in CHART_DEFAULTS and not (value == default or (value == "" and default is None)):
            differ.append((path, value, default))
    assert differ == []


@pytest.mark.parametrize(
    "config_patch",
    [{"auth": {"mod": "jwt"}}, {"listen": "0.0.0.0:1"}, {"store": "sqlite:///x.db"},
     {"upstream_auth": {"token": "t"}}, {"shares": {"live_check_interval": 0}},
     {"trusted_agents": "10.0.0.0/8"}, {"upstream_auth": {"jwt": {"private_key": "-----BEGIN PRIVATE KEY-----"}}}],
    ids=repr,
)
def test_schema_rejects_unknown_chart_owned_and_out_of_range_config(config_patch: dict[str, Any]) -> None:
    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return a | {k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                    for k, v in b.items()}

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values() | {"config": merge(values()["config"], config_patch)}, schema())


@pytest.mark.parametrize("path", sorted((CHART / "ci").glob("*-values.yaml")), ids=lambda p: p.name)
def test_ci_value_sets_match_the_schema(path: Path) -> None:
    """helm merges them over values.yaml; the schema must accept the result (also checked by helm lint)."""
    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return a | {k: merge(a.get(k), v) for k, v in b.items()}
        return b

    jsonschema.validate(merge(values(), yaml.safe_load(path.read_text())), schema())


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
    assert parsed["auth"]["mode"] == "jwt"  # kagent's UI forwards the ID token oauth2-proxy hands it
    # The real topology (kagent's UI between oauth2-proxy and the gateway): only the UI reaches the
    # gateway, only the gateway and kagent's agent pods reach the controller.
    proxy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "oauth2-proxy")
    assert "--upstream=http://kagent-ui:8080" in proxy["spec"]["template"]["spec"]["containers"][0]["args"]
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    to_gateway = policies["share-gateway"]["spec"]["ingress"][0]["from"]
    assert to_gateway == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "kagent", "app.kubernetes.io/component": "ui"}}}]
    to_controller = policies["kagent-controller-only-via-share-gateway"]["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchExpressions": [{"key": "kagent", "operator": "Exists"}]}} in to_controller
    values = yaml.safe_load((ROOT / "deploy/kagent/kagent-values.yaml").read_text())
    assert values["ui"]["backendInternalUrl"] == "http://share-gateway.kagent.svc:8080/api"


def test_kagent_post_renderer_points_the_ui_nginx_at_the_gateway() -> None:
    """kagent's files/nginx.conf hard-wires browser /api/ to the controller; the post-renderer re-points it."""
    rendered = ("    upstream kagent_ui {\n        server 127.0.0.1:8001;\n    }\n"
                "    upstream kagent_backend {\n        server kagent-controller.kagent.svc:8083;\n    }\n")
    out = subprocess.run([str(ROOT / "deploy/kagent/post-renderer.sh")], input=rendered, text=True,
                         capture_output=True, check=True).stdout
    assert "server share-gateway.kagent.svc:8080;" in out
    assert "server 127.0.0.1:8001;" in out and "kagent-controller" not in out


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
