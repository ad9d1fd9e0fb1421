"""The real openai SDK against ferrolite translating to a fake Ollama (native API).

Run by tests/it/provider_ollama.rs with FERROLITE_BASE_URL and FERROLITE_TOKEN set. The app's
models are `llama` (ollama_chat/llama3.1, /api/chat), `llama-generate` (ollama/llama3.1,
/api/generate) and `embed` (ollama/nomic-embed-text, /api/embed), all on tests/it/fake_ollama.rs,
which answers "echo: <last user text>", calls the first tool for a weather question, answers
"<tool_name> says: <content>" after a tool result, and embeds as 4-dimension unit vectors.
"""

import json
import os

import openai

client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])

# Plain chat, then the same streamed: the pieces join to the whole, usage comes last.
messages = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three rivers"},
]
whole = client.chat.completions.create(model="llama", messages=messages)
text = whole.choices[0].message.content
assert text == "echo: Name three rivers", whole
assert whole.choices[0].finish_reason == "stop", whole
assert whole.model == "llama3.1", whole.model
assert whole.usage.prompt_tokens == 6 and whole.usage.completion_tokens == 4, whole.usage
print("chat:", text)

pieces, finishes, usage = [], [], None
for chunk in client.chat.completions.create(
    model="llama", messages=messages, stream=True, stream_options={"include_usage": True}
):
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason is not None:
            finishes.append(c.finish_reason)
assert "".join(pieces) == text and len(pieces) >= 3, pieces
assert finishes == ["stop"], finishes
assert usage is not None and usage.completion_tokens == 4 and usage.prompt_tokens == 6, usage
print("stream:", len(pieces), "pieces")

# Tools: a call with made-up id and JSON-text arguments, then the result handed back.
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
]
question = [{"role": "user", "content": "What is the weather in Oslo?"}]
called = client.chat.completions.create(model="llama", messages=question, tools=tools)
choice = called.choices[0]
assert choice.finish_reason == "tool_calls", called
call = choice.message.tool_calls[0]
assert call.id.startswith("call_") and call.function.name == "get_weather", call
assert json.loads(call.function.arguments) == {"location": "Oslo"}, call.function.arguments
followup = question + [
    choice.message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": "12 degrees and rain"},
]
answered = client.chat.completions.create(model="llama", messages=followup, tools=tools)
assert answered.choices[0].message.content == "get_weather says: 12 degrees and rain", answered
print("tool round trip ok")

streamed = []
for chunk in client.chat.completions.create(model="llama", messages=question, tools=tools, stream=True):
    for c in chunk.choices:
        streamed.extend(c.delta.tool_calls or [])
assert len(streamed) == 1 and json.loads(streamed[0].function.arguments) == {"location": "Oslo"}, streamed
print("streamed tool call ok")

# /api/generate: the same answers through a prompt.
generated = client.chat.completions.create(model="llama-generate", messages=[{"role": "user", "content": "Hi there"}])
assert generated.choices[0].message.content == "echo: Hi there", generated
print("generate ok")

# Embeddings: the SDK asks for base64 and decodes it.
embedding = client.embeddings.create(model="embed", input=["hello", "world"])
assert [len(d.embedding) for d in embedding.data] == [4, 4], embedding
assert abs(sum(x * x for x in embedding.data[0].embedding) - 1.0) < 1e-4, embedding.data[0].embedding
assert embedding.usage.prompt_tokens == 2, embedding.usage
floats = client.embeddings.create(model="embed", input="hello", encoding_format="float")
assert floats.data[0].embedding == embedding.data[0].embedding, "float and base64 agree"
print("embeddings ok")

print("all checks passed")
