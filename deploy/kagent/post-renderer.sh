#!/usr/bin/env bash
# Helm post-renderer for kagent's chart: the UI pod's nginx proxies the
# browser's /api/ to the controller Service (helm/kagent/files/nginx.conf,
# `upstream kagent_backend`, not configurable by values). Point it at the
# gateway, so browser-side /api/ calls are authorized like the rest.
#   GATEWAY=share-gateway.kagent.svc:8080 helm upgrade … --post-renderer deploy/kagent/post-renderer.sh
set -euo pipefail
gateway="${GATEWAY:-share-gateway.kagent.svc:8080}"
# Only the `server …;` line inside `upstream kagent_backend { … }` changes.
sed -E "/upstream kagent_backend \{/,/\}/ s#server [^;]+;#server ${gateway};#"
