//! `GET /metrics` and the request id: after real requests (a retried failure, a cooldown and
//! its fallback, a stream, an unknown model) the Prometheus text shows each fact under the
//! app's own labels. The recorder is process-wide, so each test uses a workspace of its own.

use crate::support::{read_json, TestServer};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An OpenAI-compatible fake: `flaky` fails its odd calls with 500, `limited` always answers 429.
async fn chat(State(hits): State<Arc<Mutex<HashMap<String, u32>>>>, Path(name): Path<String>) -> Response {
    let n = {
        let mut hits = hits.lock().unwrap();
        let n = hits.entry(name.clone()).or_default();
        *n += 1;
        *n
    };
    let error = |status: StatusCode, message: &str| {
        (
            status,
            axum::Json(json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})),
        )
            .into_response()
    };
    match name.as_str() {
        "flaky" if n % 2 == 1 => error(StatusCode::INTERNAL_SERVER_ERROR, "The server had an error"),
        "limited" => error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached"),
        _ => axum::Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}))
        .into_response(),
    }
}

async fn start_fake() -> String {
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let app = Router::new().route("/{name}/v1/chat/completions", post(chat)).with_state(hits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A workspace name no other test uses (the metrics recorder is shared by the whole process).
fn unique_workspace(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{tag}-{}-{nanos:x}", std::process::id())
}

/// The value of the one sample of `name` carrying every label in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let ok = (rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse().ok()).flatten()
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {} samples:\n{text}", found.len());
    found.first().copied()
}

async fn scrape(server: &TestServer, token: Option<&str>) -> (u16, String) {
    let mut request = server.client.get(format!("{}/metrics", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn admin_token(server: &TestServer) -> String {
    server.running.state.tokens.issue("default", true, Duration::from_secs(600))
}

#[tokio::test]
async fn metrics_count_requests_retries_fallbacks_cooldowns_tokens_and_cost_per_app() {
    let base = start_fake().await;
    let server = TestServer::demo().await;
    let ws = unique_workspace("metrics");
    let token = server.token_for(&ws);
    let upstream = |name: &str| {
        json!({"model": "openai/m", "api_base": format!("{base}/{name}/v1"), "api_key": "k",
            "input_cost_per_token": 0.001, "output_cost_per_token": 0.002})
    };
    let manifest = json!({"name": "Observed", "type": "llm-proxy", "config": {
        "service_id": "observed",
        "model_list": [
            {"model_name": "flaky", "litellm_params": upstream("flaky")},
            {"model_name": "gpt", "litellm_params": upstream("limited")},
            {"model_name": "backup", "litellm_params": {"model": "unpriced-mock", "mock_response": "from backup"}},
        ],
        "litellm_settings": {"num_retries": 1, "retry_backoff": 0.01, "fallbacks": [{"gpt": ["backup"]}], "max_budget": 10}
    }});
    server.ok(&ws, &token, "install", json!({"manifest": manifest})).await;
    let session = server.ok(&ws, &token, "start", json!({"app_id": "observed"})).await;
    let url = session["url"].as_str().unwrap().to_owned();
    let ask = |model: &str, stream: bool| {
        let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]});
        server
            .client
            .post(format!("{url}/chat/completions"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };

    let flaky = ask("flaky", false).await.unwrap();
    assert_eq!(flaky.headers()["x-ferrolite-attempts"], "2", "the first attempt fails and is retried");
    assert_eq!(flaky.status(), 200);
    let fallback = ask("gpt", false).await.unwrap();
    assert_eq!(fallback.headers()["x-ferrolite-deployment"], "backup/0");
    let stream = ask("backup", true).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.text().await.unwrap().contains("[DONE]"));
    let (status, _) = read_json(ask("no-such-model", false).await.unwrap()).await;
    assert_eq!(status, 404);

    let (status, text) = scrape(&server, Some(&admin_token(&server))).await;
    assert_eq!(status, 200);
    let app = [("workspace", ws.as_str()), ("app", "observed")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        app.iter().copied().chain(extra.iter().copied()).collect()
    };
    let chat = ("route", "/v1/chat/completions");
    let get = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);

    let flaky0 = [("model_name", "flaky"), ("deployment", "flaky/0")];
    let requests = |extra: &[(&'static str, &'static str)]| get("ferrolite_requests_total", &with(extra));
    assert_eq!(requests(&[flaky0[0], flaky0[1], chat, ("status", "200")]), Some(1.0), "{text}");
    assert_eq!(
        requests(&[("model_name", "gpt"), ("deployment", "backup/0"), chat, ("status", "200")]),
        Some(1.0),
        "a fallback counts under the model asked for and the deployment that answered"
    );
    assert_eq!(requests(&[("model_name", "backup"), ("deployment", "backup/0"), chat, ("status", "200")]), Some(1.0));
    assert_eq!(
        requests(&[("model_name", ""), ("deployment", ""), chat, ("status", "404")]),
        Some(1.0),
        "an unknown model is labelled \"\", never with what the client sent"
    );
    assert!(!text.contains("no-such-model"));

    assert_eq!(get("ferrolite_retries_total", &with(&flaky0)), Some(1.0));
    assert_eq!(get("ferrolite_upstream_duration_seconds_count", &with(&flaky0)), Some(2.0));
    assert_eq!(get("ferrolite_cooldowns_total", &with(&[("deployment", "gpt/0")])), Some(1.0));
    assert_eq!(get("ferrolite_fallbacks_total", &with(&[("deployment", "backup/0")])), Some(1.0));
    assert_eq!(get("ferrolite_time_to_first_token_seconds_count", &with(&[("deployment", "backup/0")])), Some(1.0));
    assert_eq!(get("ferrolite_tokens_total", &with(&[flaky0[1], ("direction", "in")])), Some(5.0));
    assert_eq!(get("ferrolite_tokens_total", &with(&[flaky0[1], ("direction", "out")])), Some(2.0));
    let cost = get("ferrolite_cost_usd_total", &with(&flaky0)).unwrap();
    assert!((cost - 0.009).abs() < 1e-9, "5 * 0.001 + 2 * 0.002: {cost}");
    assert_eq!(get("ferrolite_in_flight", &with(&flaky0)), Some(0.0));
    let left = get("ferrolite_budget_remaining_usd", &with(&[("model_name", ""), ("deployment", "")])).unwrap();
    assert!((left - (10.0 - 0.009)).abs() < 1e-9, "{left}");

    // Histograms have buckets from tens of microseconds to minutes.
    let routed = with(&[flaky0[0], flaky0[1], chat]);
    assert_eq!(get("ferrolite_request_duration_seconds_count", &routed), Some(1.0));
    let mut fine = routed.clone();
    fine.push(("le", "0.00005"));
    assert!(get("ferrolite_request_duration_seconds_bucket", &fine).is_some(), "{text}");
    let mut coarse = routed.clone();
    coarse.push(("le", "300"));
    assert_eq!(get("ferrolite_request_duration_seconds_bucket", &coarse), Some(1.0));
    assert_eq!(get("ferrolite_overhead_duration_seconds_count", &app), Some(3.0), "three routed answers");
    assert!(text.contains("# TYPE ferrolite_requests_total counter"), "{text}");
}

#[tokio::test]
async fn metrics_need_an_admin_token_unless_the_server_makes_them_public() {
    let server = TestServer::demo().await;
    let (status, body) = scrape(&server, None).await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    let (status, body) = scrape(&server, Some(&server.token)).await;
    assert_eq!(status, 403);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("admin token"), "{body}");
    let (status, text) = scrape(&server, Some(&admin_token(&server))).await;
    assert_eq!(status, 200);
    assert!(text.contains("ferrolite_"), "{text}");

    assert!(text.contains("# TYPE ferrolite_server_in_flight gauge"), "{text}");

    let public = TestServer::start(Vec::new(), |c| c.metrics_public = true).await;
    let (status, text) = scrape(&public, None).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn request_id_is_returned_echoed_when_given_and_in_the_log_line() {
    let server = TestServer::demo().await;
    let chat = json!({"model": "demo-chat", "messages": [{"role": "user", "content": "Hi"}]});
    let response = server.post(server.demo_url("/v1/chat/completions"), &chat).await;
    let generated = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated.starts_with("req_") && generated.len() == 20, "{generated}");

    let send = |id: &'static str| {
        server
            .client
            .post(server.demo_url("/v1/chat/completions"))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(chat.to_string())
            .send()
    };
    let echoed = send("client-trace_42.a:b").await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-trace_42.a:b");
    let replaced = send("two words").await.unwrap();
    assert!(replaced.headers()["x-request-id"].to_str().unwrap().starts_with("req_"), "unsafe ids are replaced");

    let running = server.ok("default", &server.token, "list_running", json!({})).await;
    let session_id = running[0]["id"].as_str().unwrap();
    let logs = server.ok("default", &server.token, "get_logs", json!({"session_id": session_id})).await;
    let lines: Vec<&str> = logs["items"].as_array().unwrap().iter().filter_map(|i| i["content"].as_str()).collect();
    for id in [generated.as_str(), "client-trace_42.a:b"] {
        assert!(lines.iter().any(|l| l.contains(&format!(" {id} POST /v1/chat/completions "))), "{id} in {lines:#?}");
    }
}
