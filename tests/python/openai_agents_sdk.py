"""The OpenAI Agents SDK against ferrolite: an agent with one function tool on a Claude deployment
(the Anthropic fake), through the Responses API (the SDK's default model, OpenAIResponsesModel),
streamed and not, and through chat completions (OpenAIChatCompletionsModel).

The fake calls the weather tool when asked about the weather, then answers "The tool said: ..."
with the tool's output. Tracing is off: nothing leaves 127.0.0.1.

Run by tests/it/agent_clients.rs with FERROLITE_BASE_URL (the service's /v1) and FERROLITE_TOKEN.
"""

import asyncio
import os

from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIProvider,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

set_tracing_disabled(True)
client = AsyncOpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])
set_default_openai_client(client, use_for_tracing=False)

calls = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny, 21 degrees in {city}"


QUESTION = "What is the weather in Oslo?"
ANSWER = "The tool said: sunny, 21 degrees in Oslo"


def agent(model):
    return Agent(name="Weather", instructions="Answer with the weather tool.", model=model, tools=[get_weather])


def check(result, label):
    assert result.final_output == ANSWER, (label, result.final_output)
    assert calls == ["Oslo"], (label, calls)
    kinds = [item.type for item in result.new_items]
    assert kinds.count("tool_call_item") == 1 and kinds.count("tool_call_output_item") == 1, (label, kinds)
    print(label, "ok:", kinds)
    calls.clear()


async def main():
    # The default: a model name, which the SDK serves with OpenAIResponsesModel.
    default = agent("claude")
    check(await Runner.run(default, QUESTION), "responses")
    assert type(OpenAIProvider().get_model("claude")) is OpenAIResponsesModel, "the default is no longer Responses"

    streamed = Runner.run_streamed(agent(OpenAIResponsesModel(model="claude", openai_client=client)), QUESTION)
    deltas = []
    async for event in streamed.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
    check(streamed, "responses streamed")
    assert "".join(deltas).endswith(ANSWER), deltas

    chat = agent(OpenAIChatCompletionsModel(model="claude", openai_client=client))
    check(await Runner.run(chat, QUESTION), "chat completions")


asyncio.run(main())
print("all checks passed")
