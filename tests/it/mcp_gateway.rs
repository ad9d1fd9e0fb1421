//! The MCP gateway through the official MCP Python SDK: three upstream MCP servers of the SDK
//! (two over Streamable HTTP, one over the older HTTP+SSE transport), started by the script on
//! ports this test puts in the app's manifest, and the SDK's client at `/default/apps/tools/mcp`
//! (see tests/python/mcp_gateway.py for what it checks). And HTTP+SSE upstreams against a bare
//! fake server of this file: an endpoint on another origin refused, a stream that ends reopened.

use crate::support::{free_port, repo_root, DeadPort, TestServer};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread")]
async fn mcp_gateway_lists_prefixed_filtered_tools_and_calls_each_upstream() {
    let (math, text, legacy, down) = (free_port(), free_port(), free_port(), DeadPort::new());
    let manifest = json!({
        "name": "Tools",
        "type": "llm-proxy",
        "config": {
            "service_id": "tools",
            "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "hi"}}],
            "mcp_servers": {
                "math": {
                    "url": format!("http://127.0.0.1:{math}/mcp"),
                    "allowed_tools": ["add", "multiply"],
                    "disallowed_tools": ["multiply"],
                },
                "text": {
                    "url": format!("http://127.0.0.1:{text}/mcp"),
                    "transport": "http",
                    "auth_type": "bearer_token",
                    "auth_value": "text-secret",
                    "headers": {"X-Team": "t1"},
                },
                "legacy": {
                    "url": format!("http://127.0.0.1:{legacy}/sse"),
                    "transport": "sse",
                    "auth_type": "api_key",
                    "auth_value": "legacy-secret",
                },
                "down": {"url": down.url("/mcp")},
            },
        },
    });
    let server = start(&manifest).await;

    let python = std::env::var("FERROLITE_PYTHON").expect("FERROLITE_PYTHON: run the tests with scripts/test.sh");
    let env = [
        ("FERROLITE_MCP_URL", format!("{}/default/apps/tools/mcp", server.base)),
        ("FERROLITE_TOKEN", server.token.clone()),
        ("FERROLITE_FOREIGN_TOKEN", server.token_for("other")),
        ("MATH_PORT", math.to_string()),
        ("TEXT_PORT", text.to_string()),
        ("TEXT_AUTH", "text-secret".to_owned()),
        ("LEGACY_PORT", legacy.to_string()),
        ("LEGACY_AUTH", "legacy-secret".to_owned()),
    ];
    let script = repo_root().join("tests/python/mcp_gateway.py");
    let output = tokio::task::spawn_blocking(move || Command::new(&python).arg(script).envs(env).output())
        .await
        .unwrap()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "MCP SDK checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    // Each tool call is in the session's log: server, tool, latency, status.
    let session = server.running.state.controller.registry().get("default", "tools").expect("running");
    let (lines, _) = session.table.logs.read(None, 0, None);
    let text: Vec<&str> = lines.iter().map(|l| l.content.as_str()).collect();
    let call = text.iter().find(|l| l.contains("tools/call server=math tool=add")).expect("math call logged");
    assert!(call.contains("latency_ms=") && call.ends_with("status=ok"), "{call}");
    let legacy = text.iter().find(|l| l.contains("tools/call server=legacy tool=reverse")).expect("sse call logged");
    assert!(legacy.ends_with("status=ok"), "{legacy}");
    assert!(text.iter().any(|l| l.contains("server=down") && l.contains("failed")), "{text:?}");
    assert!(text.iter().all(|l| !l.contains("text-secret") && !l.contains("legacy-secret")), "{text:?}");

    // And in the metrics: a call per (server, tool, status); a failed call names no tool.
    let admin = server.running.state.tokens.issue("default", true, std::time::Duration::from_secs(600));
    let scraped = server.client.get(format!("{}/metrics", server.base)).bearer_auth(admin).send().await.unwrap();
    let metrics = scraped.text().await.unwrap();
    let sample = |needle: &[&str]| {
        metrics.lines().find(|l| l.starts_with("ferrolite_mcp_calls_total{") && needle.iter().all(|n| l.contains(n)))
    };
    let ok =
        sample(&["app=\"tools\"", "server=\"math\"", "tool=\"add\"", "status=\"ok\""]).expect("an ok call counted");
    assert!(ok.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n >= 1.0), "{ok}");
    assert!(sample(&["server=\"down\"", "tool=\"\"", "status=\"failed\""]).is_some(), "{metrics}");
    assert!(metrics.contains("ferrolite_mcp_call_duration_seconds_bucket{"), "the latency histogram");
}

/// A running ferrolite with the app `manifest` (service id `tools`).
async fn start(manifest: &Value) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    TestServer::with_configs(vec![path]).await
}

/// An app whose one MCP server, `name`, is at `url` over HTTP+SSE with the header `X-Team: t9`.
fn sse_app(name: &str, url: &str) -> Value {
    json!({
        "name": "Tools",
        "type": "llm-proxy",
        "config": {
            "service_id": "tools",
            "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "hi"}}],
            "mcp_servers": {name: {"url": url, "transport": "sse", "headers": {"X-Team": "t9"}}},
        },
    })
}

/// A bare MCP server over HTTP+SSE: `GET /sse` opens a session and sends the `endpoint` event
/// (`endpoint` with `{n}` replaced by the session's number; none when it is `None`); a
/// `POST /messages?session=N` is answered with 202 and its answer goes on session N's stream
/// (`initialize`, and `tools/call` echoing the argument `text`). Several listeners may serve one
/// fake, so a post to another origin is counted too.
#[derive(Clone, Default)]
struct FakeSse {
    endpoint: Option<String>,
    /// End a session's stream once it answered a tool call.
    close_after_call: bool,
    streams: Arc<Mutex<Vec<Option<mpsc::UnboundedSender<String>>>>>,
    opened: Arc<AtomicUsize>,
    posts: Arc<AtomicUsize>,
    /// Requests without the manifest's `X-Team: t9`.
    unauthenticated: Arc<AtomicUsize>,
}

impl FakeSse {
    /// Serves the fake on a new listener; its base URL.
    async fn listen(&self) -> String {
        let app = axum::Router::new()
            .route("/sse", axum::routing::get(FakeSse::open))
            .route("/messages", axum::routing::post(FakeSse::message))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    fn check(&self, headers: &HeaderMap) {
        if headers.get("x-team").is_none_or(|v| v != "t9") {
            self.unauthenticated.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn open(State(fake): State<FakeSse>, headers: HeaderMap) -> Response {
        fake.check(&headers);
        fake.opened.fetch_add(1, Ordering::SeqCst);
        let (events, mut queued) = mpsc::unbounded_channel();
        let mut streams = fake.streams.lock().unwrap();
        if let Some(endpoint) = &fake.endpoint {
            let _ = events
                .send(format!("event: endpoint\ndata: {}\n\n", endpoint.replace("{n}", &streams.len().to_string())));
        }
        streams.push(Some(events));
        let body =
            futures::stream::poll_fn(move |cx| queued.poll_recv(cx)).map(|e| Ok::<_, std::io::Error>(Bytes::from(e)));
        ([("content-type", "text/event-stream")], Body::from_stream(body)).into_response()
    }

    async fn message(
        State(fake): State<FakeSse>,
        Query(query): Query<HashMap<String, usize>>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        fake.check(&headers);
        fake.posts.fetch_add(1, Ordering::SeqCst);
        let Ok(message) = serde_json::from_str::<Value>(&body) else { return StatusCode::BAD_REQUEST };
        let mut streams = fake.streams.lock().unwrap();
        let Some(slot) = query.get("session").and_then(|n| streams.get_mut(*n)) else { return StatusCode::NOT_FOUND };
        let Some(events) = slot.as_ref() else { return StatusCode::NOT_FOUND };
        let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
            return StatusCode::ACCEPTED; // a notification
        };
        let result = match method {
            "initialize" => json!({
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake", "version": "0"},
            }),
            "tools/call" => json!({"content": [{"type": "text", "text": message["params"]["arguments"]["text"]}]}),
            _ => json!({}),
        };
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let _ = events.send(format!("event: message\ndata: {answer}\n\n"));
        if method == "tools/call" && fake.close_after_call {
            slot.take();
        }
        StatusCode::ACCEPTED
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_endpoint_on_another_origin_is_refused_before_anything_is_posted() {
    // The endpoint event names the fake's second listener: same host, another port.
    let mut fake = FakeSse::default();
    let elsewhere = fake.listen().await;
    fake.endpoint = Some(format!("{elsewhere}/messages?session={{n}}"));
    let base = fake.listen().await;
    let server = start(&sse_app("evil", &format!("{base}/sse"))).await;
    let rest = format!("{}/default/apps/tools/mcp-rest", server.base);

    let (status, error) = server.post_json(&format!("{rest}/tools/call"), &json!({"name": "evil-echo"})).await;
    assert_eq!(status, 502, "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"evil\"") && message.contains(&elsewhere), "{message}");
    assert!(message.contains("not the event stream's origin"), "{message}");
    let (status, listed) = server.get_json(&format!("{rest}/tools/list")).await;
    assert_eq!((status, listed["error"].clone()), (200, json!("partial_failure")), "{listed}");
    assert!(listed["message"].as_str().unwrap_or_default().contains("origin"), "{listed}");
    assert!(fake.opened.load(Ordering::SeqCst) >= 1);
    assert_eq!(fake.posts.load(Ordering::SeqCst), 0, "nothing, credentials least of all, went elsewhere");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_stream_that_ends_is_reopened_on_the_next_call() {
    let fake = FakeSse { endpoint: Some("/messages?session={n}".into()), close_after_call: true, ..Default::default() };
    let base = fake.listen().await;
    let server = start(&sse_app("flaky", &format!("{base}/sse"))).await;
    let call = format!("{}/default/apps/tools/mcp-rest/tools/call", server.base);

    for (round, text) in ["one", "two"].into_iter().enumerate() {
        let (status, result) =
            server.post_json(&call, &json!({"name": "flaky-echo", "arguments": {"text": text}})).await;
        assert_eq!((status, result["content"][0]["text"].clone()), (200, json!(text)), "round {round}: {result}");
        assert_eq!(fake.opened.load(Ordering::SeqCst), round + 1, "a stream per session");
        // The fake ended the stream after answering; give the transport a moment to see it.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(fake.unauthenticated.load(Ordering::SeqCst), 0, "the server's headers on the stream and every post");
    assert!(fake.posts.load(Ordering::SeqCst) >= 6, "initialize, initialized, a call; twice");
}

#[tokio::test]
async fn an_sse_server_without_an_endpoint_event_times_out_connecting() {
    let fake = FakeSse::default();
    let base = fake.listen().await;
    let http = ferrolite::mcp::client::McpHttp {
        http: Arc::new(ferrolite::transport::UpstreamClient::new()),
        headers: Arc::new(HeaderMap::new()),
        public_only: false,
    };
    let limit = Duration::from_millis(300);
    let connected = ferrolite::mcp::sse::SseTransport::connect(http, &format!("{base}/sse"), limit).await;
    let error = connected.err().expect("no endpoint, no transport");
    assert!(matches!(error, ferrolite::mcp::sse::SseTransportError::NoEndpoint(l) if l == limit), "{error}");
}
