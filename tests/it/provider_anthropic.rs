//! The Anthropic provider end to end: ferrolite in front of tests/it/fake_anthropic.rs, driven
//! by the real `openai` SDK and by plain HTTP, with the fake's log showing what reached the
//! upstream in Anthropic's wire format.

use crate::fake_anthropic::{text_answer, FakeAnthropic};
use crate::support::{sse_data, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const UPSTREAM_KEY: &str = "sk-ant-fake-upstream-123";

fn manifest(dir: &Path, api_base: &str, key: &str) -> PathBuf {
    let doc = json!({
        "name": "Anthropic upstream", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "demo", "model_list": [{"model_name": "claude", "litellm_params": {
            "model": "anthropic/claude-3-5-sonnet-20241022", "api_base": api_base, "api_key": key
        }}]}
    });
    let path = dir.join("anthropic-upstream.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

/// A fake Anthropic and a ferrolite whose model `claude` is deployed on it with `key`.
async fn setup_with_key(key: &str) -> (FakeAnthropic, TestServer, tempfile::TempDir) {
    let fake = FakeAnthropic::start(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url, key)]).await;
    (fake, server, dir)
}

async fn setup() -> (FakeAnthropic, TestServer, tempfile::TempDir) {
    setup_with_key(UPSTREAM_KEY).await
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_chats_streams_and_calls_tools_through_anthropic() {
    let (fake, server, _dir) = setup().await;
    crate::python_sdk::run_script("openai_sdk_anthropic.py", &server.demo_url("/v1"), &server.token).await;

    let recorded = fake.recorded();
    assert!(recorded.len() >= 6, "plain, stream, tool call, tool result, streamed tool call, json: {}", recorded.len());
    for r in &recorded {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.headers.get("x-api-key").map(String::as_str), Some(UPSTREAM_KEY));
        assert_eq!(r.headers.get("anthropic-version").map(String::as_str), Some("2023-06-01"));
        let leaked =
            r.headers.values().any(|v| v.contains(&server.token)) || r.body.to_string().contains(&server.token);
        assert!(!leaked, "the ferrolite token went upstream");
        assert_eq!(r.body["model"], "claude-3-5-sonnet-20241022");
    }
    // The tool round trip: the assistant's tool_use and the tool's result came back in order.
    let round_trip = fake
        .requests()
        .into_iter()
        .find(|b| b["messages"].as_array().is_some_and(|m| m.len() == 3))
        .expect("the tool result went upstream");
    let assistant = round_trip["messages"][1]["content"].as_array().expect("assistant blocks");
    assert_eq!(assistant.iter().map(|b| b["type"].as_str().unwrap()).collect::<Vec<_>>(), ["text", "tool_use"]);
    assert_eq!(round_trip["messages"][2]["role"], "user");
    assert_eq!(round_trip["messages"][2]["content"][0]["type"], "tool_result");
}

#[tokio::test]
async fn the_upstream_gets_the_translated_request() {
    let (fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "claude", "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hello!"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "claude-3-5-sonnet-20241022");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-msg_fake")), "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], text_answer("Hello!", &[]));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    let recorded = fake.recorded();
    assert_eq!(recorded.len(), 1);
    let sent = &recorded[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers.get("x-api-key").map(String::as_str), Some(UPSTREAM_KEY));
    assert!(sent.headers.get("authorization").is_none_or(|v| !v.contains(&server.token)), "never the ferrolite token");
    assert_eq!(sent.headers.get("anthropic-version").map(String::as_str), Some("2023-06-01"));
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-3-5-sonnet-20241022",
            "system": "You are terse.",
            "messages": [{"role": "user", "content": "Hello!"}],
            "max_tokens": 4096
        })
    );
}

#[tokio::test]
async fn streams_arrive_as_openai_chunks_with_usage() {
    let (fake, server, _dir) = setup().await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "Tell me something"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let ids: std::collections::BTreeSet<&str> = chunks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one id for the whole stream");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, text_answer("Tell me something", &[]));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(fake.requests()[0]["stream"], true);
}

#[tokio::test]
async fn upstream_errors_come_back_openai_shaped_without_the_key() {
    let wrong_key = "sk-ant-wrong-key-987654321";
    let (fake, server, _dir) = setup_with_key(wrong_key).await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(body["error"]["code"], "authentication_error");
    assert_eq!(body["error"]["message"], "anthropic: invalid x-api-key");
    assert!(!body.to_string().contains(wrong_key), "the key never shows: {body}");
    assert_eq!(fake.recorded()[0].headers.get("x-api-key").map(String::as_str), Some(wrong_key));

    let (_fake, server, _dir) = setup().await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "claude", "messages": [{"role": "user", "content": "are you overloaded?"}]}),
        )
        .await;
    assert_eq!(status, 529, "{body}");
    assert_eq!(body["error"]["code"], "overloaded_error");
    // The executor may add how many attempts it made.
    assert!(body["error"]["message"].as_str().unwrap().starts_with("anthropic: Overloaded"), "{body}");
}

#[tokio::test]
async fn an_error_event_mid_stream_reaches_the_client() {
    let (_fake, server, _dir) = setup().await;
    let response = server.post(server.demo_url("/v1/chat/completions"), &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "please break the stream"}]})).await;
    assert_eq!(response.status(), 200, "the stream had started");
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(text.contains("anthropic: Overloaded"), "the upstream's error is told: {text}");
}

/// `/v1/messages` to an Anthropic deployment is passed through natively: the body arrives as
/// sent (model rewritten), with the deployment's key, and the answer and its SSE come back as is.
#[tokio::test]
async fn messages_pass_through_to_anthropic_natively() {
    let (fake, server, _dir) = setup().await;
    let request = json!({"model": "claude", "max_tokens": 100, "system": "Be brief.", "top_k": 5, "messages": [{"role": "user", "content": "Hello"}]});
    let response = server
        .client
        .post(server.demo_url("/v1/messages"))
        .header("x-api-key", &server.token)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    let (status, message) = crate::support::read_json(response).await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["type"], "message");
    let sent = fake.recorded().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers.get("x-api-key").map(String::as_str), Some(UPSTREAM_KEY));
    assert_eq!(sent.headers.get("anthropic-version").map(String::as_str), Some("2023-06-01"));
    let mut expected = request.clone();
    expected["model"] = json!("claude-3-5-sonnet-20241022");
    assert_eq!(sent.body, expected, "native: nothing but the model changes, Anthropic-only fields included");

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let response = server
        .client
        .post(server.demo_url("/v1/messages"))
        .header("x-api-key", &server.token)
        .header("content-type", "application/json")
        .body(streamed.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(events.last(), Some(&"message_stop"));
}

/// `/health` checks each deployment for real: a one-token chat through its translation.
#[tokio::test]
async fn health_reports_anthropic_deployments_healthy_or_not() {
    let (_fake, server, _dir) = setup().await;
    let (status, health) = server.get_json(&server.demo_url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!((health["healthy_count"].as_u64(), health["unhealthy_count"].as_u64()), (Some(1), Some(0)), "{health}");

    let (_fake, server, _dir) = setup_with_key("sk-ant-wrong").await;
    let (_, health) = server.get_json(&server.demo_url("/health")).await;
    assert_eq!(health["unhealthy_count"], 1, "{health}");
    assert_eq!(health["unhealthy_endpoints"][0]["error"], "upstream answered 401");
    assert!(!health.to_string().contains("sk-ant-wrong"));
}
