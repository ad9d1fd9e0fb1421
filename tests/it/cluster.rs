//! Two ferrolite instances sharing state through a real `redis-server` (started here; the
//! test command installs it): install on A and call on B, one budget for both, a stop on B
//! stops A, and requests keep flowing while Redis is briefly away.

use crate::support::{free_port, TestServer};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A throwaway redis-server on a free loopback port.
struct Redis {
    child: Child,
    url: String,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): scripts/test.sh installs it (apt-get install redis-server)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, url: format!("redis://127.0.0.1:{port}"), port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    assert_eq!(b.running.state.tokens.verify(&token).unwrap().ws, "team", "instances share the signing secret");

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
        tokio::time::sleep(Duration::from_millis(20)).await; // let the shared counter land
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
