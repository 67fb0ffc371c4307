#!/usr/bin/env bash
# The storm benchmark on this machine, in one command: starts the whole suite on PostgreSQL and
# Redis (a fresh database and an emptied Redis database for the run), with the storm's
# notification sink as its SMS and push provider, mints a token, runs the release-built
# `detour storm` against it, and writes bench/results/<date>-<time>-storm.json and .svg.
#
#   bench/storm.sh                       # the issue's default sizes (200 flights, 20,000 travelers)
#   bench/storm.sh --travelers 100000 --flights 500 --mode flights   # any `detour storm` flag
#   bench/storm.sh --smoke               # a small crisis, about a minute, for a quick check
#   bench/storm.sh --intake-only         # intake alone (`detour serve intake`), as it scales in
#                                        # production, instead of all five services in one process
#
# Environment: STORM_PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres, trust
# auth), STORM_REDIS_DB (default 15: the tests use lower numbers), KEEP=1 keeps the database and
# the suite's log, STORM_DETOUR=path runs that binary instead of building one. Any DETOUR_* setting in the environment reaches the suite (e.g.
# DETOUR_INTAKE_ADMISSION_CAPACITY, DETOUR_DB_MAX_CONNECTIONS).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_ADMIN_URL="${STORM_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_DB="${STORM_REDIS_DB:-15}"
PG_PORT=5432
REDIS_PORT=6379

smoke=""
intake_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; shift ;;
    --intake-only) intake_only=1; shift ;;
    *) break ;;
  esac
done

# shellcheck source=bench/lib.sh
. bench/lib.sh
reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

wait_for() {
  local port=$1 what=$2
  for _ in $(seq 1 120); do
    reachable "$port" && return 0
    sleep 0.5
  done
  echo "error: $what did not come up on port $port" >&2
  return 1
}

# PostgreSQL and Redis as scripts/test.sh brings them up (installed there when missing).
ensure_services() {
  if ! reachable "$PG_PORT"; then
    command -v pg_ctlcluster >/dev/null 2>&1 || { echo "error: PostgreSQL is not installed (scripts/test.sh installs it)" >&2; exit 1; }
    say "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
    wait_for "$PG_PORT" PostgreSQL
  fi
  if ! reachable "$REDIS_PORT"; then
    command -v redis-server >/dev/null 2>&1 || { echo "error: Redis is not installed (scripts/test.sh installs it)" >&2; exit 1; }
    say "starting Redis"
    mkdir -p /tmp/detour-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /tmp/detour-redis --logfile /tmp/detour-redis/redis.log
    wait_for "$REDIS_PORT" Redis
  fi
  command -v psql >/dev/null 2>&1 || { echo "error: psql is needed to create the run's database" >&2; exit 1; }
  command -v redis-cli >/dev/null 2>&1 || { echo "error: redis-cli is needed to empty the run's Redis database" >&2; exit 1; }
}

free_port() {
  local port
  for port in $(seq "$1" $(($1 + 200))); do
    if ! reachable "$port"; then
      echo "$port"
      return 0
    fi
  done
  echo "error: no free port from $1" >&2
  return 1
}

ensure_services

detour=$(detour_binary)

stamp=$(date -u +%Y%m%d%H%M%S)
run_dir=$(mktemp -d "/tmp/detour-storm-$stamp.XXXX")
database="detour_storm_${stamp}_$$"
database_url="${PG_ADMIN_URL%/*}/$database"
redis_url="redis://127.0.0.1:$REDIS_PORT/$REDIS_DB"
grpc_port=$(free_port 50151)
metrics_port=$(free_port 9564)
sink_port=$(free_port 18090)
suite_pid=""

cleanup() {
  if [ -n "$suite_pid" ] && kill -0 "$suite_pid" 2>/dev/null; then
    kill "$suite_pid" 2>/dev/null || true
    wait "$suite_pid" 2>/dev/null || true
  fi
  if [ -z "${KEEP:-}" ]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
    redis-cli -p "$REDIS_PORT" -n "$REDIS_DB" FLUSHDB >/dev/null 2>&1 || true
    rm -rf "$run_dir"
  else
    echo "kept: database $database, suite log $run_dir/suite.log" >&2
  fi
}
trap cleanup EXIT

say "fresh database $database, Redis database $REDIS_DB emptied"
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $database" >/dev/null
redis-cli -p "$REDIS_PORT" -n "$REDIS_DB" FLUSHDB >/dev/null

# Every contact of the storm comes with one token, so intake's per-caller rate limit (meant for
# one channel adapter or partner among many) is lifted for the run unless set: the benchmark
# measures what intake can accept, not the share one caller is allowed. Admission by priority
# stays as configured.
# The suite on PostgreSQL refuses the development issuer itself; for the run it trusts it as an
# ordinary issuer whose public key the storm's sink publishes (as the end-to-end tests do).
issuer_dir="$run_dir/issuer"
token=$("$detour" token --role crisis_manager --role agent --role supervisor --data-dir "$issuer_dir" --ttl-minutes 240)

if [ -n "$intake_only" ]; then
  say "starting intake alone on 127.0.0.1:$grpc_port"
  suite=(env DETOUR_GRPC_ADDR="127.0.0.1:$grpc_port" DETOUR_METRICS_ADDR="127.0.0.1:$metrics_port"
    DETOUR_DATA_DIR="$run_dir/data" "$detour" serve intake)
else
  say "starting the suite (all five services) on 127.0.0.1:$grpc_port"
  suite=("$detour" dev --data-dir "$run_dir/data" --grpc-addr "127.0.0.1:$grpc_port"
    --metrics-addr "127.0.0.1:$metrics_port")
fi
DETOUR_DATABASE_URL="$database_url" \
DETOUR_EVENTS_URL="$redis_url" \
DETOUR_AUTH_DEV_ISSUER=false \
DETOUR_AUTH_ISSUERS="[{issuer=\"detour-dev\",audience=\"detour\",jwks_url=\"http://127.0.0.1:$sink_port/jwks.json\"}]" \
DETOUR_VAULT_KEKS="[$("$detour" kek --id storm-kek)]" \
DETOUR_NOTIFY="{http_url=\"http://127.0.0.1:$sink_port\"}" \
DETOUR_LOG="${DETOUR_LOG:-warn}" \
DETOUR_INTAKE_RATE_LIMIT_PER_SECOND="${DETOUR_INTAKE_RATE_LIMIT_PER_SECOND:-1000000}" \
DETOUR_INTAKE_RATE_LIMIT_BURST="${DETOUR_INTAKE_RATE_LIMIT_BURST:-1000000}" \
DETOUR_REQUEST_TIMEOUT_SECS="${DETOUR_REQUEST_TIMEOUT_SECS:-120}" \
  "${suite[@]}" >"$run_dir/suite.log" 2>&1 &
suite_pid=$!
if ! wait_for "$grpc_port" "the suite"; then
  tail -n 40 "$run_dir/suite.log" >&2
  exit 1
fi

mkdir -p bench/results
# Date and time (UTC), so a second run on the same day keeps the first one's results.
name="$(date -u +%Y-%m-%d-%H%M)-storm${intake_only:+-intake}${smoke:+-smoke}"
sizes=()
if [ -n "$smoke" ]; then
  sizes=(--flights 5 --travelers 500 --rate 50 --duration 5 --ceiling-duration 3
    --half-load-duration 5 --fanout-timeout 120 --verify-max 5000)
fi

say "running the storm: bench/results/$name.json and .svg"
status=0
# The token goes by environment, not argv, where any process listing would show it.
DETOUR_TOKEN="$token" "$detour" storm \
  --server "http://127.0.0.1:$grpc_port" \
  --postgres-url "$database_url" \
  --sink-listen "127.0.0.1:$sink_port" \
  --serve-dev-jwks "$issuer_dir" \
  --out "bench/results/$name.json" \
  --chart "bench/results/$name.svg" \
  "${sizes[@]}" "$@" || status=$?

if ! kill -0 "$suite_pid" 2>/dev/null; then
  echo "the suite stopped during the run; its log:" >&2
  tail -n 40 "$run_dir/suite.log" >&2
fi
if [ "$status" -ne 0 ]; then
  echo "storm exited with $status (the report was still written); the suite's log ends:" >&2
  tail -n 20 "$run_dir/suite.log" >&2
fi
exit "$status"
