"""hypha-rpc's transport against ferrolite: messages over 257 KB both ways (chunked through the
message caches), a call kept alive past method_timeout by heartbeats, and two clients of one
workspace calling each other through the server. Prints "all checks passed" at the end.
"""

import asyncio
import json
import os
import time

from hypha_rpc_common import MESSAGES, QUICK_START, TOKEN, check, connect

SLOW_API_BASE = os.environ["FERROLITE_SLOW_API_BASE"]

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


async def main():
    api = await connect(TOKEN, "default")
    controller = await api.get_service("public/server-apps")

    # A 600 KB source: the client sends it in 256 KiB chunks.
    big = json.dumps(QUICK_START | {"name": "Big Proxy"}) + " " * 600_000
    big_app = await controller.install(source=big, overwrite=True)
    check(big_app["name"] == "Big Proxy", big_app)
    await controller.uninstall(big_app["id"])
    # And 600 KB back: the server sends it through the client's message cache.
    check(await api.echo("x" * 600_000) == "x" * 600_000, "a 600 KB echo came back whole")

    # A call longer than method_timeout (3 s here) lives on heartbeats.
    patient = await connect(TOKEN, "default", method_timeout=3)
    slow_controller = await patient.get_service("public/server-apps")
    slow_app = await slow_controller.install(source=json.dumps(SLOW_APP), overwrite=True)
    slow_session = await slow_controller.start(slow_app["id"])
    slow = await patient.get_service("default/slow-service")
    started = time.monotonic()
    answer = await slow.chat_completion(model="slow", messages=MESSAGES)
    check(time.monotonic() - started > 4, "the slow upstream answered early")
    check(answer["choices"][0]["message"]["content"] == "finally", answer)
    await slow_controller.stop(slow_session["id"])
    await slow_controller.uninstall(slow_app["id"])

    # Two clients of a workspace talk through the server, big messages included.
    await api.register_service(
        {"id": "greeter", "config": {"visibility": "protected"}, "hello": lambda name: f"hello {name}"}
    )
    friend = await connect(TOKEN, "default")
    greeter = await friend.get_service("greeter")
    check(await greeter.hello("ferrolite") == "hello ferrolite", "relayed call")
    check(await greeter.hello("y" * 400_000) == "hello " + "y" * 400_000, "a 400 KB relayed call")
    listed = await friend.list_services()
    check(any(s["id"].endswith(":greeter") for s in listed), listed)
    await api.unregister_service("greeter")
    check(not any(s["id"].endswith(":greeter") for s in await friend.list_services()), "unregistered")

    for client in (friend, patient, api):
        await client.disconnect()
    print("all checks passed")


asyncio.run(main())
