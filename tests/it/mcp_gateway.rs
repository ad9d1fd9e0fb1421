//! The MCP gateway through the official MCP Python SDK: two upstream MCP servers of the SDK,
//! started by the script on ports this test puts in the app's manifest, and the SDK's client at
//! `/default/apps/tools/mcp` (see tests/python/mcp_gateway.py for what it checks).

use crate::support::{free_port, repo_root, TestServer};
use serde_json::json;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn mcp_gateway_lists_prefixed_filtered_tools_and_calls_each_upstream() {
    let (math, text, down) = (free_port(), free_port(), free_port());
    let manifest = json!({
        "name": "Tools",
        "type": "llm-proxy",
        "config": {
            "service_id": "tools",
            "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "hi"}}],
            "mcp_servers": {
                "math": {
                    "url": format!("http://127.0.0.1:{math}/mcp"),
                    "allowed_tools": ["add", "multiply"],
                    "disallowed_tools": ["multiply"],
                },
                "text": {
                    "url": format!("http://127.0.0.1:{text}/mcp"),
                    "transport": "http",
                    "auth_type": "bearer_token",
                    "auth_value": "text-secret",
                    "headers": {"X-Team": "t1"},
                },
                "down": {"url": format!("http://127.0.0.1:{down}/mcp")},
            },
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let server = TestServer::with_configs(vec![path]).await;

    let python = std::env::var("FERROLITE_PYTHON").expect("FERROLITE_PYTHON: run the tests with scripts/test.sh");
    let env = [
        ("FERROLITE_MCP_URL", format!("{}/default/apps/tools/mcp", server.base)),
        ("FERROLITE_TOKEN", server.token.clone()),
        ("FERROLITE_FOREIGN_TOKEN", server.token_for("other")),
        ("MATH_PORT", math.to_string()),
        ("TEXT_PORT", text.to_string()),
        ("TEXT_AUTH", "text-secret".to_owned()),
    ];
    let script = repo_root().join("tests/python/mcp_gateway.py");
    let output = tokio::task::spawn_blocking(move || Command::new(&python).arg(script).envs(env).output())
        .await
        .unwrap()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "MCP SDK checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    // Each tool call is in the session's log: server, tool, latency, status.
    let session = server.running.state.controller.registry().get("default", "tools").expect("running");
    let (lines, _) = session.table.logs.read(None, 0, None);
    let text: Vec<&str> = lines.iter().map(|l| l.content.as_str()).collect();
    let call = text.iter().find(|l| l.contains("tools/call server=math tool=add")).expect("math call logged");
    assert!(call.contains("latency_ms=") && call.ends_with("status=ok"), "{call}");
    assert!(text.iter().any(|l| l.contains("server=down") && l.contains("failed")), "{text:?}");
    assert!(text.iter().all(|l| !l.contains("text-secret")), "{text:?}");

    // And in the metrics: a call per (server, tool, status); a failed call names no tool.
    let admin = server.running.state.tokens.issue("default", true, std::time::Duration::from_secs(600));
    let scraped = server.client.get(format!("{}/metrics", server.base)).bearer_auth(admin).send().await.unwrap();
    let metrics = scraped.text().await.unwrap();
    let sample = |needle: &[&str]| {
        metrics.lines().find(|l| l.starts_with("ferrolite_mcp_calls_total{") && needle.iter().all(|n| l.contains(n)))
    };
    let ok =
        sample(&["app=\"tools\"", "server=\"math\"", "tool=\"add\"", "status=\"ok\""]).expect("an ok call counted");
    assert!(ok.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n >= 1.0), "{ok}");
    assert!(sample(&["server=\"down\"", "tool=\"\"", "status=\"failed\""]).is_some(), "{metrics}");
    assert!(metrics.contains("ferrolite_mcp_call_duration_seconds_bucket{"), "the latency histogram");
}
