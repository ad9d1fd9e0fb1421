"""The official MCP Python SDK through ferrolite's MCP gateway.

Starts three MCP servers of the SDK (MCPServer, formerly FastMCP) on the ports the Rust test put
in the app's manifest, two over Streamable HTTP and one (`legacy`) over the older HTTP+SSE
transport, then connects the SDK's client to FERROLITE_MCP_URL: initialize, tools listed with
their server's prefix and filtered by the app's allowed/disallowed lists, a call on each server,
prompts and resources (URIs kept, names prefixed, reads routed to the server that listed them), an
upstream that is down left out (a call to it fails naming it), and the gateway's auth (401 without
a token, 403 with another workspace's).
"""

import asyncio
import os
import socket
import threading
import time

import httpx2
import uvicorn
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

URL = os.environ["FERROLITE_MCP_URL"]
TOKEN = os.environ["FERROLITE_TOKEN"]
FOREIGN = os.environ["FERROLITE_FOREIGN_TOKEN"]
MATH_PORT = int(os.environ["MATH_PORT"])
TEXT_PORT = int(os.environ["TEXT_PORT"])
TEXT_AUTH = os.environ["TEXT_AUTH"]
LEGACY_PORT = int(os.environ["LEGACY_PORT"])
LEGACY_AUTH = os.environ["LEGACY_AUTH"]


def math_server() -> MCPServer:
    server = MCPServer("math")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    @server.tool()
    def multiply(a: int, b: int) -> int:
        """Disallowed by the app."""
        return a * b

    @server.tool()
    def secret() -> str:
        """Not in the app's allowed_tools."""
        return "leaked"

    return server


def text_server() -> MCPServer:
    server = MCPServer("text")

    @server.tool()
    def shout(text: str) -> str:
        """Upper-cases text."""
        return text.upper()

    @server.prompt()
    def greet(name: str) -> str:
        """Greets someone."""
        return f"Say hello to {name}."

    @server.resource("text://motto")
    def motto() -> str:
        """The server's motto."""
        return "loud and clear"

    @server.resource("text://words/{word}")
    def word(word: str) -> str:
        """A word, shouted."""
        return word.upper()

    return server


def legacy_server() -> MCPServer:
    server = MCPServer("legacy")

    @server.tool()
    def reverse(text: str) -> str:
        """Reverses text (served over HTTP+SSE)."""
        return text[::-1]

    return server


class RequireHeaders:
    """Refuses requests without the credentials the manifest configures for this server."""

    def __init__(self, app, required: dict[bytes, bytes]):
        self.app = app
        self.required = required

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if any(headers.get(name) != value for name, value in self.required.items()):
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await self.app(scope, receive, send)


def serve(app, port: int) -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    threading.Thread(target=uvicorn.Server(config).run, daemon=True).start()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"upstream on port {port} did not start")


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def gateway_checks() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.server_info.name == "ferrolite", init
                assert init.capabilities.tools is not None, init

                tools = await session.list_tools()
                names = sorted(t.name for t in tools.tools)
                # math: allowed [add, multiply] less disallowed [multiply]; text and legacy: all;
                # down: left out.
                assert names == ["legacy-reverse", "math-add", "text-shout"], names
                add = next(t for t in tools.tools if t.name == "math-add")
                assert add.description == "Adds two numbers.", add
                assert set(add.input_schema["properties"]) == {"a", "b"}, add.input_schema

                added = await session.call_tool("math-add", {"a": 2, "b": 40})
                assert not added.is_error and text_of(added) == "42", added
                shouted = await session.call_tool("text-shout", {"text": "hi"})
                assert not shouted.is_error and text_of(shouted) == "HI", shouted
                # Over HTTP+SSE: the answer came on the event stream, the call was posted.
                reversed_ = await session.call_tool("legacy-reverse", {"text": "abc"})
                assert not reversed_.is_error and text_of(reversed_) == "cba", reversed_

                prompts = await session.list_prompts()
                assert [p.name for p in prompts.prompts] == ["text-greet"], prompts
                prompt = await session.get_prompt("text-greet", {"name": "Ada"})
                assert "Say hello to Ada." in prompt.messages[0].content.text, prompt

                # URIs as the upstream wrote them; names prefixed.
                resources = await session.list_resources()
                assert [(str(r.uri), r.name) for r in resources.resources] == [("text://motto", "text-motto")], resources
                templates = await session.list_resource_templates()
                assert [t.uri_template for t in templates.resource_templates] == ["text://words/{word}"], templates
                motto = await session.read_resource("text://motto")
                assert motto.contents[0].text == "loud and clear", motto
                word = await session.read_resource("text://words/hey")
                assert word.contents[0].text == "HEY", word
                try:
                    await session.read_resource("nowhere://x")
                except MCPError as e:
                    assert "nowhere://x" in str(e), str(e)
                else:
                    raise AssertionError("an unknown resource was read")

                for name, needle in [
                    ("down-anything", '"down"'),
                    ("math-multiply", "not allowed"),
                    ("math-secret", "not allowed"),
                    ("nowhere-x", "unknown tool"),
                ]:
                    try:
                        result = await session.call_tool(name, {})
                    except MCPError as e:
                        assert needle in str(e), (name, str(e))
                    else:
                        raise AssertionError(f"{name} answered {result}")
    print("client checks passed")


async def version_and_auth_checks() -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient(timeout=30) as http:
        for version in ["2025-11-25", "2025-06-18", "2025-03-26"]:
            init["params"]["protocolVersion"] = version
            r = await http.post(URL, json=init, headers={**accept, "Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200, (version, r.status_code, r.text)
            assert r.json()["result"]["protocolVersion"] == version, (version, r.text)

        r = await http.post(URL, json=init, headers=accept)
        assert r.status_code == 401, (r.status_code, r.text)
        r = await http.post(URL, json=init, headers={**accept, "Authorization": f"Bearer {FOREIGN}"})
        assert r.status_code == 403, (r.status_code, r.text)
    print("version and auth checks passed")


def main() -> None:
    serve(math_server().streamable_http_app(), MATH_PORT)
    text_auth = {b"authorization": f"Bearer {TEXT_AUTH}".encode(), b"x-team": b"t1"}
    serve(RequireHeaders(text_server().streamable_http_app(), text_auth), TEXT_PORT)
    # The API key on the event stream and on every post.
    serve(RequireHeaders(legacy_server().sse_app(), {b"x-api-key": LEGACY_AUTH.encode()}), LEGACY_PORT)
    asyncio.run(gateway_checks())
    asyncio.run(version_and_auth_checks())
    print("all checks passed")


if __name__ == "__main__":
    main()
