"""The real openai SDK against ferrolite translating to a fake Anthropic Messages API.

Run by tests/it/provider_anthropic.rs with FERROLITE_BASE_URL and FERROLITE_TOKEN set. The app's
model `claude` is `anthropic/claude-3-5-sonnet-20241022` on tests/it/fake_anthropic.rs, which
answers deterministically: "Hello from fake Claude! You said: <last user text>", a tool_use of
the weather tool (city = the word after "in") when asked about the weather, "The tool said:
<result>" after a tool result, and a schema-shaped object when a tool is forced.
"""

import json
import os

import openai

client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])
MODEL = "claude"
QUESTION = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there!"}]

# Plain chat.
response = client.chat.completions.create(model=MODEL, messages=QUESTION)
answer = response.choices[0].message.content
assert answer == "Hello from fake Claude! You said: Hello there!", response
assert response.choices[0].finish_reason == "stop", response
assert response.model == "claude-3-5-sonnet-20241022", response.model
assert response.id.startswith("chatcmpl-"), response.id
assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens > 0, response.usage
print("chat:", answer)

# Streaming chat: several content chunks that join into the same answer, then usage.
pieces = []
usage = None
finish = None
roles = 0
stream = client.chat.completions.create(
    model=MODEL, messages=QUESTION, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    if not chunk.choices:
        continue
    delta = chunk.choices[0].delta
    if delta.role is not None:
        roles += 1
    if delta.content:
        pieces.append(delta.content)
    if chunk.choices[0].finish_reason is not None:
        finish = chunk.choices[0].finish_reason
assert len(pieces) >= 2, pieces
assert "".join(pieces) == answer, pieces
assert roles == 1, roles
assert finish == "stop", finish
assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0, usage
print("stream:", len(pieces), "chunks")

# Tools: the SDK gets a tool call with JSON arguments, sends the result back, gets an answer.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
messages = [{"role": "user", "content": "What's the weather in Paris?"}]
response = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
choice = response.choices[0]
assert choice.finish_reason == "tool_calls", choice
calls = choice.message.tool_calls
assert calls and len(calls) == 1, choice.message
call = calls[0]
assert call.type == "function" and call.function.name == "get_weather", call
assert json.loads(call.function.arguments) == {"city": "Paris"}, call.function.arguments
print("tool call:", call.function.name, call.function.arguments)

messages.append(choice.message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"})
final = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
assert final.choices[0].finish_reason == "stop", final
assert final.choices[0].message.content == "The tool said: 18 C and sunny", final
assert not final.choices[0].message.tool_calls, final
print("tool answer:", final.choices[0].message.content)

# A streamed tool call, forced: the arguments arrive in pieces and parse whole.
stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Forecast in Rome, please"}],
    tools=[WEATHER],
    tool_choice={"type": "function", "function": {"name": "get_weather"}},
    stream=True,
)
arguments, names, ids, finish, argument_pieces = "", [], [], None, 0
for chunk in stream:
    if not chunk.choices:
        continue
    for tc in chunk.choices[0].delta.tool_calls or []:
        assert tc.index == 0, tc
        if tc.id:
            ids.append(tc.id)
        if tc.function and tc.function.name:
            names.append(tc.function.name)
        if tc.function and tc.function.arguments:
            arguments += tc.function.arguments
            argument_pieces += 1
    if chunk.choices[0].finish_reason is not None:
        finish = chunk.choices[0].finish_reason
assert names == ["get_weather"] and len(ids) == 1, (names, ids)
assert argument_pieces >= 2, argument_pieces
assert json.loads(arguments) == {"city": "Rome"}, arguments
assert finish == "tool_calls", finish
print("streamed tool call:", arguments)

# Structured output: the JSON comes back as the message content.
response = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Describe a city"}],
    response_format={
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
                "required": ["name", "population"],
            },
        },
    },
)
assert response.choices[0].finish_reason == "stop", response
assert not response.choices[0].message.tool_calls, response
city = json.loads(response.choices[0].message.content)
assert isinstance(city["name"], str) and isinstance(city["population"], int), city
print("json:", city)

print("all checks passed")
