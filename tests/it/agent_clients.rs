//! Real agent frameworks against ferrolite, on a Claude deployment behind the Anthropic fake:
//! the OpenAI Agents SDK (Python, `openai-agents` pinned in tests/python/requirements.txt)
//! through the Responses API and chat completions, and the Codex CLI (`@openai/codex` pinned in
//! tests/node/package-lock.json) running one shell command through the Responses API. Both are
//! installed by scripts/test.sh; without them these tests fail loudly.

use crate::fake_anthropic::{last_tool_results, FakeAnthropic, Scripted};
use crate::support::{repo_root, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The `tool_result` blocks the fake received, across every request.
fn tool_results_seen(anthropic: &FakeAnthropic) -> Vec<String> {
    anthropic.requests().iter().flat_map(last_tool_results).collect()
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

/// `tests/node/node_modules/.bin/codex`, which `npm ci` installs with its platform binary.
fn codex_bin() -> PathBuf {
    let bin = repo_root().join("tests/node/node_modules/.bin/codex");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with scripts/test.sh, which runs `npm ci` in tests/node",
        bin.display()
    );
    bin
}

/// A CODEX_HOME config: one provider (ferrolite's Responses API, the key from an env var), no
/// approvals and no sandbox (the command is the test's own; Codex's bubblewrap sandbox does work
/// here, but it is Codex's concern, not the gateway's, and would only add a way to fail), and
/// everything that would reach the internet off: update checks, analytics, feedback, the plugin
/// marketplace sync (a `git ls-remote` of github.com/openai/plugins at startup), apps, remote
/// models, web search, websockets. Memories and the login-shell snapshot are off too, to keep the
/// run to the turn's own two requests and the command to a plain `bash -c`. Under strace this
/// config makes one connection: to ferrolite. `--strict-config` makes Codex refuse a key it does
/// not know, so none of this rots silently when the pin moves.
fn codex_config(base_url: &str) -> String {
    format!(
        r#"model = "claude"
model_provider = "ferrolite"
approval_policy = "never"
sandbox_mode = "danger-full-access"
allow_login_shell = false
check_for_update_on_startup = false
web_search = "disabled"

[analytics]
enabled = false

[feedback]
enabled = false

[history]
persistence = "none"

[features]
plugins = false
remote_plugin = false
apps = false
remote_models = false
memories = false
shell_snapshot = false
responses_websockets = false
responses_websockets_v2 = false

[model_providers.ferrolite]
name = "ferrolite"
base_url = "{base_url}"
env_key = "FERROLITE_CODEX_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"#
    )
}

/// What Codex's shell tool is asked to run: the shell must evaluate it (the arithmetic), and it
/// leaves a file behind.
const COMMAND: &str = "printf 'ferrolite-%s' $((6*7)) | tee codex-proof.txt";
const PROOF: &str = "ferrolite-42";

#[tokio::test(flavor = "multi_thread")]
async fn codex_exec_runs_a_shell_command_on_claude_through_responses() {
    let codex = codex_bin();
    let dir = tempfile::tempdir().unwrap();
    // The fake calls Codex's shell tool first, then reports what the tool returned.
    let anthropic = FakeAnthropic::start_scripted(ANTHROPIC_KEY, |body| match last_tool_results(body) {
        results if results.is_empty() => {
            Scripted::ToolUse { name: "exec_command".into(), input: json!({"cmd": COMMAND}) }
        }
        results => Scripted::Text(format!("The command printed: {}", results.join("; "))),
    })
    .await;
    let server = claude_app(&anthropic, dir.path()).await;

    let (home, work) = (dir.path().join("codex-home"), dir.path().join("work"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(home.join("config.toml"), codex_config(&server.demo_url("/v1"))).unwrap();
    let last_message = dir.path().join("last-message.txt");
    let token = server.token.clone();
    let (cwd, last) = (work.clone(), last_message.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&codex)
            .args(["exec", "--strict-config", "--skip-git-repo-check", "--ephemeral", "--json", "--color", "never"])
            .arg("-C")
            .arg(&cwd)
            .arg("-o")
            .arg(&last)
            .arg("Print the proof with the shell.")
            .current_dir(&cwd)
            .env("CODEX_HOME", &home)
            .env("HOME", &home)
            .env("FERROLITE_CODEX_KEY", token)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run codex (needs node): {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let requests = anthropic.requests();
    assert!(
        output.status.success(),
        "codex exec failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nthe fake received:\n{requests:#?}"
    );

    // Codex offered its shell tool, `exec_command` with a `cmd` string, through the bridge.
    let first = &requests[0];
    let shell = first["tools"].as_array().unwrap().iter().find(|t| t["name"] == "exec_command");
    let shell = shell.unwrap_or_else(|| panic!("no exec_command among the tools: {}", first["tools"]));
    assert_eq!(shell["input_schema"]["required"], json!(["cmd"]), "{shell}");
    assert_eq!(shell["input_schema"]["properties"]["cmd"]["type"], "string", "{shell}");

    // The command ran in a shell in the work dir and its output came back as the tool result.
    assert_eq!(std::fs::read_to_string(work.join("codex-proof.txt")).unwrap(), PROOF);
    let results = tool_results_seen(&anthropic);
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].contains(PROOF), "the tool result: {}", results[0]);
    assert_eq!(requests.len(), 2, "{requests:#?}");

    // Codex reports the command and ends with the fake's final text.
    let events: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let command = events
        .iter()
        .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "command_execution")
        .unwrap_or_else(|| panic!("no command_execution item in\n{stdout}"));
    assert_eq!(command["item"]["exit_code"], 0, "{command}");
    assert!(command["item"]["aggregated_output"].as_str().unwrap_or_default().contains(PROOF), "{command}");
    let last_text = std::fs::read_to_string(&last_message).unwrap();
    assert!(last_text.starts_with("The command printed: ") && last_text.contains(PROOF), "{last_text}");
    assert!(events.iter().any(|e| e["type"] == "turn.completed"), "{stdout}");
}
