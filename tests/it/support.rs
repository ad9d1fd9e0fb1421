//! Shared test helpers: an in-process server on an ephemeral port, and a small HTTP client.

use ferrolite::server::{self, RunningServer, ServerConfig};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
        // The fakes live on loopback: tests allow private upstreams explicitly.
        config.allow_private_upstreams = true;
        tweak(&mut config);
        let running = server::start(config).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        let token = running.token.clone();
        TestServer { running, base, token, client: reqwest::Client::new(), _data_dir: data_dir }
    }

    /// `http://addr/default/apps/demo` + path.
    pub fn demo_url(&self, path: &str) -> String {
        format!("{}/default/apps/demo{path}", self.base)
    }

    /// The server's data dir (removed when the server is dropped).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    pub fn token_for(&self, workspace: &str) -> String {
        self.running.state.tokens.issue(workspace, false, std::time::Duration::from_secs(600))
    }

    /// POSTs JSON with this server's token; the response as it comes (streams included).
    pub async fn post(&self, url: impl reqwest::IntoUrl, body: &Value) -> reqwest::Response {
        self.client
            .post(url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> (u16, Value) {
        read_json(self.post(url, body).await).await
    }

    pub async fn get_json_with(&self, url: &str, token: &str) -> (u16, Value) {
        let response = self.client.get(url).bearer_auth(token).send().await.expect("request sent");
        read_json(response).await
    }

    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let response = self.client.get(url).bearer_auth(&self.token).send().await.expect("request sent");
        read_json(response).await
    }
}

impl TestServer {
    /// Calls a server-apps function as `token` would.
    pub async fn controller(&self, workspace: &str, token: &str, function: &str, kwargs: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/{workspace}/services/server-apps/{function}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(kwargs.to_string())
            .send()
            .await
            .expect("request sent");
        read_json(response).await
    }

    /// `controller` that must succeed.
    pub async fn ok(&self, workspace: &str, token: &str, function: &str, kwargs: Value) -> Value {
        let (status, body) = self.controller(workspace, token, function, kwargs).await;
        assert_eq!(status, 200, "{function} failed: {body}");
        body
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
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_owned))
        .collect()
}

/// The chunks of the captured OpenAI chat stream (`tests/fixtures/openai-chat-completion-stream.sse`).
pub fn fixture_chat_chunks() -> Vec<ferrolite::api::openai::ChatChunk> {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/openai-chat-completion-stream.sse"))
        .expect("the captured chat stream");
    sse_data(&text).into_iter().filter(|d| d != "[DONE]").map(|d| serde_json::from_str(&d).expect("a chunk")).collect()
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `ferrolite serve` process and what its banner said.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub services: Vec<String>,
    pub token: String,
    pub admin_token: Option<String>,
    pub base: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl ServeProcess {
    /// Runs the real binary with `args` (after `serve`) and waits for its banner.
    pub fn spawn(args: &[&str], data_dir: &std::path::Path) -> ServeProcess {
        ServeProcess::spawn_with_env(args, data_dir, &[])
    }

    /// `spawn` with extra environment variables (`RUST_LOG`, ...).
    pub fn spawn_with_env(args: &[&str], data_dir: &std::path::Path, env: &[(&str, &str)]) -> ServeProcess {
        use std::io::{BufRead, BufReader};
        // stderr goes to a file: a pipe nobody reads would stall a chatty server once full.
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = data_dir.join("serve-stderr.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolite"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .env("FERROLITE_DATA_DIR", data_dir)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("binary starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (mut services, mut token, mut admin_token, mut base) = (Vec::new(), String::new(), None, String::new());
        let mut line = String::new();
        // The banner ends with a "try:" example.
        while !line.starts_with("try:") {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("`ferrolite serve {}` printed no banner: {err}", args.join(" "));
            }
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("ferrolite ").and_then(|r| r.split_once(" listening on ")) {
                base = rest.1.to_owned();
            } else if let Some(rest) = l.strip_prefix("service: ") {
                services.push(rest.split_whitespace().next().unwrap_or_default().to_owned());
            } else if let Some(rest) = l.strip_prefix("token: ") {
                token = rest.trim().to_owned();
            } else if let Some((_, t)) = l.strip_prefix("admin token (also in ").and_then(|r| r.split_once("): ")) {
                admin_token = Some(t.to_owned());
            }
        }
        ServeProcess { child, services, token, admin_token, base, log }
    }
}

impl ServeProcess {
    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Rate limits count per wall-clock minute (as litellm's do), so a test that spends a minute's
/// allowance and then expects a refusal would pass its limit in two minutes when one ends
/// midway. Called just before such a step: when the minute has under 15 s left, waits it out.
pub async fn inside_a_minute() {
    if let Some(wait) = rest_of_a_closing_minute() {
        tokio::time::sleep(wait).await;
    }
}

/// [`inside_a_minute`] for tests outside an async runtime.
pub fn inside_a_minute_blocking() {
    if let Some(wait) = rest_of_a_closing_minute() {
        std::thread::sleep(wait);
    }
}

/// Runs `check` until one run of it starts and ends in the same wall-clock minute (at most three
/// runs), for a check with no effects outside its own state whose figures live in the minute's
/// window: under a loaded machine a run can outlast the margin [`inside_a_minute_blocking`]
/// leaves, and the window's figures reset midway. A failure within one minute is the check's own
/// and propagates. The minute is read off the coarse clock, the one the windows count by.
pub fn within_one_minute<R>(mut check: impl FnMut() -> R) -> R {
    let minute = || ferrolite::clock::coarse_ms() / 60_000;
    inside_a_minute_blocking();
    for _ in 0..3 {
        let started = minute();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut check));
        if minute() == started {
            return result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
    }
    panic!("three runs of the check each crossed a minute's end")
}

fn rest_of_a_closing_minute() -> Option<Duration> {
    let into = ferrolite::clock::now_ms() % 60_000;
    (into > 45_000).then(|| Duration::from_millis(60_000 - into + 100))
}

/// A loopback port nothing listens on, held while this lives: bound but not listening, so a
/// connection is refused, and no other socket can take the port meanwhile. (A port that was
/// merely free a moment ago can be another test's listener by the time it is dialled.)
pub struct DeadPort(tokio::net::TcpSocket);

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.bind(([127, 0, 0, 1], 0).into()).expect("a loopback port");
        DeadPort(socket)
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        let port = self.0.local_addr().expect("a bound socket").port();
        format!("http://127.0.0.1:{port}{path}")
    }
}

/// Runs `ferrolite ARGS` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrolite"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A blocking JSON POST for tests outside an async runtime.
pub fn blocking_post(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent");
        read_json(response).await
    })
}

/// A typed wire body as the JSON a client or upstream sees.
pub fn wire<T: serde::Serialize>(body: T) -> Value {
    serde_json::to_value(body).expect("wire bodies serialise")
}

/// Typed wire bodies as JSON, in order.
pub fn wires<T: serde::Serialize>(bodies: Vec<T>) -> Vec<Value> {
    bodies.into_iter().map(wire).collect()
}

/// A throwaway redis-server on a free loopback port.
pub struct Redis {
    child: std::process::Child,
    pub url: String,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): scripts/test.sh installs it (apt-get install redis-server)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, url: format!("redis://127.0.0.1:{port}"), port }
    }
}

impl Redis {
    /// A command's answer, from a connection of the test's own.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let mut conn = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
        cmd.query(&mut conn).unwrap()
    }

    /// SIGSTOP (`true`) or SIGCONT: Redis keeps its sockets open and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A value that fits a JSON schema (each object property present, the first of an enum, a
/// placeholder of each type): what the fakes answer a structured-output request with. Gemini's
/// upper-case type names are read as JSON Schema's.
pub fn schema_example(schema: &Value) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("object").to_ascii_lowercase();
    match kind.as_str() {
        "object" => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let members = properties.into_iter().flatten().map(|(name, sub)| (name.clone(), schema_example(sub)));
            Value::Object(members.collect())
        }
        "string" => Value::String("example".into()),
        "integer" => serde_json::json!(7),
        "number" => serde_json::json!(7.5),
        "boolean" => Value::Bool(true),
        "array" => Value::Array(vec![schema_example(schema.get("items").unwrap_or(&Value::Null))]),
        _ => Value::Null,
    }
}

/// SHA-256 of `text`, hex (what ferrolite keeps of an API key).
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A throwaway PostgreSQL server (Debian's, `FERROLITE_PG_BIN` or /usr/lib/postgresql/*/bin) on
/// a free loopback port, its cluster and socket in a temp dir, with one empty database. As
/// root, it runs as the `postgres` user: the server refuses root.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    root: bool,
    pub url: String,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::env::var_os("FERROLITE_PG_BIN").map(PathBuf::from).or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .filter(|bin| bin.join("postgres").exists())
                .collect();
            found.sort();
            found.pop()
        });
        let bin = bin.unwrap_or_else(|| {
            panic!("PostgreSQL is missing: scripts/test.sh installs it (apt-get install postgresql), FERROLITE_PG_BIN names its bin dir")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let uid = std::process::Command::new("id").arg("-u").output().expect("id -u").stdout;
        let root = String::from_utf8_lossy(&uid).trim() == "0";
        if root {
            let status = std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "cannot give the temp dir to the postgres user");
        }
        let port = free_port();
        let pg = Postgres { dir, bin, root, url: format!("postgres://postgres@127.0.0.1:{port}/ferrolite") };
        let data = pg.dir.path().join("data").display().to_string();
        let log = pg.dir.path().join("log").display().to_string();
        let options = format!("-p {port} -h 127.0.0.1 -k {} -F", pg.dir.path().display());
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        pg.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "start"]);
        pg.run("createdb", &["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "ferrolite"]);
        pg
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let path = self.bin.join(tool);
        let mut command = if self.root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        command.current_dir(self.dir.path());
        command
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{tool} failed: {stdout}{stderr}");
    }

    /// Stops the server (every connection to it broken) and starts it again on the same port.
    pub fn restart(&self) {
        let data = self.dir.path().join("data").display().to_string();
        // Its output goes to the log, or the server would hold the pipe `run` reads to the end.
        let log = self.dir.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-m", "fast", "-w", "restart"]);
    }

    /// A connection of the test's own.
    pub fn client(&self) -> ferrolite::store::postgres::PgClient {
        ferrolite::store::postgres::PgClient::connect(&self.url).expect("connects to postgres")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}
