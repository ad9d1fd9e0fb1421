#!/usr/bin/env bash
# What the Hypha path costs: one llm-proxy app run by `ferrolite serve --hypha-server` (release)
# as the worker of a real Hypha server (the pinned hypha in its own venv, with moto for S3, as
# scripts/test.sh installs them), called N times back to back on one connection through Hypha's
# URL and through ferrolite's own URL with the same Hypha token; then M concurrent streams of
# chunks through each. Prints a table (req/s, p50, p90).
#
#   benches/hypha.sh [N]      # default 300 requests per URL
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-300}"
. benches/lib.sh
cache="${FERROLITE_CI_CACHE:-$HOME/.cache/ferrolite-ci}"
hypha_python="${FERROLITE_HYPHA_PYTHON:-$cache/hypha-venv/bin/python}"
client_python="${FERROLITE_PYTHON:-$cache/venv/bin/python}"
[ -x "$hypha_python" ] || { say "no hypha venv at $hypha_python: run scripts/test.sh once"; exit 1; }
[ -x "$client_python" ] || { say "no client venv at $client_python: run scripts/test.sh once"; exit 1; }
build_release -p ferrolite

s3_port="$(free_port)"; hypha_port="$(free_port)"; port="$(free_port)"
root="$(python3 -c "import secrets; print(secrets.token_urlsafe(32))")"  # Hypha refuses simple ones
secret="benchmark-hypha-jwt-secret-0123456789"
"$(dirname "$hypha_python")/moto_server" -H 127.0.0.1 -p "$s3_port" >"$scratch/moto.log" 2>&1 &
pids+=($!)
HYPHA_JWT_SECRET="$secret" "$hypha_python" -m hypha.server --host 127.0.0.1 --port "$hypha_port" \
  --enable-server-apps --enable-s3 --endpoint-url="http://127.0.0.1:$s3_port" \
  --endpoint-url-public="http://127.0.0.1:$s3_port" --access-key-id=testing --secret-access-key=testing \
  --region-name=us-east-1 --root-token="$root" >"$scratch/hypha.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$hypha_port/health/liveness" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$hypha_port/health/liveness" >/dev/null || { say "hypha did not start:"; tail -20 "$scratch/hypha.log" >&2; exit 1; }

export HYPHA_SERVER_URL="http://127.0.0.1:$hypha_port" HYPHA_ROOT_TOKEN="$root" NATIVE_URL="http://127.0.0.1:$port"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
"$client_python" - "$n" "$scratch" "$bin/ferrolite" "$port" "$secret" <<'PY'
import asyncio, json, os, statistics, subprocess, sys, time, urllib.request
from hypha_rpc import connect_to_server

n, scratch, binary, port, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
SERVER, NATIVE = os.environ["HYPHA_SERVER_URL"], os.environ["NATIVE_URL"]
APP = {"name": "Bench Proxy", "type": "llm-proxy", "config": {"service_id": "bench",
       "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "Hello from the benchmark"}}]}}
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "Hello!"}]}).encode()

def timed(base, token, count):
    took = []
    for _ in range(count):
        request = urllib.request.Request(base + "/team-b/apps/bench/v1/chat/completions", data=BODY, method="POST",
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as r:
            r.read()
        took.append(time.perf_counter() - start)
    took.sort()
    return count / sum(took), took[len(took) // 2] * 1000, took[int(len(took) * 0.9)] * 1000

async def main():
    root = await connect_to_server({"server_url": SERVER, "token": os.environ["HYPHA_ROOT_TOKEN"]})
    await root.create_workspace({"name": "team-b", "description": "bench", "persistent": True}, overwrite=True)
    user = await root.generate_token({"workspace": "team-b", "permission": "admin", "expires_in": 3600})
    worker = await root.generate_token({"workspace": "public", "permission": "admin", "expires_in": 3600})
    serve = subprocess.Popen([binary, "serve", "--port", port, "--data-dir", f"{scratch}/data", "--hypha-server", SERVER,
                              "--hypha-token", worker, "--hypha-jwt-secret", secret],
                             stdout=open(f"{scratch}/serve.log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not any(w["id"].endswith(":ferrolite-worker") for w in await root.list_services({"workspace": "public", "type": "server-app-worker"})):
            assert time.monotonic() < deadline, open(f"{scratch}/serve.log").read()
            await asyncio.sleep(0.1)
        api = await connect_to_server({"server_url": SERVER, "token": user, "workspace": "team-b"})
        controller = await api.get_service("public/server-apps")
        app = await controller.install(manifest=APP, overwrite=True)
        await controller.start(app["id"], wait_for_service="bench")
        timed(SERVER, user, 20); timed(NATIVE, user, 20)  # warm
        rows = [("Hypha's URL", *timed(SERVER, user, n)), ("ferrolite's URL (Hypha token)", *timed(NATIVE, user, n))]
        print(f"| path ({n} chats, one connection) | req/s | p50 ms | p90 ms |")
        print("| --- | --- | --- | --- |")
        for name, rps, p50, p90 in rows:
            print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p90:.2f} |")
    finally:
        serve.terminate(); serve.wait()

asyncio.run(main())
PY
