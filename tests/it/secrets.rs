//! Secrets never come back: a known API key, workspace secret and the server secret are
//! searched for in every response (body and headers), every log line, every controller answer
//! and the server's own output over a session that exercises them, including an upstream that
//! echoes the key it was sent. They appear nowhere.

use crate::support::ServeProcess;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::io::Read;

const API_KEY: &str = "sk-live-KEY-4d2f9a7b1c3e5d6f";
const WORKSPACE_SECRET: &str = "ws-secret-VALUE-8e7d6c5b4a39";

/// An upstream that rejects every key, quoting it back in full (as a careless one might).
async fn echoing_upstream() -> String {
    let reject = |headers: HeaderMap| async move {
        let sent = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": format!("Incorrect API key provided: {sent}"), "type": "invalid_request_error", "code": "invalid_api_key"}})))
            .into_response()
    };
    let app = Router::new().route("/v1/chat/completions", post(reject)).route("/v1/models", get(reject));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread")]
async fn known_secrets_appear_in_no_output() {
    let upstream = echoing_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app.json");
    let manifest = json!({"name": "Keys", "type": "llm-proxy", "config": {"service_id": "keys", "model_list": [
        {"model_name": "literal", "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream, "api_key": API_KEY}},
        {"model_name": "from-env", "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream, "api_key": "HYPHA_SECRET:UPSTREAM"}}
    ], "litellm_settings": {"debug": true, "detailed_debug": true}}});
    std::fs::write(&config, manifest.to_string()).unwrap();
    let data = dir.path().join("data");
    let server = ServeProcess::spawn(&["--port", "0", "--allow-private-upstreams"], &data);
    let server_secret = std::fs::read_to_string(data.join("server-secret")).unwrap().trim().to_owned();
    let admin = std::fs::read_to_string(data.join("admin-token")).unwrap().trim().to_owned();
    let client = reqwest::Client::new();
    let mut seen = String::new();
    let record = |response: reqwest::Response| async move {
        let mut text = format!("{}\n", response.status());
        for (name, value) in response.headers() {
            text += &format!("{name}: {}\n", value.to_str().unwrap_or_default());
        }
        text + &response.text().await.unwrap_or_default()
    };
    let controller = |function: &str, kwargs: Value| {
        client
            .post(format!("{}/default/services/server-apps/{function}", server.base))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(kwargs.to_string())
    };

    seen += &record(controller("set_env", json!({"key": "UPSTREAM", "value": WORKSPACE_SECRET})).send().await.unwrap())
        .await;
    seen += &record(controller("get_env", json!({})).send().await.unwrap()).await;
    seen += &record(
        controller("install", json!({"source": std::fs::read_to_string(&config).unwrap()})).send().await.unwrap(),
    )
    .await;
    let started = controller("start", json!({"app_id": "keys"})).send().await.unwrap().text().await.unwrap();
    seen += &started;
    let session: Value = serde_json::from_str(&started).unwrap();
    let service = format!("{}/default/apps/keys/v1", server.base);
    for model in ["literal", "from-env"] {
        for stream in [false, true] {
            let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
            let response = client
                .post(format!("{service}/chat/completions"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            seen += &record(response).await;
        }
    }
    for path in ["/models", "/model/info", "/health"] {
        seen += &record(client.get(format!("{service}{path}")).bearer_auth(&admin).send().await.unwrap()).await;
    }
    for (function, kwargs) in [
        ("get_logs", json!({"session_id": session["id"]})),
        ("get_usage", json!({"session_id": session["id"]})),
        ("list_apps", json!({})),
        ("list_running", json!({})),
    ] {
        seen += &record(controller(function, kwargs).send().await.unwrap()).await;
    }
    // Validation echoes nothing either.
    let (_, out, err) = crate::support::run_cli(&["validate", config.to_str().unwrap()]);
    seen += &out;
    seen += &err;

    // The server's own output, up to now.
    let mut child = server;
    let _ = child.child.kill();
    let _ = child.child.wait();
    let mut output = String::new();
    if let Some(mut stderr) = child.child.stderr.take() {
        let _ = stderr.read_to_string(&mut output);
    }
    seen += &output;

    assert!(seen.contains("Incorrect API key provided"), "the upstream's refusal did come back");
    assert!(seen.contains("****5d6f"), "keys show as their last four characters at most");
    for (what, secret) in [
        ("the API key", API_KEY),
        ("the workspace secret", WORKSPACE_SECRET),
        ("the server secret", server_secret.as_str()),
    ] {
        assert!(!seen.contains(secret), "{what} leaked");
    }
}

#[tokio::test]
async fn a_missing_secret_fails_the_start_naming_it_even_on_a_mock_deployment() {
    let server = crate::support::TestServer::demo().await;
    let token = server.token_for("team");
    // Hypha's own test: a mock deployment whose key names a workspace secret that is not set.
    let app = serde_json::json!({"name": "Typo", "type": "llm-proxy", "config": {"service_id": "typo", "model_list": [
        {"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "hi", "api_key": "HYPHA_SECRET:NONEXISTENT_KEY"}},
        {"model_name": "n", "litellm_params": {"model": "gpt-4o", "mock_response": "hi", "organization": "os.environ/FERROLITE_NO_SUCH_VAR"}}
    ]}});
    server.ok("team", &token, "install", serde_json::json!({"manifest": app})).await;
    let (status, err) = server.controller("team", &token, "start", serde_json::json!({"app_id": "typo"})).await;
    assert_eq!(status, 400, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("NONEXISTENT_KEY") && message.contains("set_env"), "{message}");
    // Once set, the next reference is the one named.
    server.ok("team", &token, "set_env", serde_json::json!({"key": "NONEXISTENT_KEY", "value": "k"})).await;
    let (status, err) = server.controller("team", &token, "start", serde_json::json!({"app_id": "typo"})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("FERROLITE_NO_SUCH_VAR"), "{err}");
    assert_eq!(server.ok("team", &token, "list_running", serde_json::json!({})).await, serde_json::json!([]));
}
