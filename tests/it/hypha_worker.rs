//! ferrolite as the llm-proxy worker of a real Hypha server (tests/it/hypha_server.rs starts
//! one): the seed's Quick Start through the unmodified hypha-rpc client
//! (tests/python/hypha_worker_quick_start.py) installs, starts, chats through Hypha's URL and
//! through the service's functions, resolves a `HYPHA_SECRET:` from the workspace's env (the
//! fake upstream sees the key), reads the logs and stops, all served by a `ferrolite serve
//! --hypha-server` process; then ferrolite is killed (-9) while the app runs and started again,
//! and the app starts again cleanly; then Hypha restarts while the app runs, and once the
//! worker has reconnected and registered itself anew, all of it runs again.

use crate::fake_openai::FakeOpenAi;
use crate::hypha_server::{HyphaServer, ROOT_TOKEN};
use crate::support::{free_port, repo_root, ServeProcess};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The key the fake upstream accepts: the script keeps it in the Hypha workspace's env.
const UPSTREAM_KEY: &str = "sk-from-the-hypha-workspace-env";

fn python() -> String {
    std::env::var("FERROLITE_PYTHON").unwrap_or_else(|_| {
        panic!("FERROLITE_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python SDKs into a virtualenv")
    })
}

/// One run of the Quick Start script: it prints the worker's token first, then waits for a
/// ferrolite worker to register before it goes on.
struct QuickStart {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl QuickStart {
    /// `steps`: the script's optional steps (`KILL_STEP`, `LEAVE_RUNNING`) set to 1.
    fn start(hypha: &HyphaServer, dir: &Path, run: usize, native: &str, steps: &[&str]) -> QuickStart {
        let log = dir.join(format!("quick-start-{run}.log"));
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/hypha_worker_quick_start.py"))
            .env("HYPHA_SERVER_URL", &hypha.url)
            .env("HYPHA_ROOT_TOKEN", ROOT_TOKEN)
            .env("FERROLITE_NATIVE_URL", native)
            .env("UPSTREAM_KEY", UPSTREAM_KEY)
            .envs(steps.iter().map(|step| (*step, "1")))
            // websockets and urllib honour proxy variables; the server is on loopback.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the client venv's python runs");
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        QuickStart { child, stdin, stdout, log }
    }

    /// Reads the script's stdout up to the line `expected`; the script's output so far when it
    /// ends first.
    fn wait_for_line(&mut self, expected: &str) -> Result<(), String> {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = self.child.wait();
                let err = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("no {expected:?}\nstdout:\n{seen}\nstderr:\n{err}"));
            }
            if line.trim() == expected {
                return Ok(());
            }
            seen.push_str(&line);
        }
    }

    fn send_line(&mut self, line: &str) {
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }

    /// The `public` token root generated for the worker.
    fn worker_token(&mut self) -> String {
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        match line.trim().strip_prefix("worker token: ") {
            Some(token) => token.to_owned(),
            None => {
                let _ = self.child.kill();
                panic!("no worker token:\n{line}{}", std::fs::read_to_string(&self.log).unwrap_or_default())
            }
        }
    }

    /// Waits (60 s at most) for the script's end: its exit status and the rest of its stdout.
    async fn finish(self) -> Result<String, String> {
        let QuickStart { mut child, mut stdout, log, stdin } = self;
        drop(stdin);
        let pid = child.id();
        let waited = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || {
                let mut out = String::new();
                let _ = stdout.read_to_string(&mut out);
                (child.wait().map(|s| s.success()).unwrap_or(false), out)
            }),
        )
        .await;
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        match waited {
            Ok(Ok((true, out))) if out.contains("all checks passed") => Ok(out),
            Ok(Ok((_, out))) => Err(format!("stdout:\n{out}\nstderr:\n{err}")),
            _ => {
                let _ = Command::new("kill").arg(pid.to_string()).status();
                Err(format!("no end within 60 s\nstderr:\n{err}"))
            }
        }
    }
}

fn report(what: &str, error: &str, ferrolite: &ServeProcess, hypha: &HyphaServer) -> ! {
    panic!("{what}\n{error}\nferrolite:\n{}\nhypha:\n{}", ferrolite.stderr(), hypha.log())
}

#[tokio::test(flavor = "multi_thread")]
async fn hypha_runs_the_quick_start_on_ferrolite_as_its_llm_proxy_worker_across_restarts_of_both() {
    let mut hypha = HyphaServer::start().await;
    let upstream = FakeOpenAi::start(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_port().to_string();
    let native = format!("http://127.0.0.1:{port}");
    let mut first = QuickStart::start(&hypha, dir.path(), 1, &native, &["KILL_STEP", "LEAVE_RUNNING"]);
    let token = first.worker_token();
    let args = [
        "--port",
        port.as_str(),
        "--hypha-server",
        hypha.url.as_str(),
        "--hypha-token",
        token.as_str(),
        // The native URL takes the same Hypha tokens.
        "--hypha-jwt-secret",
        crate::hypha_server::JWT_SECRET,
        // The fake upstream is on loopback.
        "--allow-private-upstreams",
    ];
    let env = [("RUST_LOG", "info"), ("FAKE_OPENAI_BASE", upstream.base_url.as_str())];
    let mut ferrolite = ServeProcess::spawn_with_env(&args, &data, &env);
    if let Err(e) = first.wait_for_line("kill ferrolite now") {
        report("the Quick Start on Hypha failed", &e, &ferrolite, &hypha);
    }
    // The key came from the Hypha workspace's env (the fake answers no other).
    let asked = upstream.last("/v1/chat/completions").expect("the secret app called its upstream");
    assert_eq!(asked.headers.get("authorization").map(String::as_str), Some(&*format!("Bearer {UPSTREAM_KEY}")));

    // kill -9 while the app runs, and the same command again (same data dir, same client id).
    let _ = ferrolite.child.kill();
    let _ = ferrolite.child.wait();
    drop(ferrolite);
    ferrolite = ServeProcess::spawn_with_env(&args, &data, &env);
    first.send_line("restarted");
    if let Err(e) = first.finish().await {
        report("the Quick Start across ferrolite's kill -9 failed", &e, &ferrolite, &hypha);
    }

    // Hypha restarts with nothing in memory while the app runs: the app's session ends with its
    // connection (the next run finds it gone from the native URL), the worker reconnects (its
    // token, signed with the fixed JWT secret, still passes), registers again, and the Quick
    // Start runs again, the same service id included.
    hypha.restart().await;
    let mut again = QuickStart::start(&hypha, dir.path(), 2, &native, &[]);
    let _ = again.worker_token();
    if let Err(e) = again.finish().await {
        report("the Quick Start after Hypha's restart failed", &e, &ferrolite, &hypha);
    }
    let log = ferrolite.stderr();
    // The first process, the restarted one, and the restarted one again after Hypha's restart.
    assert_eq!(log.matches("connected to Hypha id=public/").count(), 3, "{log}");
    assert!(!log.contains("did not restart"), "{log}");
}
