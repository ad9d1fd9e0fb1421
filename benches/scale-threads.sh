#!/usr/bin/env bash
# CPU per 1,000 requests by thread group with 1 and with 100,000 deployments in one model group:
# where a large group's cost goes (benches/results/scale-threads.md). One instance serves two
# apps, `deploy-1` and `deploy-100000`, every deployment calling the bench fake upstream; wrk
# (one thread, 32 connections) loads one app per round, and each round prints the CPU seconds per
# 1,000 requests of the lanes (the request path), the metrics upkeep thread, and the blocking
# pool (the spend flush and the spend log's writer), read from /proc/PID/task/*/stat, and the
# instance's RSS after the round.
#
#   benches/scale-threads.sh [ROUNDS_AT_100000]     # default 4 rounds of 8 s, then 1 again
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-4}"
. benches/lib.sh
need wrk "apt-get install wrk"
need python3 "apt-get install python3"

build_release -p ferrolite -p ferrolite-bench

start_fake
port="$(free_port)"

python3 - "$scratch" "$fake_port" <<'EOF'
import json, sys
scratch, fake = sys.argv[1], sys.argv[2]
deployment = {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o",
              "api_base": f"http://127.0.0.1:{fake}/v1", "api_key": "sk-bench-upstream"}}
for n in (1, 100_000):
    app = {"name": f"deploy-{n}", "type": "llm-proxy", "version": "1.0.0",
           "config": {"service_id": f"deploy-{n}", "model_list": [deployment] * n}}
    json.dump(app, open(f"{scratch}/deploy-{n}.json", "w"))
EOF
mkdir -p "$scratch/data"
token="$("$bin/ferrolite" token --workspace default --data-dir "$scratch/data")"
"$bin/ferrolite" serve --port "$port" --data-dir "$scratch/data" \
  --config "$scratch/deploy-1.json" --config "$scratch/deploy-100000.json" >"$scratch/serve.log" 2>&1 &
pids+=($!)
serve_pid=$!
python3 - "$port" "$token" <<'EOF' || { say "ferrolite did not become ready (its log: $scratch/serve.log)"; KEEP=1; exit 1; }
import http.client, sys, time
for _ in range(120):
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
        c.request("GET", "/default/apps/deploy-100000/health/readiness", headers={"authorization": f"Bearer {sys.argv[2]}"})
        if c.getresponse().status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
EOF

cat >"$scratch/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"model": "gpt", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
EOF

# CPU ticks per thread group: lanes (and the main thread), metrics upkeep, blocking pool.
ticks() {
  for task in /proc/"$serve_pid"/task/*; do
    comm="$(cat "$task/comm")"
    case "$comm" in
      ferrolite*) group=lanes ;;
      metrics-upkeep) group=upkeep ;;
      *) group=blocking ;;
    esac
    echo "$group $(awk '{print $14 + $15}' "$task/stat")"
  done | awk '{t[$1] += $2} END {printf "%d %d %d\n", t["lanes"], t["upkeep"], t["blocking"]}'
}

hz="$(getconf CLK_TCK)"
apps=(1)
for _ in $(seq 1 "$rounds"); do apps+=(100000); done
apps+=(1)
echo "| deployments | requests | lanes | metrics upkeep | blocking pool | all | RSS after |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for n in "${apps[@]}"; do
  read -r l0 u0 b0 < <(ticks)
  requests="$(wrk -t1 -c32 -d8s -s "$scratch/post.lua" "http://127.0.0.1:$port/default/apps/deploy-$n/v1/chat/completions" \
    | awk '/requests in/ {print $1}')"
  sleep 1  # the spend flush's tick for this round's requests
  read -r l1 u1 b1 < <(ticks)
  rss_kb="$(awk '/^VmRSS/ {print $2}' /proc/"$serve_pid"/status)"
  python3 -c "
n, r, hz = $n, $requests, $hz
l, u, b = ($l1 - $l0) / hz, ($u1 - $u0) / hz, ($b1 - $b0) / hz
per = lambda s: f'{s / r * 1000:.4f}'
print(f'| {n:,} | {r:,} | {per(l)} | {per(u)} | {per(b)} | {per(l + u + b)} | {$rss_kb / 1024:.0f} MB |')"
done
