//! Pass-through to an OpenAI-compatible upstream: a fake on loopback records what arrives.

use crate::support::{read_json, repo_root, sse_data, TestServer};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// What the fake upstream received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: Value,
    /// The bytes as they came.
    raw: Bytes,
}

type Log = Arc<Mutex<Vec<Received>>>;

async fn fake_chat(State(log): State<Log>, uri: axum::http::Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    log.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
        body: body.clone(),
        raw,
    });
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test-123") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})),
        )
            .into_response();
    }
    if body["slow"] == json!(true) {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    }
    if body["stream"] == json!(true) {
        let sse =
            std::fs::read_to_string(repo_root().join("tests/fixtures/openai-chat-completion-stream.sse")).unwrap();
        return ([("content-type", "text/event-stream")], sse).into_response();
    }
    let fixture = std::fs::read_to_string(repo_root().join("tests/fixtures/openai-chat-completion.json")).unwrap();
    ([("content-type", "application/json")], fixture).into_response()
}

async fn start_fake() -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new().route("/v1/chat/completions", post(fake_chat)).with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), log)
}

fn manifest(dir: &std::path::Path, api_base: &str, key: &str) -> std::path::PathBuf {
    let path = dir.join("openai.json");
    let doc = json!({
        "name": "openai proxy", "type": "llm-proxy",
        "config": {"service_id": "demo", "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": api_base, "api_key": key}}
        ]}
    });
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

#[tokio::test]
async fn chat_is_forwarded_with_the_deployment_key_and_model() {
    let (api_base, log) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &api_base, "sk-test-123")]).await;
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hi from GPT");
    let received = log.lock().unwrap().pop().unwrap();
    assert_eq!(received.path, "/v1/chat/completions");
    assert_eq!(
        received.authorization.as_deref(),
        Some("Bearer sk-test-123"),
        "the deployment key, never the client token"
    );
    assert_eq!(received.body["model"], "gpt-4o");
    assert_eq!(received.body["temperature"], 0.2);

    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.len(), 5);
    assert_eq!(data[4], "[DONE]");
}

/// A long body (an agent's conversation) goes upstream as the client wrote it, its spacing,
/// escapes and number spellings kept, with only the model and the stream's usage request
/// spliced in; one that could mean two things to two parsers (a key written twice) goes as the
/// gateway read it.
#[tokio::test]
async fn a_long_body_goes_upstream_as_written_but_for_the_members_the_gateway_sets() {
    let (api_base, log) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &api_base, "sk-test-123")]).await;
    let history = "fn main() {\\n    println!(\\\"caf\\u00e9\\\");\\n}\\n".repeat(40);
    let send = |text: String| {
        let request = server.client.post(server.demo_url("/v1/chat/completions")).bearer_auth(&server.token);
        let log = log.clone();
        async move {
            let response = request.header("content-type", "application/json").body(text).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await.unwrap();
            log.lock().unwrap().pop().unwrap()
        }
    };
    let text = format!(
        "{{\n  \"messages\": [{{\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"{history}\"}}],\n  \"model\": \"gpt\",\n  \"temperature\": 0.50,\n  \"stream\": true\n}}\n"
    );
    let received = send(text.clone()).await;
    let expected = text
        .replace("\"model\": \"gpt\"", "\"model\": \"gpt-4o\"")
        .replace("\"stream\": true\n}", "\"stream\": true,\"stream_options\":{\"include_usage\":true}\n}");
    assert_eq!(String::from_utf8_lossy(&received.raw), expected);

    // The last max_tokens is what the gateway read, and all the upstream sees.
    let twice = format!(
        "{{\"model\": \"gpt\", \"max_tokens\": 100000, \"max_tokens\": 5, \"messages\": [{{\"role\": \"user\", \"content\": \"{history}\"}}]}}"
    );
    let received = send(twice).await;
    let raw = String::from_utf8_lossy(&received.raw);
    assert_eq!(raw.matches("max_tokens").count(), 1, "{raw:.200}");
    assert_eq!(received.body["max_tokens"], 5);
    assert_eq!(received.body["model"], "gpt-4o");
}

/// In an app whose other group translates (Anthropic), a body for the pass-through group is
/// still taken as sent: checked over its text and forwarded as written with only its model
/// set, never read into a value and written out again. The other group is never called here.
#[tokio::test]
async fn a_pass_through_groups_body_goes_as_written_in_an_app_that_also_translates() {
    let (api_base, log) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.json");
    let doc = json!({
        "name": "mixed proxy", "type": "llm-proxy",
        "config": {"service_id": "demo", "model_list": [
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_base": "http://127.0.0.1:9", "api_key": "sk-ant"}},
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": api_base, "api_key": "sk-test-123"}}
        ]}
    });
    std::fs::write(&path, doc.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    // A short body, with spacing and a number spelling a re-written value would not keep.
    let text =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}],  \"model\" : \"gpt\", \"temperature\": 0.50}";
    let response = server
        .client
        .post(server.demo_url("/v1/chat/completions"))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await.unwrap();
    let received = log.lock().unwrap().pop().unwrap();
    assert_eq!(String::from_utf8_lossy(&received.raw), text.replace("\"gpt\"", "\"gpt-4o\""));
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_message() {
    let (api_base, _log) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &api_base, "sk-wrong")]).await;
    let (status, err) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(err["error"]["code"], "invalid_api_key");
    assert_eq!(err["error"]["message"], "upstream error from deployment gpt/0: Incorrect API key provided");
    assert!(!err.to_string().contains("sk-wrong"), "the key never comes back");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    // Bind then drop a listener: nothing answers on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::with_configs(vec![manifest(dir.path(), &format!("http://127.0.0.1:{port}/v1"), "sk-test-123")])
            .await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    let (status, err) = read_json(response).await;
    assert_eq!(status, 502);
    assert_eq!(err["error"]["code"], "upstream_unreachable");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let (api_base, _log) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &api_base, "sk-test-123")]).await;
    let url = server.demo_url("/v1/chat/completions");
    let (client, token) = (server.client.clone(), server.token.clone());
    let in_flight = tokio::spawn(async move {
        let response = client
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(json!({"model": "gpt", "slow": true, "messages": [{"role": "user", "content": "Hi"}]}).to_string())
            .send()
            .await
            .unwrap();
        read_json(response).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let base = server.base.clone();
    server.running.shutdown().await.unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the request in flight at shutdown completes: {body}");
    assert!(reqwest::get(format!("{base}/openapi.json")).await.is_err(), "no new connections after shutdown");
}
