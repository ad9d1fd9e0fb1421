// The Vercel AI SDK's default OpenAI model (`createOpenAI({baseURL, apiKey})(model)`, which
// calls the Responses API) against ferrolite's embedded demo app: generateText and streamText.
// Run by tests/it/node_clients.rs with FERROLITE_BASE_URL (the service's /v1) and FERROLITE_TOKEN.
import assert from "node:assert/strict";
import { generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const seen = [];
const openai = createOpenAI({
  baseURL: process.env.FERROLITE_BASE_URL,
  apiKey: process.env.FERROLITE_TOKEN,
  // Records which route each call took.
  fetch: (url, init) => {
    seen.push(new URL(url).pathname);
    return fetch(url, init);
  },
});
const model = openai("demo-chat");

const generated = await generateText({ model, prompt: "Hello there" });
assert.ok(generated.text.length > 0, "generateText answered");
assert.ok(generated.usage.inputTokens > 0 && generated.usage.outputTokens > 0, JSON.stringify(generated.usage));
assert.equal(generated.finishReason, "stop");

const streamed = streamText({ model, prompt: "Tell me more" });
const pieces = [];
for await (const piece of streamed.textStream) pieces.push(piece);
assert.ok(pieces.length >= 2, `streamed in pieces: ${JSON.stringify(pieces)}`);
assert.equal(pieces.join(""), await streamed.text);
assert.equal(await streamed.finishReason, "stop");

assert.ok(seen.length === 2 && seen.every((p) => p.endsWith("/v1/responses")), `the Responses API was called: ${seen}`);
console.log(`generateText: ${generated.text}`);
console.log(`streamText: ${pieces.length} pieces`);
console.log("all checks passed");
