"""The seed's Quick Start through the real hypha-rpc client: connect with a token (a wrong one
is refused with its message), install and start the app through public/server-apps, chat and
stream over RPC while HTTP answers too, errors as over HTTP, logs, stop and uninstall.
Prints "all checks passed" at the end.
"""

import asyncio
import json

from hypha_rpc_common import (
    MESSAGES,
    MOCK_TEXT,
    OTHER_TOKEN,
    QUICK_START,
    TOKEN,
    check,
    connect,
    http_post,
    raises,
)


async def main():
    # Wrong tokens are refused with the HTTP door's messages.
    await raises(connect("not-a-token", "default"), "malformed token")
    await raises(connect(OTHER_TOKEN, "default"), "cannot enter workspace")

    api = await connect(TOKEN, "default")
    check(api.config["workspace"] == "default", api.config)
    check(await api.echo({"a": [1, 2.5, "x"]}) == {"a": [1, 2.5, "x"]}, "echo")
    await api.log("hello from the hypha-rpc test")

    # The controller, as the seed's users call it.
    controller = await api.get_service("public/server-apps")
    app = await controller.install(source=json.dumps(QUICK_START), overwrite=True)
    check(app["id"] and app["service_id"] == "my-llm-service", app)
    session = await controller.start(app["id"], wait_for_service="my-llm-service")
    check(session["service_id"] == "my-llm-service" and session["status"] == "running", session)
    check(any(s["id"] == session["id"] for s in await controller.list_running()), "list_running")
    check(any(a["id"] == app["id"] for a in await controller.list_apps()), "list_apps")
    # Errors carry the HTTP error's message.
    status, body = http_post("/default/services/server-apps/start", {"app_id": "no-such-app"})
    check(status == 404, body)
    await raises(controller.start("no-such-app"), body["error"]["message"])

    svc = await api.get_service("default/my-llm-service")
    same = await api.get_service("default/ferrolite-server:my-llm-service")
    check(same["id"] == svc["id"], same["id"])
    answer = await svc.chat_completion(model="gpt-3.5-turbo", messages=MESSAGES)
    check(answer["choices"][0]["message"]["content"] == MOCK_TEXT, answer)
    models = await svc.list_models()
    check({m["id"] for m in models["data"]} >= {"gpt-3.5-turbo", "claude-3-opus"}, models)
    check((await svc.health()) is not None, "health")
    embedding = await svc.embedding(model="gpt-3.5-turbo", input="hi")
    check(embedding["data"][0]["embedding"], embedding)
    message = await svc.messages(model="claude-3-opus", max_tokens=64, messages=MESSAGES)
    check(message["content"][0]["text"] == MOCK_TEXT, message)
    # The Responses API: an answer, stored and read back, continued, and streamed as its events.
    response = await svc.create_response(model="claude-3-opus", input="Hello!")
    check(response["object"] == "response" and response["output"][0]["content"][0]["text"] == MOCK_TEXT, response)
    check((await svc.get_response(response_id=response["id"]))["id"] == response["id"], "get_response")
    follow = await svc.create_response(model="gpt-3.5-turbo", input="Again", previous_response_id=response["id"])
    check(follow["previous_response_id"] == response["id"], follow)
    events = [e async for e in await svc.create_response(model="gpt-3.5-turbo", input="Hi", stream=True)]
    check([e["type"] for e in events][:2] == ["response.created", "response.in_progress"], events)
    check(events[-1]["type"] == "response.completed", events[-1])

    # A stream yields its chunks as a generator; HTTP answers the same service meanwhile.
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
    check(any("POST /v1/chat/completions" in i["content"] for i in logs["items"]), logs)
    errors = await controller.get_logs(session["id"], type="error")
    check(errors["total"] >= 1 and all(i["type"] == "error" for i in errors["items"]), errors)

    usage = await controller.get_usage(session["id"])
    check(usage, usage)
    await controller.set_env("RPC_TEST_KEY", "sk-secret-1234")
    env = await controller.get_env("RPC_TEST_KEY")
    check(json.dumps(env).count("sk-secret") == 0 and "1234" in json.dumps(env), env)

    stopped = await controller.stop(session["id"])
    check(stopped["status"] == "stopped", stopped)
    await raises(svc.chat_completion(model="gpt-3.5-turbo", messages=MESSAGES), "not running")
    await controller.uninstall(app["id"])
    check(not any(a["id"] == app["id"] for a in await controller.list_apps()), "uninstalled")

    await api.disconnect()
    print("all checks passed")


asyncio.run(main())
