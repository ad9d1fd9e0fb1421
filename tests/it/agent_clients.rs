//! Real agent frameworks against ferrolite, on a Claude deployment behind the Anthropic fake:
//! the OpenAI Agents SDK (Python, `openai-agents` pinned in tests/python/requirements.txt)
//! through the Responses API and chat completions. scripts/test.sh installs it; without it
//! this test fails loudly.

use crate::fake_anthropic::{last_tool_results, FakeAnthropic};
use crate::support::TestServer;
use serde_json::json;
use std::path::Path;

const ANTHROPIC_KEY: &str = "sk-ant-fake-agents-1";

/// A server whose demo app has one deployment, `claude`, calling `anthropic`.
async fn claude_app(anthropic: &FakeAnthropic, dir: &Path) -> TestServer {
    let doc = json!({"name": "Agents on Claude", "type": "llm-proxy", "config": {"service_id": "demo", "model_list": [
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022",
            "api_base": anthropic.base_url, "api_key": ANTHROPIC_KEY}}
    ]}});
    let path = dir.join("agents.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    TestServer::with_configs(vec![path]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_agents_sdk_runs_a_function_tool_on_claude() {
    let dir = tempfile::tempdir().unwrap();
    let anthropic = FakeAnthropic::start(ANTHROPIC_KEY).await;
    let server = claude_app(&anthropic, dir.path()).await;
    crate::python_sdk::run_script("openai_agents_sdk.py", &server.demo_url("/v1"), &server.token).await;

    // Three runs (Responses, Responses streamed, chat completions), each a tool_use then a
    // tool_result answered with text: six requests, the tool's output in every second one.
    let requests = anthropic.requests();
    assert_eq!(requests.len(), 6, "{requests:#?}");
    for pair in requests.chunks(2) {
        assert_eq!(pair[0]["tools"][0]["name"], "get_weather", "{}", pair[0]);
        assert!(last_tool_results(&pair[0]).is_empty());
        assert_eq!(last_tool_results(&pair[1]), ["sunny, 21 degrees in Oslo"], "{}", pair[1]);
    }
}
