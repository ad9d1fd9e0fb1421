//! The `ferrolite` binary as a newcomer runs it.

use crate::support::repo_root;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ferrolite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrolite"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = ferrolite().args(args).current_dir(repo_root()).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_every_error_with_file_and_json_path() {
    let (code, stdout, _) = run(&["validate", "tests/manifests/broken.yaml"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    let f = "tests/manifests/broken.yaml";
    for expected in [
        format!("{f}: /config/model_list/1/litellm_params/model: required property missing"),
        format!("{f}: /config/service_id: \"not url safe!\" is not URL-safe: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"),
    ] {
        assert!(lines.contains(&expected.as_str()), "missing {expected:?} in:\n{stdout}");
    }
    let starts = [
        format!("{f}: /config/litellm_settings/routing_strategy: unknown value \"round-robin\"; valid values: simple-shuffle, least-busy, usage-based-routing"),
        format!("{f}: /config/model_list/0/litellm_params/api_key: malformed os.environ reference \"9LIVES\""),
        format!("{f}: /config/model_list/2/litellm_params/model: cannot tell the provider of \"mystery-llm-7b\""),
    ];
    for prefix in &starts {
        assert!(lines.iter().any(|l| l.starts_with(prefix.as_str())), "missing {prefix:?} in:\n{stdout}");
    }
    assert_eq!(lines.len(), 5, "exactly the five errors:\n{stdout}");
}

#[test]
fn validate_accepts_json_and_yaml_and_warns_on_literal_keys() {
    let (code, stdout, _) = run(&["validate", "tests/manifests/quickstart.json", "tests/manifests/mock.yaml"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("tests/manifests/quickstart.json: /config/model_list/0/litellm_params/api_key: warning: a literal credential"), "{stdout}");
    assert!(!stdout.contains("your-openai-api-key"), "keys are never echoed");
    assert!(stdout.contains("tests/manifests/quickstart.json: OK (2 model name(s), 2 deployment(s))"), "{stdout}");
    assert!(stdout.contains("tests/manifests/mock.yaml: OK (1 model name(s), 2 deployment(s))"), "{stdout}");
}

#[test]
fn validate_names_unreadable_and_unparsable_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"name\": ").unwrap();
    let (code, stdout, _) = run(&["validate", bad.to_str().unwrap(), "/no/such/file.yaml"]);
    assert_eq!(code, 1);
    assert!(stdout.contains(&format!("{}: not valid JSON or YAML: JSON:", bad.display())), "{stdout}");
    assert!(stdout.contains("/no/such/file.yaml: cannot read:"), "{stdout}");
}

#[test]
fn schema_prints_the_checked_in_manifest_schema() {
    let (code, stdout, _) = run(&["schema"]);
    assert_eq!(code, 0);
    let on_disk = std::fs::read_to_string(repo_root().join("schema/manifest.schema.json")).unwrap();
    assert_eq!(stdout, on_disk);
}

#[test]
fn token_command_signs_with_the_data_dir_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = run(&["token", "--workspace", "alice", "--data-dir", data_dir, "--expires-in", "60"]);
    assert_eq!(code, 0, "{stderr}");
    let tokens = ferrolite::auth::Tokens::load_or_create(dir.path()).unwrap();
    let claims = tokens.verify(stdout.trim()).unwrap();
    assert_eq!(claims.ws, "alice");
    assert!(!claims.admin);
    assert!(claims.exp - claims.iat == 60);
}

/// `ferrolite serve` with no arguments: the README's first command.
#[test]
fn serve_with_no_arguments_runs_the_demo_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ferrolite()
        .arg("serve")
        .env("FERROLITE_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut token) = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut line = String::new();
    while token.is_empty() && Instant::now() < deadline {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.trim().strip_prefix("service: ") {
            url = rest.split_whitespace().next().unwrap().to_owned();
        }
        if let Some(rest) = line.trim().strip_prefix("token: ") {
            token = rest.trim().to_owned();
        }
    }
    if token.is_empty() {
        let _ = child.kill();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
        panic!("no banner from `ferrolite serve` (is port 9527 busy?): {err}");
    }
    assert_eq!(url, "http://127.0.0.1:9527/default/apps/demo/v1");
    assert!(dir.path().join("admin-token").exists());

    let body = ureq_post(
        &format!("{url}/chat/completions"),
        &token,
        r#"{"model": "demo-chat", "messages": [{"role": "user", "content": "Hello!"}]}"#,
    );
    assert!(body.contains("Hello from ferrolite!"), "{body}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert_eq!(exit.code(), Some(0), "SIGTERM drains and exits 0");
            break;
        }
        assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking POST for tests that run outside an async runtime.
fn ureq_post(url: &str, token: &str, body: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}
