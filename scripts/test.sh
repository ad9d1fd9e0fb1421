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

# The real openai / anthropic Python SDKs, pinned, in a virtualenv of their own.
venv="${FERROLITE_VENV:-$PWD/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "scripts/test.sh: cannot create a virtualenv (on Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
export FERROLITE_PYTHON="$venv/bin/python"

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
