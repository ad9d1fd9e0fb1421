//! Real Node clients against ferrolite: the Vercel AI SDK's default OpenAI model, which speaks
//! the Responses API, on the embedded demo app. Needs node with `tests/node/node_modules`
//! (scripts/test.sh runs `npm ci` there); without them it fails loudly.

use crate::support::{repo_root, TestServer};
use std::process::Command;

/// Runs `tests/node/SCRIPT` against `base_url` with `token`; it must end with "all checks passed".
async fn run_node(script: &str, base_url: String, token: String) {
    let root = repo_root();
    assert!(
        root.join("tests/node/node_modules/ai").exists(),
        "tests/node/node_modules is missing: run the tests with scripts/test.sh, which runs `npm ci` there"
    );
    let script = root.join("tests/node").join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .current_dir(root.join("tests/node"))
            .env("FERROLITE_BASE_URL", base_url)
            .env("FERROLITE_TOKEN", token)
            .output()
            .unwrap_or_else(|e| panic!("cannot run node (apt-get install nodejs npm): {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the node client failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vercel_ai_sdk_generates_and_streams_on_the_demo_app() {
    let server = TestServer::demo().await;
    run_node("vercel_ai.test.mjs", server.demo_url("/v1"), server.token.clone()).await;
}
