"""The seed's Quick Start on a real Hypha server whose llm-proxy worker is ferrolite.

First, as Hypha's root: a workspace for the user, a token for it, and the worker's token for
`public`, printed as `worker token: ...` for the test to start ferrolite with; then it waits for
the worker to register. Then, as the user: an install with errors (shown with their JSON paths),
the Quick Start's install (as `manifest=`: see main) and start through `public/server-apps`, chat through Hypha's URL (JSON
and a stream) with the user's Hypha token, get_logs, an app without a service_id (served as `llm-{session}`), and stop (the service is gone).
Prints "all checks passed" at the end.

Env: HYPHA_SERVER_URL (http://127.0.0.1:PORT), HYPHA_ROOT_TOKEN.
"""

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request

from hypha_rpc import connect_to_server

SERVER = os.environ["HYPHA_SERVER_URL"]
ROOT_TOKEN = os.environ["HYPHA_ROOT_TOKEN"]
# ferrolite's own URL (http://host:port), where the same apps answer.
NATIVE = os.environ["FERROLITE_NATIVE_URL"]
WORKSPACE = "team-a"

MOCK_TEXT = "This is a test response from the mock model"
MESSAGES = [{"role": "user", "content": "Hello!"}]

# The seed's Quick Start manifest, its models answered by mock_response.
LLM_APP = {
    "name": "My LLM Proxy",
    "type": "llm-proxy",
    "version": "1.0.0",
    "description": "Multi-provider LLM proxy service",
    "config": {
        "service_id": "my-llm-service",
        "model_list": [
            {
                "model_name": "gpt-3.5-turbo",
                "litellm_params": {"model": "gpt-3.5-turbo", "mock_response": MOCK_TEXT},
            },
            {
                "model_name": "claude-3-opus",
                "litellm_params": {"model": "claude-3-opus-20240229", "mock_response": MOCK_TEXT},
            },
        ],
        "litellm_settings": {"debug": False, "routing_strategy": "simple-shuffle"},
    },
}

AUTO_ID_APP = {
    "name": "Auto Id Proxy",
    "type": "llm-proxy",
    "config": {"model_list": [{"model_name": "auto-model", "litellm_params": {"model": "gpt-4o", "mock_response": "hi"}}]},
}

# Two mistakes: a deployment without its model, and a routing strategy nobody has.
BROKEN_APP = {
    "name": "Broken Proxy",
    "type": "llm-proxy",
    "config": {
        "service_id": "broken",
        "model_list": [{"model_name": "gpt-4", "litellm_params": {"api_key": "os.environ/KEY"}}],
        "litellm_settings": {"routing_strategy": "fastest-wins"},
    },
}


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def http(method, path, token, body=None, base=None):
    """(status, headers, body bytes) of a request to Hypha's URL (or to `base`)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request((base or SERVER) + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def stream_chunks(path, token, body):
    """The `data:` payloads of a streamed answer, read as they arrive."""
    request = urllib.request.Request(
        SERVER + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        check(response.status == 200, response.status)
        check(response.headers["content-type"].startswith("text/event-stream"), dict(response.headers))
        return [line[6:].decode().strip() for line in response if line.startswith(b"data: ")]


async def prepare():
    """As root: the user's workspace and token, and the worker's; then wait for the worker."""
    root = await connect_to_server({"server_url": SERVER, "token": ROOT_TOKEN})
    # Apps are artifacts, which only a persistent workspace keeps.
    await root.create_workspace(
        {"name": WORKSPACE, "description": "ferrolite worker tests", "persistent": True}, overwrite=True
    )
    user_token = await root.generate_token({"workspace": WORKSPACE, "permission": "admin", "expires_in": 3600})
    worker_token = await root.generate_token({"workspace": "public", "permission": "admin", "expires_in": 3600})
    print(f"worker token: {worker_token}", flush=True)
    deadline = time.monotonic() + 30
    while True:
        workers = await root.list_services({"workspace": "public", "type": "server-app-worker"})
        if any(w["id"].endswith(":ferrolite-worker") for w in workers):
            break
        check(time.monotonic() < deadline, f"no ferrolite worker registered: {workers}")
        await asyncio.sleep(0.1)
    await root.disconnect()
    return user_token, worker_token


async def main():
    token, worker_token = await prepare()
    api = await connect_to_server({"server_url": SERVER, "token": token, "workspace": WORKSPACE})
    controller = await api.get_service("public/server-apps")

    # An install with errors shows each with its JSON path; nothing is installed.
    try:
        await controller.install(manifest=BROKEN_APP)
        raise AssertionError("a broken manifest installed")
    except Exception as e:  # RemoteException
        text = str(e)
        check("/config/model_list/0/litellm_params" in text and "model" in text, text)
        check("/config/litellm_settings/routing_strategy" in text, text)
    check(not any(a.get("name") == "Broken Proxy" for a in await controller.list_apps()), "broken app installed")

    # The Quick Start. Hypha 0.21.137 reads no manifest out of a JSON `source` (it stores the text
    # as the `source` file of a browser app of type "hypha"), so the manifest goes as `manifest`.
    app = await controller.install(manifest=LLM_APP, overwrite=True)
    check(app["id"] and app["type"] == "llm-proxy", app)
    session = await controller.start(app["id"], wait_for_service="my-llm-service")
    check(session["id"].startswith(WORKSPACE + "/"), session)

    base = f"/{WORKSPACE}/apps/my-llm-service/v1"
    status, _, body = http("POST", base + "/chat/completions", token, {"model": "gpt-3.5-turbo", "messages": MESSAGES})
    check(status == 200, (status, body))
    answer = json.loads(body)
    check(answer["choices"][0]["message"]["content"] == MOCK_TEXT, answer)
    check(answer["model"] == "gpt-3.5-turbo", answer)

    status, _, body = http("GET", base + "/models", token)
    check(status == 200 and {m["id"] for m in json.loads(body)["data"]} >= {"gpt-3.5-turbo", "claude-3-opus"}, body)

    chunks = stream_chunks(
        base + "/chat/completions", token, {"model": "claude-3-opus", "messages": MESSAGES, "stream": True}
    )
    check(chunks[-1] == "[DONE]", chunks)
    text = "".join(json.loads(c)["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if json.loads(c)["choices"])
    check(text == MOCK_TEXT, (text, chunks))

    # ferrolite's own errors come back as they are, status and body.
    status, _, body = http("POST", base + "/chat/completions", token, {"model": "no-such-model", "messages": MESSAGES})
    check(status in (400, 404) and "no-such-model" in json.loads(body)["error"]["message"], (status, body))

    # The native URL serves the same app and takes the same Hypha token (ferrolite checks it with
    # the Hypha server's JWT secret); a Hypha token of another workspace gets 403 there.
    status, _, body = http("POST", base + "/chat/completions", token, {"model": "gpt-3.5-turbo", "messages": MESSAGES}, NATIVE)
    check(status == 200 and json.loads(body)["choices"][0]["message"]["content"] == MOCK_TEXT, (status, body))
    status, _, body = http("GET", base + "/models", worker_token, None, NATIVE)
    check(status == 403, (status, body))

    # The service is protected: Hypha turns away a caller without a token.
    status, _, body = http("GET", base + "/models", None)
    check(status in (401, 403), (status, body))

    logs = await controller.get_logs(session["id"])
    lines = [item["content"] for item in logs["items"]]
    check(logs["total"] == len(logs["items"]) and all(i["type"] in ("log", "error") for i in logs["items"]), logs)
    check(any("/v1/chat/completions" in line for line in lines), lines)
    check(any("hypha session" in line for line in lines), lines)

    # The worker is public, but only Hypha's server-apps may call it: a user cannot stop (or read)
    # sessions through it, this one's included.
    workers = await api.list_services({"workspace": "public", "type": "server-app-worker"})
    worker = await api.get_service(next(w["id"] for w in workers if w["id"].endswith(":ferrolite-worker")))
    try:
        await worker.stop(session["id"])
        raise AssertionError("a user stopped a session through the worker")
    except Exception as e:  # RemoteException
        check("only Hypha's server-apps may call the worker" in str(e), str(e))
    status, _, body = http("GET", base + "/models", token)
    check(status == 200, (status, body))

    # Without a service_id the service is `llm-{session}` (the session's client id).
    auto_app = await controller.install(manifest=AUTO_ID_APP, overwrite=True)
    auto = await controller.start(auto_app["id"])
    auto_base = f"/{WORKSPACE}/apps/llm-{auto['id'].split('/')[1]}/v1"
    status, _, body = http("GET", auto_base + "/models", token)
    check(status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["auto-model"], (status, body))
    await controller.stop(auto["id"])

    await controller.stop(session["id"])
    status, _, body = http("GET", base + "/models", token)
    check(status >= 400, (status, body))
    status, _, body = http("GET", base + "/models", token, None, NATIVE)
    check(status == 404, ("gone on the native URL too", status, body))
    services = await api.list_services({"workspace": WORKSPACE})
    check(not any(s["id"].endswith(":my-llm-service") for s in services), services)

    await api.disconnect()
    print("all checks passed")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"check failed: {e}", file=sys.stderr)
        raise
