"""Workspace isolation over hypha-rpc: a client of another workspace neither sees nor calls the
`default` workspace's protected LLM service, its clients' protected services, or its controller.
Prints "all checks passed" at the end.
"""

import asyncio

from hypha_rpc_common import MESSAGES, OTHER_TOKEN, TOKEN, check, connect, raises, start_quick_start


async def main():
    api = await connect(TOKEN, "default")
    controller, app, session = await start_quick_start(api)
    await api.register_service(
        {"id": "greeter", "config": {"visibility": "protected"}, "hello": lambda name: f"hello {name}"}
    )

    stranger = await connect(OTHER_TOKEN, "intruder")
    await raises(stranger.get_service("default/my-llm-service"), "protected")
    await raises(stranger.get_service("default/greeter"), "Permission denied")
    await raises(stranger.get_service("default/server-apps"), "cannot use the controller")
    listed = await stranger.list_services("default")
    check(not any("my-llm-service" in s["id"] or "greeter" in s["id"] for s in listed), listed)

    # Calling by address, without get_service, is refused too: by the HTTP checks for the LLM
    # service, by the provider client for its own service (the server stamps the caller).
    direct = stranger.rpc._generate_remote_method(
        {
            "_rtype": "method",
            "_rtarget": "default/ferrolite-server",
            "_rmethod": "services.my-llm-service.chat_completion",
            "_rpromise": "*",
        }
    )
    await raises(direct(model="gpt-3.5-turbo", messages=MESSAGES), "protected")
    greeter_id = next(s["id"] for s in await api.list_services() if s["id"].endswith(":greeter"))
    relayed = stranger.rpc._generate_remote_method(
        {
            "_rtype": "method",
            "_rtarget": greeter_id.split(":")[0],
            "_rmethod": "services.greeter.hello",
            "_rpromise": "*",
        }
    )
    await raises(relayed("intruder"), "Permission denied")

    # Its own controller shows nothing of default's.
    own = await stranger.get_service("public/server-apps")
    check(await own.list_running() == [] and await own.list_apps() == [], "intruder's workspace is empty")
    await raises(own.stop(session["id"]), "not running in this workspace")

    # Names keep to their grammar at this door too: nothing is stored.
    for bad_id in ["a\nb", "../../b/apps/x", "", "x" * 5000]:
        forged = {"id": bad_id, "name": "Forged", "type": "llm-proxy",
                  "config": {"model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "x"}}]}}
        await raises(controller.install(manifest=forged), "is not URL-safe")
    await raises(controller.set_env("BAD-KEY", "v"), "is not a secret key")
    installed = [a["id"] for a in await controller.list_apps()]
    check(installed == ["ferrolite-demo", "my-llm-proxy"], f"nothing else is installed: {installed}")

    await controller.stop(session["id"])
    await controller.uninstall(app["id"])
    for client in (stranger, api):
        await client.disconnect()
    print("all checks passed")


asyncio.run(main())
