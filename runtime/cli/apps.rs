//! `ferrolite apps ...`: a client of a running server's server-apps controller, for people
//! (tables, a spinner while a service comes up, `logs -f`) and for scripts (`--output json`).
//! A failed call prints the server's own message and exits 1.

use clap::ValueEnum;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the controller is and who is calling it: what every client command of the controller
/// (`apps`, `spend`) takes.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The server's base URL.
    #[arg(long, global = true, env = "FERROLITE_SERVER", default_value = "http://127.0.0.1:9527")]
    pub server: String,
    /// A token; without one the data dir's admin token is used.
    #[arg(long, global = true, env = "FERROLITE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, global = true, env = "FERROLITE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct AppsArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The workspace to act on; `public` means the token's own.
    #[arg(long, default_value = "public")]
    pub workspace: String,
    /// `text` for people, `json` for scripts (the controller's answers as they are).
    #[arg(long, short, value_enum, global = true, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: AppsCommand,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// Install a manifest (JSON or YAML, or a litellm config.yaml).
    Install {
        file: PathBuf,
        #[arg(long)]
        overwrite: bool,
    },
    /// Start an installed app, wait until its service answers, and print its URL.
    Start {
        app_id: String,
        /// Seconds to wait for the service to answer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Stop a running session.
    Stop { session_id: String },
    /// List installed apps.
    List,
    /// Running sessions: app, session, service URL, models, requests and spend.
    Ps,
    /// Print a session's log.
    Logs {
        session_id: String,
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long)]
        limit: Option<usize>,
        /// Keep printing new lines as they come (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop an app's sessions and remove it.
    Uninstall { app_id: String },
    /// Set a workspace secret, for HYPHA_SECRET:KEY references.
    SetEnv { key: String, value: String },
    /// Show the workspace's secrets, masked.
    GetEnv { key: Option<String> },
}

/// How often `logs -f` asks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

pub fn run(args: AppsArgs) -> ExitCode {
    match Client::new(&args).and_then(|client| client.run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrolite apps: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One runtime and connection pool for all the calls a command makes.
pub(super) struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    workspace: String,
    token: String,
    output: Output,
}

impl Client {
    fn new(args: &AppsArgs) -> Result<Client, String> {
        Client::connect(&args.connection, &args.workspace, args.output)
    }

    /// A client of the controller of `workspace` at `connection`'s server.
    pub(super) fn connect(connection: &Connection, workspace: &str, output: Output) -> Result<Client, String> {
        let token = match &connection.token {
            Some(t) => t.clone(),
            None => {
                let dir = connection.data_dir.clone().unwrap_or_else(crate::server::default_data_dir);
                let path = dir.join(crate::server::ADMIN_TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| format!("no --token and no admin token at {}: {e}", path.display()))?
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        Ok(Client {
            runtime,
            http: reqwest::Client::new(),
            base: connection.server.trim_end_matches('/').to_owned(),
            workspace: workspace.to_owned(),
            token,
            output,
        })
    }

    fn run(&self, args: &AppsArgs) -> Result<(), String> {
        match &args.command {
            AppsCommand::Install { file, overwrite } => {
                let source = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
                let app = self.call("install", json!({"source": source, "overwrite": overwrite}))?;
                match self.output {
                    Output::Json => print_json(&app),
                    Output::Text => println!("installed {} ({})", text(&app["id"]), text(&app["name"])),
                }
            }
            AppsCommand::Start { app_id, timeout } => self.start(app_id, Duration::from_secs(*timeout))?,
            AppsCommand::Stop { session_id } => {
                let stopped = self.call("stop", json!({"session_id": session_id}))?;
                match self.output {
                    Output::Json => print_json(&stopped),
                    Output::Text => println!("stopped {session_id}"),
                }
            }
            AppsCommand::List => {
                let apps = self.call("list_apps", json!({}))?;
                match self.output {
                    Output::Json => print_json(&apps),
                    Output::Text => {
                        let rows = rows(&apps, |a| {
                            vec![text(&a["id"]), text(&a["name"]), text(&a["service_id"]), text(&a["models"])]
                        });
                        print_table(&["APP", "NAME", "SERVICE", "MODELS"], &rows);
                    }
                }
            }
            AppsCommand::Ps => self.ps()?,
            AppsCommand::Logs { session_id, kind, offset, limit, follow } => {
                self.logs(session_id, kind.as_deref(), *offset, *limit, *follow)?
            }
            AppsCommand::Uninstall { app_id } => {
                let gone = self.call("uninstall", json!({"app_id": app_id}))?;
                match self.output {
                    Output::Json => print_json(&gone),
                    Output::Text => println!("uninstalled {app_id}"),
                }
            }
            AppsCommand::SetEnv { key, value } => {
                let set = self.call("set_env", json!({"key": key, "value": value}))?;
                match self.output {
                    Output::Json => print_json(&set),
                    Output::Text => println!("set {key}"),
                }
            }
            AppsCommand::GetEnv { key } => {
                let entries = self.call("get_env", json!({"key": key}))?;
                match self.output {
                    Output::Json => print_json(&entries),
                    Output::Text => {
                        print_table(&["KEY", "VALUE"], &rows(&entries, |e| vec![text(&e["key"]), text(&e["value"])]))
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts the app, then waits (spinner on a terminal) until its service lists its models.
    fn start(&self, app_id: &str, timeout: Duration) -> Result<(), String> {
        let session = self.call("start", json!({"app_id": app_id}))?;
        let url = text(&session["url"]);
        self.wait_for_service(&url, timeout)?;
        match self.output {
            Output::Json => print_json(&session),
            Output::Text => {
                println!("session: {}", text(&session["id"]));
                println!("service: {url}");
                println!("models:  {}", text(&session["models"]));
            }
        }
        Ok(())
    }

    fn wait_for_service(&self, url: &str, timeout: Duration) -> Result<(), String> {
        const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        let spin = std::io::stderr().is_terminal();
        let deadline = Instant::now() + timeout;
        let mut frame = 0;
        let result = loop {
            let answered = self.runtime.block_on(async {
                let response = self.http.get(format!("{url}/models")).bearer_auth(&self.token).send().await;
                response.map(|r| r.status().is_success()).unwrap_or(false)
            });
            if answered {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(format!("the service at {url} did not answer within {}s", timeout.as_secs()));
            }
            if spin {
                eprint!("\r{} waiting for {url}", FRAMES[frame % FRAMES.len()]);
                let _ = std::io::stderr().flush();
                frame += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if spin && frame > 0 {
            eprint!("\r\x1b[2K");
        }
        result
    }

    /// Running sessions with their traffic and spend (from `get_usage`).
    fn ps(&self) -> Result<(), String> {
        let sessions = self.call("list_running", json!({}))?;
        let mut out = Vec::new();
        for session in sessions.as_array().into_iter().flatten() {
            let id = text(&session["id"]);
            // A session stopped between the two calls just shows no figures.
            let usage = self.call("get_usage", json!({"session_id": id})).unwrap_or(Value::Null);
            let requests: u64 =
                usage["deployments"].as_array().into_iter().flatten().filter_map(|d| d["requests"].as_u64()).sum();
            let mut row = session.clone();
            row["requests"] = json!(requests);
            row["spend"] = usage["spend"].clone();
            out.push(row);
        }
        let out = Value::Array(out);
        match self.output {
            Output::Json => print_json(&out),
            Output::Text => {
                let rows = rows(&out, |s| {
                    let spend = s["spend"].as_f64().map(|v| format!("${v:.6}")).unwrap_or_else(|| "-".into());
                    vec![
                        text(&s["app_id"]),
                        text(&s["id"]),
                        text(&s["url"]),
                        text(&s["models"]),
                        text(&s["requests"]),
                        spend,
                    ]
                });
                print_table(&["APP", "SESSION", "SERVICE URL", "MODELS", "REQUESTS", "SPEND"], &rows);
            }
        }
        Ok(())
    }

    /// Prints a page of the log; with `follow`, keeps asking for lines past the last one seen.
    fn logs(
        &self,
        session_id: &str,
        kind: Option<&str>,
        mut offset: usize,
        limit: Option<usize>,
        follow: bool,
    ) -> Result<(), String> {
        loop {
            let page = self
                .call("get_logs", json!({"session_id": session_id, "type": kind, "offset": offset, "limit": limit}))?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            offset += items.len();
            let mut stdout = std::io::stdout().lock();
            match (self.output, follow) {
                // Followed JSON is one item per line, so a script can read it as it comes.
                (Output::Json, true) => {
                    for item in &items {
                        let _ = writeln!(stdout, "{item}");
                    }
                }
                (Output::Json, false) => print_json(&page),
                (Output::Text, _) => {
                    for item in &items {
                        let _ = writeln!(stdout, "{}", item["content"].as_str().unwrap_or_default());
                    }
                }
            }
            let _ = stdout.flush();
            if !follow {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_INTERVAL);
        }
    }

    /// Calls a controller function; a failure is the server's own error message.
    pub(super) fn call(&self, function: &str, kwargs: Value) -> Result<Value, String> {
        let url = format!("{}/{}/services/server-apps/{function}", self.base, self.workspace);
        self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .header("content-type", "application/json")
                .body(kwargs.to_string())
                .send()
                .await
                .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| format!("{function}: {e}"))?;
            let value: Value = serde_json::from_str(&body).map_err(|_| format!("{function}: {status}: {body}"))?;
            if status.is_success() {
                Ok(value)
            } else {
                Err(value["error"]["message"].as_str().map(str::to_owned).unwrap_or(body))
            }
        })
    }
}

pub(super) fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// A cell: strings as they are, lists joined by commas, nothing as `-`.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(super) fn rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().into_iter().flatten().map(row).collect()
}

/// Prints rows as aligned columns under a header.
pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain(Some(h.len())).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    println!("{}", line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>()));
    for row in rows {
        println!("{}", line(row));
    }
}
