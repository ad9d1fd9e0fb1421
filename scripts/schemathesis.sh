#!/usr/bin/env bash
# Property-based checks of the whole HTTP surface with Schemathesis (from PyPI): it reads
# /openapi.json of a running ferrolite (the embedded demo app of mock models) and sends
# generated requests to every operation, checking that no answer is a 5xx and that every answer
# conforms to its documented schema. Bounded: --max-examples per operation (default 20).
# Usage: scripts/schemathesis.sh [extra schemathesis args]
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${FERROLITE_SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
cargo build --quiet
data="$(mktemp -d)"
port="${FERROLITE_SCHEMATHESIS_PORT:-9631}"
target/debug/ferrolite serve --port "$port" --data-dir "$data" > "$data/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q '^  token:' "$data/serve.log" 2>/dev/null && break; sleep 0.1; done
token="$(awk '/^  token:/ {print $2}' "$data/serve.log")"
[ -n "$token" ] || { echo "schemathesis.sh: ferrolite did not start:" >&2; cat "$data/serve.log" >&2; exit 1; }

"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --url "http://127.0.0.1:$port/default/apps/demo" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples 20 --request-timeout 10 "$@"
