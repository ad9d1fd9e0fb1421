//! The server-apps controller over HTTP, in Hypha's convention, with exact statuses.

use crate::support::TestServer;
use serde_json::{json, Value};

fn mock_manifest(name: &str, service_id: &str, model: &str, text: &str) -> Value {
    json!({
        "name": name, "type": "llm-proxy", "version": "1.0.0",
        "config": {
            "service_id": service_id,
            "model_list": [{"model_name": model, "litellm_params": {"model": "gpt-3.5-turbo", "mock_response": text}}]
        }
    })
}

async fn chat(server: &TestServer, url: &str, token: &str, model: &str) -> (u16, Value) {
    let response = server
        .client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    crate::support::read_json(response).await
}

#[tokio::test]
async fn install_start_call_stop_uninstall() {
    let server = TestServer::demo().await;
    let alice = server.token_for("alice");
    let source = serde_json::to_string(&mock_manifest("Alice Proxy", "my-llm", "test-model", "Hi Alice")).unwrap();
    let app = server.ok("alice", &alice, "install", json!({"source": source})).await;
    assert_eq!(app["id"], "alice-proxy");
    assert_eq!(app["models"], json!(["test-model"]));

    let session =
        server.ok("alice", &alice, "start", json!({"app_id": "alice-proxy", "wait_for_service": "my-llm"})).await;
    assert_eq!(session["service_id"], "my-llm");
    assert_eq!(session["status"], "running");
    let url = format!("{}/alice/apps/my-llm/v1", server.base);
    assert_eq!(session["url"], url.as_str());
    let (status, body) = chat(&server, &format!("{url}/chat/completions"), &alice, "test-model").await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "Hi Alice");

    let running = server.ok("public", &alice, "list_running", json!({})).await;
    assert_eq!(running.as_array().unwrap().len(), 1, "public/ acts on the caller's own workspace");
    let apps = server.ok("alice", &alice, "list_apps", json!({})).await;
    assert_eq!(apps[0]["id"], "alice-proxy");

    let session_id = session["id"].as_str().unwrap();
    let logs = server.ok("alice", &alice, "get_logs", json!({"session_id": session_id})).await;
    let items = logs["items"].as_array().unwrap();
    assert_eq!(logs["total"], items.len());
    assert!(items[0]["content"].as_str().unwrap().contains("started"), "{logs}");
    assert!(items
        .iter()
        .any(|i| i["type"] == "log"
            && i["content"].as_str().unwrap().contains("POST /v1/chat/completions model=test-model")));
    let page = server.ok("alice", &alice, "get_logs", json!({"session_id": session_id, "offset": 1, "limit": 1})).await;
    assert_eq!(
        (page["offset"].as_u64(), page["limit"].as_u64(), page["items"].as_array().unwrap().len()),
        (Some(1), Some(1), 1)
    );

    server.ok("alice", &alice, "stop", json!({"session_id": session_id})).await;
    let (status, err) = chat(&server, &format!("{url}/chat/completions"), &alice, "test-model").await;
    assert_eq!(status, 404, "a stopped service is gone at once: {err}");
    let logs = server.ok("alice", &alice, "get_logs", json!({"session_id": session_id})).await;
    assert!(logs["items"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().contains("stopped"));

    server.ok("alice", &alice, "start", json!({"app_id": "alice-proxy"})).await;
    server.ok("alice", &alice, "uninstall", json!({"app_id": "alice-proxy"})).await;
    assert_eq!(
        server.ok("alice", &alice, "list_running", json!({})).await,
        json!([]),
        "uninstall stops sessions first"
    );
    assert_eq!(server.ok("alice", &alice, "list_apps", json!({})).await, json!([]));
}

#[tokio::test]
async fn invalid_manifests_list_every_error_and_store_nothing() {
    let server = TestServer::demo().await;
    let t = server.token_for("w");
    let bad = json!({"name": "bad", "type": "llm-proxy", "config": {"service_id": "a b", "model_list": [{"model_name": "x", "litellm_params": {}}]}});
    let (status, err) = server.controller("w", &t, "install", json!({"manifest": bad})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "invalid_manifest");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("/config/model_list/0/litellm_params/model: required property missing"), "{message}");
    assert!(message.contains("/config/service_id: \"a b\" is not URL-safe"), "{message}");
    assert_eq!(server.ok("w", &t, "list_apps", json!({})).await, json!([]), "nothing stored");

    let (status, err) = server.controller("w", &t, "install", json!({"source": "name: [unclosed"})).await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = server.controller("w", &t, "install", json!({})).await;
    assert_eq!((status, err["error"]["param"].as_str()), (400, Some("source")));
}

#[tokio::test]
async fn conflicts_are_409() {
    let server = TestServer::demo().await;
    let t = server.token_for("w");
    server.ok("w", &t, "install", json!({"manifest": mock_manifest("A", "svc", "m", "a")})).await;
    let (status, err) =
        server.controller("w", &t, "install", json!({"manifest": mock_manifest("A", "svc", "m", "a")})).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["message"], "app \"a\" is already installed; pass overwrite=true to replace it");
    server.ok("w", &t, "install", json!({"manifest": mock_manifest("A", "svc", "m", "a2"), "overwrite": true})).await;

    server.ok("w", &t, "install", json!({"manifest": mock_manifest("B", "svc", "m", "b")})).await;
    let first = server.ok("w", &t, "start", json!({"app_id": "a"})).await;
    let (status, err) = server.controller("w", &t, "start", json!({"app_id": "b"})).await;
    assert_eq!(status, 409);
    assert_eq!(
        err["error"]["message"],
        format!(
            "service id already in use: \"svc\" is served by session {}; stop it first or choose another service_id",
            first["id"]
        )
    );
    let (status, _) = server.controller("w", &t, "start", json!({"app_id": "nope"})).await;
    assert_eq!(status, 404);
    let (status, _) = server.controller("w", &t, "stop", json!({"session_id": "nope"})).await;
    assert_eq!(status, 404);
    let (status, err) = server.controller("w", &t, "frobnicate", json!({})).await;
    assert_eq!(status, 404);
    assert!(err["error"]["message"].as_str().unwrap().starts_with("server-apps has no function \"frobnicate\""));
}

#[tokio::test]
async fn default_service_id_is_llm_session_id() {
    let server = TestServer::demo().await;
    let t = server.token_for("w");
    let mut manifest = mock_manifest("NoId", "x", "m", "hello");
    manifest["config"].as_object_mut().unwrap().remove("service_id");
    server.ok("w", &t, "install", json!({"manifest": manifest})).await;
    let session = server.ok("w", &t, "start", json!({"app_id": "noid"})).await;
    assert_eq!(session["service_id"], format!("llm-{}", session["id"].as_str().unwrap()));
}

#[tokio::test]
async fn controller_access_is_per_workspace() {
    let server = TestServer::demo().await;
    let alice = server.token_for("alice");
    let (status, err) = server.controller("bob", &alice, "list_apps", json!({})).await;
    assert_eq!(status, 403);
    assert_eq!(
        err["error"]["message"],
        "a token of workspace \"alice\" cannot use the controller of workspace \"bob\""
    );
    let response =
        server.client.post(format!("{}/bob/services/server-apps/list_apps", server.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // The admin token acts everywhere.
    let admin = server.running.state.tokens.issue("default", true, std::time::Duration::from_secs(60));
    server.ok("bob", &admin, "list_apps", json!({})).await;
}

#[tokio::test]
async fn two_apps_in_one_workspace_and_one_service_id_in_two_workspaces() {
    let server = TestServer::demo().await;
    let (a, b) = (server.token_for("team-a"), server.token_for("team-b"));
    server.ok("team-a", &a, "install", json!({"manifest": mock_manifest("One", "one", "m1", "from one")})).await;
    server.ok("team-a", &a, "install", json!({"manifest": mock_manifest("Two", "two", "m2", "from two")})).await;
    server.ok("team-b", &b, "install", json!({"manifest": mock_manifest("One", "one", "mb", "from b")})).await;
    for (ws, t, app) in [("team-a", &a, "one"), ("team-a", &a, "two"), ("team-b", &b, "one")] {
        server.ok(ws, t, "start", json!({"app_id": app})).await;
    }
    let base = &server.base;
    let (_, one) = chat(&server, &format!("{base}/team-a/apps/one/v1/chat/completions"), &a, "m1").await;
    let (_, two) = chat(&server, &format!("{base}/team-a/apps/two/v1/chat/completions"), &a, "m2").await;
    let (_, other) = chat(&server, &format!("{base}/team-b/apps/one/v1/chat/completions"), &b, "mb").await;
    assert_eq!(one["choices"][0]["message"]["content"], "from one");
    assert_eq!(two["choices"][0]["message"]["content"], "from two");
    assert_eq!(other["choices"][0]["message"]["content"], "from b");
    let (status, _) = chat(&server, &format!("{base}/team-b/apps/one/v1/chat/completions"), &b, "m1").await;
    assert_eq!(status, 404, "team-b's `one` has its own models");
    let (status, _) = chat(&server, &format!("{base}/team-b/apps/one/v1/chat/completions"), &a, "mb").await;
    assert_eq!(status, 403, "team-a's token cannot call team-b's protected service");
}

#[tokio::test]
async fn public_services_take_any_valid_token() {
    let server = TestServer::demo().await;
    let owner = server.token_for("owner");
    let mut manifest = mock_manifest("Open", "open", "m", "open to all");
    manifest["config"]["visibility"] = json!("public");
    server.ok("owner", &owner, "install", json!({"manifest": manifest})).await;
    server.ok("owner", &owner, "start", json!({"app_id": "open"})).await;
    let guest = server.token_for("guest");
    let (status, body) =
        chat(&server, &format!("{}/owner/apps/open/v1/chat/completions", server.base), &guest, "m").await;
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("open to all")));
}

#[tokio::test]
async fn secrets_resolve_at_start_and_never_come_back() {
    let server = TestServer::demo().await;
    let t = server.token_for("w");
    let manifest = json!({
        "name": "Secretive", "type": "llm-proxy",
        "config": {"service_id": "s", "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:9/v1", "api_key": "HYPHA_SECRET:OPENAI_KEY"}}
        ]}
    });
    server.ok("w", &t, "install", json!({"manifest": manifest})).await;
    let (status, err) = server.controller("w", &t, "start", json!({"app_id": "secretive"})).await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("secret OPENAI_KEY is not set"), "{err}");

    let secret = "sk-very-secret-value-9876";
    server.ok("w", &t, "set_env", json!({"key": "OPENAI_KEY", "value": secret})).await;
    let env = server.ok("w", &t, "get_env", json!({"key": "OPENAI_KEY"})).await;
    assert_eq!(env, json!([{"key": "OPENAI_KEY", "value": "****9876"}]));
    let session = server.ok("w", &t, "start", json!({"app_id": "secretive"})).await;

    let (_, info) = server.get_json_with(&format!("{}/w/apps/s/v1/model/info", server.base), &t).await;
    assert_eq!(info["data"][0]["litellm_params"]["api_key"], "HYPHA_SECRET:OPENAI_KEY", "references only");
    // The upstream is unreachable: the error and the logs must not carry the key.
    let (status, err) = chat(&server, &format!("{}/w/apps/s/v1/chat/completions", server.base), &t, "m").await;
    assert_eq!(status, 502);
    let logs = server.ok("w", &t, "get_logs", json!({"session_id": session["id"]})).await;
    for text in [err.to_string(), logs.to_string(), server.ok("w", &t, "list_apps", json!({})).await.to_string()] {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }
}

/// The seed's Quick Start, as its JavaScript does it, over HTTP.
#[tokio::test]
async fn seed_quick_start_installs_and_starts() {
    let server = TestServer::demo().await;
    let t = server.token_for("workspace");
    let source = std::fs::read_to_string(crate::support::repo_root().join("tests/manifests/quickstart.json")).unwrap();
    let app = server.ok("public", &t, "install", json!({"source": source})).await;
    assert_eq!(app["id"], "my-llm-proxy");
    assert!(app["warnings"][0].as_str().unwrap().contains("literal credential"), "{app}");
    assert!(!app.to_string().contains("your-openai-api-key"));
    let session =
        server.ok("public", &t, "start", json!({"app_id": app["id"], "wait_for_service": "my-llm-service"})).await;
    assert_eq!(session["url"], format!("{}/workspace/apps/my-llm-service/v1", server.base));
    assert_eq!(session["models"], json!(["gpt-3.5-turbo", "claude-3-opus"]));
    let (status, models) =
        server.get_json_with(&format!("{}/workspace/apps/my-llm-service/v1/models", server.base), &t).await;
    assert_eq!(status, 200);
    assert_eq!(models["data"][1]["id"], "claude-3-opus");
}
