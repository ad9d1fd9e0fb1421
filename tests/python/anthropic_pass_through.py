"""The real anthropic SDK against ferrolite's pass-through route `/anthropic`, as litellm users call it.

Run by tests/it/passthrough.rs with FERROLITE_BASE_URL (the app's `/anthropic` URL) and FERROLITE_TOKEN
(the caller's ferrolite token, sent as `x-api-key`: the app's own Anthropic key replaces it upstream).
"""

import os

import anthropic

client = anthropic.Anthropic(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])

message = client.messages.create(
    model="claude-3-5-haiku-20241022",
    max_tokens=64,
    messages=[{"role": "user", "content": "Hello!"}],
)
assert message.type == "message" and message.role == "assistant", message
assert message.content[0].text == "Hello from fake Claude! You said: Hello!", message
assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message.usage
print("plain:", message.content[0].text)

texts = []
with client.messages.stream(
    model="claude-3-5-haiku-20241022", max_tokens=64, messages=[{"role": "user", "content": "Stream please"}]
) as stream:
    for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            texts.append(event.delta.text)
    final = stream.get_final_message()
assert "".join(texts) == "Hello from fake Claude! You said: Stream please", texts
assert final.usage.output_tokens > 0, final.usage
print("stream:", len(texts), "deltas")
print("all checks passed")
