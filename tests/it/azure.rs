//! Azure OpenAI: deployment-path URLs, the `api-key` header and `api-version`, against a fake
//! that checks them as Azure does.

use crate::support::{read_json, repo_root, sse_data, TestServer};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

async fn deployment_call(
    State(seen): State<Seen>,
    Path((deployment, operation)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((format!("{deployment}/{operation}"), query.clone(), body.clone()));
    if headers.get("api-key").and_then(|v| v.to_str().ok()) != Some("azure-key-123") {
        let error = json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    if !query.unwrap_or_default().contains("api-version=") {
        let error = json!({"error": {"code": "404", "message": "Resource not found"}});
        return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
    }
    let fixtures = repo_root().join("tests/fixtures");
    match (operation.as_str(), body["stream"] == json!(true)) {
        ("chat/completions", true) => {
            ([("content-type", "text/event-stream")], std::fs::read_to_string(fixtures.join("openai-chat-completion-stream.sse")).unwrap())
                .into_response()
        }
        ("chat/completions", false) => {
            ([("content-type", "application/json")], std::fs::read_to_string(fixtures.join("openai-chat-completion.json")).unwrap())
                .into_response()
        }
        ("embeddings", _) => axum::Json(json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}], "model": "text-embedding-3-small", "usage": {"prompt_tokens": 1, "total_tokens": 1}})).into_response(),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": "404", "message": "Resource not found"}}))).into_response(),
    }
}

async fn start_fake() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(|s, Path(d): Path<String>, q, h, b| deployment_call(s, Path((d, "chat/completions".into())), q, h, b)),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(|s, Path(d): Path<String>, q, h, b| deployment_call(s, Path((d, "embeddings".into())), q, h, b)),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn azure_deployments_use_deployment_urls_api_key_and_api_version() {
    let (base, seen) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azure.json");
    let manifest = json!({"name": "azure", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "azure/my-gpt4o", "api_base": base, "api_key": "azure-key-123", "api_version": "2024-06-01"}},
        {"model_name": "embed", "litellm_params": {"model": "azure/my-embedder", "api_base": base, "api_key": "azure-key-123"}}
    ]}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;

    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hi from GPT");
    let (route, query, sent) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(route, "my-gpt4o/chat/completions");
    assert_eq!(query.as_deref(), Some("api-version=2024-06-01"));
    assert_eq!(sent["model"], "my-gpt4o");

    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(sse_data(&response.text().await.unwrap()).len(), 5);

    let (status, _) =
        server.post_json(&server.demo_url("/v1/embeddings"), &json!({"model": "embed", "input": "x"})).await;
    assert_eq!(status, 200);
    let (_, query, _) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        query.as_deref(),
        Some("api-version=2024-10-21"),
        "the default api-version when the manifest names none"
    );

    // /v1/messages in front of Azure too.
    let response = server
        .client
        .post(server.demo_url("/v1/messages"))
        .header("x-api-key", &server.token)
        .header("content-type", "application/json")
        .body(json!({"model": "gpt", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    let (status, message) = read_json(response).await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["content"][0]["text"], "Hi from GPT");
    assert_eq!(message["usage"], json!({"input_tokens": 9, "output_tokens": 3}));
}
