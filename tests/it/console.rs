//! The web console: its files under `/ui`, the controller's `validate` behind its editor, the
//! usage history behind its charts, and the whole console driven in headless Chromium
//! (`tests/ui/console.test.mjs`, which also saves a screenshot of each page: under the target
//! dir's `tmp/screenshots/`, or into `docs/screenshots/` for README when FERROLITE_UPDATE_SCREENSHOTS
//! is set, so an ordinary test run leaves the work tree clean).
//!
//! The browser test needs node with `tests/ui/node_modules` and Chromium (FERROLITE_CHROMIUM,
//! else /usr/bin/chromium); scripts/test.sh installs both. Without them it fails loudly.

use crate::support::{repo_root, sse_data, TestServer};
use serde_json::{json, Value};
use std::process::Command;

#[tokio::test]
async fn console_files_are_served_with_a_strict_policy_and_every_import_resolves() {
    let server = TestServer::demo().await;
    let get = |path: &str| server.client.get(format!("{}{path}", server.base)).send();
    for page in ["/ui", "/ui/", "/ui/index.html"] {
        let response = get(page).await.unwrap();
        assert_eq!(response.status(), 200, "{page}");
        assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
        let html = response.text().await.unwrap();
        assert!(html.contains(r#"<script type="module" src="/ui/app.js">"#), "{html}");
        assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from elsewhere");
    }

    // Follow every module import from app.js: each is served, as JavaScript.
    let mut pending = vec!["app.js".to_owned()];
    let mut seen = Vec::new();
    while let Some(file) = pending.pop() {
        if seen.contains(&file) {
            continue;
        }
        let response = get(&format!("/ui/{file}")).await.unwrap();
        assert_eq!(response.status(), 200, "/ui/{file}");
        assert_eq!(response.headers()["content-type"], "text/javascript; charset=utf-8", "{file}");
        let source = response.text().await.unwrap();
        for import in source.split("from './").skip(1) {
            pending.push(import.split('\'').next().unwrap().to_owned());
        }
        seen.push(file);
    }
    assert!(seen.len() >= 10, "{seen:?}");
    // Every file of ui/ is embedded (a new one must be listed in runtime/http/console.rs).
    for entry in std::fs::read_dir(repo_root().join("ui")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert_eq!(get(&format!("/ui/{name}")).await.unwrap().status(), 200, "ui/{name} is not served");
    }
    assert_eq!(get("/ui/style.css").await.unwrap().headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(get("/ui/missing.js").await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_workspace_named_ui_still_reaches_its_controller_and_services() {
    let server = TestServer::demo().await;
    let token = server.token_for("ui");
    let manifest = json!({"name": "In UI", "type": "llm-proxy", "config": {"service_id": "svc", "model_list": [
        {"model_name": "m", "litellm_params": {"model": "gpt-4o-mini", "mock_response": "hi from ui"}}
    ]}});
    server.ok("ui", &token, "install", json!({"manifest": manifest})).await;
    server.ok("ui", &token, "start", json!({"app_id": "in-ui"})).await;
    let response = server
        .client
        .post(format!("{}/ui/apps/svc/v1/chat/completions", server.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("hi from ui"));
}

#[tokio::test]
async fn validate_reports_every_error_at_its_path_and_stores_nothing() {
    let server = TestServer::demo().await;
    let token = server.token_for("checks");
    let broken = json!({"name": "Broken", "type": "llm-proxy", "config": {
        "model_list": [{"model_name": "a", "litellm_params": {"api_key": "sk-literal-key-123"}}],
        "litellm_settings": {"routing_strategy": "round-robin"}
    }});
    let result = server.ok("checks", &token, "validate", json!({"source": broken.to_string()})).await;
    assert_eq!(result["valid"], false, "{result}");
    let paths: Vec<&str> = result["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/config/litellm_settings/routing_strategy", "/config/model_list/0/litellm_params/model"]);
    assert!(result["errors"][0]["message"].as_str().unwrap().contains("round-robin"), "{result}");

    // The same manifest as an object, fixed: valid, with the literal key as a warning.
    let mut fixed = broken.clone();
    fixed["config"]["model_list"][0]["litellm_params"]["model"] = json!("gpt-4o");
    fixed["config"]["litellm_settings"]["routing_strategy"] = json!("least-busy");
    let result = server.ok("checks", &token, "validate", json!({"manifest": fixed})).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["errors"], json!([]));
    assert_eq!(result["warnings"][0]["path"], "/config/model_list/0/litellm_params/api_key");

    // Text that does not parse is one error at the root, saying where.
    let result = server.ok("checks", &token, "validate", json!({"source": "{\"name\": \"x\",, }"})).await;
    assert_eq!(result["errors"].as_array().unwrap().len(), 1, "{result}");
    assert_eq!(result["errors"][0]["path"], "");
    assert!(result["errors"][0]["message"].as_str().unwrap().contains("line 1 column"), "{result}");

    let (status, error) = server.controller("checks", &token, "validate", json!({})).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "source");
    assert_eq!(server.ok("checks", &token, "list_apps", json!({})).await, json!([]), "validate stores nothing");
}

#[tokio::test]
async fn get_usage_history_counts_each_minute_of_each_deployment() {
    let server = TestServer::demo().await;
    let url = server.demo_url("/v1/chat/completions");
    let chat = |stream: bool| {
        json!({"model": "demo-chat", "messages": [{"role": "user", "content": "Hello!"}], "stream": stream,
            "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null }})
    };
    for _ in 0..2 {
        let response = server.post(&url, &chat(false)).await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let streamed = server.post(&url, &chat(true)).await.text().await.unwrap();
    assert_eq!(sse_data(&streamed).last().map(String::as_str), Some("[DONE]"));

    let session = server.ok("default", &server.token, "list_running", json!({})).await[0]["id"].clone();
    // A stream is booked when it ends, just after its last byte reaches the client.
    let mut usage = Value::Null;
    for _ in 0..50 {
        usage = server.ok("default", &server.token, "get_usage", json!({"session_id": session})).await;
        if usage["deployments"][0]["requests"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(usage["history"]["bucket_seconds"], 60, "{usage}");
    let chat_deployment = &usage["deployments"][0];
    assert_eq!(chat_deployment["deployment"], "demo-chat/0");
    let buckets = chat_deployment["history"].as_array().unwrap();
    // Two buckets only if the minute turned over mid-test.
    let sum = |key: &str| buckets.iter().map(|b| b[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("requests"), 3, "{usage}");
    assert_eq!(sum("errors"), 0);
    assert_eq!(sum("prompt_tokens"), chat_deployment["prompt_tokens"].as_u64().unwrap());
    assert_eq!(sum("completion_tokens"), chat_deployment["completion_tokens"].as_u64().unwrap());
    assert!(sum("completion_tokens") > 0);
    let last = buckets.last().unwrap();
    assert_eq!(last["start"].as_u64().unwrap() % 60, 0);
    let p = &last["latency_ms"];
    assert!(p["p50"].as_f64().unwrap() <= p["p95"].as_f64().unwrap(), "{p}");
    assert!(p["p95"].as_f64().unwrap() <= p["p99"].as_f64().unwrap(), "{p}");
    assert_eq!(usage["deployments"][1]["history"], json!([]), "the embedding model was not called");
    assert_eq!(usage["history"]["app"], chat_deployment["history"], "the app's history merges its deployments");
    // The totals are still there, unchanged.
    assert_eq!(usage["models"][0]["requests"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_signs_in_installs_starts_chats_and_sees_logs_and_charts() {
    let root = repo_root();
    let chromium = std::env::var("FERROLITE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run the tests with scripts/test.sh, which installs it (apt-get install chromium)"
    );
    assert!(
        root.join("tests/ui/node_modules/playwright-core").exists(),
        "tests/ui/node_modules is missing: run the tests with scripts/test.sh, which runs `npm ci` there"
    );
    let server = TestServer::demo().await;
    let token = server.token_for("console");
    let screenshots = match std::env::var_os("FERROLITE_UPDATE_SCREENSHOTS") {
        Some(_) => root.join("docs/screenshots"),
        None => std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    };
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(root.join("tests/ui/console.test.mjs"))
            .current_dir(root.join("tests/ui"))
            .env("FERROLITE_BASE_URL", base)
            .env("FERROLITE_TOKEN", token)
            .env("FERROLITE_CHROMIUM", chromium)
            .env("FERROLITE_SCREENSHOTS", screenshots)
            .output()
            .unwrap_or_else(|e| panic!("cannot run node (apt-get install nodejs npm): {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the console test failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
