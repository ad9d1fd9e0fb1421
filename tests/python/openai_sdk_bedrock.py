"""The real openai SDK against ferrolite translating to a fake AWS Bedrock (Converse API).

Run by tests/it/provider_bedrock.rs with FERROLITE_BASE_URL and FERROLITE_TOKEN set. The app has
one model, bedrock-claude = bedrock/anthropic.claude-3-sonnet-20240229-v1:0, whose api_base is
tests/it/fake_bedrock.rs: it checks every SigV4 signature and answers deterministically. Text is
"echo: <last user text>"; with tools and "weather" in the text it calls the weather tool with
{"location": <city>}; after tool results it answers "The tool said: <results>".
"""

import json
import os

import openai

client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])
MODEL = "bedrock-claude"

models = [m.id for m in client.models.list()]
assert models == [MODEL], models
print("models:", models)

# Plain.
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello from the SDK, Bedrock!"}]
plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=100)
answer = plain.choices[0].message.content
assert answer == "echo: Hello from the SDK, Bedrock!", plain
assert plain.choices[0].finish_reason == "stop", plain
assert plain.choices[0].message.role == "assistant"
assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens > 0, plain.usage
print("chat:", answer)

# Streaming: the same text, in several chunks, with usage at the end.
pieces = []
finish = []
usage = None
stream = client.chat.completions.create(
    model=MODEL, messages=messages, max_tokens=100, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    if chunk.choices:
        if chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
assert len(pieces) >= 2, pieces
assert "".join(pieces) == answer, pieces
assert finish == ["stop"], finish
assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens, usage
print("stream:", len(pieces), "chunks")

# max_tokens that cuts the answer short.
short = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
assert short.choices[0].finish_reason == "length", short
assert short.choices[0].message.content == "echo: Hello", short

# Tools: a weather call, then the tool's result round trip.
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        },
    }
]
history = [{"role": "user", "content": "What is the weather in Paris today?"}]
called = client.chat.completions.create(model=MODEL, messages=history, tools=tools)
choice = called.choices[0]
assert choice.finish_reason == "tool_calls", called
calls = choice.message.tool_calls
assert calls and len(calls) == 1, called
assert calls[0].type == "function" and calls[0].function.name == "get_weather", calls
assert json.loads(calls[0].function.arguments) == {"location": "Paris"}, calls
assert calls[0].id, calls
print("tool call:", calls[0].function.name, calls[0].function.arguments)

history.append(choice.message.model_dump(exclude_none=True))
history.append({"role": "tool", "tool_call_id": calls[0].id, "content": "22 C and sunny"})
final = client.chat.completions.create(model=MODEL, messages=history, tools=tools)
assert final.choices[0].message.content == "The tool said: 22 C and sunny", final
assert final.choices[0].finish_reason == "stop", final
assert not final.choices[0].message.tool_calls
print("tool result:", final.choices[0].message.content)

# The same tool call, streamed: id and name first, then the arguments in pieces.
streamed = {}
finish = []
for chunk in client.chat.completions.create(model=MODEL, messages=history[:1], tools=tools, stream=True):
    if not chunk.choices:
        continue
    for call in chunk.choices[0].delta.tool_calls or []:
        entry = streamed.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
        if call.id:
            entry["id"] = call.id
        if call.function and call.function.name:
            entry["name"] = call.function.name
        if call.function and call.function.arguments:
            entry["arguments"] += call.function.arguments
    if chunk.choices[0].finish_reason:
        finish.append(chunk.choices[0].finish_reason)
assert list(streamed) == [0], streamed
assert streamed[0]["id"] == calls[0].id and streamed[0]["name"] == "get_weather", streamed
assert json.loads(streamed[0]["arguments"]) == {"location": "Paris"}, streamed
assert finish == ["tool_calls"], finish
print("streamed tool call:", streamed[0])

print("all checks passed")
