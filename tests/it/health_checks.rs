//! `/health` in litellm's shape and background health checks (issue 21, point 5): every
//! deployment probed, keys never shown, and with `background_health_checks` a deployment that
//! does not answer sits out of the rotation until it does.

use crate::fake_openai::FakeOpenAi;
use crate::support::{read_json, DeadPort, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn background_checks_report_every_deployment_and_keep_a_dead_one_out_of_rotation() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    let dead_port = DeadPort::new();
    let dead = dead_port.url("/v1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let config = format!(
        r#"
model_list:
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "{live}", api_key: sk-fake-upstream-123}}
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "{dead}", api_key: sk-fake-upstream-123}}
  - model_name: video
    litellm_params: {{model: runwayml/gen4_turbo}}
general_settings:
  master_key: sk-1234
  background_health_checks: yes
  health_check_interval: "60"
"#,
        live = fake.base_url
    );
    std::fs::write(&path, config).unwrap();
    let server = TestServer::with_configs(vec![path]).await;
    let get = |path: &'static str| {
        let server = &server;
        async move { server.get_json_with(&format!("{}{path}", server.base), "sk-1234").await }
    };

    // The first check runs as the app starts; /health gives its answers.
    let mut report = Value::Null;
    for _ in 0..50 {
        report = get("/health").await.1;
        if report["unhealthy_count"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((&report["healthy_count"], &report["unhealthy_count"]), (&json!(1), &json!(2)), "{report}");
    assert_eq!(report["healthy_endpoints"][0]["deployment"], "gpt/0");
    let unhealthy: Vec<&str> =
        report["unhealthy_endpoints"].as_array().unwrap().iter().filter_map(|e| e["deployment"].as_str()).collect();
    assert_eq!(unhealthy, ["gpt/1", "video/0"]);
    let video = &report["unhealthy_endpoints"][1]["error"];
    assert!(video.as_str().unwrap().contains("cannot tell the provider"), "{report}");
    assert!(!report.to_string().contains("sk-fake-upstream-123"), "keys are never shown: {report}");

    // The dead deployment sits out: every request goes to the live one at the first attempt.
    for _ in 0..8 {
        let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]});
        let request = server.client.post(format!("{}/v1/chat/completions", server.base)).bearer_auth("sk-1234");
        let response = request.header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
        let headers = response.headers().clone();
        let (status, body) = read_json(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&headers["x-ferrolite-deployment"], &headers["x-ferrolite-attempts"]),
            (&"gpt/0".parse().unwrap(), &"1".parse().unwrap())
        );
    }
}
