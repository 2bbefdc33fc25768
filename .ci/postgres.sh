#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the fleet tests, installing Debian's
# package first if it is missing. Prints the SQLAlchemy URL base on stdout. Idempotent: a server
# already running from an earlier call is reused.
set -euo pipefail
PORT="${CHARGEPIN_PG_PORT:-55432}"
DATA="${CHARGEPIN_PG_DATA:-/tmp/chargepin-pg-$PORT}"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed; install Debian's postgresql package (needs root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! run "$bindir/pg_isready" -h 127.0.0.1 -p "$PORT" -q; then
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres "$DATA"
    run "$bindir/initdb" -D "$DATA" -U postgres -A trust >/dev/null
  fi
  run "$bindir/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT"
