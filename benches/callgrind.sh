#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: the figure README's request-path
# numbers come from, the same from run to run on a quiet machine (beside a build, the lane waits
# on slower peers and polls more: run it alone); beside them, the allocations a
# request makes (calls into the allocator, benches/allocations.py). ferrolite (release, one lane) runs
# under valgrind in front of the bench fake upstream; after a warm-up, counting is switched on
# for N requests on one kept-alive connection of each kind:
#   pass-through  OpenAI chat in, OpenAI deployment out (JSON answer)
#   translated    OpenAI chat in, Anthropic deployment out (JSON answer)
#   responses     OpenAI Responses in, Anthropic deployment out (JSON answer), not stored
#                 (`store: false`) and stored (the default: recorded in responses.db)
#   governed      the pass-through with an API key that has a budget (reserved and settled on
#                 every request), an rpm and a parallel limit
#   pass-real     the pass-through with real traffic's headers: the 17 the openai SDK (Python,
#                 3.57) sends, where the other kinds send 5, and OpenAI's 18 on the answer
#                 (the fake's routes under /real), where the fake otherwise sends 3
#   long          the pass-through with an agent's long conversation: a 112 KB body of 181
#                 messages (tool calls and their results) and 20 tools; a tenth as many counted
#   pass-through, governed and long again, to an app whose deployments are all
#                 OpenAI-compatible: there the body's model is not even guessed (in the mixed
#                 app it is, to find whether its group takes the body as sent); either way a
#                 body the text check admits is never read into a value (a budget estimates
#                 its prompt over its text)
#   messages      Anthropic's Messages in, OpenAI deployment out (JSON answer)
#   responses-chat  the Responses request (`store: false`) to an OpenAI-compatible deployment
#                 with chat completions only (`use_chat_completions_api`), through its chat route
#   stream        the pass-through and the translated chat streamed (`stream_options.include_usage`),
#                 the Responses request (`store: false`, to Anthropic and over chat) and the
#                 Messages one streamed: the fake's 200 chunks, 1 ms apart
#
#   benches/callgrind.sh [N]          # default 2000 requests of each kind
#   benches/callgrind.sh --redis [N]  # pass-through and governed only, with --redis-url: the
#                                     # budget held on this instance's Redis leases
#   benches/callgrind.sh --tls [N]    # every upstream behind TLS (the fake over rustls, HTTP/1.1,
#                                     # a CA made for the run trusted through SSL_CERT_FILE): what
#                                     # the HTTPS lane's requests cost, TLS records included
#   KINDS=stream-pass,translated benches/callgrind.sh   # only these kinds (the names below)
#   ATOMICS=1 benches/callgrind.sh    # also the atomic operations a request runs (benches/atomics.py),
#                                     # and the functions that run most of them
#   CACHE=1 benches/callgrind.sh      # also the data cache misses a request makes, first level and
#                                     # last, from callgrind's cache simulation (this host's cache
#                                     # sizes, as valgrind models them): what an allocation costs
#                                     # beyond its instructions. Not with ATOMICS.
#   BIN_DIR=dir benches/callgrind.sh  # ferrolite and fake-upstream from dir (a release build of
#                                     # another commit, to compare) instead of building this checkout
set -euo pipefail
cd "$(dirname "$0")/.."
with_redis=0
with_tls=0
case "${1:-}" in
  --redis) with_redis=1; shift ;;
  --tls) with_tls=1; shift ;;
esac
n="${1:-2000}"
. benches/lib.sh
need valgrind "apt-get install valgrind"
need python3 "apt-get install python3"
redis_args=()
if [ "$with_redis" = 1 ]; then
  need redis-server "apt-get install redis-server"
  redis_port="$(free_port)"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (: >"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.05; done
  redis_args=(--redis-url "redis://127.0.0.1:$redis_port")
fi

if [ -n "${BIN_DIR:-}" ]; then
  bin="$BIN_DIR"
  [ -x "$bin/ferrolite" ] && [ -x "$bin/fake-upstream" ] || { say "BIN_DIR=$bin holds no ferrolite and fake-upstream"; exit 1; }
else
  build_release -p ferrolite -p ferrolite-bench
fi
if [ -n "${CACHE:-}" ] && [ -n "${ATOMICS:-}" ]; then
  say "CACHE and ATOMICS are counted in separate runs"
  exit 1
fi

upstream="http://127.0.0.1"
if [ "$with_tls" = 1 ]; then
  need openssl "apt-get install openssl"
  # A CA and a leaf for localhost (ECDSA P-256, as the HTTPS lane's), kept in the scratch dir.
  (
    cd "$scratch"
    openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
    openssl req -x509 -new -key ca-key.pem -sha256 -days 2 -subj "/CN=ferrolite callgrind CA" -out ca.pem
    openssl ecparam -name prime256v1 -genkey -noout -out leaf-key.pem
    openssl req -new -key leaf-key.pem -subj "/CN=localhost" -out leaf.csr
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -sha256 \
      -extfile leaf.ext -out leaf.pem
  ) 2>/dev/null
  fake_port="$(free_port)"
  "$bin/fake-upstream" --port "$fake_port" --tls-cert "$scratch/leaf.pem" --tls-key "$scratch/leaf-key.pem" \
    --tls-alpn http/1.1 >/dev/null 2>&1 &
  pids+=($!)
  upstream="https://localhost"
  export SSL_CERT_FILE="$scratch/ca.pem"
else
  start_fake
fi
port="$(free_port)"

cat > "$scratch/app.json" <<EOF
{"name": "callgrind", "type": "llm-proxy", "config": {"service_id": "bench", "model_list": [
  {"model_name": "pass", "litellm_params": {"model": "openai/gpt-4o", "api_base": "$upstream:$fake_port/v1", "api_key": "sk-bench-upstream"}},
  {"model_name": "translated", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": "$upstream:$fake_port", "api_key": "sk-bench-upstream"}}
]}}
EOF
# The same pass-through deployment alone in an app: every deployment takes bodies as sent, so
# the body's model need not be guessed to know it (the lanes marked "OpenAI-only app").
cat > "$scratch/app-openai.json" <<EOF
{"name": "callgrind-openai", "type": "llm-proxy", "config": {"service_id": "bench-openai", "model_list": [
  {"model_name": "pass", "litellm_params": {"model": "openai/gpt-4o", "api_base": "$upstream:$fake_port/v1", "api_key": "sk-bench-upstream"}}
]}}
EOF
# An OpenAI-compatible server with chat completions only (vLLM, say): the Responses API reaches
# it through its chat translation, and its chunks are read back.
cat > "$scratch/app-chat.json" <<EOF
{"name": "callgrind-chat", "type": "llm-proxy", "config": {"service_id": "bench-chat", "model_list": [
  {"model_name": "pass", "litellm_params": {"model": "openai/gpt-4o", "api_base": "$upstream:$fake_port/v1", "api_key": "sk-bench-upstream", "use_chat_completions_api": true}}
]}}
EOF
cat > "$scratch/app-real.json" <<EOF
{"name": "callgrind-real", "type": "llm-proxy", "config": {"service_id": "bench-real", "model_list": [
  {"model_name": "pass", "litellm_params": {"model": "openai/gpt-4o", "api_base": "$upstream:$fake_port/real/v1", "api_key": "sk-bench-upstream"}}
]}}
EOF
mkdir -p "$scratch/data"
token="$("$bin/ferrolite" token --workspace default --data-dir "$scratch/data")"
dump_instr=()
if [ -n "${ATOMICS:-}" ]; then
  need objdump "apt-get install binutils"
  dump_instr=(--dump-instr=yes)
fi
if [ -n "${CACHE:-}" ]; then
  dump_instr=(--cache-sim=yes)
fi
valgrind --tool=callgrind "${dump_instr[@]}" --instr-atstart=no --callgrind-out-file="$scratch/cg.%p" \
  "$bin/ferrolite" serve --port "$port" --io-threads 1 --data-dir "$scratch/data" --config "$scratch/app.json" --config "$scratch/app-openai.json" \
  --config "$scratch/app-chat.json" --config "$scratch/app-real.json" \
  "${redis_args[@]}" >"$scratch/serve.log" 2>&1 &
pids+=($!)
serve_pid=$!

python3 - "$port" "$token" "$n" "$serve_pid" "$scratch" "$with_redis" "$with_tls" "$bin/ferrolite" <<'EOF'
import glob, http.client, json, os, subprocess, sys, time
sys.path.insert(0, "benches")
import allocations, atomics
from conversation import long_conversation
port, token, n, pid, scratch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
with_redis = sys.argv[6] == "1"
with_tls = sys.argv[7] == "1"
# With ATOMICS set: the locked instructions of ferrolite and of libc (its futexes and
# cancellation points), by real path.
locked = {}
if os.environ.get("ATOMICS"):
    for path in (sys.argv[8], "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        if os.path.exists(path):
            locked[os.path.realpath(path)] = atomics.locked_addresses(path)
headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
chat = "/default/apps/bench/v1/chat/completions"
responses = "/default/apps/bench/v1/responses"
messages = "/default/apps/bench/v1/messages"
# What the openai SDK (Python, 3.57.0) sends beside the body (http.client adds host and
# content-length), as a capture of its request shows them: kind pass-real.
sdk_headers = {
    "accept-encoding": "gzip, deflate",
    "connection": "keep-alive",
    "authorization": f"Bearer {token}",
    "accept": "application/json",
    "content-type": "application/json",
    "user-agent": "OpenAI/Python 3.57.0",
    "x-stainless-lang": "python",
    "x-stainless-package-version": "3.57.0",
    "x-stainless-os": "Linux",
    "x-stainless-arch": "x64",
    "x-stainless-runtime": "CPython",
    "x-stainless-runtime-version": "3.11.7",
    "x-stainless-async": "false",
    "x-stainless-retry-count": "0",
    "x-stainless-read-timeout": "600",
}

def connect():
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/default/apps/bench/health/readiness", headers=headers)
            if c.getresponse().read() is not None:
                return c
        except OSError:
            time.sleep(0.1)
    sys.exit("ferrolite did not start under valgrind")

def request(kind):
    """The route and body of one request of `kind`."""
    if kind.endswith("-openai"):
        path, body = request(kind.removesuffix("-openai"))
        return path.replace("/apps/bench/", "/apps/bench-openai/"), body
    if kind.endswith("-chat"):
        path, body = request(kind.removesuffix("-chat"))
        return path.replace("/apps/bench/", "/apps/bench-chat/"), {**body, "model": "pass"}
    if kind.startswith("stream-"):
        path, body = request(kind.removeprefix("stream-"))
        if path in (responses, messages):
            return path, {**body, "stream": True}
        return path, {**body, "stream": True, "stream_options": {"include_usage": True}}
    if kind == "long":
        return chat, long_conversation()
    if kind == "pass-real":
        path, body = request("pass")
        return path.replace("/apps/bench/", "/apps/bench-real/"), body
    if kind in ("pass", "governed"):
        return chat, {"model": "pass", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}
    if kind == "messages":
        return messages, {"model": "pass", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}
    if kind == "translated":
        return chat, {"model": "translated", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}
    body = {"model": "translated", "input": "Hello!", "max_output_tokens": 16}
    if kind == "responses":
        body["store"] = False
    return responses, body

governed_key = None

def run(conn, kind, count):
    path, body = request(kind)
    body = json.dumps(body)
    model = kind
    sent = {**headers, "authorization": f"Bearer {governed_key}"} if kind.startswith("governed") else headers
    if kind == "pass-real":
        sent = sdk_headers
    for _ in range(count):
        conn.request("POST", path, body=body, headers=sent)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            sys.exit(f"{model}: {r.status} {data[:300]!r}")

def control(*args):
    subprocess.run(["callgrind_control", *args, pid], check=True, stdout=subprocess.DEVNULL)

def counted(model):
    conn = connect()
    warm, count = (30, max(n // 10, 1)) if model.startswith("long") else (300, n)
    run(conn, model, warm)  # warm: connections, caches, metric handles
    # The spend log's writer commits whole batches at once and the rest on its one-second tick:
    # the warm-up's records are written before counting starts, and the counted requests' own
    # before it stops, so the count holds exactly their rows.
    time.sleep(1.5)
    control("--zero")
    control("--instr=on")
    run(conn, model, count)
    time.sleep(1.5)
    control("--instr=off")
    before = set(glob.glob(f"{scratch}/cg.*"))
    control("--dump")
    time.sleep(0.5)
    dumps = sorted(set(glob.glob(f"{scratch}/cg.*")) - before) or sorted(glob.glob(f"{scratch}/cg.*"))
    events, totals = ["Ir"], [0]
    for line in open(dumps[-1]):
        if line.startswith("events:"):
            events = line.split()[1:]
        if line.startswith("summary:") or line.startswith("totals:"):
            totals = [int(v) for v in line.split()[1:]]
    by_event = dict(zip(events, totals))
    conn.close()
    allocated = sum(allocations.count(dumps[-1]).values())
    by_function = atomics.count(dumps[-1], locked) if locked else None
    # With the cache simulated: data misses at the first level (reads and writes) and the last.
    misses = None
    if "D1mr" in by_event:
        first = by_event["D1mr"] + by_event["D1mw"]
        last = by_event["DLmr"] + by_event["DLmw"]
        misses = (first / count, last / count)
    return by_event["Ir"] / count, allocated / count, by_function, count, misses

conn = connect()
settings = {"max_budget": 1e9, "budget_duration": "30d", "rpm": 10**9, "max_parallel": 10**5}
conn.request("POST", "/default/services/server-apps/create_key", body=json.dumps(settings), headers=headers)
governed_key = json.loads(conn.getresponse().read())["key"]
conn.close()

kinds = (
    ("pass-through", "pass"),
    ("governed (pass-through with a budgeted, rate-limited key)", "governed"),
    ("translated (OpenAI -> Anthropic)", "translated"),
    ("responses (Responses -> Anthropic, store: false)", "responses"),
    ("responses stored (Responses -> Anthropic, store: true)", "responses-stored"),
    ("messages (Anthropic's Messages -> OpenAI)", "messages"),
    ("responses over chat (Responses -> an OpenAI-compatible server's chat, store: false)", "responses-chat"),
    ("long (the pass-through with a 112 KB conversation)", "long"),
    ("pass-through, OpenAI-only app", "pass-openai"),
    ("governed, OpenAI-only app", "governed-openai"),
    ("long, OpenAI-only app", "long-openai"),
    ("pass-through with real headers (the openai SDK's 17 in, OpenAI's 18 more out)", "pass-real"),
    ("stream, pass-through (the fake's 200 chunks 1 ms apart, usage asked for)", "stream-pass"),
    ("stream, translated (Anthropic's events for 200 chunks -> OpenAI chunks)", "stream-translated"),
    ("stream, responses (Anthropic's events for 200 chunks -> Responses events, store: false)", "stream-responses"),
    ("stream, messages (OpenAI's 200 chunks -> Anthropic's events)", "stream-messages"),
    ("stream, responses over chat (OpenAI's 200 chunks -> Responses events, store: false)", "stream-responses-chat"),
)
if with_redis:
    kinds = tuple((f"{label} with Redis", kind) for label, kind in kinds[:2])
if with_tls:
    kinds = tuple((f"{label}, HTTPS upstream", kind) for label, kind in kinds)
only = [k for k in os.environ.get("KINDS", "").split(",") if k]
unknown = set(only) - {kind for _, kind in kinds}
if unknown:
    sys.exit(f"KINDS names no such kind: {', '.join(sorted(unknown))} (kinds: {', '.join(k for _, k in kinds)})")
kinds = tuple((label, kind) for label, kind in kinds if not only or kind in only)
for label, kind in kinds:
    per_request, allocated, by_function, count, misses = counted(kind)
    if misses is not None:
        print(f"{label}: {per_request:,.0f} instructions, {allocated:,.1f} allocations, "
              f"{misses[0]:,.0f} first-level and {misses[1]:,.1f} last-level data cache misses per request")
        continue
    if by_function is None:
        print(f"{label}: {per_request:,.0f} instructions and {allocated:,.1f} allocations per request")
        continue
    print(f"{label}: {per_request:,.0f} instructions, {allocated:,.1f} allocations and "
          f"{sum(by_function.values()) / count:,.1f} atomic operations per request")
    for name, ops in by_function.most_common(12):
        print(f"    {ops / count:6.2f}  {name}")
EOF
