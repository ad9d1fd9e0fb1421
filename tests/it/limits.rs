//! Load protections: the global in-flight cap (503 + Retry-After), per-workspace and per-token
//! request rates (429 + Retry-After), clients hanging up mid-stream by the thousand, and
//! clients that never finish a request head (slowloris).

use crate::support::{read_json, TestServer};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An OpenAI-compatible fake whose chat answers after 400 ms, or (streaming) sends one chunk
/// and then holds the stream open; it counts the streams still open on its side.
async fn slow_fake() -> (String, Arc<AtomicUsize>) {
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::body::Bytes| {
            let open = counter.clone();
            async move {
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if body["stream"] == json!(true) {
                    struct Open(Arc<AtomicUsize>);
                    impl Drop for Open {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    open.fetch_add(1, Ordering::SeqCst);
                    let guard = Open(open);
                    let first = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
                    let stream = futures::stream::unfold((0u8, guard), move |(step, guard)| async move {
                        if step == 0 {
                            return Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(first)), (1, guard)));
                        }
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        None
                    });
                    return ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream)).into_response();
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
                axum::Json(json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
                .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), open)
}

async fn server_on(
    base: &str,
    tweak: impl FnOnce(&mut ferrolite::server::ServerConfig),
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let manifest = json!({"name": "slow", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": base, "api_key": "k"}}
    ]}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    (TestServer::start(vec![path], tweak).await, dir)
}

fn chat_request(server: &TestServer, token: &str, stream: bool) -> reqwest::RequestBuilder {
    server
        .client
        .post(server.demo_url("/v1/chat/completions"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_in_flight_cap_requests_get_503_with_retry_after() {
    let (base, _open) = slow_fake().await;
    let (server, _dir) = server_on(&base, |c| c.limits.max_in_flight = 2).await;
    let server = Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let response = chat_request(&server, &server.token, false).send().await.unwrap();
            let retry_after = response.headers().get("retry-after").cloned();
            let (status, body) = read_json(response).await;
            (status, body, retry_after)
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, body, retry_after) = task.await.unwrap();
        if status == 503 {
            assert_eq!(body["error"]["code"], "overloaded");
            assert_eq!(retry_after.unwrap(), "1");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503, 503], "two served, the rest refused at once");
    assert_eq!(server.running.state.in_flight.current(), 0);
    assert_eq!(chat_request(&server, &server.token, false).send().await.unwrap().status(), 200, "and it keeps serving");
}

/// The in-flight cap holds each response's place without hiding its size: a JSON answer goes
/// out with its Content-Length (not chunked), a stream keeps its place until it ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_place_keeps_the_answers_content_length_and_a_stream_holds_it_to_the_end() {
    let (base, _open) = slow_fake().await;
    let (server, _dir) = server_on(&base, |_| {}).await;

    let response = chat_request(&server, &server.token, false).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("transfer-encoding").is_none(), "{:?}", response.headers());
    let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await.unwrap();
    assert_eq!(length, Some(body.len().to_string()));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["choices"][0]["message"]["content"], "slow");
    places_given_back(&server, "after a JSON answer").await;

    let mut stream = chat_request(&server, &server.token, true).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap_or_default();
    assert!(String::from_utf8_lossy(&first).contains("Hi"), "{first:?}");
    assert_eq!(server.running.state.in_flight.current(), 1, "an open stream holds its place");
    drop(stream);
    places_given_back(&server, "after the client left the stream").await;
}

/// Waits (up to 5 s) until no request holds a place: the server drops a body just after its
/// last bytes are written, so a client may read them a moment before.
async fn places_given_back(server: &TestServer, when: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.running.state.in_flight.current() != 0 {
        assert!(std::time::Instant::now() < deadline, "a place was not given back {when}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn workspaces_and_tokens_have_request_rates() {
    let into_minute = ferrolite::clock::unix_now() % 60;
    if into_minute >= 55 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await; // keep the counts in one minute
    }
    let server = TestServer::start(vec![], |c| {
        c.limits.rates.per_workspace = Some(4);
        c.limits.rates.per_token = Some(2);
    })
    .await;
    let ask = |token: String| {
        let url = server.demo_url("/v1/models");
        let client = server.client.clone();
        async move {
            let response = client.get(url).bearer_auth(token).send().await.unwrap();
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let (status, body) = read_json(response).await;
            (status, body, retry_after)
        }
    };
    let second = server.token_for("default");
    tokio::time::sleep(Duration::from_millis(1100)).await; // a token issued in another second differs
    let (first, third) = (server.token.clone(), server.token_for("default"));
    assert_eq!(ask(first.clone()).await.0, 200);
    assert_eq!(ask(first.clone()).await.0, 200);
    let (status, body, retry_after) = ask(first).await;
    assert_eq!(status, 429, "the token's own limit: {body}");
    assert_eq!(
        body["error"]["message"].as_str().unwrap().split(';').next(),
        Some("this token is over its request rate")
    );
    assert!(retry_after.unwrap().parse::<u64>().unwrap() <= 60);
    let (status, body, _) = ask(second.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ask(second).await.0, 200);
    let (status, body, _) = ask(third).await;
    assert_eq!(status, 429, "the workspace's limit (4 a minute) is spent: {body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("workspace \"default\" is over its request rate"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_clients_hanging_up_mid_stream_leave_nothing_behind() {
    let (base, open_upstream) = slow_fake().await;
    let (server, _dir) = server_on(&base, |_| {}).await;
    let session = server.running.state.controller.registry().get("default", "demo").unwrap();
    for round in 0..1000 {
        let mut response = chat_request(&server, &server.token, true).send().await.unwrap();
        let first = response.chunk().await.unwrap().expect("the first chunk");
        assert!(first.starts_with(b"data: "), "round {round}");
        drop(response); // the client hangs up mid-stream
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (deployment, global, upstream) = (
            session.table.stats[0].in_flight(),
            server.running.state.in_flight.current(),
            open_upstream.load(Ordering::SeqCst),
        );
        if deployment == 0 && global == 0 && upstream == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 1,000 hang-ups: {deployment} in flight on the deployment, {global} in ferrolite, {upstream} upstream streams still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that sends part of a request head and then nothing, or nothing at all, has its
/// connection closed once the header-read timeout passes, not before; other clients are served
/// meanwhile. Both ways of running connections: lanes and the shared runtime.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_that_never_ends_is_cut_off_at_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for io_threads in [2, 0] {
        let server = TestServer::start(Vec::new(), |c| {
            c.connections.header_read_timeout = Duration::from_millis(600);
            c.io_threads = io_threads;
        })
        .await;
        let mut slow = tokio::net::TcpStream::connect(server.running.addr).await.unwrap();
        slow.write_all(b"POST /default/apps/demo/v1/chat/completions HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let mut silent = tokio::net::TcpStream::connect(server.running.addr).await.unwrap();
        let started = std::time::Instant::now();

        let (status, _) = server.get_json(&server.demo_url("/v1/models")).await;
        assert_eq!(status, 200, "a prompt client is served while the slow ones wait");

        for (what, client) in [("half a head", &mut slow), ("nothing", &mut silent)] {
            let mut buf = [0u8; 256];
            let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("io_threads {io_threads}, {what}: still open after 10 s"));
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "io_threads {io_threads}, {what}: closed without an answer: {read:?}"
            );
            assert!(
                started.elapsed() >= Duration::from_millis(500),
                "io_threads {io_threads}, {what}: closed too early"
            );
        }
    }
}
