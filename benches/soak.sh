#!/usr/bin/env bash
# ferrolite's soak (issue 7): builds the release binaries, then runs target/release/soak, which
# sends mixed traffic (streams, non-streams, client errors, slow and refusing upstreams) at a fixed
# rate through one ferrolite, checks every answer, samples its memory, file descriptors and
# latency, and writes benches/results/soak.md and soak.json. Exits non-zero when a verdict fails.
#
#   benches/soak.sh                          # 10 minutes at 200 req/s
#   benches/soak.sh --minutes 1              # a short try
#   benches/soak.sh --rate 500 --minutes 30  # any option of target/release/soak --help
#
# Every argument is passed to the soak. Every process it starts is stopped when it ends, fails or
# is interrupted. All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "benches/soak.sh: $*" >&2; }
command -v cargo >/dev/null || { say "cargo is required (https://rustup.rs)"; exit 1; }

say "building the release binaries"
cargo build --release -p ferrolite -p ferrolite-bench
# The binaries live wherever cargo put them (CARGO_TARGET_DIR may point outside the clone).
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"

# The soak appends the id of every process group it starts to this file; whatever happens, they
# are stopped here too (the soak stops them itself on a normal end, an error or a signal).
pidfile="$(mktemp)"
soak=""
stop_everything() {
  local status=$? sig
  trap - EXIT INT TERM HUP
  # The soak first (it stops its own children), then any group it left behind: TERM, then KILL.
  [ -n "$soak" ] && kill -TERM "$soak" 2>/dev/null && timeout 5 tail --pid="$soak" -f /dev/null || true
  for sig in TERM KILL; do
    xargs -r -I{} kill -s "$sig" -- "-{}" < "$pidfile" 2>/dev/null || true
    if [ "$sig" = TERM ]; then sleep 0.5; fi
  done
  rm -f "$pidfile"
  exit "$status"
}
trap stop_everything EXIT
trap 'exit 130' INT TERM HUP

BENCH_PIDFILE="$pidfile" "$bin/soak" --bin-dir "$bin" "$@" &
soak=$!
wait "$soak"
