//! The HTTP surface's contract: auth, isolation, body checks and errors, each with its exact
//! status and OpenAI-style body.

use crate::support::{read_json, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

fn chat_body() -> Value {
    json!({"model": "demo-chat", "messages": [{"role": "user", "content": "Hello!"}]})
}

async fn post_with(server: &TestServer, url: &str, auth: Option<(&str, &str)>, body: &str) -> (u16, Value) {
    let mut request = server.client.post(url).header("content-type", "application/json").body(body.to_owned());
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    read_json(request.send().await.unwrap()).await
}

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let server = TestServer::demo().await;
    let url = server.demo_url("/v1/chat/completions");
    let body = chat_body().to_string();

    let (status, err) = post_with(&server, &url, None, &body).await;
    assert_eq!(status, 401);
    assert_eq!(
        err,
        json!({"error": {"message": "missing credentials: send 'Authorization: Bearer <token>' or 'x-api-key: <token>'", "type": "authentication_error", "param": null, "code": "missing_token"}})
    );

    let (status, err) = post_with(&server, &url, Some(("authorization", "Bearer not-a-jwt")), &body).await;
    assert_eq!((status, err["error"]["code"].as_str()), (401, Some("invalid_token")));

    // Signed by another server's secret.
    let other = TestServer::demo().await;
    let (status, err) =
        post_with(&server, &url, Some(("authorization", &format!("Bearer {}", other.token))), &body).await;
    assert_eq!((status, err["error"]["message"].as_str()), (401, Some("invalid token: bad signature")));

    let expired = server.running.state.tokens.issue("default", false, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, err) = post_with(&server, &url, Some(("authorization", &format!("Bearer {expired}"))), &body).await;
    assert_eq!((status, err["error"]["code"].as_str()), (401, Some("token_expired")));

    // The Anthropic SDK sends x-api-key.
    let (status, _) = post_with(&server, &url, Some(("x-api-key", &server.token)), &body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn workspaces_are_isolated() {
    let server = TestServer::demo().await;
    let url = server.demo_url("/v1/chat/completions");
    let intruder = server.token_for("someone-else");
    let (status, err) =
        post_with(&server, &url, Some(("authorization", &format!("Bearer {intruder}"))), &chat_body().to_string())
            .await;
    assert_eq!(status, 403);
    assert_eq!(err["error"]["type"], "permission_error");
    assert_eq!(
        err["error"]["message"],
        "service \"demo\" is protected: a token of workspace \"someone-else\" cannot call it"
    );
}

#[tokio::test]
async fn unknown_services_and_workspaces_are_404_naming_what() {
    let server = TestServer::demo().await;
    let (status, err) = server.get_json(&format!("{}/default/apps/nope/v1/models", server.base)).await;
    assert_eq!(status, 404);
    assert_eq!(
        err["error"]["message"],
        "service \"nope\" not found in workspace \"default\": it is not running (check list_running)"
    );
    let (status, err) = server.get_json(&format!("{}/ghost/apps/demo/v1/models", server.base)).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["message"], "workspace \"ghost\" not found: it has no running services");
    let (status, err) = server.get_json(&format!("{}/nowhere", server.base)).await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")));
    let response = server.client.put(server.demo_url("/v1/models")).bearer_auth(&server.token).send().await.unwrap();
    let (status, err) = read_json(response).await;
    assert_eq!((status, err["error"]["code"].as_str()), (405, Some("method_not_allowed")));
}

#[tokio::test]
async fn bodies_are_checked_against_the_route_schema() {
    let server = TestServer::demo().await;
    let url = server.demo_url("/v1/chat/completions");
    let (status, err) = server.post_json(&url, &json!({"model": "demo-chat"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        err,
        json!({"error": {"message": "invalid request: `messages` is required", "type": "invalid_request_error", "param": "messages", "code": "invalid_request"}})
    );

    let (status, err) = server.post_json(&url, &json!({"model": "demo-chat", "messages": "hi"})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["message"], "invalid request: `messages`: expected array, got string");

    let (status, err) =
        post_with(&server, &url, Some(("authorization", &format!("Bearer {}", server.token))), "{\"model\": ").await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_json")));

    let (status, err) =
        server.post_json(&url, &json!({"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "model_not_found");
    assert_eq!(
        err["error"]["message"],
        "model \"gpt-5\" is not served by this app; available models: demo-chat, demo-embedding"
    );

    // Unknown fields pass the schema untouched.
    let (status, _) = server
        .post_json(
            &url,
            &json!({"model": "demo-chat", "messages": [{"role": "user", "content": "x"}], "future_field": {"a": 1}}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let server = TestServer::start(vec![], |c| c.limits.max_body_bytes = 1024).await;
    let big = json!({"model": "demo-chat", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (status, err) = server.post_json(&server.demo_url("/v1/chat/completions"), &big).await;
    assert_eq!(status, 413);
    assert_eq!(err["error"]["message"], "request body is larger than the 1024 byte limit");
}

#[tokio::test]
async fn local_routes_answer_from_the_app() {
    let server = TestServer::demo().await;
    let (status, models) = server.get_json(&server.demo_url("/v1/models")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["demo-chat", "demo-embedding"]);
    let (status, model) = server.get_json(&server.demo_url("/v1/models/demo-chat")).await;
    assert_eq!((status, model["id"].as_str()), (200, Some("demo-chat")));

    let (_, info) = server.get_json(&server.demo_url("/v1/model/info")).await;
    assert_eq!(info["data"][0]["litellm_params"]["model"], "gpt-4o-mini");

    let (status, health) = server.get_json(&server.demo_url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(health["healthy_count"], 2);
    assert_eq!(health["unhealthy_endpoints"], json!([]));
    let (_, live) = server.get_json(&server.demo_url("/health/liveliness")).await;
    assert_eq!(live, json!("I'm alive!"));
    let (_, ready) = server.get_json(&server.demo_url("/health/readiness")).await;
    assert_eq!(ready["status"], "healthy");

    let (status, count) = server
        .post_json(
            &server.demo_url("/v1/messages/count_tokens"),
            &json!({"model": "demo-chat", "messages": [{"role": "user", "content": "Hello there"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(count["input_tokens"].as_u64().unwrap() > 2);
    let (status, counted) = server
        .post_json(&server.demo_url("/utils/token_counter"), &json!({"model": "demo-chat", "prompt": "Hello there"}))
        .await;
    assert_eq!((status, counted["total_tokens"].as_u64()), (200, Some(2)));
    let (status, params) = server.get_json(&server.demo_url("/utils/supported_openai_params?model=demo-chat")).await;
    assert_eq!(status, 200);
    assert!(params["supported_openai_params"].as_array().unwrap().contains(&json!("stream")));
}

/// In a group mixing providers, a route goes only to the deployments whose provider serves it:
/// the mock cannot make images, so every request lands on the OpenAI deployment.
#[tokio::test]
async fn a_mixed_group_routes_to_the_deployments_that_serve_the_route() {
    let fake = crate::fake_openai::FakeOpenAi::start("sk-mixed").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let manifest = json!({"name": "mixed", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "mix", "litellm_params": {"model": "gpt-4o", "mock_response": "mocked"}},
        {"model_name": "mix", "litellm_params": {"model": "openai/dall-e-3", "api_base": fake.base_url, "api_key": "sk-mixed"}},
    ]}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    for _ in 0..6 {
        let response =
            server.post(server.demo_url("/v1/images/generations"), &json!({"model": "mix", "prompt": "a cat"})).await;
        assert_eq!(response.headers()["x-ferrolite-deployment"], "mix/1");
        let (status, body) = read_json(response).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["data"].is_array(), "{body}");
    }
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/v1/images/generations").count(), 6);
    let (status, chat) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({"model": "mix", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{chat}");
}

#[tokio::test]
async fn routes_a_provider_does_not_serve_say_so() {
    let server = TestServer::demo().await;
    let (status, err) = server
        .post_json(&server.demo_url("/v1/images/generations"), &json!({"model": "demo-chat", "prompt": "a cat"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "unsupported_route");
    assert_eq!(
        err["error"]["message"],
        "model \"demo-chat\" is served by provider mock, which does not serve POST /v1/images/generations"
    );
}

#[tokio::test]
async fn every_request_is_logged_in_its_session_with_a_request_id() {
    let server = TestServer::demo().await;
    let response = server.post(server.demo_url("/v1/chat/completions"), &chat_body()).await;
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(request_id.starts_with("req_"));
    let session = server.running.state.controller.registry().get("default", "demo").unwrap();
    let (lines, _) = session.table.logs.read(None, 0, None);
    let line = lines.iter().find(|l| l.content.contains(&request_id)).expect("a log line for the request");
    assert!(
        line.content.contains("POST /v1/chat/completions model=demo-chat deployment=demo-chat/0 status=200"),
        "{}",
        line.content
    );
    assert!(!line.content.contains(&server.token), "tokens never reach the log");
}
