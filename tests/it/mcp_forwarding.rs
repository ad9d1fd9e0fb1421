//! The MCP gateway's forwarding (progress, cancellation, an upstream dying mid-call) through
//! the official MCP Python SDK, on two instances sharing Redis with a client whose requests
//! alternate between them (see tests/python/mcp_forwarding.py).

use crate::support::{free_port, repo_root, Redis, TestServer};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn mcp_progress_cancellation_and_a_dying_upstream_on_two_instances() {
    let redis = Redis::start();
    let instance = || {
        let url = redis.url.clone();
        TestServer::start(vec![], move |c| c.redis_url = Some(url))
    };
    let (a, b) = (instance().await, instance().await);
    let (work, steady) = (free_port(), free_port());
    let manifest = json!({"name": "Work", "type": "llm-proxy", "config": {
        "service_id": "work",
        "model_list": [{"model_name": "m", "litellm_params": {"model": "m", "mock_response": "hi"}}],
        "mcp_servers": {
            "work": {"url": format!("http://127.0.0.1:{work}/mcp")},
            "steady": {"url": format!("http://127.0.0.1:{steady}/mcp")},
        },
    }});
    let token = a.token_for("team");
    a.ok("team", &token, "install", json!({"manifest": manifest})).await;
    a.ok("team", &token, "start", json!({"app_id": "work"})).await;
    // Started through A; B serves it once the announcement arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.running.state.controller.registry().get("team", "work").is_none() {
        assert!(std::time::Instant::now() < deadline, "B never started the app started on A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let port = |s: &TestServer| s.running.addr.port().to_string();
    let python = std::env::var("FERROLITE_PYTHON").expect("FERROLITE_PYTHON: run the tests with scripts/test.sh");
    let env = [
        ("FERROLITE_MCP_URL", format!("{}/team/apps/work/mcp", a.base)),
        ("FERROLITE_PORTS", format!("{},{}", port(&a), port(&b))),
        ("FERROLITE_TOKEN", token.clone()),
        ("WORK_PORT", work.to_string()),
        ("STEADY_PORT", steady.to_string()),
        ("MARKER", dir.path().join("marker").display().to_string()),
    ];
    let script = repo_root().join("tests/python/mcp_forwarding.py");
    let output = tokio::task::spawn_blocking(move || Command::new(&python).arg(script).envs(env).output())
        .await
        .unwrap()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "MCP SDK checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    // The cancelled call is logged as such on the instance that served it.
    let logged = [&a, &b].iter().any(|s| {
        let session = s.running.state.controller.registry().get("team", "work").expect("running");
        let (lines, _) = session.table.logs.read(None, 0, None);
        lines.iter().any(|l| l.content.contains("tool=hang") && l.content.ends_with("status=cancelled"))
    });
    assert!(logged, "a cancelled call is logged with status=cancelled");
}
