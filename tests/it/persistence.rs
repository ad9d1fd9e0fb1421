//! Nothing is lost: after `kill -9` and a restart, every app that was running serves again at
//! the same URL, driven here through the real binary and its `apps` CLI.

use crate::support::{blocking_post, free_port, run_cli, ServeProcess};
use serde_json::json;

#[test]
fn running_apps_survive_kill_9_at_the_same_url() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let port = free_port().to_string();
    let server = ServeProcess::spawn(&["--port", &port], dir.path());
    assert!(server.admin_token.is_some(), "the first start prints the admin token");
    let apps = |args: &[&str]| {
        let mut all = vec!["apps", "--server", server.base.as_str(), "--data-dir", data_dir];
        all.extend_from_slice(args);
        run_cli(&all)
    };

    let (code, out, err) = apps(&["install", "tests/manifests/mock.yaml", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"id\": \"mock-proxy\""), "{out}");
    let (code, out, err) = apps(&["start", "mock-proxy", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let session: serde_json::Value = serde_json::from_str(&out).unwrap();
    let url = session["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/default/apps/mock-llm/v1", server.base));

    let chat = json!({"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, body) = blocking_post(&format!("{url}/chat/completions"), &server.token, &chat);
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("This is a test response")));

    let (code, out, _) = apps(&["ps"]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("APP"), "a table: {out}");
    assert!(out.contains(session["id"].as_str().unwrap()) && out.contains(&url), "{out}");

    // kill -9: no chance to flush anything.
    let token = server.token.clone();
    drop(server);

    let restarted = ServeProcess::spawn(&["--port", &port], dir.path());
    assert!(restarted.admin_token.is_none(), "the admin token is printed only once");
    assert!(restarted.services.contains(&url), "the banner lists restored services: {:?}", restarted.services);
    let (status, body) = blocking_post(&format!("{url}/chat/completions"), &token, &chat);
    assert_eq!(status, 200, "the same URL serves again, and old tokens still work: {body}");
    let (code, out, _) = run_cli(&["apps", "--server", &restarted.base, "--data-dir", data_dir, "ps"]);
    assert_eq!(code, 0);
    assert!(out.contains(session["id"].as_str().unwrap()), "same session id after restart: {out}");

    // Stopped sessions stay stopped across restarts.
    let (code, _, err) = run_cli(&[
        "apps",
        "--server",
        &restarted.base,
        "--data-dir",
        data_dir,
        "stop",
        session["id"].as_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    drop(restarted);
    let again = ServeProcess::spawn(&["--port", &port], dir.path());
    let (status, _) = blocking_post(&format!("{url}/chat/completions"), &token, &chat);
    assert_eq!(status, 404);
    let (code, out, _) = run_cli(&["apps", "--server", &again.base, "--data-dir", data_dir, "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("mock-proxy"), "the app itself stays installed: {out}");
}

#[test]
fn cli_errors_print_the_server_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::spawn(&["--port", "0"], dir.path());
    let (code, _, err) =
        run_cli(&["apps", "--server", &server.base, "--data-dir", dir.path().to_str().unwrap(), "start", "ghost"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "ferrolite apps: app \"ghost\" is not installed in this workspace");
    let (code, _, err) = run_cli(&["apps", "--server", &server.base, "--token", "forged", "list"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "ferrolite apps: malformed token: not a ferrolite token");
}
