"""The real openai SDK's Responses API against ferrolite, on deployments that do not speak it:
mock, Anthropic, Gemini, Bedrock and a chat-only OpenAI-compatible server (all fakes).

Run by tests/it/responses_bridge.rs with FERROLITE_BASE_URL (the service's /v1) and FERROLITE_TOKEN.
"""

import json
import os

import openai

from openai import OpenAI

client = OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])

EXPECTED = {
    "mock": "Hello from the mock",
    "claude": "Hello from fake Claude! You said: Hello there",
    "gemini": "echo: Hello there",
    "bedrock": "echo: Hello there",
    "vllm": "echo: Hello there",
}

for model, text in EXPECTED.items():
    response = client.responses.create(model=model, input="Hello there")
    assert response.status == "completed", response
    assert response.output_text == text, (model, response)
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0, response.usage

    deltas = []
    with client.responses.stream(model=model, input="Hello there") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == text, (model, deltas)
    assert final.output_text == text, (model, final)
    print(model, "ok:", len(deltas), "deltas")

# A function tool round trip on Claude.
tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
first = client.responses.create(model="claude", input="What is the weather in Oslo?", tools=tools)
calls = [item for item in first.output if item.type == "function_call"]
assert len(calls) == 1, first.output
call = calls[0]
assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "Oslo", call
second = client.responses.create(
    model="claude",
    tools=tools,
    input=[
        {"role": "user", "content": "What is the weather in Oslo?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
    ],
)
assert second.output_text == "The tool said: rain", second
print("tool round trip ok")

# State: every answer is stored (whatever provider gave it), read back, listed, continued with
# previous_response_id (also across providers), and deleted.
for model in EXPECTED:
    first = client.responses.create(model=model, input="Hello there")
    assert client.responses.retrieve(first.id).output_text == first.output_text, model
    follow = client.responses.create(model=model, input="And again", previous_response_id=first.id)
    assert follow.previous_response_id == first.id, follow
    items = list(client.responses.input_items.list(follow.id))
    assert [item.role for item in items] == ["user", "assistant", "user"], (model, items)
    assert items[0].content[0].text == "And again", items
    client.responses.delete(first.id)
    try:
        client.responses.retrieve(first.id)
        raise AssertionError(f"{model}: a deleted response was still there")
    except openai.NotFoundError:
        pass
    print(model, "state ok")

# A tool round trip that sends only the tool's output, continuing the call's response, on
# each translating provider that calls tools.
for model in ["claude", "gemini", "bedrock"]:
    asked = client.responses.create(model=model, input="What is the weather in Oslo?", tools=tools)
    call = next(item for item in asked.output if item.type == "function_call")
    answered = client.responses.create(
        model=model,
        tools=tools,
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
    )
    assert "rain" in answered.output_text, (model, answered)
    print(model, "stored tool round trip ok")

# Structured output: each provider's own JSON mode (a forced tool on Claude and Bedrock,
# responseSchema on Gemini, response_format on the chat-only server) answers JSON of the schema.
schema = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}
for model in ["claude", "gemini", "bedrock", "vllm"]:
    structured = client.responses.create(
        model=model,
        input="The weather in Oslo, as JSON",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}},
    )
    assert structured.status == "completed", structured
    parsed = json.loads(structured.output_text)
    assert set(parsed) == {"city", "temperature_c"} and isinstance(parsed["temperature_c"], int), (model, parsed)
    assert structured.text.format.type == "json_schema", structured.text
    print(model, "structured output ok:", parsed)
print("all checks passed")
