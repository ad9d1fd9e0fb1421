//! Model names as litellm routes them (issue 21, points 3 and 5): wildcard groups (`openai/*`
//! serves any OpenAI model, the requested name in the upstream call; exact names win, then the
//! most literal pattern; cost from the price table for the model really called) and
//! `model_group_alias`.

use crate::fake_openai::FakeOpenAi;
use crate::support::{read_json, TestServer};
use serde_json::{json, Value};

async fn chat(server: &TestServer, model: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]});
    let response = server.post(server.demo_url("/v1/chat/completions"), &body).await;
    let headers = response.headers().clone();
    let (status, body) = read_json(response).await;
    (status, body, headers)
}

#[tokio::test]
async fn wildcard_groups_serve_any_matching_model_with_its_real_name_and_price() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.yaml");
    let manifest = json!({"name": "wild", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "openai/*", "litellm_params": {"model": "openai/*", "api_base": fake.base_url, "api_key": "sk-fake-upstream-123"}},
        {"model_name": "gpt-4o", "litellm_params": {"model": "gpt-4o", "mock_response": "the exact name wins"}},
        {"model_name": "*", "litellm_params": {"model": "openai/*", "mock_response": "from the catch-all"}},
    ]}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;

    let (status, body, headers) = chat(&server, "openai/gpt-4o-mini").await;
    assert_eq!(status, 200, "{body}");
    let sent: Value = serde_json::from_slice(&fake.last("/v1/chat/completions").unwrap().body).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini", "the requested model, its prefix off, goes upstream");
    assert_eq!(headers["x-ferrolite-deployment"], "openai/*/0");
    let (prompt, completion) =
        (body["usage"]["prompt_tokens"].as_f64().unwrap(), body["usage"]["completion_tokens"].as_f64().unwrap());
    let cost: f64 = headers["x-ferrolite-cost"].to_str().unwrap().parse().unwrap();
    // gpt-4o-mini in the price table: $0.15 and $0.60 per million tokens.
    let expected = prompt * 0.15e-6 + completion * 0.6e-6;
    assert!(cost > 0.0 && (cost - expected).abs() < 1e-12, "priced as gpt-4o-mini: {cost} vs {expected}");

    let (_, body, _) = chat(&server, "gpt-4o").await;
    assert_eq!(body["choices"][0]["message"]["content"], "the exact name wins");
    let (_, body, headers) = chat(&server, "claude-3-haiku").await;
    assert_eq!(body["choices"][0]["message"]["content"], "from the catch-all");
    assert_eq!(headers["x-ferrolite-deployment"], "*/0", "openai/* does not match, * does");

    let (status, body, _) = chat(&server, "openai/gpt 4o\n").await;
    assert_eq!(status, 400, "a name that cannot go into an upstream call: {body}");
    assert_eq!((&body["error"]["param"], &body["error"]["code"]), (&json!("model"), &json!("invalid_model")));

    let (status, models) = server.get_json(&server.demo_url("/v1/models")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["openai/*", "gpt-4o", "*"], "the configured names, as litellm lists them");
}

#[tokio::test]
async fn model_group_aliases_route_to_their_group_and_hidden_ones_are_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {model: gpt-4o, mock_response: "from gpt-4o"}
  - model_name: claude
    litellm_params: {model: claude-3-5-sonnet-20241022, mock_response: "from claude"}
router_settings:
  model_group_alias:
    gpt-4: gpt-4o
    internal: {model: claude, hidden: true}
    claude: gpt-4o
general_settings:
  master_key: sk-1234
"#,
    )
    .unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    let ask = |model: &'static str| {
        let server = &server;
        async move {
            let body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
            let request = server.client.post(format!("{}/v1/chat/completions", server.base)).bearer_auth("sk-1234");
            let response =
                request.header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
            read_json(response).await
        }
    };
    assert_eq!(ask("gpt-4").await.1["choices"][0]["message"]["content"], "from gpt-4o");
    assert_eq!(ask("internal").await.1["choices"][0]["message"]["content"], "from claude", "hidden, yet routed");
    assert_eq!(ask("claude").await.1["choices"][0]["message"]["content"], "from claude", "a group's own name wins");
    let (status, body) = ask("gpt-5").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("model_not_found")));

    let (_, models) = server.get_json_with(&format!("{}/v1/models", server.base), "sk-1234").await;
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["gpt-4o", "claude", "gpt-4"], "the hidden alias is not listed");
    let (status, _) = server.get_json_with(&format!("{}/v1/models/gpt-4", server.base), "sk-1234").await;
    assert_eq!(status, 200, "an alias is a model of the app");
}
