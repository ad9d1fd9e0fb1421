#!/usr/bin/env bash
# ferrolite's benchmark (issue 6): installs what the harness needs, builds the release binaries,
# and runs the driver, which writes benches/results/latest.md and latest.json.
#
#   benches/run.sh                          # full run (10 s per measurement, 5-minute soak, litellm, Portkey)
#   benches/run.sh --quick --skip-litellm   # a few minutes, without litellm
#   benches/run.sh --skip-portkey           # without Portkey's gateway (node and npm not needed)
#   benches/run.sh --only-cross-check       # only the plain HTTP cross-check (nginx x2, ferrolite; oha and wrk)
#   benches/run.sh --pgo --quick            # ferrolite built by scripts/build-pgo.sh (profile-guided)
#
# Every argument is passed to the driver (target/release/bench --help lists them). Every process
# the run starts is stopped when it ends, fails or is interrupted. All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

skip_litellm=0
skip_portkey=0
skip_cross_check=0
pgo=0
for arg in "$@"; do
  case "$arg" in
    --pgo) pgo=1 ;;
    --skip-litellm) skip_litellm=1 ;;
    --skip-portkey) skip_portkey=1 ;;
    --skip-cross-check) skip_cross_check=1 ;;
    # The cross-check alone measures neither litellm nor Portkey: nothing to install for them.
    --only-cross-check) skip_litellm=1; skip_portkey=1 ;;
    -h|--help) ;;
  esac
done

say() { echo "benches/run.sh: $*" >&2; }
command -v cargo >/dev/null || { say "cargo is required (https://rustup.rs)"; exit 1; }
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# The load tool, from crates.io.
if ! command -v oha >/dev/null; then
  say "installing oha (cargo install oha --locked)"
  cargo install oha --locked
fi

# A tool from Debian's packages: its path on stdout, installed with apt-get when missing and
# run as root; otherwise the run stops (set -e: the failed assignment), saying what for ($3) and
# what else to do ($4).
debian_tool() {
  local name="$1" fallback="$2" why="$3" otherwise="$4" found
  found="$(command -v "$name" || true)"
  [ -z "$found" ] && [ -x "$fallback" ] && found="$fallback"
  if [ -z "$found" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing $name (apt-get install $name)"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$name" >/dev/null
      found="$(command -v "$name" || echo "$fallback")"
    else
      say "$name is required${why:+ $why} (as root: apt-get install -y $name)$otherwise"
      exit 1
    fi
  fi
  echo "$found"
}

# nginx: the plain proxy_pass hop ferrolite is compared with.
nginx_bin="$(debian_tool nginx /usr/sbin/nginx "" "")"
# wrk: the second load tool of the plain HTTP cross-check.
wrk_bin=""
if [ "$skip_cross_check" = 0 ]; then
  wrk_bin="$(debian_tool wrk /usr/bin/wrk "for the plain HTTP cross-check" ", or pass --skip-cross-check")"
fi

# litellm's proxy, pinned, in a virtualenv of its own (benches/.venv).
venv="$PWD/benches/.venv"
litellm_version="1.80.0"
if [ "$skip_litellm" = 0 ]; then
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$litellm_version')" 2>/dev/null \
     || [ ! -x "$venv/bin/litellm" ]; then
    command -v python3 >/dev/null || { say "python3 is required for litellm (or pass --skip-litellm)"; exit 1; }
    say "installing litellm[proxy]==$litellm_version into $venv (takes a few minutes)"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || { say "cannot create a virtualenv (on Debian: apt-get install python3-venv)"; exit 1; }
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "litellm[proxy]==$litellm_version"
  fi
fi

# Portkey's open-source gateway, pinned in benches/portkey/package.json and package-lock.json,
# installed there with `npm ci` (node_modules is not committed) and run with this machine's node.
portkey_dir="$PWD/benches/portkey"
portkey_version="1.15.2"
node_bin="$(command -v node || echo node)"
if [ "$skip_portkey" = 0 ]; then
  command -v node >/dev/null && command -v npm >/dev/null \
    || { say "node and npm are required for Portkey's gateway (as root: apt-get install -y nodejs npm), or pass --skip-portkey"; exit 1; }
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 18) ? 0 : 1)' \
    || { say "node $(node --version) is too old for Portkey's gateway (18.18 or newer), or pass --skip-portkey"; exit 1; }
  stamp="$portkey_dir/node_modules/.ferrolite-bench-lock"
  installed="$(node -p "require('$portkey_dir/node_modules/@portkey-ai/gateway/package.json').version" 2>/dev/null || true)"
  if [ "$installed" != "$portkey_version" ] || ! cmp -s "$portkey_dir/package-lock.json" "$stamp"; then
    say "installing @portkey-ai/gateway@$portkey_version into $portkey_dir/node_modules (npm ci)"
    # No install scripts: the package's only one (patch-package) has no patches to apply outside its repo.
    (cd "$portkey_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    installed="$(node -p "require('$portkey_dir/node_modules/@portkey-ai/gateway/package.json').version")"
    [ "$installed" = "$portkey_version" ] || { say "npm ci installed @portkey-ai/gateway $installed, not $portkey_version"; exit 1; }
    cp "$portkey_dir/package-lock.json" "$stamp"
  fi
fi

say "building the release binaries"
cargo build --release -p ferrolite -p ferrolite-bench
# The binaries live wherever cargo put them (CARGO_TARGET_DIR may point outside the clone).
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
pgo_bin_dir=""
if [ "$pgo" = 1 ]; then
  # The driver finds every binary in one folder: the release build's, with the profile-guided
  # ferrolite in place of the plain one.
  say "building the profile-guided ferrolite (scripts/build-pgo.sh)"
  pgo_ferrolite="$(scripts/build-pgo.sh | tail -n 1)"
  pgo_bin_dir="$(mktemp -d)"
  for file in "$bin"/*; do
    [ -f "$file" ] && [ -x "$file" ] && ln -s "$file" "$pgo_bin_dir/"
  done
  ln -sf "$pgo_ferrolite" "$pgo_bin_dir/ferrolite"
  bin="$pgo_bin_dir"
fi

# The driver appends the id of every process group it starts to this file; whatever happens, they
# are stopped here too (the driver stops them itself on a normal end, an error or a signal).
pidfile="$(mktemp)"
driver=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$driver" 2>/dev/null || true
  fi
  while read -r pid; do
    [ -n "$pid" ] || continue
    kill -TERM -- "-$pid" 2>/dev/null || true
  done < "$pidfile"
  sleep 0.5
  while read -r pid; do
    [ -n "$pid" ] || continue
    kill -KILL -- "-$pid" 2>/dev/null || true
  done < "$pidfile"
  rm -f "$pidfile"
  [ -n "$pgo_bin_dir" ] && rm -rf "$pgo_bin_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

BENCH_PIDFILE="$pidfile" "$bin/bench" --bin-dir "$bin" --nginx "$nginx_bin" --oha "$(command -v oha)" \
  --wrk "${wrk_bin:-wrk}" --venv "$venv" --portkey-dir "$portkey_dir" --node "$node_bin" "$@" &
driver=$!
wait "$driver"
