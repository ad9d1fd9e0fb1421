//! Shared test helpers: an in-process server on an ephemeral port, and a small HTTP client.

use ferrolite::server::{self, RunningServer, ServerConfig};
use serde_json::Value;
use std::path::PathBuf;

/// A ferrolite server for one test, with its own data dir.
pub struct TestServer {
    pub running: RunningServer,
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

impl TestServer {
    /// The embedded default: the demo app of mock models in the default workspace.
    pub async fn demo() -> TestServer {
        TestServer::with_configs(Vec::new()).await
    }

    /// A server running the given manifest files in the default workspace.
    pub async fn with_configs(configs: Vec<PathBuf>) -> TestServer {
        TestServer::start(configs, |_| {}).await
    }

    /// A server with its config adjusted by `tweak` before it starts.
    pub async fn start(configs: Vec<PathBuf>, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServerConfig::new(data_dir.path().to_owned());
        config.port = 0;
        config.configs = configs;
        tweak(&mut config);
        let running = server::start(config).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        let token = running.token.clone();
        TestServer {
            running,
            base,
            token,
            client: reqwest::Client::new(),
            _data_dir: data_dir,
        }
    }

    /// `http://addr/default/apps/demo` + path.
    pub fn demo_url(&self, path: &str) -> String {
        format!("{}/default/apps/demo{path}", self.base)
    }

    pub fn token_for(&self, workspace: &str) -> String {
        self.running
            .state
            .tokens
            .issue(workspace, false, std::time::Duration::from_secs(600))
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent");
        read_json(response).await
    }

    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request sent");
        read_json(response).await
    }
}

pub async fn read_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body read");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
