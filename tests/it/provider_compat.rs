//! OpenAI-compatible hosts named by their litellm prefix (`openrouter/`, `deepinfra/`,
//! `cerebras/`, ...) or by a bare model name (`mistral-small-latest`): each is the OpenAI protocol
//! at its own base URL, here overridden to tests/it/fake_openai.rs on 127.0.0.1. The fake's log
//! shows the prefix gone from the model, the deployment's key as a bearer token, and the body
//! otherwise as the client wrote it.

use crate::fake_openai::FakeOpenAi;
use crate::support::{sse_data, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const UPSTREAM_KEY: &str = "sk-compat-upstream-0042";

/// (model group, litellm model, the model the upstream must be asked for).
const MODELS: &[(&str, &str, &str)] = &[
    ("router", "openrouter/anthropic/claude-3.5-sonnet", "anthropic/claude-3.5-sonnet"),
    ("infra", "deepinfra/meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
    ("fast", "cerebras/llama3.1-8b", "llama3.1-8b"),
    ("mistral", "mistral-small-latest", "mistral-small-latest"),
    ("mistral-prefixed", "mistral/open-mistral-nemo", "open-mistral-nemo"),
];

fn manifest(dir: &Path, api_base: &str) -> PathBuf {
    let model_list: Vec<Value> = MODELS
        .iter()
        .map(|(name, model, _)| {
            json!({"model_name": name, "litellm_params": {"model": model, "api_base": api_base, "api_key": UPSTREAM_KEY}})
        })
        .collect();
    let doc = json!({
        "name": "OpenAI-compatible hosts", "type": "llm-proxy", "version": "1.0.0",
        "config": {"service_id": "demo", "model_list": model_list}
    });
    let path = dir.join("compat.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

async fn setup() -> (FakeOpenAi, TestServer, tempfile::TempDir) {
    let fake = FakeOpenAi::start(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_configs(vec![manifest(dir.path(), &fake.base_url)]).await;
    (fake, server, dir)
}

#[tokio::test]
async fn prefixed_hosts_get_the_openai_protocol_with_the_prefix_taken_off_the_model() {
    let (fake, server, _dir) = setup().await;
    for (group, _, upstream_model) in MODELS {
        let (status, body) = server
            .post_json(
                &server.demo_url("/v1/chat/completions"),
                &json!({"model": group, "messages": [{"role": "user", "content": format!("Hello {group}")}]}),
            )
            .await;
        assert_eq!(status, 200, "{group}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], format!("echo: Hello {group}"));
        let recorded = fake.last("/v1/chat/completions").expect("the request reached the fake");
        let sent: Value = serde_json::from_slice(&recorded.body).unwrap();
        assert_eq!(sent["model"], *upstream_model, "{group}: the prefix is not part of the upstream model");
        assert_eq!(
            recorded.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str()),
            "{group}: the deployment's key, not the client's token"
        );
        assert_eq!(sent["messages"], json!([{"role": "user", "content": format!("Hello {group}")}]));
    }
}

#[tokio::test]
async fn a_prefixed_host_streams_chunk_by_chunk() {
    let (fake, server, _dir) = setup().await;
    let response = server
        .post(
            server.demo_url("/v1/chat/completions"),
            &json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "echo: one two three");
    let sent: Value = serde_json::from_slice(&fake.last("/v1/chat/completions").unwrap().body).unwrap();
    assert_eq!((sent["model"].as_str(), sent["stream"].as_bool()), (Some("llama3.1-8b"), Some(true)));
}

#[tokio::test]
async fn responses_on_a_chat_only_host_go_through_its_chat_completions() {
    let (fake, server, _dir) = setup().await;
    let (status, body) =
        server.post_json(&server.demo_url("/v1/responses"), &json!({"model": "infra", "input": "Hi there"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "response");
    assert_eq!(body["output"][0]["content"][0]["text"], "echo: Hi there");
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/chat/completions"], "deepinfra has no Responses API");
}

#[tokio::test]
async fn mistral_gets_its_own_parameters_as_written() {
    let (fake, server, _dir) = setup().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let (status, body) = server
        .post_json(
            &server.demo_url("/v1/chat/completions"),
            &json!({
                "model": "mistral-prefixed",
                "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                "tools": tools,
                // Mistral's own: `any` (its `required`), the guardrail prompt, its seed's name, and
                // the reasoning mode of Magistral models.
                "tool_choice": "any",
                "safe_prompt": true,
                "random_seed": 42,
                "prompt_mode": "reasoning",
                "parallel_tool_calls": false,
                "temperature": 0.2,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let sent: Value = serde_json::from_slice(&fake.last("/v1/chat/completions").unwrap().body).unwrap();
    assert_eq!(sent["model"], "open-mistral-nemo");
    for (name, value) in [
        ("tool_choice", json!("any")),
        ("safe_prompt", json!(true)),
        ("random_seed", json!(42)),
        ("prompt_mode", json!("reasoning")),
        ("parallel_tool_calls", json!(false)),
        ("temperature", json!(0.2)),
        ("tools", tools),
    ] {
        assert_eq!(sent[name], value, "{name} reaches Mistral as written");
    }
}

/// The client's `Accept` and beta headers mean the same upstream and go there (a name's first
/// value); its other headers do not.
#[tokio::test]
async fn the_clients_accept_and_beta_headers_go_upstream_and_no_others() {
    let (fake, server, _dir) = setup().await;
    let response = server
        .client
        .post(server.demo_url("/v1/chat/completions"))
        .bearer_auth(&server.token)
        .header("accept", "application/json")
        .header("openai-beta", "assistants=v2")
        .header("openai-beta", "second=1")
        .header("anthropic-beta", "tools-2024-04-04")
        .header("x-private", "stays here")
        .header("content-type", "application/json")
        .body(json!({"model": "fast", "messages": [{"role": "user", "content": "Hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let recorded = fake.last("/v1/chat/completions").expect("the request reached the fake");
    let header = |name: &str| recorded.headers.get(name).map(String::as_str);
    assert_eq!(header("accept"), Some("application/json"));
    assert_eq!(header("openai-beta"), Some("assistants=v2"));
    assert_eq!(header("anthropic-beta"), Some("tools-2024-04-04"));
    assert_eq!(header("x-private"), None);
}
