"""What the MCP gateway forwards besides answers, through the official MCP Python SDK, and the
gateway served by two ferrolite instances at once.

The Rust test starts two ferrolite instances sharing Redis, with an app whose MCP servers are
`work` (a child process this script starts and later kills) and `steady` (in this process). The
SDK's client, whose HTTP requests alternate between the two instances, checks:
- a tool's progress notifications reach the client through the gateway;
- a call the client gives up on is cancelled at the upstream;
- an upstream's `tools/list_changed` reaches the client's notification stream (opened once
  `initialize` gave it a session id), whichever instance the upstream told;
- an upstream killed mid-call: the call fails naming it, the other server still serves, and
  the killed one is left out of the list.
"""

import asyncio
import itertools
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import httpx2
import uvicorn
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError


def work_server(marker: pathlib.Path) -> MCPServer:
    server = MCPServer("work")

    @server.tool()
    async def slow(steps: int, ctx: Context) -> str:
        """Reports progress at each step."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            await asyncio.sleep(0.05)
        return f"{steps} steps done"

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Adds a tool, and tells its client the list changed."""

        def fresh() -> str:
            """Added at run time."""
            return "fresh"

        server.add_tool(fresh)
        await ctx.session.send_tool_list_changed()
        return "grown"

    @server.tool()
    async def hang(label: str) -> str:
        """Waits until cancelled, and writes down that it was."""
        marker.write_text(f"{label} started")
        try:
            await asyncio.sleep(120)
        except BaseException:
            marker.write_text(f"{label} cancelled")
            raise
        return "never"

    return server


def steady_server() -> MCPServer:
    server = MCPServer("steady")

    @server.tool()
    def echo(text: str) -> str:
        """Says it back."""
        return text

    return server


def wait_for_port(port: int) -> None:
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"upstream on port {port} did not start")


def serve_in_thread(app, port: int) -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    threading.Thread(target=uvicorn.Server(config).run, daemon=True).start()
    wait_for_port(port)


class Alternating(httpx2.AsyncBaseTransport):
    """Sends each request to the next instance in turn: no two in a row reach the same one."""

    def __init__(self, ports: list[int]):
        self.inner = httpx2.AsyncHTTPTransport()
        self.ports = itertools.cycle(ports)
        self.seen: list[int] = []

    async def handle_async_request(self, request):
        port = next(self.ports)
        self.seen.append(port)
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def wait_marker(marker: pathlib.Path, expected: str) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        if marker.exists() and marker.read_text() == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the upstream never saw {expected!r}: {marker.read_text() if marker.exists() else None}")


async def checks(work: subprocess.Popen, marker: pathlib.Path) -> None:
    url = os.environ["FERROLITE_MCP_URL"]
    ports = [int(p) for p in os.environ["FERROLITE_PORTS"].split(",")]
    transport = Alternating(ports)
    headers = {"Authorization": f"Bearer {os.environ['FERROLITE_TOKEN']}"}
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with httpx2.AsyncClient(headers=headers, timeout=30, transport=transport) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                init = await session.initialize()
                assert init.capabilities.tools.list_changed, init.capabilities
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                assert tools == ["steady-echo", "work-grow", "work-hang", "work-slow"], tools

                progress = []

                async def on_progress(value, total, message):
                    progress.append((value, total, message))

                done = await session.call_tool("work-slow", {"steps": 3}, progress_callback=on_progress)
                assert text_of(done) == "3 steps done", done
                assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")], progress
                print("progress forwarded")

                # The client gives up after a second; the upstream's tool is cancelled.
                try:
                    await session.call_tool("work-hang", {"label": "first"}, read_timeout_seconds=1)
                except (MCPError, TimeoutError) as e:
                    print(f"the call timed out as asked: {e!r}")
                else:
                    raise AssertionError("a hanging call answered")
                await wait_marker(marker, "first cancelled")
                print("cancellation forwarded")

                grown = await session.call_tool("work-grow", {})
                assert text_of(grown) == "grown", grown
                await asyncio.wait_for(changed.wait(), 10)
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                assert "work-fresh" in tools, tools
                print("list_changed forwarded")

                # The upstream dies mid-call: a clear error naming it; the other keeps serving.
                async def kill_soon() -> None:
                    await wait_marker(marker, "second started")
                    work.kill()
                    work.wait()

                killer = asyncio.create_task(kill_soon())
                try:
                    await session.call_tool("work-hang", {"label": "second"}, read_timeout_seconds=20)
                except MCPError as e:
                    assert '"work"' in str(e) and "unavailable" in str(e), str(e)
                else:
                    raise AssertionError("a call to a killed upstream answered")
                await killer
                echoed = await session.call_tool("steady-echo", {"text": "still here"})
                assert text_of(echoed) == "still here", echoed
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                assert tools == ["steady-echo"], tools
                print("a killed upstream is reported and left out")
    assert set(transport.seen) == set(ports), transport.seen
    print(f"{len(transport.seen)} requests alternated over ports {ports}")


def main() -> None:
    if sys.argv[1:2] == ["serve-work"]:
        port, marker = int(sys.argv[2]), pathlib.Path(sys.argv[3])
        uvicorn.run(work_server(marker).streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
        return
    marker = pathlib.Path(os.environ["MARKER"])
    work_port, steady_port = int(os.environ["WORK_PORT"]), int(os.environ["STEADY_PORT"])
    work = subprocess.Popen([sys.executable, __file__, "serve-work", str(work_port), str(marker)])
    try:
        wait_for_port(work_port)
        serve_in_thread(steady_server().streamable_http_app(), steady_port)
        asyncio.run(checks(work, marker))
    finally:
        work.kill()
    print("all checks passed")


if __name__ == "__main__":
    main()
