#!/usr/bin/env bash
# The benchmark's load tools and reference proxy: nginx, wrk, hey (Debian packages).
set -euo pipefail
missing=()
for tool in nginx wrk hey psql; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  pkgs=()
  for tool in "${missing[@]}"; do
    case $tool in psql) pkgs+=(postgresql-client);; *) pkgs+=("$tool");; esac
  done
  echo "installing ${pkgs[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
else
  echo "the benchmark needs: ${missing[*]} (Debian: apt-get install nginx wrk hey postgresql-client)" >&2
  exit 1
fi
