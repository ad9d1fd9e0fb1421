//! Two ferrolite instances sharing state through a real `redis-server` (started here; the
//! test command installs it): install on A and call on B, one budget for both, a stop on B
//! stops A; tokens from any instance's data dir; an instance that missed announcements, or
//! found Redis emptied, catches up; requests keep flowing while Redis is away or frozen.

use crate::support::{Redis, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn instance(redis: &Redis) -> TestServer {
    let url = redis.url.clone();
    TestServer::start(vec![], move |c| c.redis_url = Some(url)).await
}

async fn chat(server: &TestServer, token: &str) -> (u16, Value) {
    let response = server
        .client
        .post(format!("{}/team/apps/shared/v1/chat/completions", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}).to_string())
        .send()
        .await
        .unwrap();
    crate::support::read_json(response).await
}

/// Polls until `check` holds (announcements travel asynchronously).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_apps_budgets_and_stops() {
    let redis = Redis::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let token = a.token_for("team");
    assert_eq!(&*b.running.state.tokens.verify(&token).unwrap().ws, "team", "instances share the signing secret");

    let manifest = json!({"name": "Shared", "type": "llm-proxy", "config": {
        "service_id": "shared",
        "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "from the cluster", "input_cost_per_token": 0.001, "output_cost_per_token": 0.001}}],
        "litellm_settings": {"max_budget": 0.06}
    }});
    a.ok("team", &token, "install", json!({"manifest": manifest})).await;
    let session = a.ok("team", &token, "start", json!({"app_id": "shared"})).await;

    // Installed and started through A, served by B.
    eventually("B serves the app started on A", || async { chat(&b, &token).await.0 == 200 }).await;
    let (_, body) = chat(&b, &token).await;
    assert_eq!(body["choices"][0]["message"]["content"], "from the cluster");
    let cost_per_request = body["usage"]["total_tokens"].as_f64().unwrap() * 0.001;
    let running_on_b = b.ok("team", &token, "list_running", json!({})).await;
    assert_eq!(running_on_b[0]["id"], session["id"], "the same session id everywhere");

    // One budget for both: spend alternately until one refuses, then both refuse.
    let mut served = 0;
    loop {
        let server = if served % 2 == 0 { &a } else { &b };
        let (status, body) = chat(server, &token).await;
        if status == 429 {
            assert_eq!(body["error"]["type"], "budget_exceeded");
            break;
        }
        assert_eq!(status, 200, "{body}");
        served += 1;
        assert!(served < 60, "the shared budget never stopped spending");
        // Figures are exchanged every 200 ms: one round to write, one to read.
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    // Two requests already ran (the probes above); one budget allows ceil(0.06 / cost) in all,
    // where two separate budgets would have allowed twice as many.
    let one_budget = (0.06 / cost_per_request).ceil() as u32;
    assert!(served + 2 <= one_budget + 1, "served {served} + 2 with one budget of {one_budget} requests");
    assert!(served >= 1);
    eventually("both instances refuse once the shared budget is spent", || async {
        chat(&a, &token).await.0 == 429 && chat(&b, &token).await.0 == 429
    })
    .await;

    // A stop on B stops A.
    b.ok("team", &token, "stop", json!({"session_id": session["id"]})).await;
    eventually("A stops the session stopped on B", || async { chat(&a, &token).await.0 == 404 }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_keep_flowing_while_redis_is_away() {
    let redis = Redis::start();
    let port = redis.port;
    let a = instance(&redis).await;
    let token = a.token_for("team");
    let manifest = json!({"name": "Local", "type": "llm-proxy", "config": {
        "service_id": "shared", "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "still here"}}]
    }});
    a.ok("team", &token, "install", json!({"manifest": manifest})).await;
    a.ok("team", &token, "start", json!({"app_id": "local"})).await;
    drop(redis); // Redis goes away
    for _ in 0..5 {
        let (status, body) = chat(&a, &token).await;
        assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("still here")));
    }
    // Controller changes need the shared state: refused clearly, nothing half-applied.
    let (status, err) = a.controller("team", &token, "stop", json!({"session_id": "whatever"})).await;
    assert_eq!(status, 404, "{err}");
    let (status, err) = a.controller("team", &token, "install", json!({"manifest": {"name": "X", "type": "llm-proxy", "config": {"model_list": [{"model_name": "x", "litellm_params": {"model": "gpt-4o", "mock_response": "x"}}]}}})).await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["error"]["code"], "shared_state_unavailable");
    assert_eq!(a.ok("team", &token, "list_apps", json!({})).await.as_array().unwrap().len(), 1, "nothing stored");
    let _back = Redis::start_on(port);
}

fn manifest(id: &str, reply: &str) -> Value {
    json!({"id": id, "name": id, "type": "llm-proxy", "config": {
        "service_id": "shared",
        "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": reply, "input_cost_per_token": 0.001, "output_cost_per_token": 0.001}}],
        "litellm_settings": {"max_budget": 1000.0}
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_any_instances_data_dir_passes_everywhere() {
    let redis = Redis::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    // B took up the cluster's secret (A's), so the CLI signing with B's data dir signs A's way.
    let dir = b.data_dir().display().to_string();
    let (code, out, err) = crate::support::run_cli(&["token", "--data-dir", &dir, "--workspace", "team"]);
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    for server in [&a, &b] {
        let (status, body) = server.controller("team", token, "list_apps", json!({})).await;
        assert_eq!(status, 200, "a CLI token from B's data dir: {body}");
    }
    // The admin token B wrote in its data dir passes too.
    let admin = std::fs::read_to_string(b.data_dir().join("admin-token")).unwrap();
    assert!(a.running.state.tokens.verify(admin.trim()).is_ok_and(|c| c.admin));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_subscriber_reconnected_catches_up() {
    let redis = Redis::start();
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let token = a.token_for("team");
    eventually("both instances subscribe", || async {
        let (_, n): (String, i64) = redis.query(redis::cmd("PUBSUB").arg("NUMSUB").arg("ferrolite:events"));
        n >= 2
    })
    .await;
    // Cut every subscriber: B reconnects a second later, after the install and start below
    // were announced to nobody.
    let killed: i64 = redis.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"));
    assert!(killed >= 2, "both instances subscribe ({killed})");
    a.ok("team", &token, "install", json!({"manifest": manifest("late", "caught up")})).await;
    a.ok("team", &token, "start", json!({"app_id": "late"})).await;
    eventually("B serves what was started while its subscriber was away", || async { chat(&b, &token).await.0 == 200 })
        .await;
    assert_eq!(chat(&b, &token).await.1["choices"][0]["message"]["content"], "caught up");
    // And a stop it misses the same way.
    let _: i64 = redis.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"));
    a.ok("team", &token, "uninstall", json!({"app_id": "late"})).await;
    eventually("B drops what was uninstalled while its subscriber was away", || async {
        chat(&b, &token).await.0 == 404
    })
    .await;
    assert_eq!(b.ok("team", &token, "list_apps", json!({})).await, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_empty_is_put_back_and_spend_is_not_counted_twice() {
    let redis = Redis::start();
    let port = redis.port;
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let token = a.token_for("team");
    a.ok("team", &token, "install", json!({"manifest": manifest("kept", "still served")})).await;
    let session = a.ok("team", &token, "start", json!({"app_id": "kept"})).await;
    eventually("B serves the app", || async { chat(&b, &token).await.0 == 200 }).await;
    for _ in 0..3 {
        assert_eq!(chat(&a, &token).await.0, 200);
    }
    let usage = |server| spend_seen_by(server, &token, &session);
    eventually("both see the same spend", || async { (usage(&a).await - usage(&b).await).abs() < 1e-9 }).await;
    let before = usage(&a).await;

    // Redis restarts with nothing (no persistence).
    drop(redis);
    let redis = Redis::start_on(port);
    eventually("the instances put their apps, sessions and secret back", || async {
        let app: bool = redis.query(redis::cmd("HEXISTS").arg("ferrolite:apps").arg("team\u{1f}kept"));
        let id = format!("team\u{1f}{}", session["id"].as_str().unwrap());
        let running: bool = redis.query(redis::cmd("HEXISTS").arg("ferrolite:sessions").arg(id));
        let secret: Option<String> = redis.query(redis::cmd("GET").arg("ferrolite:server-secret"));
        app && running && secret.is_some()
    })
    .await;
    // Every figure written again is the same figure: nothing counted twice.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for server in [&a, &b] {
        let spend = usage(server).await;
        assert!((spend - before).abs() < 1e-9, "spend {spend} after the restart, {before} before");
    }
    // A new instance joining now takes A's tokens and serves A's app.
    let c = instance(&redis).await;
    assert!(c.running.state.tokens.verify(&token).is_ok(), "the old secret was put back");
    let (status, body) = chat(&c, &token).await;
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("still served")), "{body}");
    let spent_by_c = chat(&c, &token).await.1["usage"]["total_tokens"].as_f64().unwrap() * 0.001 * 2.0;
    eventually("C counts A's spend beside its own", || async {
        (usage(&c).await - (before + spent_by_c)).abs() < 1e-9
    })
    .await;
}

/// The app's spend as `server` counts it (its own and the other instances').
async fn spend_seen_by(server: &TestServer, token: &str, session: &Value) -> f64 {
    server.ok("team", token, "get_usage", json!({"session_id": session["id"]})).await["spend"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn budgeted_requests_do_not_wait_on_a_frozen_or_dead_redis() {
    let redis = Redis::start();
    let a = instance(&redis).await;
    let token = a.token_for("team");
    a.ok("team", &token, "install", json!({"manifest": manifest("budgeted", "no waiting")})).await;
    a.ok("team", &token, "start", json!({"app_id": "budgeted"})).await;
    // A client that gives up long before Redis's own 2 s timeouts would end: a request that
    // waited on Redis fails here.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().unwrap();
    let call = || {
        impatient
            .post(format!("{}/team/apps/shared/v1/chat/completions", a.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string())
            .send()
    };
    redis.freeze(true);
    for i in 0..8 {
        let response = call().await.unwrap_or_else(|e| panic!("request {i} with redis frozen: {e}"));
        assert_eq!(response.status(), 200);
    }
    // A controller change cannot reach the others: refused, after Redis's timeout.
    let (status, err) = a.controller("team", &token, "install", json!({"manifest": manifest("other", "x")})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (503, Some("shared_state_unavailable")), "{err}");
    redis.freeze(false);
    drop(redis);
    for i in 0..8 {
        let response = call().await.unwrap_or_else(|e| panic!("request {i} with redis gone: {e}"));
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_started_with_the_same_config_leaves_the_running_app_alone() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let manifest = json!({"name": "Shared", "type": "llm-proxy", "config": {"service_id": "shared",
        "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "steady"}}]}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    let start = |path: std::path::PathBuf| {
        let url = redis.url.clone();
        TestServer::start(vec![path], move |c| c.redis_url = Some(url))
    };
    let a = start(path.clone()).await;
    let token = a.token_for("default");
    let before = a.ok("default", &token, "list_running", json!({})).await;
    // A second instance (or A's own restart in a rolling deploy) starts with the same file.
    let b = start(path.clone()).await;
    let chat = |server: &TestServer| {
        let request = server.client.post(format!("{}/default/apps/shared/v1/chat/completions", server.base));
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
        let request = request.bearer_auth(&token).header("content-type", "application/json").body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..20 {
        assert_eq!((chat(&a).await, chat(&b).await), (200, 200), "served throughout, on both");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = b.ok("default", &token, "list_running", json!({})).await;
    assert_eq!(before[0]["id"], after[0]["id"], "the same session, not a restarted one");
    // A changed file does restart it.
    let changed = json!({"name": "Shared", "type": "llm-proxy", "config": {"service_id": "shared",
        "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "mock_response": "changed"}}]}});
    std::fs::write(&path, changed.to_string()).unwrap();
    let c = start(path).await;
    let restarted = c.ok("default", &token, "list_running", json!({})).await;
    assert_ne!(restarted[0]["id"], before[0]["id"], "a new manifest starts a new session");
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_made_just_after_redis_returns_reach_every_instance() {
    let redis = Redis::start();
    let port = redis.port;
    let a = instance(&redis).await;
    let b = instance(&redis).await;
    let token = a.token_for("team");
    // Redis restarts empty; A installs, starts and makes a key at once, maybe before B's
    // subscriber is back: B must take all of it up (the resync after its reconnect reads it).
    drop(redis);
    let redis = Redis::start_on(port);
    let mut installed = false;
    for _ in 0..200 {
        if a.controller("team", &token, "install", json!({"manifest": manifest("late", "after the restart")})).await.0
            == 200
        {
            installed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(installed, "A never installed once Redis was back");
    a.ok("team", &token, "start", json!({"app_id": "late"})).await;
    let key = a.ok("team", &token, "create_key", json!({})).await["key"].as_str().unwrap().to_owned();
    eventually("B serves the app installed right after Redis returned", || async {
        let (status, body) = chat(&b, &key).await;
        status == 200 && body["choices"][0]["message"]["content"] == "after the restart"
    })
    .await;
    drop(redis);
}
