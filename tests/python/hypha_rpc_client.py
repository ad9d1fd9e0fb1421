"""The real hypha-rpc client against ferrolite's /ws, as a Hypha user's code reads.

Env: FERROLITE_BASE_URL (the server, http://host:port), FERROLITE_TOKEN (a token of the
`default` workspace), FERROLITE_OTHER_TOKEN (a token of another workspace) and
FERROLITE_SLOW_API_BASE (an OpenAI-compatible upstream that answers after a few seconds).
Prints "all checks passed" at the end.
"""

import asyncio
import json
import os
import time
import urllib.error
import urllib.request

from hypha_rpc import connect_to_server

BASE = os.environ["FERROLITE_BASE_URL"]
TOKEN = os.environ["FERROLITE_TOKEN"]
OTHER_TOKEN = os.environ["FERROLITE_OTHER_TOKEN"]
SLOW_API_BASE = os.environ["FERROLITE_SLOW_API_BASE"]

MOCK_TEXT = "This is a test response from the mock model"

# The seed's Quick Start manifest, its models answered by mock_response.
QUICK_START = {
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

SLOW_APP = {
    "name": "Slow Proxy",
    "type": "llm-proxy",
    "version": "1.0.0",
    "config": {
        "service_id": "slow-service",
        "model_list": [
            {
                "model_name": "slow",
                "litellm_params": {"model": "openai/slow", "api_base": SLOW_API_BASE, "api_key": "sk-slow"},
            }
        ],
        "litellm_settings": {"timeout": 60, "num_retries": 0},
    },
}

MESSAGES = [{"role": "user", "content": "Hello!"}]


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def http_post(path, body, token=TOKEN):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def raises(awaitable, *fragments):
    try:
        await awaitable
    except Exception as e:  # RemoteException, ConnectionAbortedError, ...
        text = str(e)
        for fragment in fragments:
            check(fragment in text, f"error {text!r} lacks {fragment!r}")
        return text
    raise AssertionError(f"no error; expected one with {fragments}")


async def connect(token, workspace, **config):
    return await connect_to_server(
        {"server_url": BASE, "token": token, "workspace": workspace, **config}
    )


async def main():
    # A wrong token is refused with the HTTP door's message.
    await raises(connect("not-a-token", "default"), "malformed token")
    await raises(connect(OTHER_TOKEN, "default"), "cannot enter workspace")

    api = await connect(TOKEN, "default")
    check(api.config["workspace"] == "default", api.config)
    check(await api.echo({"a": [1, 2.5, "x"]}) == {"a": [1, 2.5, "x"]}, "echo")
    await api.log("hello from the hypha-rpc test")

    # The controller, as the seed's users call it.
    controller = await api.get_service("public/server-apps")
    app = await controller.install(source=json.dumps(QUICK_START), overwrite=True)
    check(app["id"], app)
    session = await controller.start(app["id"], wait_for_service="my-llm-service")
    check(session["service_id"] == "my-llm-service", session)
    running = await controller.list_running()
    check(any(s["id"] == session["id"] for s in running), running)
    check(any(a["id"] == app["id"] for a in await controller.list_apps()), "list_apps")
    # Errors carry the HTTP error's message.
    await raises(controller.start("no-such-app"), 'app "no-such-app" is not installed')

    svc = await api.get_service("default/my-llm-service")
    answer = await svc.chat_completion(model="gpt-3.5-turbo", messages=MESSAGES)
    check(answer["choices"][0]["message"]["content"] == MOCK_TEXT, answer)
    models = await svc.list_models()
    check({m["id"] for m in models["data"]} >= {"gpt-3.5-turbo", "claude-3-opus"}, models)
    check((await svc.health()) is not None, "health")
    embedding = await svc.embedding(model="gpt-3.5-turbo", input="hi")
    check(embedding["data"][0]["embedding"], embedding)

    # A stream yields its chunks as a generator; HTTP answers meanwhile.
    stream = await svc.chat_completion(model="gpt-3.5-turbo", messages=MESSAGES, stream=True)
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 1:
            status, body = await asyncio.to_thread(
                http_post,
                "/default/apps/my-llm-service/v1/chat/completions",
                {"model": "claude-3-opus", "messages": MESSAGES},
            )
            check(status == 200 and body["choices"][0]["message"]["content"] == MOCK_TEXT, body)
    check(len(chunks) >= 3, chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    check(text == MOCK_TEXT, text)

    # An unknown model: the same message as over HTTP.
    status, body = http_post(
        "/default/apps/my-llm-service/v1/chat/completions", {"model": "nope", "messages": MESSAGES}
    )
    check(status == 404, body)
    await raises(svc.chat_completion(model="nope", messages=MESSAGES), body["error"]["message"])

    logs = await controller.get_logs(session["id"])
    check(logs["total"] >= 3 and any("POST /v1/chat/completions" in i["content"] for i in logs["items"]), logs)

    # Over 257 KB each way: chunked through the message caches.
    big = json.dumps(QUICK_START | {"name": "Big Proxy", "config": QUICK_START["config"] | {"service_id": "big-service"}})
    big = big + " " * 600_000
    big_app = await controller.install(source=big, overwrite=True)
    check(big_app["name"] == "Big Proxy", big_app)
    await controller.uninstall(big_app["id"])
    echoed = await api.echo("x" * 600_000)
    check(echoed == "x" * 600_000, "a 600 KB echo came back whole")

    # A call longer than method_timeout lives on heartbeats.
    patient = await connect(TOKEN, "default", method_timeout=3)
    slow_controller = await patient.get_service("public/server-apps")
    slow_app = await slow_controller.install(source=json.dumps(SLOW_APP), overwrite=True)
    slow_session = await slow_controller.start(slow_app["id"])
    slow = await patient.get_service("default/slow-service")
    started = time.monotonic()
    slow_answer = await slow.chat_completion(model="slow", messages=MESSAGES)
    check(time.monotonic() - started > 4, "the slow upstream answered early")
    check(slow_answer["choices"][0]["message"]["content"], slow_answer)
    await slow_controller.stop(slow_session["id"])
    await slow_controller.uninstall(slow_app["id"])

    # Two clients of a workspace talk through the server.
    await api.register_service(
        {"id": "greeter", "config": {"visibility": "protected"}, "hello": lambda name: f"hello {name}"}
    )
    friend = await connect(TOKEN, "default")
    greeter = await friend.get_service("greeter")
    check(await greeter.hello("ferrolite") == "hello ferrolite", "relayed call")
    listed = await friend.list_services()
    check(any(s["id"].endswith(":greeter") for s in listed), listed)

    # Another workspace sees and calls none of it.
    stranger = await connect(OTHER_TOKEN, "intruder")
    await raises(stranger.get_service("default/my-llm-service"), "protected")
    await raises(stranger.get_service("default/greeter"), "Permission denied")
    await raises(stranger.get_service("default/server-apps"), "cannot use the controller")
    listed = await stranger.list_services("default")
    check(not any("my-llm-service" in s["id"] or "greeter" in s["id"] for s in listed), listed)
    direct = stranger.rpc._generate_remote_method(
        {
            "_rtype": "method",
            "_rtarget": "default/ferrolite-server",
            "_rmethod": "services.my-llm-service.chat_completion",
            "_rpromise": "*",
        }
    )
    await raises(direct(model="gpt-3.5-turbo", messages=MESSAGES), "protected")
    mine = await (await stranger.get_service("public/server-apps")).list_running()
    check(mine == [], mine)

    # stop and uninstall, as the controller's HTTP door does them.
    stopped = await controller.stop(session["id"])
    check(stopped["status"] == "stopped", stopped)
    await raises(svc.chat_completion(model="gpt-3.5-turbo", messages=MESSAGES), "not running")
    await controller.uninstall(app["id"])
    check(not any(a["id"] == app["id"] for a in await controller.list_apps()), "uninstalled")

    for client in (stranger, friend, patient, api):
        await client.disconnect()
    print("all checks passed")


asyncio.run(main())
