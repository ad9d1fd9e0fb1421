"""The traffic a profile-guided build of ferrolite is trained on (`scripts/build-pgo.sh`).

Drives a running `ferrolite serve` whose app (`pgo`) has the deployments build-pgo.sh writes:
`pass` (OpenAI-compatible, plain HTTP), `tls` (the same behind TLS), `claude` (Anthropic, so
requests are translated). Each kind of request goes over several kept-alive connections at once,
as a gateway's clients send them: JSON chat and streams passed through and translated,
Responses (stored and not), a budgeted key's requests, an agent's long conversation, an
Anthropic client's /v1/messages, the model list and a few errors. Every answer's status is
checked, so a profile is never taken from a run that served errors instead of answers.

    python3 scripts/pgo-train.py PORT TOKEN [SECONDS_PER_KIND]
"""

import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches"))
from conversation import long_conversation  # noqa: E402

port, token = int(sys.argv[1]), sys.argv[2]
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
base = "/default/apps/pgo"
connections = 8


def chat(model, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16, **extra}


# (name, method, path, body, expected status, auth header or None for the token)
KINDS = [
    ("chat", "POST", "/v1/chat/completions", chat("pass"), 200, None),
    ("chat over TLS", "POST", "/v1/chat/completions", chat("tls"), 200, None),
    ("chat stream", "POST", "/v1/chat/completions", chat("pass", stream=True), 200, None),
    ("chat stream over TLS", "POST", "/v1/chat/completions", chat("tls", stream=True), 200, None),
    ("translated", "POST", "/v1/chat/completions", chat("claude"), 200, None),
    ("translated stream", "POST", "/v1/chat/completions",
     chat("claude", stream=True, stream_options={"include_usage": True}), 200, None),
    ("responses", "POST", "/v1/responses", {"model": "claude", "input": "Hello!", "store": False}, 200, None),
    ("responses stored", "POST", "/v1/responses", {"model": "claude", "input": "Hello!"}, 200, None),
    ("responses stream", "POST", "/v1/responses", {"model": "claude", "input": "Hello!", "stream": True}, 200, None),
    ("messages", "POST", "/v1/messages",
     {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "Hello!"}]}, 200, None),
    ("governed", "POST", "/v1/chat/completions", chat("pass"), 200, "key"),
    ("long conversation", "POST", "/v1/chat/completions", long_conversation(), 200, None),
    ("models", "GET", "/v1/models", None, 200, None),
    ("unknown model", "POST", "/v1/chat/completions", chat("nope"), 404, None),
    ("bad body", "POST", "/v1/chat/completions", {"model": "pass", "messages": "x"}, 400, None),
]


def connect():
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", f"{base}/health/readiness", headers={"authorization": f"Bearer {token}"})
            conn.getresponse().read()
            return conn
        except OSError:
            time.sleep(0.1)
    sys.exit("pgo-train: ferrolite did not answer")


def create_key():
    conn = connect()
    settings = {"max_budget": 1e9, "budget_duration": "30d", "rpm": 10**9, "max_parallel": 10**5}
    conn.request("POST", "/default/services/server-apps/create_key", body=json.dumps(settings),
                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    answer = conn.getresponse()
    body = answer.read()
    if answer.status != 200:
        sys.exit(f"pgo-train: create_key answered {answer.status}: {body[:300]!r}")
    return json.loads(body)["key"]


def drive(kind, key, until, counts, failures):
    name, method, path, body, expected, auth = kind
    secret = key if auth == "key" else token
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    data = json.dumps(body) if body is not None else None
    conn = connect()
    done = 0
    while time.monotonic() < until:
        conn.request(method, base + path, body=data, headers=headers)
        answer = conn.getresponse()
        text = answer.read()
        if answer.status != expected:
            failures.append(f"{name}: {answer.status} (expected {expected}): {text[:300]!r}")
            return
        done += 1
    counts[name] = counts.get(name, 0) + done


def main():
    key = create_key()
    failures, counts = [], {}
    for kind in KINDS:
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=drive, args=(kind, key, until, counts, failures))
                   for _ in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            sys.exit("pgo-train: " + failures[0])
        print(f"pgo-train: {kind[0]}: {counts.get(kind[0], 0)} requests", flush=True)


main()
