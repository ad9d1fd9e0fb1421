"""The real openai SDK against ferrolite translating to a fake Cohere v2 API.

Run by tests/it/provider_cohere.rs with FERROLITE_BASE_URL and FERROLITE_TOKEN set. The app's
models are `command` (command-r-plus, /v2/chat) and `embed` (cohere/embed-english-v3.0,
/v2/embed) on tests/it/fake_cohere.rs, which answers "echo: <last user text>", calls the first
tool for a weather question (ids `<name>_<n>`), answers "the tool said: <content>" after a tool
result, and embeds as 1024-dimension unit vectors.
"""

import json
import os

import openai

client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])

messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name two oceans"}]
whole = client.chat.completions.create(model="command", messages=messages)
text = whole.choices[0].message.content
assert text == "echo: Name two oceans", whole
assert whole.choices[0].finish_reason == "stop", whole
assert whole.usage.completion_tokens == 4 and whole.usage.prompt_tokens == 12, whole.usage
print("chat:", text)

pieces, usage = [], None
for chunk in client.chat.completions.create(
    model="command", messages=messages, stream=True, stream_options={"include_usage": True}
):
    usage = chunk.usage or usage
    for c in chunk.choices:
        pieces.append(c.delta.content or "")
assert "".join(pieces) == text, pieces
assert usage is not None and usage.total_tokens == whole.usage.total_tokens, usage
print("stream ok")

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
]
question = [{"role": "user", "content": "What is the weather in Lima?"}]
called = client.chat.completions.create(model="command", messages=question, tools=tools)
call = called.choices[0].message.tool_calls[0]
assert called.choices[0].finish_reason == "tool_calls", called
assert call.id.startswith("get_weather_") and json.loads(call.function.arguments) == {"location": "Lima"}, call
followup = question + [
    called.choices[0].message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
]
answered = client.chat.completions.create(model="command", messages=followup, tools=tools)
assert answered.choices[0].message.content == "the tool said: sunny", answered
print("tool round trip ok")

embedding = client.embeddings.create(model="embed", input=["hello", "world"])
assert [len(d.embedding) for d in embedding.data] == [1024, 1024], embedding
assert abs(sum(x * x for x in embedding.data[0].embedding) - 1.0) < 1e-3
floats = client.embeddings.create(model="embed", input="hello", encoding_format="float")
assert floats.data[0].embedding == embedding.data[0].embedding, "float and base64 agree"
print("embeddings ok")

print("all checks passed")
