#!/usr/bin/env bash
# Runs every test of the workspace: unit, repository contract (SQLite and PostgreSQL), and
# end-to-end. PostgreSQL and Redis must answer on 127.0.0.1; this script starts them when they
# do not, installing them with apt-get first when they are missing (a fresh Debian machine).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_PORT=5432
REDIS_PORT=6379
export DETOUR_TEST_POSTGRES_URL="${DETOUR_TEST_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:${PG_PORT}/postgres}"
export DETOUR_TEST_REDIS_URL="${DETOUR_TEST_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT}}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local port=$1 what=$2
  for _ in $(seq 1 60); do
    reachable "$port" && return 0
    sleep 0.5
  done
  echo "error: $what did not start on port $port" >&2
  exit 1
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if reachable "$PG_PORT"; then
    say "PostgreSQL answers on $PG_PORT"
  else
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
      say "installing PostgreSQL"
      apt_install postgresql
    fi
    say "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
    wait_for "$PG_PORT" PostgreSQL
  fi
  # The tests log in over TCP as postgres; give it the password the URL carries (a no-op where
  # the server trusts local connections).
  if command -v psql >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1; then
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
  fi
}

ensure_redis() {
  if reachable "$REDIS_PORT"; then
    say "Redis answers on $REDIS_PORT"
    return
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    say "installing Redis"
    apt_install redis-server
  fi
  say "starting Redis"
  mkdir -p /tmp/detour-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/detour-redis --logfile /tmp/detour-redis/redis.log
  wait_for "$REDIS_PORT" Redis
}

drop_stale_test_databases() {
  command -v psql >/dev/null 2>&1 || return 0
  local dbs
  dbs=$(psql "$DETOUR_TEST_POSTGRES_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'detour_test_%'" 2>/dev/null || true)
  for db in $dbs; do
    psql "$DETOUR_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
}

ensure_postgres
ensure_redis
drop_stale_test_databases

say "cargo test --workspace"
cargo test --workspace --locked "$@"
