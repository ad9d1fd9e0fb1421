#!/usr/bin/env bash
# ferrolite's test command (README: "run the tests"). Installs what the tests need on a fresh
# machine, then runs every test. A missing prerequisite is installed here or fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "scripts/test.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "scripts/test.sh: python3 is required for the SDK tests" >&2; exit 1; }

# Debian's redis-server, for the multi-instance tests.
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing redis-server" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "scripts/test.sh: redis-server is required (apt-get install redis-server)" >&2
    exit 1
  fi
fi

# Debian's postgresql, for the --database-url tests (tests/it/postgres_store.rs): they run its
# initdb, pg_ctl and postgres from FERROLITE_PG_BIN (as the postgres user when run as root).
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "${FERROLITE_PG_BIN:-}" ] && [ -z "$(pg_bin)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing postgresql" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "scripts/test.sh: postgresql is required (apt-get install postgresql)" >&2
    exit 1
  fi
fi
export FERROLITE_PG_BIN="${FERROLITE_PG_BIN:-$(pg_bin)}"
[ -x "$FERROLITE_PG_BIN/initdb" ] || { echo "scripts/test.sh: no initdb in $FERROLITE_PG_BIN" >&2; exit 1; }

# Debian's chromium, node and npm, for the web console's browser test (tests/ui/).
apt_missing=()
[ -x "${FERROLITE_CHROMIUM:-/usr/bin/chromium}" ] || apt_missing+=(chromium)
command -v node >/dev/null || apt_missing+=(nodejs)
command -v npm >/dev/null || apt_missing+=(npm)
# openssl makes the CA of the profile-guided build's training run (tests/it/pgo_training.rs).
command -v openssl >/dev/null || apt_missing+=(openssl)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing ${apt_missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: ${apt_missing[*]} required for the console and PGO training tests (apt-get install ${apt_missing[*]})" >&2
    exit 1
  fi
fi
export FERROLITE_CHROMIUM="${FERROLITE_CHROMIUM:-/usr/bin/chromium}"
[ -x "$FERROLITE_CHROMIUM" ] || { echo "scripts/test.sh: no Chromium at $FERROLITE_CHROMIUM" >&2; exit 1; }
# playwright-core, pinned by tests/ui/package-lock.json; it drives the Chromium above.
if [ ! -d tests/ui/node_modules/playwright-core ]; then
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error) || { echo "scripts/test.sh: npm ci in tests/ui failed" >&2; exit 1; }
fi
# The Node clients (the Vercel AI SDK, the Codex CLI), pinned by tests/node/package-lock.json.
if [ ! -d tests/node/node_modules/ai ] || [ ! -d tests/node/node_modules/@ai-sdk/openai ] \
  || ! tests/node/node_modules/.bin/codex --version >/dev/null 2>&1; then
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) || { echo "scripts/test.sh: npm ci in tests/node failed" >&2; exit 1; }
fi
# @openai/codex runs a native binary from an optional per-platform package (@openai/codex-linux-x64
# here): npm skips it silently when it does not fit, so check that Codex really starts.
tests/node/node_modules/.bin/codex --version >/dev/null \
  || { echo "scripts/test.sh: the Codex CLI does not run: no platform package of @openai/codex for $(uname -sm)?" >&2; exit 1; }

# The real openai / anthropic Python SDKs and the OpenAI Agents SDK, pinned, in a virtualenv of their own.
venv="${FERROLITE_VENV:-$PWD/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "scripts/test.sh: cannot create a virtualenv (on Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export FERROLITE_PYTHON="$venv/bin/python"

# A real Hypha server (and moto, its S3 stand-in) for the worker tests, in a virtualenv of its
# own: its pins conflict with the client venv's packages.
hypha_venv="${FERROLITE_HYPHA_VENV:-$(dirname "$venv")/hypha-venv}"
if [ ! -x "$hypha_venv/bin/python" ]; then
  python3 -m venv "$hypha_venv" || { echo "scripts/test.sh: cannot create the Hypha virtualenv $hypha_venv" >&2; exit 1; }
fi
"$hypha_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/hypha-server-requirements.txt \
  || { echo "scripts/test.sh: cannot install the pinned Hypha server into $hypha_venv" >&2; exit 1; }
# Importing hypha.server makes its store, which opens a temporary SQLite file: in a directory of
# the check's own, removed after it, not left in /tmp.
import_tmp="$(mktemp -d)"
TMPDIR="$import_tmp" "$hypha_venv/bin/python" -c "import hypha.server, moto.server" \
  || { rm -rf "$import_tmp"; echo "scripts/test.sh: the Hypha server in $hypha_venv does not import" >&2; exit 1; }
rm -rf "$import_tmp"
export FERROLITE_HYPHA_PYTHON="$hypha_venv/bin/python"

# The bench fake upstream, which tests/it/pgo_training.rs runs beside the debug ferrolite: cargo
# test builds another package's binaries only as test harnesses.
cargo build --quiet -p ferrolite-bench --bin fake-upstream

# cargo prints one "test result" line per target; the last may be a target with no tests, so
# end with the totals.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "ferrolite: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
