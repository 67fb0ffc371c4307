#!/usr/bin/env bash
# Checks every dependency of the workspace with cargo-deny against deny.toml: licences, bans
# (duplicate versions are warnings, wildcards errors), sources (crates.io only) and advisories
# (RustSec: vulnerabilities, unsound, unmaintained, yanked). Exits non-zero on any failure.
#
# The advisories check needs the RustSec advisory database, which cargo-deny clones from GitHub.
# Where GitHub cannot be reached the other three checks still run, and the advisories check is
# skipped with the reason printed; set REQUIRE_ADVISORIES=1 (CI with network) to make that an
# error instead.
#
# cargo-deny is installed on first use with `cargo install --locked` into ~/.cargo/bin (it is
# compiled: about 3 minutes on 2 cores) and reused afterwards.
#
# Usage: scripts/check-deny.sh [extra `cargo deny check` options, e.g. --hide-inclusion-graph]
#
# Environment:
#   CARGO_DENY_VERSION   version installed when cargo-deny is missing (default below)
#   REQUIRE_ADVISORIES=1 fail when the advisory database cannot be fetched
set -euo pipefail

CARGO_DENY_VERSION="${CARGO_DENY_VERSION:-0.20.2}"
ADVISORY_DB="https://github.com/rustsec/advisory-db"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is required"

if ! cargo deny --version >/dev/null 2>&1; then
  log "cargo-deny not found; installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked compiles it: a few minutes)"
  started=$SECONDS
  cargo install --locked "cargo-deny@$CARGO_DENY_VERSION" || die "cargo install cargo-deny@$CARGO_DENY_VERSION failed"
  log "cargo-deny installed in $((SECONDS - started)) s"
fi
log "using $(cargo deny --version)"

# Can the advisory database be fetched (cloned, or updated when cached)?
advisories=run
reason=""
if ! fetch_out="$(cargo deny --locked fetch db 2>&1)"; then
  advisories=skip
  # git's message when there is one ("fatal: unable to access ...: Could not resolve host"),
  # else cargo-deny's last line.
  reason="$(printf '%s\n' "$fetch_out" | grep -m 1 '^fatal:' || printf '%s\n' "$fetch_out" | tail -n 1)"
fi

status=0
if [[ "$advisories" == run ]]; then
  log "cargo deny --locked check (advisories bans licenses sources)"
  cargo deny --locked check "$@" || status=$?
else
  log "cargo deny --locked check licenses bans sources"
  cargo deny --locked check "$@" licenses bans sources || status=$?
fi

echo >&2
if [[ $status -eq 0 ]]; then
  log "licenses, bans, sources: ok"
else
  log "FAILED (exit $status): see the errors above"
fi
if [[ "$advisories" == run ]]; then
  [[ $status -eq 0 ]] && log "advisories: ok"
else
  log "advisories: SKIPPED - the advisory database ($ADVISORY_DB) could not be fetched: ${reason:-unknown reason}"
  log "            run this script where GitHub is reachable (CI) to check advisories"
  if [[ "${REQUIRE_ADVISORIES:-0}" == 1 ]]; then
    log "REQUIRE_ADVISORIES=1: a skipped advisories check is a failure"
    [[ $status -ne 0 ]] || status=1
  fi
fi
exit "$status"
