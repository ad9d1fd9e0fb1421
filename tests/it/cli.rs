//! The `ferrolite` binary as a newcomer runs it.

use crate::support::{blocking_post, repo_root, ServeProcess};
use serde_json::{json, Value};
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
        format!("{f}: /config/model_list/2/litellm_params/model: warning: cannot tell the provider of \"mystery-llm-7b\": this deployment is left out"),
    ];
    for prefix in &starts {
        assert!(lines.iter().any(|l| l.starts_with(prefix.as_str())), "missing {prefix:?} in:\n{stdout}");
    }
    assert_eq!(lines.len(), 5, "exactly the four errors and the warning:\n{stdout}");
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
fn validate_types_every_setting_and_lists_the_ones_it_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.yaml");
    std::fs::write(
        &path,
        r#"name: Settings
type: llm-proxy
config:
  model_list:
    - model_name: m
      litellm_params: {model: gpt-4o, mock_response: hi}
  litellm_settings:
    cooldown_time: "five"
    num_retries: -1
    success_callback: ["langfuse"]
  router_settings:
    routing_strategy: round-robin
    budget_duration: 30 days
    allowed_fails: 2
    enable_pre_call_checks: true
"#,
    )
    .unwrap();
    let f = path.to_str().unwrap();
    let (code, stdout, _) = run(&["validate", f]);
    assert_eq!(code, 1, "{stdout}");
    for expected in [
        format!("{f}: /config/litellm_settings/cooldown_time: expected null or number, got string"),
        format!("{f}: /config/router_settings/budget_duration: \"30 days\" does not match"),
        format!("{f}: /config/router_settings/routing_strategy: unknown value \"round-robin\""),
        format!("{f}: /config/litellm_settings/num_retries: -1 is less than the minimum of 0"),
        format!("{f}: /config/litellm_settings/success_callback: warning: litellm_settings.success_callback is not a setting ferrolite honours; it is ignored"),
        format!("{f}: /config/router_settings/enable_pre_call_checks: warning: "),
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(&expected)), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("allowed_fails"), "a setting of the right type is quiet:\n{stdout}");
}

#[test]
fn validate_output_json_reports_each_file_for_scripts() {
    let (code, stdout, _) =
        run(&["validate", "--output", "json", "tests/manifests/mock.yaml", "tests/manifests/broken.yaml"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["file"], "tests/manifests/mock.yaml");
    assert_eq!(report[0]["ok"], true);
    assert_eq!(report[1]["ok"], false);
    assert_eq!(report[1]["errors"].as_array().unwrap().len(), 4, "{stdout}");
    assert_eq!(report[1]["warnings"][0]["pointer"], "/config/model_list/2/litellm_params/model", "{stdout}");
    assert!(report[1]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["pointer"] == "/config/model_list/1/litellm_params/model"
            && e["message"] == "required property missing"));
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
    assert_eq!(&*claims.ws, "alice");
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

/// `ferrolite apps ARGS` against `server`, with its data dir's admin token.
fn apps(server: &ServeProcess, data_dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["apps", "--server", server.base.as_str(), "--data-dir", data_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

fn serve_on_a_free_port(dir: &std::path::Path) -> ServeProcess {
    ServeProcess::spawn(&["--port", "0"], dir)
}

#[test]
fn apps_start_waits_for_the_service_and_ps_shows_its_requests_and_spend() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on_a_free_port(dir.path());
    let (code, out, err) = apps(&server, dir.path(), &["install", "tests/manifests/mock.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("installed mock-proxy"), "{out}");
    let (code, out, err) = apps(&server, dir.path(), &["start", "mock-proxy"]);
    assert_eq!(code, 0, "{err}");
    let url = format!("{}/default/apps/mock-llm/v1", server.base);
    assert!(out.lines().any(|l| l == format!("service: {url}")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("session: ")), "{out}");

    let chat = json!({"model": "test-model", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _) = blocking_post(&format!("{url}/chat/completions"), &server.token, &chat);
    assert_eq!(status, 200);

    let (code, out, _) = apps(&server, dir.path(), &["ps"]);
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(header, ["APP", "SESSION", "SERVICE URL", "MODELS", "REQUESTS", "SPEND"], "{out}");
    let row: Vec<&str> = lines.find(|l| l.starts_with("mock-proxy")).unwrap().split_whitespace().collect();
    assert_eq!((row[2], row[3], row[4]), (url.as_str(), "test-model", "1"), "{out}");
    assert!(row[5].starts_with('$'), "{out}");

    let (code, out, _) = apps(&server, dir.path(), &["ps", "--output", "json"]);
    assert_eq!(code, 0);
    let sessions: Value = serde_json::from_str(&out).unwrap();
    let mock = sessions.as_array().unwrap().iter().find(|s| s["app_id"] == "mock-proxy").unwrap();
    assert_eq!((mock["url"].as_str(), mock["requests"].as_u64()), (Some(url.as_str()), Some(1)), "{out}");
    assert!(mock["spend"].is_number(), "{out}");

    let (code, out, _) = apps(&server, dir.path(), &["list", "-o", "json"]);
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(&out).unwrap().as_array().is_some(), "{out}");
}

#[test]
fn apps_errors_print_the_servers_message_and_exit_non_zero_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on_a_free_port(dir.path());
    for output in ["text", "json"] {
        let (code, out, err) = apps(&server, dir.path(), &["stop", "no-such-session", "--output", output]);
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(
            err.trim(),
            "ferrolite apps: session \"no-such-session\" is not running in this workspace",
            "{output}"
        );
    }
}

#[test]
fn apps_logs_follow_prints_new_lines_as_requests_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on_a_free_port(dir.path());
    let (_, out, _) = apps(&server, dir.path(), &["ps", "-o", "json"]);
    let sessions: Value = serde_json::from_str(&out).unwrap();
    let demo = sessions.as_array().unwrap().iter().find(|s| s["service_id"] == "demo").unwrap();
    let (session_id, url) = (demo["id"].as_str().unwrap(), demo["url"].as_str().unwrap());

    let mut follower = ferrolite()
        .args(["apps", "--server", &server.base, "--data-dir", dir.path().to_str().unwrap()])
        .args(["logs", session_id, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = BufReader::new(follower.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The follower is running (and has printed what was there) before the request is made.
    std::thread::sleep(Duration::from_millis(700));
    let chat = r#"{"model": "demo-chat", "messages": [{"role": "user", "content": "Hi"}]}"#;
    let answer = ureq_post_with_id(&format!("{url}/chat/completions"), &server.token, chat, "followed-request-1");
    assert!(answer.contains("Hello from ferrolite!"), "{answer}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("followed-request-1") => break true,
            Ok(line) => seen.push(line),
            Err(_) if Instant::now() > deadline => break false,
            Err(_) => {}
        }
    };
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(found, "the new request's line never came: {seen:#?}");
}

#[test]
fn serve_log_format_json_writes_one_json_object_per_line_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::spawn_with_env(
        &["--port", "0", "--log-format", "json"],
        dir.path(),
        &[("RUST_LOG", "ferrolite=debug")],
    );
    let url = server.services[0].clone();
    let chat = r#"{"model": "demo-chat", "messages": [{"role": "user", "content": "Hi"}]}"#;
    ureq_post_with_id(&format!("{url}/chat/completions"), &server.token, chat, "json-logged-1");
    std::thread::sleep(Duration::from_millis(200));
    let _ = server.child.kill();
    let _ = server.child.wait();
    let stderr = server.stderr();
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["span"]["id"] == "json-logged-1" && l["span"]["name"] == "request"),
        "no line of the request's span: {stderr}"
    );
}

/// Out-of-range connection settings are refused before anything starts, naming the flag.
#[test]
fn serve_refuses_connection_settings_out_of_range() {
    for (flag, value, says) in [
        ("--io-threads", "5000", "5000 is not in 0..=1024"),
        ("--header-read-timeout", "0", "expected seconds above 0"),
        ("--header-read-timeout", "NaN", "expected seconds above 0"),
        ("--overload-hold", "61", "expected seconds from 0 to 60"),
        ("--overload-hold", "NaN", "expected seconds from 0 to 60"),
        ("--upstream-http2-streams", "0", "0 is not in 1..=10000"),
        ("--upstream-http2-streams", "10001", "10001 is not in 1..=10000"),
        ("--upstream-http2", "sometimes", "expected streams, always or never"),
    ] {
        let (code, _, err) = run(&["serve", "--port", "0", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(says), "{flag} {value}: {err}");
    }
}

/// The served process has transparent huge pages off: with them, khugepaged grew mimalloc's
/// arena by whole 2 MiB pages under steady load (the benchmark soak's RSS step).
#[test]
#[cfg(target_os = "linux")]
fn serve_runs_with_transparent_huge_pages_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::spawn(&["--port", "0"], dir.path());
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let thp = status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(str::trim);
    assert_eq!(thp, Some("0"), "{status}");
}

#[test]
fn serve_otlp_endpoint_without_the_feature_says_how_to_get_it() {
    if cfg!(feature = "otlp") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = ferrolite()
        .args(["serve", "--port", "0", "--otlp-endpoint", "http://127.0.0.1:4318/v1/traces"])
        .env("FERROLITE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built without the `otlp` feature"), "{err}");
}

#[test]
fn completions_print_a_script_for_each_shell() {
    let (code, out, err) = run(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("_ferrolite()") && out.contains("complete -F _ferrolite"), "{out}");
    for shell in ["zsh", "fish"] {
        let (code, out, _) = run(&["completions", shell]);
        assert_eq!(code, 0);
        assert!(out.contains("ferrolite") && out.contains("apps"), "{shell}: {out}");
    }
}

/// A blocking POST with an `x-request-id`.
fn ureq_post_with_id(url: &str, token: &str, body: &str, id: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], id);
        response.text().await.unwrap()
    })
}

#[test]
fn validate_takes_a_litellm_config_as_serve_does_and_names_what_it_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        r#"model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY, tpm: 20_000, rpm: "60"}
litellm_settings:
  drop_params: yes
  success_callback: ["langfuse"]
  cache: true
  cache_params: {type: redis, host: localhost, ttl: 60}
general_settings:
  master_key: sk-1234
  database_url: postgres://db/litellm
guardrails:
  - guardrail_name: pii
"#,
    )
    .unwrap();
    let f = path.to_str().unwrap();
    let (code, stdout, _) = run(&["validate", f]);
    assert_eq!(code, 0, "{stdout}");
    for expected in [
        format!("{f}: /config/litellm_settings/success_callback: warning: litellm_settings.success_callback is not a setting ferrolite honours; it is ignored (callbacks are not supported: traces go to --otlp-endpoint"),
        format!("{f}: /config/litellm_settings/cache_params/host: warning: cache_params.host is ignored: the redis cache uses the server's --redis-url"),
        format!("{f}: /config/general_settings/database_url: warning: "),
        format!("{f}: /config/guardrails: warning: guardrails is not a section ferrolite honours; it is ignored (guardrails are not supported)"),
        format!("{f}: OK (1 model name(s), 1 deployment(s))"),
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(&expected)), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("tpm") && !stdout.contains("drop_params"), "YAML 1.1 scalars are quiet:\n{stdout}");
    assert!(!stdout.contains("litellm_settings/cache:"), "the response cache is honoured:\n{stdout}");
}
