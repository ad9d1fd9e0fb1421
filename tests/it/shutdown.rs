//! SIGTERM with 100 streams open: new requests are refused, open streams finish, exit 0; the
//! same with connections on the shared runtime (`--io-threads 0`); and the drain deadline.

use crate::support::{ServeProcess, TestServer};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

/// Streams ten chunks over two seconds, then `[DONE]`.
async fn streaming_fake() -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let stream = futures::stream::unfold(0u32, |i| async move {
                if i > 10 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let frame = if i == 10 {
                    "data: [DONE]\n\n".to_owned()
                } else {
                    format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{i} \"}},\"finish_reason\":null}}]}}\n\n")
                };
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(frame)), i + 1))
            });
            ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream)).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn streams_manifest(upstream: &str) -> serde_json::Value {
    json!({"name": "streams", "type": "llm-proxy", "config": {"service_id": "s", "model_list": [
        {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": upstream, "api_key": "k"}}
    ]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_100_open_streams_drains_them_and_exits_0() {
    drains_100_streams(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_on_the_shared_runtime_drain_the_same_way() {
    drains_100_streams(&["--io-threads", "0"]).await;
}

async fn drains_100_streams(extra: &[&str]) {
    let upstream = streaming_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app.json");
    std::fs::write(&config, streams_manifest(&upstream).to_string()).unwrap();
    let data = dir.path().join("data");
    let mut args = vec!["--port", "0", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut server = ServeProcess::spawn(&args, &data);
    let url = format!("{}/default/apps/s/v1/chat/completions", server.base);
    let client = reqwest::Client::new();

    let mut streams = Vec::new();
    for _ in 0..100 {
        let response = client
            .post(&url)
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        streams.push(tokio::spawn(async move { response.text().await }));
    }

    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = reqwest::Client::new().get(format!("{}/openapi.json", server.base)).send().await;
    assert!(late.is_err(), "new connections are refused once draining");

    for stream in streams {
        let text = stream.await.unwrap().expect("each open stream finishes cleanly");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert_eq!(text.matches("\"content\"").count(), 10);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after the streams ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

/// A stream longer than the drain deadline is cut when the deadline passes: shutdown returns
/// then, not when the stream would have ended, and the client sees the stream end early.
#[tokio::test(flavor = "multi_thread")]
async fn the_drain_deadline_closes_what_is_still_open() {
    let upstream = streaming_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app.json");
    std::fs::write(&config, streams_manifest(&upstream).to_string()).unwrap();
    let server = TestServer::start(vec![config], |c| c.drain_timeout = Duration::from_millis(300)).await;
    let url = format!("{}/default/apps/s/v1/chat/completions", server.base);
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let response = server.post(&url, &body).await;
    assert_eq!(response.status(), 200);
    let stream = tokio::spawn(response.text());

    let started = Instant::now();
    server.running.shutdown().await.expect("shutdown");
    // The stream needs two seconds; the deadline is 300 ms.
    assert!(started.elapsed() < Duration::from_millis(1500), "shutdown waited {:?}", started.elapsed());
    let text = stream.await.unwrap().unwrap_or_default();
    assert!(!text.ends_with("data: [DONE]\n\n"), "the stream was cut: {text}");
}
