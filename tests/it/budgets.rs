//! Cost, spend, budgets and rate limits: every answer is priced from its real usage (streams
//! included), budgets stop spending with 429 `budget_exceeded`, and spend survives restarts.

use crate::fake_openai::FakeOpenAi;
use crate::support::{blocking_post, free_port, read_json, sse_data, ServeProcess, TestServer};
use serde_json::{json, Value};

fn priced_mock(name: &str, input: f64, output: f64, extra: Value) -> Value {
    let mut params = json!({"model": "gpt-4o", "mock_response": "four words of answer", "input_cost_per_token": input, "output_cost_per_token": output});
    params.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    json!({"model_name": name, "litellm_params": params})
}

async fn server_with(model_list: Vec<Value>, settings: Value) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let manifest = json!({"name": "budgeted", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": model_list, "litellm_settings": settings}});
    std::fs::write(&path, manifest.to_string()).unwrap();
    (TestServer::with_configs(vec![path]).await, dir)
}

async fn chat(server: &TestServer, model: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]}),
        )
        .await;
    let headers = response.headers().clone();
    let (status, body) = read_json(response).await;
    (status, body, headers)
}

async fn usage(server: &TestServer) -> Value {
    let session = server.running.state.controller.registry().get("default", "demo").unwrap();
    server.ok("default", &server.token, "get_usage", json!({"session_id": session.id})).await
}

#[tokio::test]
async fn every_answer_is_priced_from_its_usage() {
    let (server, _dir) = server_with(vec![priced_mock("m", 0.001, 0.002, json!({}))], json!({})).await;
    let (status, body, headers) = chat(&server, "m").await;
    assert_eq!(status, 200);
    let (p, c) =
        (body["usage"]["prompt_tokens"].as_f64().unwrap(), body["usage"]["completion_tokens"].as_f64().unwrap());
    let cost: f64 = headers["x-ferrolite-cost"].to_str().unwrap().parse().unwrap();
    assert!((cost - (p * 0.001 + c * 0.002)).abs() < 1e-9, "cost {cost} from usage {p}/{c}");

    let report = usage(&server).await;
    assert_eq!(report["deployments"][0]["requests"], 1);
    assert_eq!(report["deployments"][0]["prompt_tokens"].as_f64(), Some(p));
    assert!((report["spend"].as_f64().unwrap() - cost).abs() < 1e-6, "{report}");
    assert_eq!(report["models"][0]["model_name"], "m");
}

#[tokio::test]
async fn an_app_budget_stops_spending_with_429() {
    let (server, _dir) =
        server_with(vec![priced_mock("m", 0.001, 0.001, json!({}))], json!({"max_budget": 0.03})).await;
    let mut served = 0;
    let refused = loop {
        let (status, body, _) = chat(&server, "m").await;
        if status != 200 {
            break (status, body);
        }
        served += 1;
        assert!(served < 50, "the budget never stopped spending");
    };
    assert!(served >= 1);
    assert_eq!(refused.0, 429);
    assert_eq!(refused.1["error"]["type"], "budget_exceeded");
    let message = refused.1["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("budget exceeded: this app has spent $0.0")
            && message.contains("of its $0.030000 budget; this request may cost up to $0.013000"),
        "{message}"
    );
}

#[tokio::test]
async fn a_deployment_over_its_budget_leaves_the_rotation() {
    let cheap_budget = json!({"max_budget": 0.000001});
    let (server, _dir) = server_with(
        vec![priced_mock("m", 0.001, 0.001, cheap_budget), priced_mock("m", 0.0, 0.0, json!({}))],
        json!({}),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(chat(&server, "m").await.0, 200);
    }
    let report = usage(&server).await;
    let first = report["deployments"][0]["requests"].as_u64().unwrap();
    assert!(first <= 1, "after one priced answer the budgeted deployment is skipped: {report}");
    assert_eq!(report["deployments"][1]["requests"].as_u64().unwrap(), 20 - first);
}

#[tokio::test]
async fn streams_are_priced_even_when_the_client_did_not_ask_for_usage() {
    let fake = FakeOpenAi::start("sk-fake-upstream-123").await;
    let model = json!({"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_base": fake.base_url, "api_key": "sk-fake-upstream-123", "input_cost_per_token": 0.5, "output_cost_per_token": 1.0}});
    let (server, _dir) = server_with(vec![model], json!({})).await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "Count to three"}]}),
        )
        .await;
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(
        data.iter().all(|d| !d.contains("\"choices\":[]")),
        "the usage chunk the client did not ask for is not sent: {text}"
    );
    let sent: Value = serde_json::from_slice(&fake.last("/v1/chat/completions").unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true, "ferrolite asked the upstream for usage");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let report = usage(&server).await;
    assert!(report["deployments"][0]["completion_tokens"].as_u64().unwrap() > 0, "{report}");
    assert!(report["spend"].as_f64().unwrap() > 1.0, "priced at the stream's end: {report}");
}

#[tokio::test]
async fn rpm_limits_are_enforced_when_asked() {
    let (server, _dir) =
        server_with(vec![priced_mock("m", 0.0, 0.0, json!({"rpm": 2}))], json!({"enforce_model_rate_limits": true}))
            .await;
    crate::support::inside_a_minute().await;
    assert_eq!(chat(&server, "m").await.0, 200);
    assert_eq!(chat(&server, "m").await.0, 200);
    let (status, body, headers) = chat(&server, "m").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(headers.contains_key("retry-after"));
}

#[test]
fn spend_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app.json");
    let manifest = json!({"name": "budgeted", "type": "llm-proxy", "config": {"service_id": "paid", "model_list": [priced_mock("m", 0.001, 0.001, json!({}))], "litellm_settings": {"max_budget": 0.03}}});
    std::fs::write(&config, manifest.to_string()).unwrap();
    let data = dir.path().join("data");
    let port = free_port().to_string();
    let config_arg = config.to_str().unwrap();
    let server = ServeProcess::spawn(&["--port", &port, "--config", config_arg], &data);
    let url = format!("{}/default/apps/paid/v1/chat/completions", server.base);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "Hello there"}]});
    let mut served = 0;
    while blocking_post(&url, &server.token, &body).0 == 200 {
        served += 1;
        assert!(served < 50);
    }
    std::thread::sleep(std::time::Duration::from_millis(1500)); // one flush interval
    let token = server.token.clone();
    drop(server); // kill -9
    let restarted = ServeProcess::spawn(&["--port", &port, "--config", config_arg], &data);
    let (status, answer) = blocking_post(&url, &token, &body);
    assert_eq!(status, 429, "the budget is still spent after a restart: {answer}");
    assert_eq!(answer["error"]["type"], "budget_exceeded");
    drop(restarted);
}
