"""The real SDKs' token counting through ferrolite: the anthropic SDK's messages.count_tokens and
the openai SDK's responses.input_tokens.count, answered by each deployment's provider (the fakes'
counting calls) or by ferrolite's estimate, as the x-ferrolite-token-count header says.

Run by tests/it/token_counting.rs with FERROLITE_BASE_URL (the service root) and FERROLITE_TOKEN.
The expected counts are the fakes' (count_of in tests/it/fake_anthropic.rs and fake_gemini.rs,
input_token_count in fake_openai.rs) and the estimate's.
"""

import os

import anthropic
import openai

base = os.environ["FERROLITE_BASE_URL"]
token = os.environ["FERROLITE_TOKEN"]
claude = anthropic.Anthropic(api_key=token, base_url=base)
client = openai.OpenAI(api_key=token, base_url=base + "/v1")

hello = [{"role": "user", "content": "Hello there"}]

raw = claude.messages.with_raw_response.count_tokens(model="claude", system="You are terse.", messages=hello)
count = raw.parse()
# The fake Anthropic: 10, a turn (4 and 2 words), the system prompt (3 words).
assert count.input_tokens == 19, count
assert raw.headers["x-ferrolite-token-count"] == "provider", raw.headers
print("anthropic SDK, claude:", count.input_tokens)

raw = claude.messages.with_raw_response.count_tokens(model="mock", messages=hello)
assert raw.parse().input_tokens == 8, raw.parse()
assert raw.headers["x-ferrolite-token-count"] == "estimate", raw.headers
print("anthropic SDK, mock: estimated")

expected = {"claude": 19, "gemini": 10, "gpt": 12, "mock": 12}
for model, tokens in expected.items():
    raw = client.responses.input_tokens.with_raw_response.count(
        model=model, instructions="You are terse.", input="Hello there"
    )
    counted = raw.parse()
    assert counted.object == "response.input_tokens", counted
    assert counted.input_tokens == tokens, (model, counted)
    source = "estimate" if model == "mock" else "provider"
    assert raw.headers["x-ferrolite-token-count"] == source, (model, raw.headers)
    print("openai SDK,", model + ":", counted.input_tokens, source)

print("all checks passed")
