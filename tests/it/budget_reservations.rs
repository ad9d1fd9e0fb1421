//! Budgets that cannot be overspent: each request's worst-case cost is reserved against the
//! budget before its upstream call and settled to the real cost after it (streams at their end,
//! failures and clients that leave included), on one instance and across instances sharing a
//! real `redis-server`, where a killed instance's reservations expire.

use crate::fake_openai::FakeOpenAi;
use crate::support::{read_json, Redis, ServeProcess, TestServer};
use futures::StreamExt as _;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A mock deployment whose answer, "four words of answer", costs exactly $1 (4 tokens at $0.25;
/// the prompt is free): its reservation is its cost.
fn dollar_mock(name: &str) -> Value {
    json!({"model_name": name, "litellm_params": {"model": "gpt-4o", "mock_response": "four words of answer", "input_cost_per_token": 0.0, "output_cost_per_token": 0.25}})
}

/// A mock that costs nothing: still refused once the budget is used up or held.
fn free_mock() -> Value {
    json!({"model_name": "free", "litellm_params": {"model": "gpt-4o", "mock_response": "free"}})
}

fn manifest(model_list: Vec<Value>, settings: Value) -> Value {
    json!({"id": "paid", "name": "paid", "type": "llm-proxy", "config": {"service_id": "paid", "model_list": model_list, "litellm_settings": settings}})
}

async fn server_with(manifest: Value) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    (TestServer::with_configs(vec![path]).await, dir)
}

async fn chat(server: &TestServer, token: &str, workspace: &str, body: Value) -> (u16, Value) {
    let response = server
        .client
        .post(format!("{}/{workspace}/apps/paid/v1/chat/completions", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    read_json(response).await
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
}

async fn usage(server: &TestServer, token: &str, workspace: &str) -> Value {
    let running = server.ok(workspace, token, "list_running", json!({})).await;
    server.ok(workspace, token, "get_usage", json!({"session_id": running[0]["id"]})).await
}

/// Polls until `check` holds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts 200s and 429 `budget_exceeded`s; anything else fails the test.
fn tally(answers: Vec<(u16, Value)>) -> (usize, usize) {
    let (mut served, mut refused) = (0, 0);
    for (status, body) in answers {
        match status {
            200 => served += 1,
            429 => {
                assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
                refused += 1;
            }
            _ => panic!("neither served nor refused for its budget: {status} {body}"),
        }
    }
    (served, refused)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_twenty_dollar_budget_serves_exactly_twenty_of_a_hundred_concurrent_dollar_requests() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    // The fake's answer to this prompt has a fixed length: asked once, it sets the price and
    // `max_tokens` so that the worst case reserved is exactly the $1 each answer costs.
    let probe = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url))
        .bearer_auth("sk-fake-upstream-123")
        .header("content-type", "application/json")
        .body(hello("gpt-4o").to_string())
        .send()
        .await
        .unwrap();
    let tokens = read_json(probe).await.1["usage"]["completion_tokens"].as_u64().unwrap();
    let model = json!({"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": fake.base_url, "api_key": "sk-fake-upstream-123", "input_cost_per_token": 0.0, "output_cost_per_token": 1.0 / tokens as f64}});
    let (server, _dir) = server_with(manifest(vec![model], json!({"max_budget": 20}))).await;
    let mut body = hello("gpt");
    body["max_tokens"] = json!(tokens);
    let calls = (0..100).map(|_| chat(&server, &server.token, "default", body.clone()));
    let (served, refused) = tally(futures::future::join_all(calls).await);
    assert_eq!((served, refused), (20, 80));
    let report = usage(&server, &server.token, "default").await;
    assert!((report["spend"].as_f64().unwrap() - 20.0).abs() < 1e-9, "{report}");
    assert_eq!(report["reserved"], 0.0, "every reservation settled or given back: {report}");
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/v1/chat/completions").count(), 20 + 1);
}

#[tokio::test]
async fn a_refusal_names_the_budget_its_spend_its_limit_and_what_the_request_needs() {
    let (server, _dir) = server_with(manifest(vec![dollar_mock("m")], json!({"max_budget": 2.5}))).await;
    for _ in 0..2 {
        assert_eq!(chat(&server, &server.token, "default", hello("m")).await.0, 200);
    }
    let (status, body) = chat(&server, &server.token, "default", hello("m")).await;
    assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "{body}");
    assert_eq!(
        body["error"]["message"],
        "budget exceeded: this app has spent $2.000000 of its $2.500000 budget; this request may cost up to $1.000000"
    );
}

/// The app's budget figures in Redis: (every instance's spend summed, held), micro-dollars.
fn budget_in_redis(redis: &Redis) -> (u64, u64) {
    let key = "ferrolite:budget\u{1f}app\u{1f}team\u{1f}paid\u{1f}0";
    let all: std::collections::HashMap<String, u64> = redis.query(redis::cmd("HGETALL").arg(key));
    let spent = all.iter().filter(|(field, _)| field.starts_with('@')).map(|(_, v)| v).sum();
    (spent, all.get("held").copied().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_over_redis_serve_exactly_twenty_of_a_hundred_concurrent_dollar_requests() {
    let redis = Redis::start();
    let (url, port) = (redis.url.clone(), redis.port);
    let start = || {
        let url = url.clone();
        TestServer::start(vec![], move |c| c.redis_url = Some(url))
    };
    let (a, b) = (start().await, start().await);
    let token = a.token_for("team");
    let app = manifest(vec![dollar_mock("m"), free_mock()], json!({"max_budget": 20}));
    a.ok("team", &token, "install", json!({"manifest": app})).await;
    a.ok("team", &token, "start", json!({"app_id": "paid"})).await;
    eventually("B serves the app", || async { chat(&b, &token, "team", hello("free")).await.0 == 200 }).await;

    let calls = (0..100).map(|i| chat(if i % 2 == 0 { &a } else { &b }, &token, "team", hello("m")));
    let (served, refused) = tally(futures::future::join_all(calls).await);
    assert_eq!((served, refused), (20, 80));
    for server in [&a, &b] {
        eventually("each instance counts the twenty dollars spent, once", || async {
            (usage(server, &token, "team").await["spend"].as_f64().unwrap() - 20.0).abs() < 1e-9
        })
        .await;
    }
    eventually("Redis holds the twenty dollars as spend, nothing as held", || async {
        budget_in_redis(&redis) == (20_000_000, 0)
    })
    .await;

    // Redis restarts empty: the instances floor their figures back, and the budget still holds.
    drop(redis);
    let redis = Redis::start_on(port);
    eventually("the spend figures are put back", || async { budget_in_redis(&redis) == (20_000_000, 0) }).await;
    for server in [&a, &b] {
        let (status, body) = chat(server, &token, "team", hello("free")).await;
        assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "{body}");
    }
}

/// How many scripts Redis has run by their digest (the lease exchanges and their upkeep).
fn scripts_run(redis: &Redis) -> u64 {
    let info: String = redis.query(redis::cmd("INFO").arg("commandstats"));
    let calls = info.lines().find(|l| l.starts_with("cmdstat_evalsha:")).and_then(|l| l.split("calls=").nth(1));
    calls.and_then(|c| c.split(',').next()).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn leased_headroom_serves_most_requests_without_asking_redis_and_is_given_back_when_idle() {
    let redis = Redis::start();
    let url = redis.url.clone();
    let start = || {
        let url = url.clone();
        TestServer::start(vec![], move |c| c.redis_url = Some(url))
    };
    let (a, b) = (start().await, start().await);
    let token = a.token_for("team");
    let app = manifest(vec![dollar_mock("m"), free_mock()], json!({"max_budget": 1000}));
    a.ok("team", &token, "install", json!({"manifest": app})).await;
    a.ok("team", &token, "start", json!({"app_id": "paid"})).await;
    eventually("B serves the app", || async { chat(&b, &token, "team", hello("free")).await.0 == 200 }).await;

    let before = scripts_run(&redis);
    let calls = (0..200).map(|i| chat(if i % 2 == 0 { &a } else { &b }, &token, "team", hello("m")));
    let (served, refused) = tally(futures::future::join_all(calls).await);
    assert_eq!((served, refused), (200, 0));
    let scripts = scripts_run(&redis) - before;
    assert!(scripts < 100, "200 budgeted requests ran {scripts} scripts: most must be served on the leases");

    eventually("the spend is folded in and the idle leases are given back", || async {
        budget_in_redis(&redis) == (200_000_000, 0)
    })
    .await;
    for server in [&a, &b] {
        eventually("each instance counts the $200, once", || async {
            (usage(server, &token, "team").await["spend"].as_f64().unwrap() - 200.0).abs() < 1e-9
        })
        .await;
    }
}

#[tokio::test]
async fn a_failed_upstream_gives_its_reservation_back() {
    // Port 1 (tcpmux): nothing listens there, and no test binds it. A port found free could be
    // taken by another test's server before the call (one answered 404 here once).
    let down = json!({"model_name": "down", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:1/v1", "api_key": "sk-none", "input_cost_per_token": 0.0, "output_cost_per_token": 0.25, "max_reserved_tokens": 4}});
    let settings = json!({"max_budget": 1, "num_retries": 1, "retry_backoff": 0.0});
    let (server, _dir) = server_with(manifest(vec![down, dollar_mock("m")], settings)).await;
    let (status, body) = chat(&server, &server.token, "default", hello("down")).await;
    assert_eq!(status, 502, "{body}");
    let report = usage(&server, &server.token, "default").await;
    assert_eq!((report["spend"].as_f64(), report["reserved"].as_f64()), (Some(0.0), Some(0.0)), "{report}");
    assert_eq!(chat(&server, &server.token, "default", hello("m")).await.0, 200, "the whole budget is left");
}

#[tokio::test]
async fn a_stream_settles_to_its_real_cost_when_it_ends() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    // Reserved: the default 4096 output tokens; spent: the few the answer has.
    let model = json!({"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": fake.base_url, "api_key": "sk-fake-upstream-123", "input_cost_per_token": 0.001, "output_cost_per_token": 0.001}});
    let (server, _dir) = server_with(manifest(vec![model], json!({"max_budget": 100}))).await;
    let mut body = hello("gpt");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = server.post(format!("{}/default/apps/paid/v1/chat/completions", server.base), &body).await;
    let text = response.text().await.unwrap();
    let data = crate::support::sse_data(&text);
    let last: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    let tokens = last["usage"]["total_tokens"].as_f64().unwrap();
    eventually("the stream is booked", || async {
        let report = usage(&server, &server.token, "default").await;
        report["reserved"] == 0.0 && (report["spend"].as_f64().unwrap() - tokens * 0.001).abs() < 1e-9
    })
    .await;
}

/// An upstream that streams one chunk and then holds the stream open, saying nothing more.
async fn stalling_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let handler = || async {
        let first = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
        let chunks = futures::stream::once(async move { Ok::<_, std::io::Error>(axum::body::Bytes::from(first)) })
            .chain(futures::stream::pending());
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(chunks))
            .unwrap()
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    (base, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

#[tokio::test]
async fn a_stream_the_client_leaves_or_the_upstream_drops_gives_the_rest_back() {
    let (base, _upstream) = stalling_upstream().await;
    let model = |name: &str, extra: Value| {
        let mut params = json!({"model": "openai/gpt-4o", "api_base": base, "api_key": "sk-x", "input_cost_per_token": 0.0, "output_cost_per_token": 0.25, "max_reserved_tokens": 4});
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"model_name": name, "litellm_params": params})
    };
    let list = vec![model("held", json!({})), model("cut", json!({"stream_timeout": 0.2})), dollar_mock("m")];
    let (server, _dir) = server_with(manifest(list, json!({"max_budget": 1}))).await;
    let stream = |model: &str| json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let url = format!("{}/default/apps/paid/v1/chat/completions", server.base);

    // The client reads the first chunk and leaves.
    let mut response = server.post(&url, &stream("held")).await;
    assert_eq!(response.status(), 200);
    assert!(response.chunk().await.unwrap().is_some());
    let (status, body) = chat(&server, &server.token, "default", hello("m")).await;
    assert_eq!((status, body["error"]["type"].as_str()), (429, Some("budget_exceeded")), "held meanwhile: {body}");
    drop(response);
    eventually("the reservation of the stream the client left is given back", || async {
        usage(&server, &server.token, "default").await["reserved"] == 0.0
    })
    .await;

    // The upstream falls silent past `stream_timeout`: the stream ends with an error event.
    let text = server.post(&url, &stream("cut")).await.text().await.unwrap();
    assert!(text.contains("stream_timeout"), "{text}");
    let report = usage(&server, &server.token, "default").await;
    assert_eq!((report["reserved"].as_f64(), report["spend"].as_f64()), (Some(0.0), Some(0.0)), "{report}");
    assert_eq!(chat(&server, &server.token, "default", hello("m")).await.0, 200, "the whole budget is left");
}

/// A TCP server that accepts connections and never answers.
fn silent_upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming().flatten() {
            held.push(connection);
        }
    });
    port
}

#[test]
fn reservations_of_a_killed_instance_expire_and_its_spend_stays_right() {
    let redis = Redis::start();
    let silent = silent_upstream();
    let dir = tempfile::tempdir().unwrap();
    let slow = json!({"model_name": "slow", "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("http://127.0.0.1:{silent}/v1"), "api_key": "sk-silent", "input_cost_per_token": 0.0, "output_cost_per_token": 0.25, "max_reserved_tokens": 4}});
    let settings = json!({"max_budget": 3, "budget_reservation_ttl": 1, "num_retries": 0});
    let config = dir.path().join("app.json");
    std::fs::write(&config, manifest(vec![slow, dollar_mock("m"), free_mock()], settings).to_string()).unwrap();
    let spawn = |name: &str| {
        let args = ["--port", "0", "--config", config.to_str().unwrap(), "--redis-url", &redis.url];
        ServeProcess::spawn(&[&args[..], &["--allow-private-upstreams"]].concat(), &dir.path().join(name))
    };
    let a = spawn("a");
    let b = spawn("b");
    let post = |server: &ServeProcess, token: &str, model: &str| {
        let url = format!("{}/default/apps/paid/v1/chat/completions", server.base);
        crate::support::blocking_post(&url, token, &hello(model))
    };
    let until = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until("B serves the app", &|| post(&b, &b.token, "free").0 == 200);

    // Three requests on A hold $3, the whole budget, on an upstream that never answers.
    for _ in 0..3 {
        let (url, token) = (format!("{}/default/apps/paid/v1/chat/completions", a.base), a.token.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let body = hello("slow").to_string();
            let request =
                reqwest::Client::new().post(url).bearer_auth(token).header("content-type", "application/json");
            let request = request.body(body).send();
            // Ends when A is killed; what it ends in does not matter.
            let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), request).await });
        });
    }
    until("A's reservations hold the budget everywhere", &|| post(&b, &b.token, "free").0 == 429);
    let (_, refused) = post(&b, &b.token, "m");
    let message = refused["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("has spent $0.000000") && message.contains("hold $3.000000"), "{message}");

    drop(a); // kill -9, holding its three reservations
    until("the dead instance's reservations expire", &|| post(&b, &b.token, "free").0 == 200);
    for _ in 0..3 {
        let (status, body) = post(&b, &b.token, "m");
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(&b, &b.token, "m");
    assert_eq!(status, 429, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("budget exceeded: this app has spent $3.000000 of its $3.000000 budget"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_user_and_workspace_budgets_hold_under_concurrency() {
    let (server, _dir) = server_with(manifest(vec![dollar_mock("dollar")], json!({}))).await;
    let token = server.token.clone();
    let make = |kwargs: Value| {
        let (server, token) = (&server, token.clone());
        async move { server.ok("default", &token, "create_key", kwargs).await["key"].as_str().unwrap().to_owned() }
    };

    // A key's own budget: 100 concurrent $1 requests against $20.
    let key = make(json!({"max_budget": 20})).await;
    let calls = (0..100).map(|_| chat(&server, &key, "default", hello("dollar")));
    let (served, refused) = tally(futures::future::join_all(calls).await);
    assert_eq!((served, refused), (20, 80));
    let (_, refusal) = chat(&server, &key, "default", hello("dollar")).await;
    assert!(refusal["error"]["message"].as_str().unwrap().contains("API key"), "{refusal}");

    // A user's budget counts all of the user's keys: two keys of ada share $5.
    server.ok("default", &token, "set_budget", json!({"user": "ada", "max_budget": 5})).await;
    let (first, second) = (make(json!({"user": "ada"})).await, make(json!({"user": "ada"})).await);
    let calls = (0..20).map(|i| chat(&server, if i % 2 == 0 { &first } else { &second }, "default", hello("dollar")));
    let (served, _) = tally(futures::future::join_all(calls).await);
    assert_eq!(served, 5, "one budget for both of ada's keys");

    // A workspace budget holds for every caller, tokens included: $20 + $5 are spent already.
    server.ok("default", &token, "set_budget", json!({"max_budget": 27})).await;
    let other = make(json!({})).await;
    let calls = (0..10).map(|i| chat(&server, if i % 2 == 0 { &other } else { &token }, "default", hello("dollar")));
    let (served, _) = tally(futures::future::join_all(calls).await);
    assert_eq!(served, 2, "the workspace had $2 left");

    // The spend is reported per key, user and workspace.
    let listed = server.ok("default", &token, "list_budgets", json!({})).await;
    let spend = |scope: &str, name: &str| {
        listed["spend"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scope"] == scope && s["name"] == name)
            .map(|s| s["spend"].clone())
    };
    assert_eq!(spend("user", "ada"), Some(json!(5.0)), "{listed}");
    assert_eq!(spend("workspace", "default"), Some(json!(27.0)), "{listed}");
    let keys = server.ok("default", &token, "list_keys", json!({})).await;
    // Keys list by creation second, then by (random) id: find the one with the $20 budget.
    let budgeted = keys.as_array().unwrap().iter().find(|k| k["max_budget"] == json!(20.0));
    assert_eq!(budgeted.map(|k| &k["spend"]), Some(&json!(20.0)), "{keys}");
    let usage = usage(&server, &token, "default").await;
    let key_id = budgeted.and_then(|k| k["id"].as_str()).unwrap_or_default();
    let by_key = usage["callers"].as_array().unwrap().iter().find(|c| c["scope"] == "key" && c["name"] == key_id);
    assert_eq!(by_key.map(|c| c["spend"].clone()), Some(json!(20.0)), "get_usage reports spend per key: {usage}");
    let (status, body) = server.controller("default", &key, "set_budget", json!({"max_budget": 1000})).await;
    assert_eq!(status, 403, "a key cannot raise budgets: {body}");
}
