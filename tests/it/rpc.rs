//! WebSocket RPC with the real `hypha-rpc` client (tests/python/hypha_rpc_client.py): connect,
//! the controller, LLM services and their streams, chunked messages, heartbeats, relays between
//! clients, and workspace isolation.

use crate::support::{repo_root, TestServer};
use axum::routing::post;
use axum::Router;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// How long the slow upstream takes: past the script's 3 s method_timeout.
const SLOW_SECONDS: u64 = 6;

/// An OpenAI-compatible upstream that answers every chat after [`SLOW_SECONDS`].
async fn start_slow_upstream() -> String {
    async fn chat() -> axum::Json<serde_json::Value> {
        tokio::time::sleep(Duration::from_secs(SLOW_SECONDS)).await;
        axum::Json(json!({
            "id": "chatcmpl-slow", "object": "chat.completion", "created": 0, "model": "slow",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "finally"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
        }))
    }
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn python() -> String {
    std::env::var("FERROLITE_PYTHON").unwrap_or_else(|_| {
        panic!("FERROLITE_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python SDKs into a virtualenv")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn hypha_rpc_client_installs_starts_chats_streams_and_stays_in_its_workspace() {
    let server = TestServer::demo().await;
    let slow = start_slow_upstream().await;
    let script = repo_root().join("tests/python/hypha_rpc_client.py");
    let envs = [
        ("FERROLITE_BASE_URL", server.base.clone()),
        ("FERROLITE_TOKEN", server.token.clone()),
        ("FERROLITE_OTHER_TOKEN", server.token_for("intruder")),
        ("FERROLITE_SLOW_API_BASE", slow),
        // websockets honours proxy variables; the server is on loopback.
        ("NO_PROXY", "127.0.0.1,localhost".to_owned()),
        ("no_proxy", "127.0.0.1,localhost".to_owned()),
    ];
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .envs(envs)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("all_proxy")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hypha-rpc checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
