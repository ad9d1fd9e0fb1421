"""The real openai SDK's remote MCP tools against ferrolite: `tools=[{"type": "mcp", ...}]`
naming the app's MCP server runs the tool loop in the gateway, as OpenAI's Responses API does.

Run by tests/it/mcp_llm_tools.rs with FERROLITE_BASE_URL (the service's /v1) and FERROLITE_TOKEN;
the app's model `gpt` is the fake OpenAI, its MCP server `weather.svc` has `weather.lookup`.
"""

import json
import os

import openai
from openai import OpenAI

client = OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])

QUESTION = "What is the weather in Paris?"
RESULT = "Sunny and 21C in Paris"
never = [{"type": "mcp", "server_label": "weather.svc", "require_approval": "never"}]

# The loop: the tools listed, the call made, the model answers with its result.
response = client.responses.create(model="gpt", input=QUESTION, tools=never)
assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"], response.output
listed, call = response.output[0], response.output[1]
assert listed.server_label == "weather.svc", listed
assert [tool.name for tool in listed.tools] == ["weather.lookup", "broken"], listed.tools
assert listed.tools[0].input_schema["required"] == ["city"], listed.tools[0]
assert call.name == "weather.lookup" and call.server_label == "weather.svc", call
assert json.loads(call.arguments) == {"city": "Paris"}, call
assert call.output == RESULT and call.error is None and call.status == "completed", call
assert response.output_text == f"echo: the tool said {RESULT}", response.output_text
assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0, response.usage
assert client.responses.retrieve(response.id).output[1].type == "mcp_call"
print("mcp loop ok")

# Streamed: the SDK's stream helper sees the MCP events and the final response.
seen = []
with client.responses.stream(model="gpt", input=QUESTION, tools=never) as stream:
    for event in stream:
        seen.append(event.type)
    final = stream.get_final_response()
for kind in ["response.mcp_list_tools.completed", "response.mcp_call.completed", "response.output_text.delta"]:
    assert kind in seen, (kind, seen)
assert final.output_text == f"echo: the tool said {RESULT}", final
print("mcp stream ok:", len(seen), "events")

# Approval: the call waits, the continuation approves it by previous_response_id.
tools = [{"type": "mcp", "server_label": "weather.svc", "require_approval": "always"}]
asked = client.responses.create(model="gpt", input=QUESTION, tools=tools)
request = asked.output[-1]
assert request.type == "mcp_approval_request" and request.name == "weather.lookup", asked.output
approved = client.responses.create(
    model="gpt",
    previous_response_id=asked.id,
    tools=tools,
    input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
)
assert [item.type for item in approved.output] == ["mcp_call", "message"], approved.output
assert approved.output[0].approval_request_id == request.id, approved.output[0]
assert approved.output_text == f"echo: the tool said {RESULT}", approved.output_text
print("mcp approval ok")

# Only the app's servers: a server_url is refused.
try:
    client.responses.create(
        model="gpt",
        input=QUESTION,
        tools=[{"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/mcp"}],
    )
    raise AssertionError("a server_url was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "tools[0].server_url", e.body
print("all checks passed")
