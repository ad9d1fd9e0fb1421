//! `ferrolite apps ...`: a client of a running server's server-apps controller.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the controller is and who is calling it.
#[derive(Debug, clap::Args)]
pub struct AppsArgs {
    /// The server's base URL.
    #[arg(long, env = "FERROLITE_SERVER", default_value = "http://127.0.0.1:9527")]
    pub server: String,
    /// A token; without one the data dir's admin token is used.
    #[arg(long, env = "FERROLITE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, env = "FERROLITE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The workspace to act on; `public` means the token's own.
    #[arg(long, default_value = "public")]
    pub workspace: String,
    #[command(subcommand)]
    pub command: AppsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// Install a manifest (JSON or YAML, or a litellm config.yaml).
    Install {
        file: PathBuf,
        #[arg(long)]
        overwrite: bool,
    },
    /// Start an installed app; prints the session and its service URL.
    Start { app_id: String },
    /// Stop a running session.
    Stop { session_id: String },
    /// List installed apps.
    List,
    /// List running sessions.
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
    },
    /// Stop an app's sessions and remove it.
    Uninstall { app_id: String },
    /// Set a workspace secret, for HYPHA_SECRET:KEY references.
    SetEnv { key: String, value: String },
    /// Show the workspace's secrets, masked.
    GetEnv { key: Option<String> },
}

pub fn run(args: AppsArgs) -> ExitCode {
    match call_and_print(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrolite apps: {message}");
            ExitCode::FAILURE
        }
    }
}

fn call_and_print(args: AppsArgs) -> Result<(), String> {
    let token = match args.token {
        Some(t) => t,
        None => {
            let dir = args.data_dir.unwrap_or_else(crate::server::default_data_dir);
            let path = dir.join(crate::server::ADMIN_TOKEN_FILE);
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| format!("no --token and no admin token at {}: {e}", path.display()))?
        }
    };
    let (function, kwargs) = match &args.command {
        AppsCommand::Install { file, overwrite } => {
            let source = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            ("install", json!({"source": source, "overwrite": overwrite}))
        }
        AppsCommand::Start { app_id } => ("start", json!({"app_id": app_id})),
        AppsCommand::Stop { session_id } => ("stop", json!({"session_id": session_id})),
        AppsCommand::List => ("list_apps", json!({})),
        AppsCommand::Ps => ("list_running", json!({})),
        AppsCommand::Logs { session_id, kind, offset, limit } => {
            ("get_logs", json!({"session_id": session_id, "type": kind, "offset": offset, "limit": limit}))
        }
        AppsCommand::Uninstall { app_id } => ("uninstall", json!({"app_id": app_id})),
        AppsCommand::SetEnv { key, value } => ("set_env", json!({"key": key, "value": value})),
        AppsCommand::GetEnv { key } => ("get_env", json!({"key": key})),
    };
    let url = format!("{}/{}/services/server-apps/{function}", args.server.trim_end_matches('/'), args.workspace);
    let result = post(&url, &token, &kwargs)?;
    match &args.command {
        AppsCommand::Ps => print_table(&result, &["id", "app_id", "url", "models"]),
        AppsCommand::List => print_table(&result, &["id", "name", "service_id", "models"]),
        AppsCommand::Logs { .. } => {
            for item in result["items"].as_array().into_iter().flatten() {
                println!("{}", item["content"].as_str().unwrap_or_default());
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&result).unwrap_or_default()),
    }
    Ok(())
}

fn post(url: &str, token: &str, kwargs: &Value) -> Result<Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(kwargs.to_string())
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|_| format!("{status}: {text}"))?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(value["error"]["message"].as_str().map(str::to_owned).unwrap_or(text))
        }
    })
}

/// Prints a list of objects as aligned columns.
fn print_table(rows: &Value, columns: &[&str]) {
    let cell = |row: &Value, c: &str| match &row[c] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> =
        rows.as_array().into_iter().flatten().map(|r| columns.iter().map(|c| cell(r, c)).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].len()).chain(Some(c.len())).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<String>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    println!("{}", line(columns.iter().map(|c| c.to_uppercase()).collect()));
    for row in rows {
        println!("{}", line(row));
    }
}
