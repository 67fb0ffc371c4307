# Shared by the bench scripts (sourced, not run).

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Prints the path of the detour binary a run uses: STORM_DETOUR=path runs one built elsewhere
# (an older commit, side by side with this one); otherwise this checkout's, built in release.
detour_binary() {
  if [ -n "${STORM_DETOUR:-}" ]; then
    echo "$STORM_DETOUR"
  else
    say "building the release binary"
    cargo build --release -q -p detour-cli >&2
    echo target/release/detour
  fi
}
