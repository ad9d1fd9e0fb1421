"""The app's MCP tools over ferrolite's /ws through the real hypha-rpc client: the LLM service
offers `list_mcp_tools` and `call_mcp_tool` beside its LLM functions, with the same token and
the same answers as `/mcp-rest/tools/*`.

Env (besides hypha_rpc_common's): FERROLITE_SERVICE, the app's service id in `default`.
"""

import asyncio
import os

from hypha_rpc_common import OTHER_TOKEN, TOKEN, check, connect, raises


async def main():
    service_id = os.environ["FERROLITE_SERVICE"]
    api = await connect(TOKEN, "default")
    svc = await api.get_service(f"default/{service_id}")

    listed = await svc.list_mcp_tools()
    names = [t["name"] for t in listed["tools"]]
    check(names == ["echo-echo"], f"tools: {listed}")
    check(listed["tools"][0]["mcp_info"]["server_name"] == "echo", f"{listed}")

    result = await svc.call_mcp_tool(name="echo-echo", arguments={"text": "over rpc"})
    check(result["content"] == [{"type": "text", "text": "echo: over rpc"}], f"{result}")
    # The request as one dict works as for the LLM functions.
    result = await svc.call_mcp_tool({"name": "echo", "server_id": "echo", "arguments": {"text": "dict"}})
    check(result["content"][0]["text"] == "echo: dict", f"{result}")

    await raises(svc.call_mcp_tool(name="echo-hidden", arguments={}), "not allowed")
    await raises(svc.call_mcp_tool(name="down-x"), '"down"')
    await api.disconnect()

    # Another workspace's client cannot reach the app's tools.
    intruder = await connect(OTHER_TOKEN, "intruder")
    await raises(intruder.get_service(f"default/{service_id}"), "")
    await intruder.disconnect()
    print("all checks passed")


if __name__ == "__main__":
    asyncio.run(main())
