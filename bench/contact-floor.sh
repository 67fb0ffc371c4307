#!/usr/bin/env bash
# The contact floor: how many contacts a second PostgreSQL alone can take on this machine, with
# intake's own schema and the rows a contact must leave behind, batched as well as a group commit
# ever could. Measured beside the storm's two ceilings in the same run, so the share of the echo
# ceiling that any intake on this machine could reach has an upper bound.
#
#   bench/contact-floor.sh                     # batches of 1 to 1,024 contacts, 4 clients, 10 s each
#   bench/contact-floor.sh --batches "4 256" --clients 8 --duration 20
#
# Creates a fresh database, migrates intake's schema into it (`detour migrate intake`), seeds
# --cases travelers with one open case each (bench/floor/seed.sql), measures the echo and
# PostgreSQL insert ceilings (`detour storm --ceilings-only`), then runs pgbench with
# bench/floor/contact.sql for each batch size twice: "contact" (everything a merged contact
# writes and reads) and "minimal" (only the rows it cannot do without). Writes
# bench/results/<date>-<time>-floor.json and .svg; drops the database unless KEEP=1.
# Environment: STORM_PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres),
# STORM_DETOUR=path to use a built binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_ADMIN_URL="${STORM_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
batches="1 4 16 64 256 1024"
clients=4
duration=10
cases=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --batches) batches="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "error: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=bench/lib.sh
. bench/lib.sh
for tool in psql pgbench python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is needed (Debian: postgresql-client, python3)" >&2; exit 1; }
done
psql "$PG_ADMIN_URL" -qAtc 'SELECT 1' >/dev/null || { echo "error: PostgreSQL does not answer at $PG_ADMIN_URL (bench/storm.sh and scripts/test.sh start it)" >&2; exit 1; }

detour=$(detour_binary)

stamp=$(date -u +%Y%m%d%H%M%S)
database="detour_floor_${stamp}_$$"
database_url="${PG_ADMIN_URL%/*}/$database"
work=$(mktemp -d "/tmp/detour-floor-$stamp.XXXX")
cleanup() {
  if [ -z "${KEEP:-}" ]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
    rm -rf "$work"
  else
    echo "kept: database $database, pgbench output in $work" >&2
  fi
}
trap cleanup EXIT

say "database $database: intake's schema and $cases travelers with an open case each"
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $database" >/dev/null
DETOUR_DATABASE_URL="$database_url" "$detour" migrate intake >/dev/null
# Every service keeps its tables in a schema of its own name.
export PGOPTIONS='-c search_path=intake'
psql "$database_url" -qv ON_ERROR_STOP=1 -v ncases="$cases" -f bench/floor/seed.sql >/dev/null

say "ceilings: echo and single-row PostgreSQL inserts (${duration} s each)"
"$detour" storm --ceilings-only --ceiling-duration "$duration" --postgres-url "$database_url" \
  --out "$work/ceilings.json" 2>"$work/ceilings.log" >/dev/null

for script in contact minimal; do
  full=$([ "$script" = contact ] && echo 1 || echo 0)
  for b in $batches; do
    say "$script: batches of $b contacts, $clients clients, ${duration} s"
    pgbench -n -M prepared -c "$clients" -j 2 -T "$duration" -P 2 -D b="$b" -D ncases="$cases" \
      -D full="$full" -f bench/floor/contact.sql "$database_url" \
      >"$work/$script-$b.log" 2>"$work/$script-$b.progress" &
    pid=$!
    # pgbench reports progress on stderr every 2 s; show it as it comes.
    tail -f --pid=$pid "$work/$script-$b.progress" >&2 || true
    wait $pid || { echo "error: pgbench failed; see $work/$script-$b.log" >&2; KEEP=1; exit 1; }
  done
done

mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d-%H%M)-floor"
python3 bench/floor/report.py "$work" "$out" "$clients" "$duration" "$cases" $batches
