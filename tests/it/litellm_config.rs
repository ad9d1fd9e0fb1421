//! A litellm proxy config.yaml, unchanged: `ferrolite serve --config config.yaml` runs it.

use crate::support::TestServer;
use serde_json::json;

const CONFIG: &str = r#"
model_list:
  - model_name: gpt-3.5-turbo
    litellm_params:
      model: gpt-3.5-turbo
      mock_response: "Hello from a litellm config"
  - model_name: gpt-3.5-turbo
    litellm_params:
      model: gpt-3.5-turbo
      mock_response: "Hello from a litellm config"
      rpm: 60
  - model_name: claude-3-opus
    litellm_params:
      model: claude-3-opus-20240229
      api_key: os.environ/FERROLITE_TEST_ANTHROPIC_KEY
litellm_settings:
  drop_params: true
  num_retries: 3
  timeout: 30
  max_budget: 100.0
  debug: true
  detailed_debug: true
  user_debug: true
  fallbacks: [{"gpt-3.5-turbo": ["claude-3-opus"]}]
router_settings:
  routing_strategy: least-busy
general_settings:
  master_key: sk-1234
"#;

#[tokio::test]
async fn a_litellm_config_runs_unchanged_with_its_master_key_and_urls() {
    std::env::set_var("FERROLITE_TEST_ANTHROPIC_KEY", "sk-ant-test");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    let chat = json!({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]});

    // litellm's own URL and key, unchanged.
    let response = server
        .client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth("sk-1234")
        .header("content-type", "application/json")
        .body(chat.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = crate::support::read_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from a litellm config");

    // Also the app URL, with a ferrolite token.
    let (status, _) =
        server.post_json(&format!("{}/default/apps/litellm/v1/chat/completions", server.base), &chat).await;
    assert_eq!(status, 200);
    let (status, models) = server.get_json_with(&format!("{}/v1/models", server.base), "sk-1234").await;
    assert_eq!(status, 200);
    assert_eq!(models["data"].as_array().unwrap().len(), 2);

    // A wrong key is still refused.
    let (status, _) = server.get_json_with(&format!("{}/v1/models", server.base), "sk-9999").await;
    assert_eq!(status, 401);

    // detailed_debug logs the body; keys never.
    let session = server.running.state.controller.registry().get("default", "litellm").unwrap();
    let (lines, _) = session.table.logs.read(None, 0, None);
    let all: String = lines.iter().map(|l| l.content.clone() + "\n").collect();
    assert!(all.contains("request body: {\"model\":\"gpt-3.5-turbo\""), "{all}");
    assert!(all.contains("routing least-busy"), "router_settings.routing_strategy is honoured: {all}");
    assert!(!all.contains("sk-1234") && !all.contains("sk-ant-test"), "{all}");
}

/// YAML as litellm's reader takes it: `yes`, `20_000` and `"2"` where numbers and booleans go.
const YAML_1_1: &str = r#"
model_list:
  - model_name: limited
    litellm_params:
      model: gpt-4o
      mock_response: "counted"
      rpm: "2"
      tpm: 20_000
      weight: 1_0
litellm_settings:
  enforce_model_rate_limits: yes
  drop_params: True
  num_retries: 0x0
general_settings:
  master_key: sk-1234
"#;

#[tokio::test]
async fn yaml_1_1_scalars_are_read_as_litellm_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, YAML_1_1).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    let session = server.running.state.controller.registry().get("default", "litellm").unwrap();
    let params = &session.table.deployments[0].params;
    assert_eq!((params.rpm, params.tpm), (Some(2), Some(20_000)), "\"2\" and 20_000 are numbers");
    // Limits count per wall-clock minute: stay clear of its end so all three land in one.
    crate::support::inside_a_minute().await;
    let chat = json!({"model": "limited", "messages": [{"role": "user", "content": "Hi"}]});
    let url = format!("{}/v1/chat/completions", server.base);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let request = server.client.post(&url).bearer_auth("sk-1234").header("content-type", "application/json");
        let response = request.body(chat.to_string()).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "enforce_model_rate_limits: yes is on, rpm \"2\" is 2");
}

/// Deployments ferrolite cannot call, as litellm treats them: the config starts, they are left
/// out, their requests get 503 naming them and why, and the rest of the app serves.
const UNSERVABLE: &str = r#"
model_list:
  - model_name: video
    litellm_params: {model: runwayml/gen4_turbo, api_key: sk-runway}
  - model_name: claude-on-bedrock
    litellm_params: {model: bedrock/anthropic.claude-3-haiku-20240307-v1:0, api_base: "http://127.0.0.1:9"}
  - model_name: mixed
    litellm_params: {model: predibase/llama-3-8b}
  - model_name: mixed
    litellm_params: {model: gpt-4o, mock_response: "the servable one"}
general_settings:
  master_key: sk-1234
"#;

#[tokio::test]
async fn deployments_ferrolite_cannot_call_are_left_out_and_the_rest_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, UNSERVABLE).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    let ask = |model: &'static str| {
        let server = &server;
        async move {
            let body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
            let request = server.client.post(format!("{}/v1/chat/completions", server.base)).bearer_auth("sk-1234");
            let response =
                request.header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
            crate::support::read_json(response).await
        }
    };
    let (status, body) = ask("video").await;
    assert_eq!((status, &body["error"]["code"]), (503, &json!("deployment_unavailable")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("deployment video/0 of model \"video\" cannot serve: cannot tell the provider of model \"runwayml/gen4_turbo\""), "{message}");
    let (status, body) = ask("claude-on-bedrock").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("bedrock deployment needs aws_access_key_id"),
        "{body}"
    );
    for _ in 0..6 {
        let (status, body) = ask("mixed").await;
        assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("the servable one")));
    }
}
