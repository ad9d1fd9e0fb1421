"""The real openai SDK against ferrolite's demo app (mock models).

Run by tests/it/python_sdk.rs with FERROLITE_BASE_URL and FERROLITE_TOKEN set.
"""

import os

import openai

client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])
DEMO_TEXT = "Hello from ferrolite! This is the demo model answering without calling any provider."

models = [m.id for m in client.models.list()]
assert models == ["demo-chat", "demo-embedding"], models
print("models:", models)

response = client.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": "Hello!"}])
assert response.choices[0].message.content == DEMO_TEXT, response
assert response.choices[0].finish_reason == "stop"
assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0, response.usage
print("chat:", response.choices[0].message.content)

chunks = []
usage = None
stream = client.chat.completions.create(
    model="demo-chat",
    messages=[{"role": "user", "content": "Tell me a story"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    if chunk.choices and chunk.choices[0].delta.content is not None:
        chunks.append(chunk.choices[0].delta.content)
assert len(chunks) > 3, chunks
assert "".join(chunks) == DEMO_TEXT, chunks
assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0, usage
print("stream:", len(chunks), "chunks")

completion = client.completions.create(model="demo-chat", prompt="Once upon a time", max_tokens=50)
assert completion.choices[0].text == DEMO_TEXT, completion
print("completion ok")

# The SDK asks for base64 by default and decodes it.
embedding = client.embeddings.create(model="demo-embedding", input=["hello", "world"])
assert len(embedding.data) == 2
assert len(embedding.data[0].embedding) == 1536
norm = sum(x * x for x in embedding.data[0].embedding) ** 0.5
assert abs(norm - 1.0) < 1e-3, norm
again = client.embeddings.create(model="demo-embedding", input="hello", encoding_format="float")
assert again.data[0].embedding == embedding.data[0].embedding, "deterministic, float and base64 agree"
print("embeddings ok")

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model must fail")
except openai.NotFoundError as e:
    assert "no-such-model" in str(e)
print("all checks passed")
