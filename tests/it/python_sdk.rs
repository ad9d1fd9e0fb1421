//! The real `openai` Python SDK against a running ferrolite: the truest check we have.
//!
//! The interpreter comes from FERROLITE_PYTHON, which scripts/test.sh sets to a virtualenv
//! with the pinned SDKs. Without it this test fails loudly rather than skip.

use crate::support::{repo_root, TestServer};
use std::process::Command;

fn python() -> String {
    std::env::var("FERROLITE_PYTHON").unwrap_or_else(|_| {
        panic!("FERROLITE_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python SDKs into a virtualenv")
    })
}

pub async fn run_script(script: &str, base_url: &str, token: &str) {
    let python = python();
    let script = repo_root().join("tests/python").join(script);
    let (base_url, token) = (base_url.to_owned(), token.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .env("FERROLITE_BASE_URL", base_url)
            .env("FERROLITE_TOKEN", token)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python SDK checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_sdk_lists_models_chats_streams_and_embeds() {
    let server = TestServer::demo().await;
    run_script("openai_sdk_demo.py", &server.demo_url("/v1"), &server.token).await;
}
