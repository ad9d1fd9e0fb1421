//! The response cache (litellm's `cache: true`): exact-match answers of chat completions, text
//! completions and embeddings served without the upstream (tests/it/fake_openai.rs counts what
//! reached it), streamed and whole answers serving each other, litellm's per-request `cache`
//! controls, hits free of budgets, and two instances sharing entries through a real Redis.

use crate::fake_openai::FakeOpenAi;
use crate::support::{read_json, sse_data, Redis, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "sk-fake-upstream-cache";

fn manifest(api_base: &str, settings: Value) -> Value {
    let priced = |name: &str, model: &str| {
        json!({"model_name": name, "litellm_params": {
            "model": model, "api_base": api_base, "api_key": KEY,
            "input_cost_per_token": 0.0, "output_cost_per_token": 0.001
        }})
    };
    json!({"id": "cached", "name": "cached", "type": "llm-proxy", "config": {
        "service_id": "cached",
        "model_list": [priced("gpt", "openai/gpt-4o"), priced("embed", "openai/text-embedding-3-small")],
        "litellm_settings": settings
    }})
}

/// A fake upstream and a server running the app with `settings`, in workspace `team`.
struct Setup {
    fake: FakeOpenAi,
    server: TestServer,
    token: String,
}

async fn setup(settings: Value) -> Setup {
    let fake = FakeOpenAi::start(KEY).await;
    let server = TestServer::start(vec![], |_| {}).await;
    let token = server.token_for("team");
    install(&server, &token, manifest(&fake.base_url, settings)).await;
    Setup { fake, server, token }
}

async fn install(server: &TestServer, token: &str, manifest: Value) {
    server.ok("team", token, "install", json!({"manifest": manifest})).await;
    server.ok("team", token, "start", json!({"app_id": "cached"})).await;
}

/// An answer: status, the cache's header, litellm's key header and the body.
struct Answer {
    status: u16,
    cache: String,
    key: String,
    body: Value,
}

async fn post(server: &TestServer, token: &str, path: &str, body: &Value) -> reqwest::Response {
    server
        .client
        .post(format!("{}/team/apps/cached/v1{path}", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

async fn ask(server: &TestServer, token: &str, path: &str, body: &Value) -> Answer {
    let response = post(server, token, path, body).await;
    let (cache, key) = (header(&response, "x-ferrolite-cache"), header(&response, "x-litellm-cache-key"));
    let (status, body) = read_json(response).await;
    Answer { status, cache, key, body }
}

/// A streamed answer: the cache's header and the `data:` payloads, `[DONE]` included.
async fn ask_stream(server: &TestServer, token: &str, body: &Value) -> (String, Vec<String>) {
    let response = post(server, token, "/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    let cache = header(&response, "x-ferrolite-cache");
    (cache, sse_data(&response.text().await.unwrap()))
}

/// The text a stream's chunks add up to.
fn streamed_text(data: &[String]) -> String {
    data.iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}

fn hello(extra: Value) -> Value {
    let mut body = json!({"model": "gpt", "messages": [{"role": "user", "content": "Hello cache"}]});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body
}

fn upstream_calls(fake: &FakeOpenAi, path: &str) -> usize {
    fake.requests().iter().filter(|r| r.path == path).count()
}

#[tokio::test]
async fn a_repeated_chat_request_is_answered_from_the_cache() {
    let s = setup(json!({"cache": true})).await;
    let first = ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"), "{}", first.body);
    assert_eq!(first.key.len(), 64);
    let again =
        ask(&s.server, &s.token, "/chat/completions", &hello(json!({"user": "ada", "metadata": {"a": 1}}))).await;
    assert_eq!((again.status, again.cache.as_str()), (200, "hit"));
    assert_eq!(again.key, first.key);
    assert_eq!(again.body, first.body, "the very answer the upstream gave");
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 1);

    // Another temperature is another question.
    let warmer = ask(&s.server, &s.token, "/chat/completions", &hello(json!({"temperature": 0.9}))).await;
    assert_eq!((warmer.status, warmer.cache.as_str()), (200, "miss"));
    assert_ne!(warmer.key, first.key);
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 2);
}

#[tokio::test]
async fn an_app_without_the_cache_always_asks_the_upstream_and_never_forwards_the_controls() {
    let s = setup(json!({})).await;
    for _ in 0..2 {
        let a = ask(&s.server, &s.token, "/chat/completions", &hello(json!({"cache": {"no-store": true}}))).await;
        assert_eq!((a.status, a.cache.as_str()), (200, ""));
    }
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 2);
    let sent: Value = serde_json::from_slice(&s.fake.last("/v1/chat/completions").unwrap().body).unwrap();
    assert!(sent.get("cache").is_none(), "the controls stay here: {sent}");
}

#[tokio::test]
async fn no_cache_no_store_and_bad_controls() {
    let s = setup(json!({"cache": true})).await;
    let calls = || upstream_calls(&s.fake, "/v1/chat/completions");
    // no-store: answered, not kept.
    let a = ask(&s.server, &s.token, "/chat/completions", &hello(json!({"cache": {"no-store": true}}))).await;
    assert_eq!((a.status, a.cache.as_str()), (200, "miss"));
    let sent: Value = serde_json::from_slice(&s.fake.last("/v1/chat/completions").unwrap().body).unwrap();
    assert!(sent.get("cache").is_none(), "the controls never reach the upstream: {sent}");
    let b = ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await;
    assert_eq!(b.cache, "miss", "nothing was kept");
    assert_eq!(calls(), 2);
    // no-cache: the upstream asked although an entry exists, and its answer kept in its place.
    let c = ask(&s.server, &s.token, "/chat/completions", &hello(json!({"cache": {"no-cache": true}}))).await;
    assert_eq!(c.cache, "miss");
    assert_eq!(calls(), 3);
    let d = ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await;
    assert_eq!(d.cache, "hit");
    assert_eq!(d.body["id"], c.body["id"], "the entry no-cache refreshed");
    assert_eq!(calls(), 3);
    let bad = ask(&s.server, &s.token, "/chat/completions", &hello(json!({"cache": {"no_cache": true}}))).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.body["error"]["param"], "cache");
    assert_eq!(calls(), 3);
}

#[tokio::test]
async fn ttl_and_s_maxage_bound_an_entry_life() {
    let s = setup(json!({"cache": true, "cache_params": {"type": "local", "ttl": 60}})).await;
    let calls = || upstream_calls(&s.fake, "/v1/chat/completions");
    let short = hello(json!({"cache": {"ttl": 1}}));
    assert_eq!(ask(&s.server, &s.token, "/chat/completions", &short).await.cache, "miss");
    assert_eq!(ask(&s.server, &s.token, "/chat/completions", &short).await.cache, "hit");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ask(&s.server, &s.token, "/chat/completions", &short).await.cache, "miss", "expired");
    assert_eq!(calls(), 2);
    // That last answer is kept for 1 s again; s-maxage asks for one younger than 0.1 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = hello(json!({"cache": {"s-maxage": 0.1}}));
    assert_eq!(ask(&s.server, &s.token, "/chat/completions", &fresh).await.cache, "miss", "too old for s-maxage");
    let relaxed = hello(json!({"cache": {"s-maxage": 30}}));
    assert_eq!(ask(&s.server, &s.token, "/chat/completions", &relaxed).await.cache, "hit");
    assert_eq!(calls(), 3);
}

#[tokio::test]
async fn a_whole_answer_is_replayed_as_a_stream_with_usage_when_asked() {
    let s = setup(json!({"cache": true})).await;
    let whole = ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await;
    let (cache, data) =
        ask_stream(&s.server, &s.token, &hello(json!({"stream": true, "stream_options": {"include_usage": true}})))
            .await;
    assert_eq!(cache, "hit");
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 1);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&data), whole.body["choices"][0]["message"]["content"].as_str().unwrap());
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == whole.body["id"]));
    assert_eq!(chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).collect::<Vec<_>>(), ["stop"]);
    assert_eq!(chunks.last().unwrap()["usage"], whole.body["usage"]);
    // Without include_usage, no usage chunk.
    let (_, plain) = ask_stream(&s.server, &s.token, &hello(json!({"stream": true}))).await;
    assert!(plain.iter().all(|d| !d.contains("\"usage\"")), "{plain:?}");
}

#[tokio::test]
async fn a_streamed_answer_is_kept_for_streams_and_whole_requests() {
    let s = setup(json!({"cache": true})).await;
    let body = hello(json!({"stream": true}));
    let (cache, first) = ask_stream(&s.server, &s.token, &body).await;
    assert_eq!(cache, "miss");
    let text = streamed_text(&first);
    assert!(text.starts_with("echo: Hello cache"), "{text}");
    let (cache, again) = ask_stream(&s.server, &s.token, &body).await;
    assert_eq!(cache, "hit");
    assert_eq!(streamed_text(&again), text);
    let whole = ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await;
    assert_eq!(whole.cache, "hit");
    assert_eq!(whole.body["object"], "chat.completion");
    assert_eq!(whole.body["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(whole.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 1);
}

#[tokio::test]
async fn embeddings_are_cached_per_input_and_only_the_listed_call_types() {
    let s = setup(json!({"cache": true, "cache_params": {"supported_call_types": ["aembedding"]}})).await;
    let body = json!({"model": "embed", "input": "the cached text"});
    let first = ask(&s.server, &s.token, "/embeddings", &body).await;
    let again = ask(&s.server, &s.token, "/embeddings", &body).await;
    assert_eq!((first.cache.as_str(), again.cache.as_str()), ("miss", "hit"));
    assert_eq!(again.body, first.body);
    let other = ask(&s.server, &s.token, "/embeddings", &json!({"model": "embed", "input": "other text"})).await;
    assert_eq!(other.cache, "miss");
    assert_eq!(upstream_calls(&s.fake, "/v1/embeddings"), 2);
    // Chat is not a listed call type here.
    for _ in 0..2 {
        assert_eq!(ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await.cache, "");
    }
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 2);
}

#[tokio::test]
async fn hits_cost_nothing_and_pass_a_spent_budget() {
    // One request reserves 10 tokens at $0.001 = $0.01 of a $0.012 budget; its real cost leaves
    // too little for another reservation, but not for a hit, which reserves and spends nothing.
    let s = setup(json!({"cache": true, "max_budget": 0.012})).await;
    let body = hello(json!({"max_tokens": 10}));
    let first = ask(&s.server, &s.token, "/chat/completions", &body).await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"), "{}", first.body);
    let spent = app_spend(&s).await;
    assert!(spent > 0.002, "the first answer cost something: {spent}");
    let fresh = ask(&s.server, &s.token, "/chat/completions", &hello(json!({"max_tokens": 10, "seed": 1}))).await;
    assert_eq!(fresh.status, 429, "a new question does not fit: {}", fresh.body);
    for _ in 0..3 {
        let hit = ask(&s.server, &s.token, "/chat/completions", &body).await;
        assert_eq!((hit.status, hit.cache.as_str()), (200, "hit"), "{}", hit.body);
    }
    assert_eq!(app_spend(&s).await, spent);
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 1);
    // The hits are in the spend log, at no cost.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = s.server.ok("team", &s.token, "get_spend_logs", json!({"limit": 100})).await;
        let items = page["items"].as_array().unwrap();
        let free = items.iter().filter(|r| r["status"] == 200 && r["cost"].as_f64() == Some(0.0)).count();
        if free == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "three free records expected: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn app_spend(s: &Setup) -> f64 {
    let running = s.server.ok("team", &s.token, "list_running", json!({})).await;
    s.server.ok("team", &s.token, "get_usage", json!({"session_id": running[0]["id"]})).await["spend"].as_f64().unwrap()
}

#[tokio::test]
async fn hits_and_misses_are_counted_per_app() {
    // An app id no other test uses: the metrics recorder is the whole process's.
    let fake = FakeOpenAi::start(KEY).await;
    let server = TestServer::start(vec![], |_| {}).await;
    let token = server.token_for("team");
    let mut app = manifest(&fake.base_url, json!({"cache": true}));
    app["id"] = json!("counted");
    app["config"]["service_id"] = json!("counted");
    server.ok("team", &token, "install", json!({"manifest": app})).await;
    server.ok("team", &token, "start", json!({"app_id": "counted"})).await;
    for _ in 0..3 {
        let response = server
            .client
            .post(format!("{}/team/apps/counted/v1/chat/completions", server.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(hello(json!({})).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let admin = server.running.state.tokens.issue("default", true, Duration::from_secs(600));
    let text = server
        .client
        .get(format!("{}/metrics", server.base))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains("workspace=\"team\"") && l.contains("app=\"counted\""))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    assert_eq!((value("ferrolite_cache_hits_total"), value("ferrolite_cache_misses_total")), (2.0, 1.0), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_cache_through_redis() {
    let redis = Redis::start();
    let fake = FakeOpenAi::start(KEY).await;
    let start = || {
        let url = redis.url.clone();
        TestServer::start(vec![], move |c| c.redis_url = Some(url))
    };
    let (a, b) = (start().await, start().await);
    let token = a.token_for("team");
    let settings =
        json!({"cache": true, "cache_params": {"type": "redis", "namespace": "shared-ns", "host": "elsewhere"}});
    install(&a, &token, manifest(&fake.base_url, settings)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(&b, &token, "/embeddings", &json!({"model": "embed", "input": "warm-up"})).await.status() != 200 {
        assert!(Instant::now() < deadline, "B never served the app");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = ask(&a, &token, "/chat/completions", &hello(json!({}))).await;
    assert_eq!(first.cache, "miss");
    let on_b = ask(&b, &token, "/chat/completions", &hello(json!({}))).await;
    assert_eq!(on_b.cache, "hit");
    assert_eq!(on_b.body, first.body);
    let (cache, data) = ask_stream(&b, &token, &hello(json!({"stream": true}))).await;
    assert_eq!(cache, "hit");
    assert_eq!(streamed_text(&data), first.body["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(upstream_calls(&fake, "/v1/chat/completions"), 1);
    let entry: Option<String> = redis.query(redis::cmd("GET").arg(format!("ferrolite:cache:shared-ns:{}", first.key)));
    assert!(entry.is_some_and(|e| e.contains("chat.completion")), "the entry lives in Redis");
    let ttl: i64 = redis.query(redis::cmd("PTTL").arg(format!("ferrolite:cache:shared-ns:{}", first.key)));
    assert!(ttl > 0 && ttl <= 600_000, "it expires: {ttl}");
}

#[tokio::test]
async fn validate_reads_cache_params_and_warns_of_what_it_ignores() {
    let server = TestServer::demo().await;
    let check = |params: Value| {
        let server = &server;
        async move {
            let manifest = manifest("http://127.0.0.1:9/v1", json!({"cache": true, "cache_params": params}));
            server.ok("default", &server.token, "validate", json!({"manifest": manifest})).await
        }
    };
    let ok =
        check(json!({"type": "redis", "ttl": 30, "namespace": "ns", "host": "h", "port": 6379, "password": "p"})).await;
    assert_eq!(ok["valid"], true, "{ok}");
    let warnings = ok["warnings"].to_string();
    for key in ["host", "port", "password"] {
        assert!(warnings.contains(&format!("/config/litellm_settings/cache_params/{key}")), "{warnings}");
    }
    assert!(warnings.contains("--redis-url"), "{warnings}");
    assert!(!warnings.contains("litellm_settings/cache\""), "cache is honoured now: {warnings}");
    // litellm's other backends and call types are known: kept, with a warning saying what is served.
    let known = check(json!({"type": "s3", "supported_call_types": ["acompletion", "aspeech"]})).await;
    assert_eq!(known["valid"], true, "{known}");
    let warnings = known["warnings"].to_string();
    assert!(warnings.contains("a s3 cache is not supported") && warnings.contains("aspeech"), "{warnings}");
    for bad in [json!({"type": "floppy"}), json!({"ttl": -1}), json!({"supported_call_types": ["asing"]})] {
        let refused = check(bad.clone()).await;
        assert_eq!(refused["valid"], false, "{bad} must be refused: {refused}");
    }
}

#[tokio::test]
async fn a_text_completion_is_replayed_as_its_stream() {
    let s = setup(json!({"cache": true})).await;
    let body = json!({"model": "gpt", "prompt": "Say cached", "max_tokens": 20});
    let whole = ask(&s.server, &s.token, "/completions", &body).await;
    assert_eq!((whole.status, whole.cache.as_str()), (200, "miss"), "{}", whole.body);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let response = post(&s.server, &s.token, "/completions", &streamed).await;
    assert_eq!(header(&response, "x-ferrolite-cache"), "hit");
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, whole.body["choices"][0]["text"].as_str().unwrap());
    assert_eq!(upstream_calls(&s.fake, "/v1/completions"), 1);
}

#[tokio::test]
async fn a_redis_cache_without_redis_is_local_and_says_so() {
    let s = setup(json!({"cache": true, "cache_params": {"type": "redis"}})).await;
    let running = s.server.ok("team", &s.token, "list_running", json!({})).await;
    let logs = s.server.ok("team", &s.token, "get_logs", json!({"session_id": running[0]["id"]})).await;
    assert!(logs.to_string().contains("no --redis-url: answers are cached in this process only"), "{logs}");
    assert_eq!(ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await.cache, "miss");
    assert_eq!(ask(&s.server, &s.token, "/chat/completions", &hello(json!({}))).await.cache, "hit");
    assert_eq!(upstream_calls(&s.fake, "/v1/chat/completions"), 1);
}
