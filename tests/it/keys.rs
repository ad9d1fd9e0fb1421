//! API keys: created through the controller (HTTP, CLI), accepted as Bearer or `x-api-key` in
//! their workspace, refused once revoked (on every instance), and each limit with its error.

use crate::support::{read_json, run_cli, Redis, TestServer};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A chat to `workspace/service` with `credential` sent as `how` ("bearer" or "x-api-key").
async fn chat_as(server: &TestServer, path: &str, credential: &str, how: &str, model: &str) -> (u16, Value) {
    let request = server
        .client
        .post(format!("{}/{path}/v1/chat/completions", server.base))
        .header("content-type", "application/json")
        .body(json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]}).to_string());
    let request = match how {
        "x-api-key" => request.header("x-api-key", credential),
        _ => request.bearer_auth(credential),
    };
    read_json(request.send().await.unwrap()).await
}

async fn chat(server: &TestServer, key: &str, model: &str) -> (u16, Value) {
    chat_as(server, "default/apps/demo", key, "bearer", model).await
}

fn demo_model(server: &TestServer) -> String {
    let session = server.running.state.controller.registry().get("default", "demo").expect("the demo runs");
    session.table.model_names[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_work_as_tokens_in_their_workspace_until_revoked_and_keep_their_limits() {
    let server = TestServer::demo().await;
    let token = server.token.clone();
    let model = demo_model(&server);

    let created = server.ok("default", &token, "create_key", json!({"name": "ci", "user": "ada", "rpm": 3})).await;
    let key = created["key"].as_str().expect("the key is shown once").to_owned();
    assert!(key.starts_with("sk-fl-"), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let listed = server.ok("default", &token, "list_keys", json!({})).await;
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "active");
    assert!(listed[0].get("key").is_none() && !listed.to_string().contains(&key), "never shown again: {listed}");
    assert!(!listed.to_string().contains(&crate::support::sha256_hex(&key)), "nor its hash");

    // As Bearer and as x-api-key; the rpm of 3 then refuses the fourth in the minute.
    crate::support::inside_a_minute().await;
    assert_eq!(chat_as(&server, "default/apps/demo", &key, "bearer", &model).await.0, 200);
    assert_eq!(chat_as(&server, "default/apps/demo", &key, "x-api-key", &model).await.0, 200);
    assert_eq!(chat(&server, &key, &model).await.0, 200);
    let (status, refused) = chat(&server, &key, &model).await;
    assert_eq!((status, refused["error"]["code"].clone()), (429, json!("rate_limit_exceeded")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains(&id), "{refused}");

    // A key cannot manage keys, though it may call the controller as its workspace's token.
    let (status, body) = server.controller("default", &key, "create_key", json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(server.controller("default", &key, "list_apps", json!({})).await.0, 200);
    // Nor act in another workspace.
    assert_eq!(server.controller("other", &key, "list_apps", json!({})).await.0, 403);

    // Models outside the key's list: 403 naming the field.
    let limited = server.ok("default", &token, "create_key", json!({"models": ["not-the-demo-model"]})).await;
    let limited_key = limited["key"].as_str().unwrap();
    let (status, body) = chat(&server, limited_key, &model).await;
    assert_eq!((status, body["error"]["param"].clone()), (403, json!("model")), "{body}");
    assert_eq!(body["error"]["code"], "key_model_not_allowed");
    let updated =
        server.ok("default", &token, "update_key", json!({"key_id": limited["id"], "models": [model.clone()]})).await;
    assert_eq!(updated["models"], json!([model.clone()]));
    assert_eq!(chat(&server, limited_key, &model).await.0, 200, "the update holds at once");

    // tpm: the first request spends the minute's tokens, the next is refused.
    crate::support::inside_a_minute().await;
    let tpm = server.ok("default", &token, "create_key", json!({"tpm": 1})).await;
    let tpm_key = tpm["key"].as_str().unwrap();
    assert_eq!(chat(&server, tpm_key, &model).await.0, 200);
    let (status, body) = chat(&server, tpm_key, &model).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("tokens this minute"), "{body}");

    // Revoked: 401 from the next request on.
    server.ok("default", &token, "revoke_key", json!({"key_id": limited["id"]})).await;
    let (status, body) = chat(&server, limited_key, &model).await;
    assert_eq!((status, body["error"]["code"].clone()), (401, json!("api_key_revoked")), "{body}");
    let (status, body) = chat(&server, "sk-fl-made-up", &model).await;
    assert_eq!((status, body["error"]["code"].clone()), (401, json!("invalid_api_key")), "{body}");

    // Bad settings name their field.
    for (kwargs, field) in [(json!({"rpm": 0}), "rpm"), (json!({"expires_in": "later"}), "expires_in")] {
        let (status, body) = server.controller("default", &token, "create_key", kwargs).await;
        assert_eq!((status, body["error"]["param"].clone()), (400, json!(field)), "{body}");
    }
    let (status, body) = server.controller("default", &token, "key_info", json!({"key_id": "key_nope"})).await;
    assert_eq!(status, 404, "{body}");
}

/// An OpenAI-compatible upstream whose every answer takes half a second.
async fn start_slow_upstream() -> String {
    async fn chat() -> axum::Json<Value> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        axum::Json(json!({
            "id": "chatcmpl-slow", "object": "chat.completion", "created": 0, "model": "slow",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "late"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
        }))
    }
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keys_max_parallel_refuses_what_is_beyond_it_until_a_place_frees() {
    let server = TestServer::demo().await;
    let token = server.token.clone();
    let upstream = start_slow_upstream().await;
    let manifest = json!({"name": "Slow", "type": "llm-proxy", "config": {
        "service_id": "slow",
        "model_list": [{"model_name": "slow", "litellm_params": {"model": "openai/slow", "api_base": upstream, "api_key": "x"}}],
    }});
    server.ok("default", &token, "install", json!({"manifest": manifest})).await;
    server.ok("default", &token, "start", json!({"app_id": "slow"})).await;
    let created = server.ok("default", &token, "create_key", json!({"max_parallel": 1})).await;
    let key = created["key"].as_str().unwrap().to_owned();

    let first = {
        let (server_base, key) = (server.base.clone(), key.clone());
        tokio::spawn(async move {
            let body = json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}]});
            let url = format!("{server_base}/default/apps/slow/v1/chat/completions");
            reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = chat_as(&server, "default/apps/slow", &key, "bearer", "slow").await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("max_parallel"), "{body}");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(chat_as(&server, "default/apps/slow", &key, "bearer", "slow").await.0, 200, "the place came back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_made_on_one_instance_works_on_another_and_its_revocation_reaches_it_within_a_second() {
    let redis = Redis::start();
    let instance = || {
        let url = redis.url.clone();
        TestServer::start(vec![], move |c| c.redis_url = Some(url))
    };
    let (a, b) = (instance().await, instance().await);
    let token = a.token_for("team");
    let manifest = json!({"name": "Shared", "type": "llm-proxy", "config": {
        "service_id": "shared",
        "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "hi"}}],
    }});
    a.ok("team", &token, "install", json!({"manifest": manifest})).await;
    a.ok("team", &token, "start", json!({"app_id": "shared"})).await;
    let created = a.ok("team", &token, "create_key", json!({"user": "bo"})).await;
    let key = created["key"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(10);
    while chat_as(&b, "team/apps/shared", &key, "bearer", "m").await.0 != 200 {
        assert!(Instant::now() < deadline, "B never accepted the key made on A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.ok("team", &token, "revoke_key", json!({"key_id": created["id"]})).await;
    let revoked = Instant::now();
    loop {
        let (status, _) = chat_as(&b, "team/apps/shared", &key, "bearer", "m").await;
        if status == 401 {
            break;
        }
        assert!(revoked.elapsed() < Duration::from_secs(1), "B still accepts a key revoked on A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B lists the key as revoked too, and a restarted instance reads it from Redis.
    let listed = b.ok("team", &token, "list_keys", json!({})).await;
    assert_eq!(listed[0]["status"], "revoked", "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_creates_lists_and_revokes_keys() {
    let server = TestServer::demo().await;
    let model = demo_model(&server);
    let base = server.base.clone();
    let token = server.token.clone();
    let cli = move |args: &[&str]| {
        let mut all = vec!["keys", "--server", &base, "--token", &token, "--workspace", "default"];
        all.extend_from_slice(args);
        run_cli(&all)
    };
    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        cli(&["create", "--name", "cli", "--user", "ada", "--models", "a,b", "--rpm", "5", "--metadata", "team=ml"])
    });
    assert_eq!(code, 0, "{stderr}");
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("sk-fl-") && stderr.contains("not shown again"), "{stdout} {stderr}");
    let (code, listed, stderr) = tokio::task::block_in_place(|| cli(&["list", "--output", "json"]));
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["models"], json!(["a", "b"]));
    assert_eq!(listed[0]["metadata"], json!({"team": "ml"}));
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let (code, table, _) = tokio::task::block_in_place(|| cli(&["list"]));
    assert!(code == 0 && table.contains(&id) && table.contains("active"), "{table}");
    let (code, _, stderr) = tokio::task::block_in_place(|| cli(&["update", &id, "--models", &model]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(chat(&server, &key, &model).await.0, 200);
    let (code, out, _) = tokio::task::block_in_place(|| cli(&["revoke", &id]));
    assert!(code == 0 && out.contains("revoked"), "{out}");
    assert_eq!(chat(&server, &key, &model).await.0, 401);
    let (code, _, stderr) = tokio::task::block_in_place(|| cli(&["create", "--rpm", "0"]));
    assert!(code != 0 && stderr.contains("rpm"), "{stderr}");
    let (code, _, stderr) = tokio::task::block_in_place(|| cli(&["set-budget", "--user", "ada", "--max-budget", "5"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, table, stderr) = tokio::task::block_in_place(|| cli(&["budgets"]));
    assert!(code == 0 && table.contains("SCOPE") && table.contains(&id), "{table} {stderr}");
}
