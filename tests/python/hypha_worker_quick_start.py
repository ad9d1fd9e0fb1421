"""The seed's Quick Start on a real Hypha server whose llm-proxy worker is ferrolite.

First, as Hypha's root: a workspace for the user, a token for it, and the worker's token for
`public`, printed as `worker token: ...` for the test to start ferrolite with; then it waits for
the worker to register. Then, as the user: an install with errors (shown with their JSON paths),
the Quick Start's install (as `manifest=`: see main) and start through `public/server-apps`, chat
through Hypha's URL (JSON and a stream) with the user's Hypha token, the service's functions
through `get_service` (JSON and a generator), get_logs, an app without a service_id (served as
`llm-{session}`), an app whose key is a `HYPHA_SECRET:` of the workspace's env (set with Hypha's
set_env; the fake upstream checks that it arrives) and one whose secret is missing (start fails
naming it), and stop (the service is gone). Prints "all checks passed" at the end.

With KILL_STEP=1 it then starts the app, prints "kill ferrolite now", and reads a line on stdin
once the test has killed ferrolite (-9) and started it again: Hypha forgot the session, the
restarted ferrolite serves none of it, and the app starts again cleanly (one service, no
"Multiple services found"). With LEAVE_RUNNING=1 it ends with the app running (the test then
restarts Hypha; the next run finds it gone on the native URL too).

Env: HYPHA_SERVER_URL (http://127.0.0.1:PORT), HYPHA_ROOT_TOKEN, FERROLITE_NATIVE_URL,
UPSTREAM_KEY (the key the fake upstream, at ferrolite's os.environ/FAKE_OPENAI_BASE, expects).
"""

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request

from hypha_rpc import connect_to_server
from seed_quick_start import MESSAGES, MOCK_TEXT
from seed_quick_start import QUICK_START as LLM_APP

SERVER = os.environ["HYPHA_SERVER_URL"]
ROOT_TOKEN = os.environ["HYPHA_ROOT_TOKEN"]
# ferrolite's own URL (http://host:port), where the same apps answer.
NATIVE = os.environ["FERROLITE_NATIVE_URL"]
WORKSPACE = "team-a"
# The key the fake OpenAI upstream accepts; the user keeps it in the workspace's env.
UPSTREAM_KEY = os.environ["UPSTREAM_KEY"]


AUTO_ID_APP = {
    "name": "Auto Id Proxy",
    "type": "llm-proxy",
    "config": {"model_list": [{"model_name": "auto-model", "litellm_params": {"model": "gpt-4o", "mock_response": "hi"}}]},
}

# A real upstream (the test's fake OpenAI): its address from ferrolite's environment, its key from
# the Hypha workspace's env.
SECRET_APP = {
    "name": "Secret Proxy",
    "type": "llm-proxy",
    "config": {
        "service_id": "secret-llm",
        "model_list": [
            {
                "model_name": "upstream-gpt",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": "os.environ/FAKE_OPENAI_BASE",
                    "api_key": "HYPHA_SECRET:UPSTREAM_KEY",
                },
            }
        ],
    },
}

MISSING_SECRET_APP = {
    "name": "Missing Secret Proxy",
    "type": "llm-proxy",
    "config": {
        "service_id": "missing-secret",
        "model_list": [
            {
                "model_name": "upstream-gpt",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "HYPHA_SECRET:NEVER_SET_KEY"},
            }
        ],
    },
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


async def check_functions(api):
    """The session's service carries the LLM functions, as ferrolite's own RPC services do."""
    llm = await api.get_service(f"{WORKSPACE}/my-llm-service")
    check(llm["type"] == "asgi" and callable(llm["serve"]), llm)
    answer = await llm.chat_completions(model="gpt-3.5-turbo", messages=MESSAGES)
    check(answer["choices"][0]["message"]["content"] == MOCK_TEXT, answer)
    # Hypha's llm-proxy names, the request as one dict.
    answer = await llm.chat_completion({"model": "claude-3-opus", "messages": MESSAGES})
    check(answer["choices"][0]["message"]["content"] == MOCK_TEXT, answer)
    models = await llm.list_models()
    check({m["id"] for m in models["data"]} >= {"gpt-3.5-turbo", "claude-3-opus"}, models)
    # A stream is a generator of its chunks.
    chunks = [c async for c in await llm.chat_completions(model="gpt-3.5-turbo", messages=MESSAGES, stream=True)]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    check(text == MOCK_TEXT, chunks)
    try:
        await llm.chat_completions(model="no-such-model", messages=MESSAGES)
        raise AssertionError("an unknown model answered")
    except Exception as e:  # RemoteException
        check("no-such-model" in str(e), str(e))


async def check_secrets(api, controller, token):
    """HYPHA_SECRET: reads the Hypha workspace's env; a missing one fails start, naming it."""
    await api.set_env("UPSTREAM_KEY", UPSTREAM_KEY)
    app = await controller.install(manifest=SECRET_APP, overwrite=True)
    session = await controller.start(app["id"], wait_for_service="secret-llm")
    body = {"model": "upstream-gpt", "messages": MESSAGES}
    status, _, answer = http("POST", f"/{WORKSPACE}/apps/secret-llm/v1/chat/completions", token, body)
    # The fake upstream answers only its key.
    check(status == 200 and json.loads(answer)["choices"][0]["message"]["content"] == "echo: Hello!", (status, answer))
    await controller.stop(session["id"])

    # Hypha's install test-starts the app: the missing secret fails it, named.
    try:
        await controller.install(manifest=MISSING_SECRET_APP, overwrite=True)
        raise AssertionError("an app with a missing secret installed")
    except Exception as e:  # RemoteException
        check("HYPHA_SECRET:NEVER_SET_KEY" in str(e), str(e))
    # Staged, it installs untested; its start fails, named, and leaves nothing running.
    app = await controller.install(manifest=MISSING_SECRET_APP, overwrite=True, stage=True)
    try:
        await controller.start(app["id"], stage=True, wait_for_service="missing-secret")
        raise AssertionError("an app with a missing secret started")
    except Exception as e:  # RemoteException
        check("HYPHA_SECRET:NEVER_SET_KEY" in str(e), str(e))
    running = await controller.list_running()
    check(not any(s.get("app_id") == app["id"] for s in running), running)
    services = await api.list_services({"workspace": WORKSPACE})
    check(not any(s["id"].endswith(":missing-secret") for s in services), services)
    await controller.uninstall(app["id"])


async def served_once(api, base, token):
    """Hypha's URL answers, and exactly one client offers the service."""
    status, _, body = http("GET", base + "/models", token)
    check(status == 200, (status, body))
    services = await api.list_services({"workspace": WORKSPACE})
    check(len([s for s in services if s["id"].endswith(":my-llm-service")]) == 1, services)


async def kill_step(api, controller, app_id, base, token):
    """ferrolite is killed (-9) while the app runs, and started again by the test."""
    session = await controller.start(app_id, wait_for_service="my-llm-service")
    await served_once(api, base, token)
    print("kill ferrolite now", flush=True)
    check(sys.stdin.readline().strip() == "restarted", "the test did not restart ferrolite")
    # Hypha forgot the session with the worker's connection; the restarted ferrolite brought
    # none of it back (its app is held in memory only), on either URL.
    running = await controller.list_running()
    check(not any(s["id"] == session["id"] for s in running), running)
    status, _, body = http("GET", base + "/models", token, None, NATIVE)
    check(status == 404, ("not restored on the native URL", status, body))
    status, _, body = http("GET", base + "/models", token)
    check(status >= 400 and b"Multiple services" not in body, (status, body))
    # The app starts again cleanly.
    session = await controller.start(app_id, wait_for_service="my-llm-service")
    await served_once(api, base, token)
    await controller.stop(session["id"])


async def main():
    token, worker_token = await prepare()
    api = await connect_to_server({"server_url": SERVER, "token": token, "workspace": WORKSPACE})
    controller = await api.get_service("public/server-apps")
    base = f"/{WORKSPACE}/apps/my-llm-service/v1"

    # An app left running before Hypha restarted ended with its connection: its service is
    # gone from ferrolite's native URL too.
    status, _, body = http("GET", base + "/models", token, None, NATIVE)
    check(status == 404, ("a session outlived its connection to Hypha", status, body))

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

    await check_functions(api)

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

    await check_secrets(api, controller, token)

    if os.environ.get("KILL_STEP") == "1":
        await kill_step(api, controller, app["id"], base, token)
    if os.environ.get("LEAVE_RUNNING") == "1":
        await controller.start(app["id"], wait_for_service="my-llm-service")
        await served_once(api, base, token)

    await api.disconnect()
    print("all checks passed")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"check failed: {e}", file=sys.stderr)
        raise
