//! Anthropic's /v1/messages in front of non-Anthropic deployments: the pure conversions
//! (snapshots), and the real anthropic SDK against an OpenAI deployment.

use crate::fake_openai::FakeOpenAi;
use crate::support::TestServer;
use ferrolite::api::openai::ChatChunk;
use ferrolite::providers::chat::{check_params, unsupported_params};
use ferrolite::providers::messages::{to_anthropic_message, to_chat_request, AnthropicEvents};
use ferrolite::providers::Provider;
use serde_json::{json, Value};

#[test]
fn messages_request_becomes_an_openai_chat_request() {
    let body = json!({
        "model": "claude-alias", "max_tokens": 512, "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"], "temperature": 0.3, "metadata": {"user_id": "u-1"}, "stream": true,
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "text", "text": "Thanks!"}
            ]}
        ]
    });
    let req = serde_json::from_value(body).expect("a Messages request");
    insta::assert_json_snapshot!(serde_json::to_value(to_chat_request(&req)).unwrap());
}

#[test]
fn thinking_on_the_messages_front_becomes_the_effort_of_its_budget() {
    let effort = |thinking: Value| {
        let body = json!({"model": "m", "max_tokens": 8000, "thinking": thinking,
            "messages": [{"role": "user", "content": "Think."}]});
        let chat = to_chat_request(&serde_json::from_value(body).unwrap());
        serde_json::to_value(chat).unwrap()["reasoning_effort"].clone()
    };
    assert_eq!(effort(json!({"type": "enabled", "budget_tokens": 1024})), "low");
    assert_eq!(effort(json!({"type": "enabled", "budget_tokens": 2048})), "medium");
    assert_eq!(effort(json!({"type": "enabled", "budget_tokens": 10000})), "high");
    assert_eq!(effort(json!({"type": "adaptive"})), "medium");
    assert_eq!(effort(json!({"type": "disabled"})), "none");
}

#[test]
fn chat_completion_becomes_an_anthropic_message() {
    let chat = json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]
        }}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27, "prompt_tokens_details": {"cached_tokens": 4}}
    });
    let chat = serde_json::from_value(chat).expect("a chat.completion");
    insta::assert_json_snapshot!(to_anthropic_message(&chat));
}

#[test]
fn openai_chunks_become_the_full_anthropic_event_sequence() {
    let mut chunks: Vec<ChatChunk> = crate::support::fixture_chat_chunks();
    chunks.push(
        serde_json::from_value(json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}))
            .unwrap(),
    );
    let mut events = AnthropicEvents::new("gpt-4o");
    let mut out = String::new();
    for chunk in &chunks {
        for frame in events.push(chunk) {
            out.push_str(std::str::from_utf8(&frame).unwrap());
        }
    }
    for frame in events.finish() {
        out.push_str(std::str::from_utf8(&frame).unwrap());
    }
    insta::assert_snapshot!(out);
}

#[test]
fn drop_params_refuses_or_drops_what_a_provider_lacks() {
    let supported = ["max_tokens", "temperature", "stream"];
    let request = || {
        serde_json::from_value::<ferrolite::api::openai::ChatRequest>(json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}],
            "temperature": 0.2, "logit_bias": {"50256": -100}, "seed": 7, "custom_vendor_flag": true
        }))
        .unwrap()
    };
    assert_eq!(
        unsupported_params(&request(), &supported),
        ["logit_bias", "seed"],
        "unknown keys are not OpenAI params"
    );
    let err = check_params(&mut request(), Provider::Anthropic, &supported, false).unwrap_err();
    assert_eq!(err.status.as_u16(), 400);
    assert_eq!(err.param.as_deref(), Some("logit_bias"));
    assert_eq!(
        err.message,
        "anthropic does not support the parameters logit_bias, seed; set `drop_params: true` in litellm_settings to drop unsupported parameters"
    );
    let mut dropped = request();
    assert_eq!(check_params(&mut dropped, Provider::Anthropic, &supported, true).unwrap(), ["logit_bias", "seed"]);
    assert!(!dropped.extra.contains_key("logit_bias") && dropped.extra.contains_key("custom_vendor_flag"));
}

fn openai_app(dir: &std::path::Path, api_base: &str) -> std::path::PathBuf {
    let path = dir.join("app.json");
    let doc = json!({"name": "gpt", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o-2024-08-06", "api_base": api_base, "api_key": "sk-fake-upstream-123"}}
    ]}});
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_sdk_works_against_an_openai_deployment() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![openai_app(dir.path(), &fake.base_url)]).await;
    crate::python_sdk::run_script("anthropic_sdk_openai.py", &server.demo_url(""), &server.token).await;

    let sent = fake.last("/v1/chat/completions").expect("the upstream was called");
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["model"], "gpt-4o-2024-08-06");
    assert_eq!(sent.headers.get("authorization").map(String::as_str), Some("Bearer sk-fake-upstream-123"));
    let system_sent = fake.requests().iter().any(|r| {
        serde_json::from_slice::<Value>(&r.body)
            .is_ok_and(|b| b["messages"][0] == json!({"role": "system", "content": "You are terse."}))
    });
    assert!(system_sent, "the system prompt became a system message");
}

#[tokio::test]
async fn messages_stream_from_an_openai_deployment_is_the_anthropic_sequence() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![openai_app(dir.path(), &fake.base_url)]).await;
    let response = server
        .client
        .post(server.demo_url("/v1/messages"))
        .header("x-api-key", &server.token)
        .header("content-type", "application/json")
        .body(json!({"model": "gpt-4o", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "Hi there"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    assert!(names.iter().filter(|n| **n == "content_block_delta").count() >= 2, "{names:?}");
    let delta: Value = text
        .split("\n\n")
        .find(|e| e.starts_with("event: message_delta"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "the upstream's usage reaches message_delta: {delta}"
    );
}

#[tokio::test]
async fn thinking_on_the_messages_front_is_taken_by_a_mock_deployment() {
    let server = crate::support::TestServer::demo().await;
    let body = json!({"model": "demo-chat", "max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "Think."}]});
    let (status, answer) = server.post_json(&server.demo_url("/v1/messages"), &body).await;
    assert_eq!(status, 200, "{answer}");
}
