#!/usr/bin/env bash
# `make check-deploy`: the Helm chart, the Kubernetes examples, the compose file,
# the shell scripts and the YAML checked by the real tools (helm, kubernetes-validate,
# check-jsonschema, shellcheck, yamllint; see scripts/check_deploy.py). Installs
# the tools on first use (scripts/deploy-tools.sh) and fails if one cannot be had.
# Arguments go to `check_deploy.py check`: --only STAGES, --scenario NAME, --root DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
case $venv in /*) ;; *) venv=$root/$venv ;; esac
gateway=$venv/bin/share-gateway
if [ ! -x "$gateway" ]; then
  echo "check-deploy: $gateway not found: run 'make check-deploy' (it installs the project first)" >&2
  exit 1
fi
tools=$("$root/scripts/deploy-tools.sh")
exec "$tools/venv/bin/python" "$root/scripts/check_deploy.py" check --tools "$tools" --gateway "$gateway" "$@"
