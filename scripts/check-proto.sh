#!/usr/bin/env bash
# Lints the gRPC contracts under proto/ with buf: `buf lint` (rules from proto/buf.yaml) and
# `buf format -d --exit-code` (canonical formatting). Exits non-zero if either reports anything.
#
# buf comes from the npm package @bufbuild/buf (it ships the binary for this platform), installed
# once into a cache directory and reused, so a second run costs only the lint itself.
#
# Environment:
#   DETOUR_TOOLS_DIR  cache directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/detour-tools)
#   BUF_VERSION       @bufbuild/buf version to install (default below)
set -euo pipefail

BUF_VERSION="${BUF_VERSION:-1.75.0}"
TOOLS_DIR="${DETOUR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/detour-tools}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROTO_DIR="$ROOT/proto"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

install_buf() {
  local dir="$TOOLS_DIR/npm-buf-$BUF_VERSION"
  BUF="$dir/node_modules/.bin/buf"
  if [[ -x "$BUF" ]] && "$BUF" --version >/dev/null 2>&1; then
    return
  fi
  command -v npm >/dev/null || die "npm is required to install buf (@bufbuild/buf)"
  log "installing @bufbuild/buf@$BUF_VERSION into $dir"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  printf '{"name":"detour-tools-buf","private":true}\n' >"$dir.tmp/package.json"
  (cd "$dir.tmp" && npm install --no-audit --no-fund --loglevel=error \
    "@bufbuild/buf@$BUF_VERSION" >&2) || die "npm install @bufbuild/buf@$BUF_VERSION failed"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  "$BUF" --version >/dev/null 2>&1 || die "installed buf does not run: $BUF"
}

main() {
  [[ -f "$PROTO_DIR/buf.yaml" ]] || die "no $PROTO_DIR/buf.yaml"
  mkdir -p "$TOOLS_DIR"
  # One installer at a time per cache (parallel runs, or check-deploy.sh alongside).
  if command -v flock >/dev/null; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
  fi
  install_buf
  if command -v flock >/dev/null; then exec 9>&-; fi
  log "buf $("$BUF" --version)"
  cd "$PROTO_DIR"

  local rc=0
  log "buf lint (proto/)"
  if "$BUF" lint; then
    log "buf lint: ok"
  else
    log "buf lint: FAILED"
    rc=1
  fi

  log "buf format -d --exit-code (proto/)"
  if "$BUF" format -d --exit-code; then
    log "buf format: ok"
  else
    log "buf format: FAILED (diff above; 'buf format -w' in proto/ rewrites the files)"
    rc=1
  fi

  if [[ $rc -ne 0 ]]; then
    die "proto checks failed"
  fi
  log "proto checks passed"
}

main "$@"
