# Shared by the benches' shell scripts and the profile-guided build's (scripts/build-pgo.sh,
# scripts/pgo-serve-train.sh); sourced after `cd` to the repository root. It sets `target` (the
# cargo target directory) and `scratch` (a directory removed on exit, kept with KEEP=1), stops on
# exit every pid a script adds to `pids`, and defines `say`, `free_port`, `wait_port`,
# `build_release` (which sets `bin`), `need` and `start_fake`. `say` names the script: the
# caller's `script_name`, else benches/ and the file's name.
bench_script="${script_name:-benches/$(basename "$0")}"
say() { echo "$bench_script: $*" >&2; }
target="${CARGO_TARGET_DIR:-$PWD/target}"
scratch="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 20 s for something to listen on 127.0.0.1:$1, else stops naming what ($2).
wait_port() {
  for _ in $(seq 400); do (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  say "nothing listens on 127.0.0.1:$1 ($2)"
  exit 1
}
# `cargo build --release` of the packages named; `bin` is where their binaries are.
build_release() {
  say "building the release binaries"
  cargo build --release -q "$@"
  bin="$target/release"
}
# Fails loudly when a tool is missing: `need valgrind "apt-get install valgrind"`.
need() {
  command -v "$1" >/dev/null || { say "$1 is required ($2)"; exit 1; }
}
# The bench fake upstream from `$bin` on a free port, in `fake_port`.
start_fake() {
  fake_port="$(free_port)"
  "$bin/fake-upstream" --port "$fake_port" >/dev/null 2>&1 &
  pids+=($!)
}
