#!/usr/bin/env bash
# The training run of scripts/build-pgo.sh: FERROLITE serves scripts/pgo-train.py's traffic
# against FAKE_UPSTREAM (the bench fake) over plain HTTP and over TLS (a CA made for the run with
# openssl, trusted through SSL_CERT_FILE), then stops the ordinary way (SIGTERM), as an
# instrumented build writes its profile only when it exits. Fails when any answer's status is
# not the expected one or the server does not stop cleanly. The suite runs it with the debug
# build (tests/it/pgo_training.rs), so the training traffic cannot go stale unnoticed.
#
#   scripts/pgo-serve-train.sh FERROLITE FAKE_UPSTREAM    # PGO_TRAIN_SECONDS per kind (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
script_name=scripts/pgo-serve-train.sh
. benches/lib.sh
[ $# = 2 ] || { say "usage: scripts/pgo-serve-train.sh FERROLITE FAKE_UPSTREAM"; exit 2; }
ferrolite="$1"
fake_bin="$2"
need python3 "apt-get install python3"
need openssl "apt-get install openssl"
[ -x "$ferrolite" ] || { say "no ferrolite binary at $ferrolite"; exit 1; }
[ -x "$fake_bin" ] || { say "no fake-upstream binary at $fake_bin (cargo build -p ferrolite-bench)"; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=ferrolite pgo CA" \
  -keyout "$scratch/ca.key" -out "$scratch/ca.pem" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$scratch/server.key" -out "$scratch/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$scratch/ext.cnf"
openssl x509 -req -in "$scratch/server.csr" -CA "$scratch/ca.pem" -CAkey "$scratch/ca.key" -CAcreateserial \
  -days 2 -extfile "$scratch/ext.cnf" -out "$scratch/server.pem" 2>/dev/null

plain_port="$(free_port)"
tls_port="$(free_port)"
"$fake_bin" --port "$plain_port" --chunks 20 --gap-ms 0 >"$scratch/fake.log" 2>&1 &
pids+=($!)
"$fake_bin" --port "$tls_port" --chunks 20 --gap-ms 0 --tls-cert "$scratch/server.pem" --tls-key "$scratch/server.key" \
  --tls-alpn http/1.1 >"$scratch/fake-tls.log" 2>&1 &
pids+=($!)
wait_port "$plain_port" "the fake upstream"
wait_port "$tls_port" "the fake upstream over TLS"

cat >"$scratch/app.json" <<EOF
{"name": "pgo", "type": "llm-proxy", "config": {"service_id": "pgo", "model_list": [
  {"model_name": "pass", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:$plain_port/v1", "api_key": "sk-pgo"}},
  {"model_name": "tls", "litellm_params": {"model": "openai/gpt-4o", "api_base": "https://127.0.0.1:$tls_port/v1", "api_key": "sk-pgo"}},
  {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": "http://127.0.0.1:$plain_port", "api_key": "sk-pgo"}}
]}}
EOF
mkdir -p "$scratch/data"
token="$("$ferrolite" token --workspace default --data-dir "$scratch/data")"
port="$(free_port)"
SSL_CERT_FILE="$scratch/ca.pem" "$ferrolite" serve --port "$port" --data-dir "$scratch/data" \
  --config "$scratch/app.json" >"$scratch/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
wait_port "$port" "ferrolite"
python3 scripts/pgo-train.py "$port" "$token" "${PGO_TRAIN_SECONDS:-2}" || { tail -n 20 "$scratch/serve.log" >&2; exit 1; }
kill -TERM "$serve_pid"
wait "$serve_pid" || { say "ferrolite did not stop cleanly"; tail -n 20 "$scratch/serve.log" >&2; exit 1; }
say "trained"
