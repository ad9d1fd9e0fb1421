//! Retries, cooldowns, fallbacks and timeouts, against an OpenAI-compatible fake whose
//! deployments fail, stall or rate-limit on command. Each deployment's `api_base` names its
//! behaviour: `http://fake/{name}/v1`, and the fake counts requests per name.

use crate::support::{read_json, TestServer};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Flaky {
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

impl Flaky {
    fn hits(&self, name: &str) -> u32 {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// One chat chunk event of the fake's streams: `delta` and `finish_reason` as JSON text.
fn chunk_event(delta: &str, finish_reason: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish_reason}}}]}}\n\n"
    )
}

/// The first chunk of the streams that then break or fall silent.
fn first_chunk() -> axum::body::Bytes {
    chunk_event(r#"{"role":"assistant","content":"Hel"}"#, "null").into()
}

/// `stream` as an SSE answer.
fn event_stream<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static,
{
    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream)).into_response()
}

fn completion(model: &str, text: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
}

async fn chat(State(flaky): State<Flaky>, Path(name): Path<String>, body: axum::body::Bytes) -> Response {
    *flaky.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let error = |status: StatusCode, code: &str, message: &str| {
        (
            status,
            axum::Json(json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}})),
        )
            .into_response()
    };
    match name.as_str() {
        n if n.starts_with("down") => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "The server had an error")
        }
        n if n.starts_with("bad") => error(StatusCode::BAD_REQUEST, "invalid_value", "Invalid value for temperature"),
        n if n.starts_with("small") => error(
            StatusCode::BAD_REQUEST,
            "context_length_exceeded",
            "This model's maximum context length is 8192 tokens",
        ),
        n if n.starts_with("garbage") => ([("content-type", "application/json")], "<html>oops</html>").into_response(),
        n if n.starts_with("huge") => {
            // Valid JSON, 100 KB: past a gateway whose answer limit is smaller.
            let answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": "x".repeat(100_000)}, "finish_reason": "stop"}]});
            axum::Json(answer).into_response()
        }
        n if n.starts_with("truncated") => {
            // Promises 500 bytes, sends 20, hangs up.
            let stream = futures::stream::unfold(0u8, |step| async move {
                match step {
                    0 => {
                        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"id\": \"chatcmpl-1\", ")), 1))
                    }
                    1 => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Some((Err(std::io::Error::other("hang up")), 2))
                    }
                    _ => None,
                }
            });
            ([("content-type", "application/json"), ("content-length", "500")], axum::body::Body::from_stream(stream))
                .into_response()
        }
        n if n.starts_with("dribble") => {
            // The head at once, then the body a byte a second: only the whole exchange's
            // timeout can end it.
            let text = serde_json::to_vec(&completion("m", "slowly")).unwrap_or_default();
            let len = text.len().to_string();
            let stream = futures::stream::unfold((text, 0usize), |(text, at)| async move {
                if at == text.len() {
                    return None;
                }
                if at > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![text[at]])), (text, at + 1)))
            });
            (
                [("content-type", "application/json"), ("content-length", len.as_str())],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        n if n.starts_with("refuses") => error(
            StatusCode::BAD_REQUEST,
            "content_policy_violation",
            "Your request was rejected by the content policy",
        ),
        n if n.starts_with("slow") && !n.starts_with("slowstart") => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            axum::Json(completion("m", &format!("answered by {name}"))).into_response()
        }
        n if n.starts_with("limited") => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "Rate limit reached");
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            r
        }
        n if n.starts_with("stall") => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            axum::Json(completion("m", "too late")).into_response()
        }
        n if n.starts_with("breaks") => {
            // One chunk, then the connection dies mid-body.
            let stream = futures::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(first_chunk()), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(std::io::Error::other("connection reset")), 2))
                    }
                    _ => None,
                }
            });
            event_stream(stream)
        }
        n if n.starts_with("slowstart") => {
            // Headers at once, the first token only after 700 ms, then the end.
            let stream = futures::stream::unfold(0u8, |step| async move {
                match step {
                    0 => {
                        tokio::time::sleep(Duration::from_millis(700)).await;
                        let chunk =
                            chunk_event(r#"{"role":"assistant","content":"Hi"}"#, r#""stop""#) + "data: [DONE]\n\n";
                        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk)), 1))
                    }
                    _ => None,
                }
            });
            event_stream(stream)
        }
        n if n.starts_with("steady") => {
            // Six chunks 200 ms apart, then the end: longer in all than a gap it never exceeds.
            let stream = futures::stream::unfold(0u8, move |step| async move {
                let piece = match step {
                    0 => String::new(),
                    1..=6 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        chunk_event(&format!(r#"{{"content":"t{step}"}}"#), "null")
                    }
                    7 => "data: [DONE]\n\n".to_owned(),
                    _ => return None,
                };
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(piece)), step + 1))
            });
            event_stream(stream)
        }
        n if n.starts_with("trickle") => {
            // One chunk, then silence.
            let stream = futures::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(first_chunk()), 1)),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        None
                    }
                }
            });
            event_stream(stream)
        }
        _ => axum::Json(completion(body["model"].as_str().unwrap_or("m"), &format!("answered by {name}")))
            .into_response(),
    }
}

async fn start_flaky() -> (String, Flaky) {
    let flaky = Flaky::default();
    let app = Router::new().route("/{name}/v1/chat/completions", post(chat)).with_state(flaky.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), flaky)
}

/// An app whose deployments are `(model_name, behaviour)` pairs on the fake.
async fn app(base: &str, deployments: &[(&str, &str)], settings: Value) -> (TestServer, tempfile::TempDir) {
    app_with(base, deployments, settings, |_| {}).await
}

/// [`app`] on a server `tune` configures.
async fn app_with(
    base: &str,
    deployments: &[(&str, &str)],
    settings: Value,
    tune: impl FnOnce(&mut ferrolite::server::ServerConfig),
) -> (TestServer, tempfile::TempDir) {
    let model_list: Vec<Value> = deployments
        .iter()
        .map(|(model, behaviour)| {
            json!({"model_name": model, "litellm_params": {"model": "openai/m", "api_base": format!("{base}/{behaviour}/v1"), "api_key": "k"}})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let manifest = json!({"name": "flaky", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": model_list, "litellm_settings": settings}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    (TestServer::start(vec![path], tune).await, dir)
}

/// The whole text of a streamed answer of the demo app's `gpt`.
async fn streamed(server: &TestServer) -> String {
    let body = json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    server.post(server.demo_url("/v1/chat/completions"), &body).await.text().await.unwrap()
}

async fn ask(server: &TestServer, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = server.post(server.demo_url("/v1/chat/completions"), &body).await;
    let headers = response.headers().clone();
    let (status, value) = read_json(response).await;
    (status, value, headers)
}

fn hi(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]})
}

#[tokio::test]
async fn a_failing_deployment_is_retried_elsewhere_then_cooled_down() {
    let (base, flaky) = start_flaky().await;
    let (server, _dir) =
        app(&base, &[("gpt", "down-a"), ("gpt", "ok-b")], json!({"num_retries": 2, "retry_backoff": 0.01})).await;
    let mut requests = 0;
    let check = |status: u16, body: &Value, headers: &reqwest::header::HeaderMap| {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], "answered by ok-b");
        assert_eq!(headers["x-ferrolite-deployment"], "gpt/1");
        let attempts: u32 = headers["x-ferrolite-attempts"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&attempts));
        let overhead: f64 = headers["x-ferrolite-overhead-ms"].to_str().unwrap().parse().unwrap();
        assert!(overhead >= 0.0);
    };
    // Picks are random: keep asking until the failing deployment has failed allowed_fails + 1 times.
    while flaky.hits("down-a") < 4 {
        let (status, body, headers) = ask(&server, hi("gpt")).await;
        check(status, &body, &headers);
        requests += 1;
        assert!(requests < 200, "the failing deployment was never picked");
    }
    // Its 4th failure in the minute (allowed_fails = 3) cooled it down: no more traffic reaches it.
    for _ in 0..10 {
        let (status, body, headers) = ask(&server, hi("gpt")).await;
        check(status, &body, &headers);
        requests += 1;
    }
    assert_eq!(flaky.hits("down-a"), 4, "the failing deployment cooled down after its 4th failure");
    assert_eq!(flaky.hits("ok-b"), requests);
}

#[tokio::test]
async fn client_errors_fail_at_once() {
    let (base, flaky) = start_flaky().await;
    let (server, _dir) =
        app(&base, &[("gpt", "bad-a"), ("gpt", "bad-b")], json!({"num_retries": 3, "retry_backoff": 0.01})).await;
    let (status, body, _) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_value");
    assert_eq!(flaky.hits("bad-a") + flaky.hits("bad-b"), 1, "a 400 is not retried");
}

#[tokio::test]
async fn rate_limited_deployments_cool_down_and_the_client_gets_retry_after() {
    let (base, flaky) = start_flaky().await;
    let (server, _dir) =
        app(&base, &[("gpt", "limited")], json!({"num_retries": 2, "retry_backoff": 0.01, "cooldown_time": 2})).await;
    let (status, body, headers) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(flaky.hits("limited"), 1, "a 429 cools the deployment down at once");
    // The request that caused the cooldown gets the upstream's own answer, not a wait for a
    // retry that could only find every deployment cooling.
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(headers["retry-after"], "1");
    let (status, body, headers) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "cooldown");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(flaky.hits("limited"), 1, "nothing reaches a cooling deployment");
}

#[tokio::test]
async fn fallbacks_are_tried_in_order_once_retries_are_used_up() {
    let (base, flaky) = start_flaky().await;
    let settings = json!({"num_retries": 1, "retry_backoff": 0.01, "allowed_fails": 100, "fallbacks": [{"gpt": ["also-down", "backup"]}]});
    let (server, _dir) =
        app(&base, &[("gpt", "down-1"), ("also-down", "down-2"), ("backup", "ok-backup")], settings).await;
    let (status, body, headers) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "answered by ok-backup");
    assert_eq!(headers["x-ferrolite-deployment"], "backup/0");
    assert_eq!(headers["x-ferrolite-attempts"], "5", "2 on gpt, 2 on also-down, 1 on backup");
    assert_eq!((flaky.hits("down-1"), flaky.hits("down-2")), (2, 2));

    // Fallbacks named in the request body work too, and never reach the upstream.
    let (server, _dir) = app(&base, &[("gpt", "down-3"), ("spare", "ok-spare")], json!({"num_retries": 0})).await;
    let mut body = hi("gpt");
    body["fallbacks"] = json!(["spare"]);
    let (status, answer, _) = ask(&server, body).await;
    assert_eq!((status, answer["choices"][0]["message"]["content"].as_str()), (200, Some("answered by ok-spare")));
}

#[tokio::test]
async fn context_window_errors_use_their_own_fallbacks() {
    let (base, flaky) = start_flaky().await;
    let settings = json!({"num_retries": 2, "fallbacks": [{"gpt": ["never"]}], "context_window_fallbacks": [{"gpt": ["gpt-long"]}]});
    let (server, _dir) =
        app(&base, &[("gpt", "small"), ("never", "ok-never"), ("gpt-long", "ok-long")], settings).await;
    let (status, body, _) = ask(&server, hi("gpt")).await;
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("answered by ok-long")));
    assert_eq!(flaky.hits("small"), 1, "a context-window error is not retried on the same group");
    assert_eq!(flaky.hits("ok-never"), 0);
}

#[tokio::test]
async fn a_stalled_upstream_times_out_with_408() {
    let (base, _flaky) = start_flaky().await;
    let (server, _dir) = app(&base, &[("gpt", "stall")], json!({"timeout": 0.5, "num_retries": 0})).await;
    let started = Instant::now();
    let (status, body, _) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "answered within the timeout, not the stall");
}

#[tokio::test]
async fn the_timeout_covers_a_json_answers_body_not_only_its_head() {
    let (base, flaky) = start_flaky().await;
    let (server, _dir) = app(&base, &[("gpt", "dribble")], json!({"timeout": 2, "num_retries": 0})).await;
    let started = Instant::now();
    let (status, body, _) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "ended at the timeout: {:?}", started.elapsed());
    assert_eq!(flaky.hits("dribble"), 1);
    let session = server.running.state.controller.registry().get("default", "demo").unwrap();
    let (lines, _) = session.table.logs.read(Some(ferrolite::observability::session_log::LogType::Error), 0, None);
    assert!(lines.iter().any(|l| l.content.contains("status=408")), "{lines:?}");
}

#[tokio::test]
async fn an_upstream_that_never_accepts_is_given_up_on_at_the_connect_timeout() {
    // A listener whose accept queue is full: further connections are neither accepted nor
    // refused, as when an upstream is overwhelmed.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let addr = full.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await
        {
            held.push(c);
        }
    }
    let probe = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await;
    assert!(probe.is_err(), "the listen queue is full: a connect hangs");
    let base = format!("http://{addr}");
    let (server, _dir) = app(&base, &[("gpt", "x")], json!({"num_retries": 0})).await;
    let started = Instant::now();
    let (status, body, _) = ask(&server, hi("gpt")).await;
    let took = started.elapsed();
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("timed out connecting"), "{body}");
    assert!(took >= ferrolite::transport::CONNECT_TIMEOUT && took < Duration::from_secs(15), "{took:?}");
    drop(full);
}

#[tokio::test]
async fn a_stream_that_falls_silent_ends_with_an_error_event() {
    let (base, _flaky) = start_flaky().await;
    let (server, _dir) = app(&base, &[("gpt", "trickle")], json!({"stream_timeout": 0.5})).await;
    let started = Instant::now();
    let text = streamed(&server).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(text.contains("\"content\":\"Hel\""), "the first chunk arrived: {text}");
    assert!(text.contains("event: error") && text.contains("stream_timeout"), "{text}");
    // The deployment is no longer counted as busy once the stream ended.
    let session = server.running.state.controller.registry().get("default", "demo").unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(session.table.stats[0].in_flight(), 0);
}

#[tokio::test]
async fn a_stream_whose_chunks_keep_coming_outlives_its_stream_timeout() {
    let (base, _flaky) = start_flaky().await;
    let (server, _dir) = app(&base, &[("gpt", "steady")], json!({"stream_timeout": 0.5})).await;
    let text = streamed(&server).await;
    let pieces: Vec<String> = (1..=6).map(|n| format!("\"content\":\"t{n}\"")).collect();
    assert!(pieces.iter().all(|p| text.contains(p.as_str())), "every chunk: {text}");
    assert!(!text.contains("stream_timeout") && text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn an_upstream_dying_mid_stream_ends_the_stream_cleanly_with_an_error_event() {
    let (base, _flaky) = start_flaky().await;
    let (server, _dir) = app(&base, &[("gpt", "breaks")], json!({})).await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    let text = response.text().await.expect("the client's stream ends cleanly, not with a reset");
    assert!(text.contains("\"content\":\"Hel\""), "{text}");
    assert!(text.contains("event: error") && text.contains("upstream_stream_error"), "{text}");
    let session = server.running.state.controller.registry().get("default", "demo").unwrap();
    let (lines, _) = session.table.logs.read(Some(ferrolite::observability::session_log::LogType::Error), 0, None);
    assert!(lines.iter().any(|l| l.content.contains("the upstream stream broke off")), "logged");
}

#[tokio::test]
async fn a_long_wait_for_the_first_token_sends_keep_alive_comments() {
    let (base, _flaky) = start_flaky().await;
    let (server, _dir) = app(&base, &[("gpt", "slowstart")], json!({"stream_keepalive_interval": 0.2})).await;
    let text = streamed(&server).await;
    let first_data = text.find("data: ").expect("the answer arrives");
    let comments = text[..first_data].matches(": keep-alive\n\n").count();
    assert!(comments >= 2, "keep-alives while waiting: {text:?}");
    assert!(!text[first_data..].contains("keep-alive"), "none once tokens flow");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn content_policy_errors_use_their_own_fallbacks() {
    let (base, flaky) = start_flaky().await;
    let settings = json!({"content_policy_fallbacks": [{"gpt": ["lenient"]}]});
    let (server, _dir) = app(&base, &[("gpt", "refuses"), ("lenient", "ok-lenient")], settings).await;
    let (status, body, _) = ask(&server, hi("gpt")).await;
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("answered by ok-lenient")));
    assert_eq!(flaky.hits("refuses"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn least_busy_steers_away_from_a_slow_deployment() {
    let (base, flaky) = start_flaky().await;
    let (server, _dir) =
        app(&base, &[("gpt", "slow"), ("gpt", "fast")], json!({"routing_strategy": "least-busy"})).await;
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move { ask(&server, hi("gpt")).await.0 }));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let (slow, fast) = (flaky.hits("slow"), flaky.hits("fast"));
    assert_eq!(slow + fast, 30);
    assert!(slow * 4 <= fast, "the slow deployment, busy longer, gets far fewer requests: slow {slow}, fast {fast}");
}

/// An answer past the gateway's body limit is refused whole, not cut into invalid JSON.
#[tokio::test]
async fn answers_over_the_limit_are_a_clear_502() {
    let (base, flaky) = start_flaky().await;
    let (server, _dir) = app_with(&base, &[("gpt", "huge")], json!({}), |c| c.limits.max_body_bytes = 64 * 1024).await;
    let (status, body, _) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "bad_upstream_answer");
    assert_eq!(body["error"]["message"], "deployment gpt/0's answer is larger than the 65536 byte limit");
    assert_eq!(flaky.hits("huge"), 1, "the upstream took the request: not sent again");
}

#[tokio::test]
async fn non_json_and_truncated_answers_are_a_clear_502() {
    let (base, _flaky) = start_flaky().await;
    let (server, _dir) = app(&base, &[("gpt", "garbage"), ("cut", "truncated")], json!({})).await;
    let (status, body, _) = ask(&server, hi("gpt")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "bad_upstream_answer");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("deployment gpt/0 answered invalid JSON"), "{body}");
    let (status, body, _) = ask(&server, hi("cut")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("deployment cut/0's answer broke off"), "{body}");
    let session = server.running.state.controller.registry().get("default", "demo").unwrap();
    let (errors, _) = session.table.logs.read(Some(ferrolite::observability::session_log::LogType::Error), 0, None);
    assert!(errors.len() >= 2, "both failures are in get_logs: {errors:?}");
}
