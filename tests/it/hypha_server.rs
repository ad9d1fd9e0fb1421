//! A real Hypha server for one test: moto (its S3 stand-in) and `python -m hypha.server` with
//! server-apps on free loopback ports, a fixed JWT secret and a root token, both killed on drop.
//!
//! The interpreter comes from FERROLITE_HYPHA_PYTHON, a virtualenv of its own that
//! scripts/test.sh fills with the pinned server. Without it the test fails loudly.

use crate::support::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The root token the server starts with: at least 32 characters, and none of the words Hypha
/// refuses in a short root token ("root", "test", "123", ...).
pub const ROOT_TOKEN: &str = "Jq7vRk2mPz9wLt4nBc8yHd6jFs3gKe5uWx";
/// `HYPHA_JWT_SECRET`: fixed, so a test could sign or check Hypha tokens itself.
pub const JWT_SECRET: &str = "ferrolite-hypha-worker-tests-jwt-key";

/// How long Hypha may take to answer its readiness probe (about 2 s on 2 cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct HyphaServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    s3_port: u16,
    hypha: Child,
    moto: Child,
    dir: tempfile::TempDir,
}

fn python() -> String {
    std::env::var("FERROLITE_HYPHA_PYTHON").unwrap_or_else(|_| {
        panic!("FERROLITE_HYPHA_PYTHON is not set: run the tests with scripts/test.sh, which installs the pinned Hypha server into a virtualenv")
    })
}

fn log_file(dir: &tempfile::TempDir, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join(name)).expect("log file")
}

/// `python -m hypha.server` with server-apps, its S3 on moto at `s3_port`.
fn spawn_hypha(dir: &tempfile::TempDir, port: u16, s3_port: u16) -> Child {
    let python = python();
    let s3 = format!("http://127.0.0.1:{s3_port}");
    Command::new(&python)
        .args(["-m", "hypha.server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--enable-server-apps", "--enable-s3"])
        .arg(format!("--endpoint-url={s3}"))
        .arg(format!("--endpoint-url-public={s3}"))
        .args(["--access-key-id=testing", "--secret-access-key=testing", "--region-name=us-east-1"])
        .arg(format!("--root-token={ROOT_TOKEN}"))
        .env("HYPHA_JWT_SECRET", JWT_SECRET)
        // Hypha keeps its database in a temporary file: in the test's own directory, removed with
        // it, rather than left behind in /tmp by every run.
        .env("TMPDIR", dir.path())
        .current_dir(dir.path())
        .stdout(log_file(dir, "hypha.out"))
        .stderr(log_file(dir, "hypha.log"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} -m hypha.server: {e}"))
}

impl HyphaServer {
    /// Starts moto and Hypha and waits until Hypha answers `/health/readiness`.
    pub async fn start() -> HyphaServer {
        let python = python();
        let bin = PathBuf::from(&python).parent().expect("the venv's bin dir").to_owned();
        let dir = tempfile::tempdir().expect("temp dir");
        let (s3_port, port) = (free_port(), free_port());
        let moto = Command::new(bin.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
            .env("TMPDIR", dir.path())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "moto.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run moto_server of {python}: {e}"));
        let hypha = spawn_hypha(&dir, port, s3_port);
        let server = HyphaServer { url: format!("http://127.0.0.1:{port}"), port, s3_port, hypha, moto, dir };
        server.wait_ready().await;
        server
    }

    /// Kills Hypha and starts it again on the same port (its state, in memory, is gone).
    pub async fn restart(&mut self) {
        let _ = self.hypha.kill();
        let _ = self.hypha.wait();
        self.hypha = spawn_hypha(&self.dir, self.port, self.s3_port);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::builder().no_proxy().build().expect("http client");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let probe = client.get(format!("{}/health/readiness", self.url)).send().await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "Hypha did not become ready:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What Hypha wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hypha.log")).unwrap_or_default()
    }
}

impl Drop for HyphaServer {
    fn drop(&mut self) {
        for child in [&mut self.hypha, &mut self.moto] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
