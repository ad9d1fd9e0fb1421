//! Reasoning end to end on the translated providers: `reasoning.effort` (and chat's
//! `reasoning_effort`) reaches Anthropic, Gemini and Bedrock as their own thinking control; the
//! thinking comes back as `reasoning` items (JSON) and as their summary events (streams), in
//! order and piece by piece; and a Codex-style tool round trip that hands the reasoning item
//! back gives each upstream its signed thinking again, which the fakes check as the real APIs do.

use crate::fake_anthropic::{self, FakeAnthropic};
use crate::fake_bedrock::{self, FakeBedrock};
use crate::fake_gemini::{self, FakeGemini};
use crate::support::TestServer;
use serde_json::{json, Value};

const ANTHROPIC_KEY: &str = "sk-ant-fake-reasoning-1";
const GEMINI_KEY: &str = "AIzaSy-fake-reasoning-0001";
const AWS_KEY_ID: &str = "AKIAFAKEREASONING001";
const AWS_SECRET: &str = "fAkE/reasoningSecret+0123456789abcdefEXAMPLE";
const REGION: &str = "us-east-1";

struct Setup {
    server: TestServer,
    anthropic: FakeAnthropic,
    gemini: FakeGemini,
    bedrock: FakeBedrock,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    let gemini = FakeGemini::start(GEMINI_KEY).await;
    let bedrock = fake_bedrock::start(AWS_KEY_ID, AWS_SECRET, REGION).await;
    let doc = json!({"name": "Reasoning", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5-20250929", "api_base": anthropic.base_url, "api_key": ANTHROPIC_KEY}},
        {"model_name": "opus", "litellm_params": {"model": "anthropic/claude-opus-4-7", "api_base": anthropic.base_url, "api_key": ANTHROPIC_KEY}},
        {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": gemini.base_url, "api_key": GEMINI_KEY}},
        {"model_name": "bedrock", "litellm_params": {"model": "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "api_base": bedrock.base_url,
            "aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET, "aws_region_name": REGION}}
    ]}});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reasoning.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    Setup { server, anthropic, gemini, bedrock, _dir: dir }
}

const PROVIDERS: [&str; 3] = ["claude", "gemini", "bedrock"];

/// The body each upstream last received.
fn last_upstream_body(s: &Setup, model: &str) -> Value {
    match model {
        "claude" | "opus" => s.anthropic.requests().pop().expect("Anthropic was called"),
        "gemini" => s.gemini.requests().pop().expect("Gemini was called").json(),
        _ => serde_json::from_slice(&s.bedrock.requests().pop().expect("Bedrock was called").body).unwrap(),
    }
}

/// The thinking text each fake thinks for a plain question.
fn thought(model: &str, question: &str) -> String {
    match model {
        "gemini" => format!("Thinking about: {question}"),
        "bedrock" => "Reasoning about the request.".to_owned(),
        _ => fake_anthropic::thinking_text(question, &[]),
    }
}

async fn create(s: &Setup, body: Value) -> (u16, Value) {
    s.server.post_json(&s.server.demo_url("/v1/responses"), &body).await
}

/// A stream's events as (SSE event name, data).
async fn events(s: &Setup, mut body: Value) -> Vec<(String, Value)> {
    body["stream"] = json!(true);
    let response = s.server.post(s.server.demo_url("/v1/responses"), &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).expect("a named event").to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
            (name, serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {data}")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn reasoning_effort_reaches_each_upstream_as_its_thinking_control() {
    let s = setup().await;
    for model in PROVIDERS {
        let (status, body) = create(
            &s,
            json!({"model": model, "input": "Why is the sky blue?",
            "reasoning": {"effort": "medium"}, "max_output_tokens": 500}),
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        let sent = last_upstream_body(&s, model);
        match model {
            "claude" => {
                assert_eq!(sent["thinking"], json!({"type": "enabled", "budget_tokens": 2048}));
                assert_eq!(sent["max_tokens"], 2548, "the budget on top of max_output_tokens");
            }
            "gemini" => assert_eq!(
                sent["generationConfig"]["thinkingConfig"],
                json!({"thinkingBudget": 2048, "includeThoughts": true})
            ),
            _ => {
                assert_eq!(
                    sent["additionalModelRequestFields"],
                    json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})
                );
                assert_eq!(sent["inferenceConfig"]["maxTokens"], 2548);
            }
        }
        // The reasoning item first, its summary the thinking, its signed blocks sealed.
        let output = body["output"].as_array().unwrap();
        let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "message"], "{model}: {body}");
        assert!(output[0]["id"].as_str().unwrap().starts_with("rs_"), "{model}");
        assert_eq!(
            output[0]["summary"],
            json!([{"type": "summary_text", "text": thought(model, "Why is the sky blue?")}]),
            "{model}"
        );
        assert!(output[0]["encrypted_content"].as_str().is_some_and(|c| !c.is_empty()), "{model}: {body}");
    }
    // Gemini reports its thinking tokens.
    let (_, body) = create(&s, json!({"model": "gemini", "input": "Hi", "reasoning": {"effort": "low"}})).await;
    assert_eq!(body["usage"]["output_tokens_details"]["reasoning_tokens"], 3, "{body}");
    // Claude 4.6 and later think adaptively; effort none asks for no thinking.
    let (status, _) = create(&s, json!({"model": "opus", "input": "Hi", "reasoning": {"effort": "high"}})).await;
    assert_eq!(status, 200);
    let sent = last_upstream_body(&s, "opus");
    assert_eq!(
        (sent["thinking"]["type"].clone(), sent["output_config"].clone()),
        (json!("adaptive"), json!({"effort": "high"}))
    );
    let (_, body) = create(&s, json!({"model": "claude", "input": "Hi", "reasoning": {"effort": "none"}})).await;
    assert_eq!(last_upstream_body(&s, "claude").get("thinking"), None);
    assert_eq!(body["output"][0]["type"], "message");
}

#[tokio::test(flavor = "multi_thread")]
async fn reasoning_streams_as_its_summary_events_before_the_message() {
    let s = setup().await;
    for model in PROVIDERS {
        let question = "Why is the sky blue?";
        let events = events(&s, json!({"model": model, "input": question, "reasoning": {"effort": "low"}})).await;
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        let deltas = names.iter().filter(|n| **n == "response.reasoning_summary_text.delta").count();
        let upstream_pieces = match model {
            "gemini" => 2,
            "bedrock" => 4,
            _ => thought(model, question).split(' ').count(),
        };
        assert_eq!(deltas, upstream_pieces, "{model}: one delta per upstream piece, never merged: {names:?}");
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
        ];
        expected.extend(std::iter::repeat_n("response.reasoning_summary_text.delta", deltas));
        expected.extend([
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
        ]);
        assert_eq!(names[..expected.len()], expected[..], "{model}");
        assert_eq!(names.last(), Some(&"response.completed"), "{model}");
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(
                (data["type"].as_str(), data["sequence_number"].as_u64()),
                (Some(name.as_str()), Some(i as u64))
            );
        }
        let added = &events[2].1;
        assert_eq!(added["item"], json!({"type": "reasoning", "id": added["item"]["id"], "summary": []}), "{model}");
        let item_id = &added["item"]["id"];
        let summary_events = &events[3..expected.len() - 2];
        for (_, e) in summary_events {
            assert_eq!(
                (&e["item_id"], &e["output_index"], &e["summary_index"]),
                (item_id, &json!(0), &json!(0)),
                "{model}: {e}"
            );
        }
        let text: String = summary_events.iter().filter_map(|(_, e)| e["delta"].as_str()).collect();
        assert_eq!(text, thought(model, question), "{model}");
        assert_eq!(summary_events.last().unwrap().1["part"], json!({"type": "summary_text", "text": text}));
        let done = &events[expected.len() - 2].1;
        assert_eq!(done["item"]["summary"], json!([{"type": "summary_text", "text": text}]), "{model}");
        assert!(done["item"]["encrypted_content"].is_string(), "{model}: {done}");
        assert_eq!(events[expected.len() - 1].1["item"]["type"], "message", "{model}");
        let completed = &events.last().unwrap().1["response"];
        assert_eq!(completed["output"][0], done["item"], "{model}: the completed response holds the same item");
    }
}

/// The weather tool a Codex-style client offers.
fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}})
}

/// A tool round trip as Codex drives it (store off, encrypted reasoning included): the first
/// turn streamed, its output items handed back whole with the call's output.
async fn tool_round_trip(s: &Setup, model: &str) -> Value {
    let question = json!({"role": "user", "content": [{"type": "input_text", "text": "What's the weather in Paris?"}]});
    let first = json!({"model": model, "input": [question], "tools": [weather_tool()], "store": false,
        "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"]});
    let events = events(s, first.clone()).await;
    let output = events.last().unwrap().1["response"]["output"].as_array().unwrap().clone();
    assert_eq!(output[0]["type"], "reasoning", "{model}: {output:?}");
    let call = output.iter().find(|i| i["type"] == "function_call").unwrap_or_else(|| panic!("{model}: {output:?}"));
    let mut input = vec![question];
    input.extend(output.iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "18C and sunny"}));
    let mut second = first;
    second["input"] = Value::Array(input);
    let (status, body) = create(s, second).await;
    assert_eq!(status, 200, "{model}: the upstream took the thinking back: {body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_round_trip_hands_the_signed_thinking_back_to_claude() {
    let s = setup().await;
    let answer = tool_round_trip(&s, "claude").await;
    let sent = s.anthropic.requests().pop().unwrap();
    let turn = &sent["messages"][1];
    assert_eq!(turn["role"], "assistant");
    let thinking = fake_anthropic::thinking_text("What's the weather in Paris?", &[]);
    assert_eq!(
        turn["content"][0],
        json!({"type": "thinking", "thinking": thinking, "signature": fake_anthropic::signature(&thinking)}),
        "the signed block, unchanged, first in its turn"
    );
    assert_eq!(turn["content"][1]["type"], "text");
    assert_eq!(turn["content"][2]["type"], "tool_use");
    assert_eq!(sent["thinking"]["type"], "enabled", "thinking stays on for the answer");
    let text = answer["output"].as_array().unwrap().iter().find(|i| i["type"] == "message").unwrap()["content"][0]
        ["text"]
        .clone();
    assert_eq!(text, "The tool said: 18C and sunny");
    assert_eq!(answer["output"][0]["type"], "reasoning", "the answer thinks too");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_round_trip_hands_thought_signatures_back_to_gemini_and_reasoning_to_bedrock() {
    let s = setup().await;
    tool_round_trip(&s, "gemini").await;
    let sent = s.gemini.requests().pop().unwrap().json();
    let turn = &sent["contents"][1];
    assert_eq!(turn["role"], "model");
    assert_eq!(turn["parts"][0]["functionCall"]["name"], "get_weather");
    assert_eq!(turn["parts"][0]["thoughtSignature"], fake_gemini::THOUGHT_SIGNATURE);

    tool_round_trip(&s, "bedrock").await;
    let sent: Value = serde_json::from_slice(&s.bedrock.requests().pop().unwrap().body).unwrap();
    let turn = &sent["messages"][1];
    let text = "Reasoning about the request.";
    assert_eq!(
        turn["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": text, "signature": fake_bedrock::reasoning_signature(text)}}})
    );
    assert!(turn["content"][1].get("toolUse").is_some(), "{turn}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reasoning_handed_back_to_another_provider_is_left_out() {
    let s = setup().await;
    // A conversation started on Gemini and continued on Claude: Gemini's signature means nothing
    // to Claude, so it is not sent, and Claude is not asked to think over a call it never saw.
    let question = json!({"role": "user", "content": "What's the weather in Paris?"});
    let first =
        json!({"model": "gemini", "input": [question], "tools": [weather_tool()], "reasoning": {"effort": "low"}});
    let (status, body) = create(&s, first.clone()).await;
    assert_eq!(status, 200, "{body}");
    let output = body["output"].as_array().unwrap().clone();
    let call = output.iter().find(|i| i["type"] == "function_call").unwrap().clone();
    let mut input = vec![question];
    input.extend(output);
    input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "18C"}));
    let mut second = first;
    second["model"] = json!("claude");
    second["input"] = Value::Array(input);
    let (status, body) = create(&s, second).await;
    assert_eq!(status, 200, "{body}");
    let sent = s.anthropic.requests().pop().unwrap();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use", "no foreign thinking: {sent}");
    assert_eq!(sent.get("thinking"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_clients_get_thinking_blocks_and_hand_them_back() {
    let s = setup().await;
    let url = s.server.demo_url("/v1/chat/completions");
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let question = json!({"role": "user", "content": "What's the weather in Paris?"});
    let (status, answer) = s
        .server
        .post_json(&url, &json!({"model": "claude", "reasoning_effort": "low", "tools": tools, "messages": [question]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let message = answer["choices"][0]["message"].clone();
    let thinking = fake_anthropic::thinking_text("What's the weather in Paris?", &[]);
    assert_eq!(message["reasoning_content"], thinking.as_str());
    assert_eq!(
        message["thinking_blocks"],
        json!([{"type": "thinking", "thinking": thinking, "signature": fake_anthropic::signature(&thinking)}])
    );
    let call_id = message["tool_calls"][0]["id"].clone();
    let result = json!({"role": "tool", "tool_call_id": call_id, "content": "18C"});
    // Handed back with its thinking, and without it (as most chat clients do): both answer.
    let mut without = message.clone();
    without.as_object_mut().unwrap().remove("thinking_blocks");
    for (turn, thinks) in [(message, true), (without, false)] {
        let body = json!({"model": "claude", "reasoning_effort": "low", "tools": tools,
            "messages": [question, turn, result]});
        let (status, answer) = s.server.post_json(&url, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["choices"][0]["message"]["content"], "The tool said: 18C");
        assert_eq!(s.anthropic.requests().pop().unwrap().get("thinking").is_some(), thinks);
    }
    // Streamed, the signature arrives as its own thinking_blocks delta.
    let response = s
        .server
        .post(
            url.as_str(),
            &json!({"model": "claude", "reasoning_effort": "low", "stream": true, "messages": [question]}),
        )
        .await;
    let text = response.text().await.unwrap();
    let deltas: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"].clone())
        .collect();
    let reasoning: String = deltas.iter().filter_map(|d| d["reasoning_content"].as_str()).collect();
    assert_eq!(reasoning, thinking);
    assert!(deltas
        .iter()
        .any(|d| d["thinking_blocks"][0]["signature"] == fake_anthropic::signature(&thinking).as_str()));
}
