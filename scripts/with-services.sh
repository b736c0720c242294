#!/usr/bin/env bash
# Run a command with the services the test suite needs (PostgreSQL, Redis).
# Uses the one on 127.0.0.1:5432 (database "test", trust auth) when it answers,
# else starts a throwaway server from installed binaries, else says what to install.
set -euo pipefail

port_open() { python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

cleanup=()
run_cleanup() { local c; for c in "${cleanup[@]}"; do eval "$c" || true; done; }
trap run_cleanup EXIT

if [ -z "${SHARE_GATEWAY_TEST_POSTGRES:-}" ]; then
  if port_open 127.0.0.1 5432; then
    export SHARE_GATEWAY_TEST_POSTGRES="postgresql://postgres@127.0.0.1:5432/test"
  else
    bindir=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1 || true)
    if [ -z "$bindir" ] && command -v initdb >/dev/null; then bindir=$(dirname "$(command -v initdb)"); fi
    if [ -z "$bindir" ]; then
      if [ "${CI:-}" = "true" ]; then
        echo "PostgreSQL is required on CI and none answers on 127.0.0.1:5432" >&2; exit 1
      fi
      echo "The tests need PostgreSQL: install it (Debian: apt-get install postgresql) or point" >&2
      echo "SHARE_GATEWAY_TEST_POSTGRES at one (postgresql://user@host:port/db)." >&2
      exit 1
    fi
    dir=$(mktemp -d /tmp/share-gateway-pg.XXXXXX)
    pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as=()
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as=(runuser -u postgres --); fi
    echo "starting a throwaway PostgreSQL on 127.0.0.1:$pgport" >&2
    "${as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
    "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -o "-p $pgport -k $dir -h 127.0.0.1" -l "$dir/log" -w start >/dev/null
    cleanup+=("${as[*]} $bindir/pg_ctl -D $dir/data -m immediate stop >/dev/null; rm -rf $dir")
    "$bindir/createdb" -h 127.0.0.1 -p "$pgport" -U postgres test
    export SHARE_GATEWAY_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$pgport/test"
  fi
fi

if [ -z "${SHARE_GATEWAY_TEST_REDIS:-}" ]; then
  if port_open 127.0.0.1 6379; then
    export SHARE_GATEWAY_TEST_REDIS="redis://127.0.0.1:6379/0"
  elif command -v redis-server >/dev/null; then
    rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo "starting a throwaway Redis on 127.0.0.1:$rport" >&2
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --pidfile "/tmp/share-gateway-redis-$rport.pid" >/dev/null
    cleanup+=("kill \$(cat /tmp/share-gateway-redis-$rport.pid); rm -f /tmp/share-gateway-redis-$rport.pid")
    export SHARE_GATEWAY_TEST_REDIS="redis://127.0.0.1:$rport/0"
  else
    echo "The tests need Redis: install redis-server (Debian: apt-get install redis-server) or point" >&2
    echo "SHARE_GATEWAY_TEST_REDIS at one (redis://host:port/db)." >&2
    exit 1
  fi
fi

"$@"
