#!/usr/bin/env bash
# ferrolite's soak (issue 7): builds the release binaries, then runs target/release/soak, which
# sends mixed traffic (streams, non-streams, client errors, slow and refusing upstreams) at a fixed
# rate through one ferrolite, checks every answer, samples its memory, file descriptors and
# latency, and writes benches/results/soak.md and soak.json. Exits non-zero when a verdict fails.
#
#   benches/soak.sh                          # 10 minutes at 200 req/s
#   benches/soak.sh --minutes 1              # a short try
#   benches/soak.sh --rate 500 --minutes 30  # any option of target/release/soak --help
#   benches/soak.sh --faults                 # the fault phase: two instances over Redis while
#                                            # Redis and an instance fail (target/release/chaos;
#                                            # benches/results/chaos.md), after the soak
#   benches/soak.sh --faults-only --minutes 1  # the fault phase alone
#
# Every other argument is passed to the soak (with --faults-only, to the fault phase). Every process it starts is stopped when it ends, fails or
# is interrupted. All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "benches/soak.sh: $*" >&2; }
command -v cargo >/dev/null || { say "cargo is required (https://rustup.rs)"; exit 1; }

faults=0
args=()
for arg in "$@"; do
  case "$arg" in
    --faults) faults=1 ;;
    --faults-only) faults=2 ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$faults" != 0 ] && ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing redis-server (apt-get install redis-server)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    say "the fault phase needs redis-server (as root: apt-get install -y redis-server)"; exit 1
  fi
fi

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

if [ "$faults" != 2 ]; then
  BENCH_PIDFILE="$pidfile" "$bin/soak" --bin-dir "$bin" ${args[@]+"${args[@]}"} &
  soak=$!
  wait "$soak"
fi
if [ "$faults" != 0 ]; then
  phase_args=()
  [ "$faults" = 2 ] && phase_args=(${args[@]+"${args[@]}"})
  BENCH_PIDFILE="$pidfile" "$bin/chaos" --bin-dir "$bin" ${phase_args[@]+"${phase_args[@]}"} &
  soak=$!
  wait "$soak"
fi
