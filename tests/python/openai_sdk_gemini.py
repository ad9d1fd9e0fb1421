"""The real openai SDK against ferrolite translating to a fake Gemini API.

Run by tests/it/provider_gemini.rs with FERROLITE_BASE_URL and FERROLITE_TOKEN set. The app's
models are `gemini` (gemini/gemini-1.5-pro) and `gemini-embed` (gemini/text-embedding-004), both
with api_base tests/it/fake_gemini.rs, which answers deterministically: "echo: <last user text>",
a get_weather functionCall when tools are given and the text mentions the weather,
"<name> says: <result>" after a tool result, and 768-dimension unit-vector embeddings.
"""

import json
import os

import openai

client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])

models = [m.id for m in client.models.list()]
assert "gemini" in models and "gemini-embed" in models, models
print("models:", models)

# Plain.
messages = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Tell me about the sea in three words"},
]
response = client.chat.completions.create(model="gemini", messages=messages)
plain = response.choices[0].message.content
assert plain == "echo: Tell me about the sea in three words", response
assert response.choices[0].finish_reason == "stop", response
assert response.choices[0].message.role == "assistant"
assert response.model == "gemini-1.5-pro", response.model
assert response.id.startswith("chatcmpl-"), response.id
usage = response.usage
assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens and usage.completion_tokens > 0, usage
print("chat:", plain)

# Streaming: several content chunks that join to the plain answer, usage last.
chunks = []
finish_reasons = []
stream_usage = None
stream = client.chat.completions.create(
    model="gemini", messages=messages, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.usage is not None:
        stream_usage = chunk.usage
    if chunk.choices:
        delta = chunk.choices[0].delta
        if delta.content:
            chunks.append(delta.content)
        if chunk.choices[0].finish_reason is not None:
            finish_reasons.append(chunk.choices[0].finish_reason)
assert len(chunks) >= 2, chunks
assert "".join(chunks) == plain, chunks
assert finish_reasons == ["stop"], finish_reasons
assert stream_usage is not None and stream_usage.completion_tokens == usage.completion_tokens, stream_usage
print("stream:", len(chunks), "chunks")

# Tools: a weather call, then the result back, then an answer built from it.
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["location"],
                "additionalProperties": False,
            },
        },
    }
]
question = [{"role": "user", "content": "What's the weather in Paris?"}]
called = client.chat.completions.create(model="gemini", messages=question, tools=tools, tool_choice="auto")
choice = called.choices[0]
assert choice.finish_reason == "tool_calls", called
assert choice.message.tool_calls and len(choice.message.tool_calls) == 1, called
call = choice.message.tool_calls[0]
assert call.type == "function" and call.function.name == "get_weather", call
assert call.id.startswith("call_"), call.id
assert json.loads(call.function.arguments) == {"location": "Paris"}, call.function.arguments
print("tool call:", call.function.name, call.function.arguments)

followup = question + [
    choice.message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "unit": "celsius"})},
]
answered = client.chat.completions.create(model="gemini", messages=followup, tools=tools)
text = answered.choices[0].message.content
assert answered.choices[0].finish_reason == "stop", answered
assert text.startswith("get_weather says: ") and "21" in text and "celsius" in text, text
print("tool result:", text)

# A streamed tool call comes as one whole tool_calls delta.
streamed_calls = []
stream_finish = None
for chunk in client.chat.completions.create(model="gemini", messages=question, tools=tools, stream=True):
    for c in chunk.choices:
        streamed_calls.extend(c.delta.tool_calls or [])
        stream_finish = c.finish_reason or stream_finish
assert len(streamed_calls) == 1, streamed_calls
assert streamed_calls[0].index == 0 and streamed_calls[0].function.name == "get_weather", streamed_calls
assert json.loads(streamed_calls[0].function.arguments) == {"location": "Paris"}, streamed_calls
assert stream_finish == "tool_calls", stream_finish
print("streamed tool call ok")

# Embeddings: the SDK asks for base64 and decodes it.
embedding = client.embeddings.create(model="gemini-embed", input=["hello", "world"])
assert [d.index for d in embedding.data] == [0, 1], embedding
assert len(embedding.data[0].embedding) == 768, len(embedding.data[0].embedding)
norm = sum(x * x for x in embedding.data[0].embedding) ** 0.5
assert abs(norm - 1.0) < 1e-3, norm
assert embedding.data[0].embedding != embedding.data[1].embedding
assert embedding.usage.prompt_tokens > 0, embedding.usage
again = client.embeddings.create(model="gemini-embed", input="hello", encoding_format="float")
assert again.data[0].embedding == embedding.data[0].embedding, "deterministic; float and base64 agree"
short = client.embeddings.create(model="gemini-embed", input="hello", dimensions=64)
assert len(short.data[0].embedding) == 64, len(short.data[0].embedding)
print("embeddings ok")

print("all checks passed")
