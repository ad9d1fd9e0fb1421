"""The real anthropic SDK against ferrolite's /v1/messages, served by an OpenAI deployment.

Run by tests/it/messages_front.rs with FERROLITE_BASE_URL (the service root) and FERROLITE_TOKEN.
"""

import os

import anthropic

client = anthropic.Anthropic(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])

message = client.messages.create(
    model="gpt-4o",
    max_tokens=256,
    system="You are terse.",
    messages=[{"role": "user", "content": "Hello!"}],
)
assert message.type == "message" and message.role == "assistant", message
assert message.content[0].type == "text", message
assert message.content[0].text == "echo: Hello!", message
assert message.stop_reason == "end_turn", message
assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message.usage
print("plain:", message.content[0].text)

texts = []
event_types = []
with client.messages.stream(model="gpt-4o", max_tokens=256, messages=[{"role": "user", "content": "Tell me a story"}]) as stream:
    for event in stream:
        event_types.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            texts.append(event.delta.text)
    final = stream.get_final_message()
assert len(texts) >= 2, texts
assert "".join(texts) == "echo: Tell me a story", texts
assert final.content[0].text == "echo: Tell me a story", final
assert final.stop_reason == "end_turn", final
assert final.usage.output_tokens > 0, final.usage
assert event_types[0] == "message_start", event_types
assert "message_stop" in event_types, event_types
print("stream:", len(texts), "deltas")

tools = [{
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
question = {"role": "user", "content": "What is the weather in Paris?"}
call = client.messages.create(model="gpt-4o", max_tokens=256, tools=tools, messages=[question])
assert call.stop_reason == "tool_use", call
tool_use = [b for b in call.content if b.type == "tool_use"][0]
assert tool_use.name == "get_weather" and tool_use.input == {"city": "Paris"}, tool_use
print("tool call:", tool_use.name, tool_use.input)

with client.messages.stream(model="gpt-4o", max_tokens=256, tools=tools, messages=[question]) as stream:
    streamed = stream.get_final_message()
streamed_use = [b for b in streamed.content if b.type == "tool_use"][0]
assert streamed_use.input == {"city": "Paris"} and streamed.stop_reason == "tool_use", streamed
print("streamed tool call ok")

answer = client.messages.create(
    model="gpt-4o",
    max_tokens=256,
    tools=tools,
    messages=[
        question,
        {"role": "assistant", "content": call.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18C and sunny"}]},
    ],
)
assert answer.content[0].text == "echo: the tool said 18C and sunny", answer

raw = client.messages.with_raw_response.count_tokens(model="gpt-4o", system="You are terse.", messages=[question])
counted = raw.parse()
assert counted.input_tokens > 0, counted
# OpenAI counts no Messages prompt: ferrolite's estimate answers, and says so.
assert raw.headers["x-ferrolite-token-count"] == "estimate", raw.headers
print("count_tokens:", counted.input_tokens, "(estimate)")
print("all checks passed")
