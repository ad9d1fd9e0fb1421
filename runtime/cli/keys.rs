//! `ferrolite keys ...`: a workspace's API keys on a running server, through the controller's
//! key functions. `create` prints the key once; it cannot be shown again.

use super::apps::{print_json, print_table, rows, text, Client, Connection, Output};
use serde_json::{json, Map, Value};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The workspace to act on; `public` means the token's own.
    #[arg(long, default_value = "public")]
    pub workspace: String,
    /// `text` for people, `json` for scripts (the controller's answers as they are).
    #[arg(long, short, value_enum, global = true, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// A key's settings, as `create` and `update` take them.
#[derive(Debug, Default, clap::Args)]
pub struct KeySettings {
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// Whose key it is (a user's budget counts all of their keys).
    #[arg(long)]
    user: Option<String>,
    /// The models the key may call, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// US dollars the key may spend per budget duration (or in all).
    #[arg(long)]
    max_budget: Option<f64>,
    /// The budget's period: 30d, 7d, 24h ...
    #[arg(long)]
    budget_duration: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Requests at once.
    #[arg(long)]
    max_parallel: Option<u64>,
    /// Lifetime: 30d, 12h, 90m ...
    #[arg(long)]
    expires_in: Option<String>,
    /// key=value, repeatable.
    #[arg(long = "metadata")]
    metadata: Vec<String>,
    /// The app MCP servers the key reaches, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    mcp_servers: Option<Vec<String>>,
    /// The MCP tools the key may call, as {server}-{tool}, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    mcp_tools: Option<Vec<String>>,
}

impl KeySettings {
    /// The settings given, as the controller's keyword arguments (absent ones stay as they are).
    fn kwargs(&self) -> Map<String, Value> {
        let mut kwargs = Map::new();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                kwargs.insert(name.to_owned(), value);
            }
        };
        put("name", self.name.as_ref().map(|v| json!(v)));
        put("user", self.user.as_ref().map(|v| json!(v)));
        put("models", self.models.as_ref().map(|v| json!(v)));
        put("max_budget", self.max_budget.map(|v| json!(v)));
        put("budget_duration", self.budget_duration.as_ref().map(|v| json!(v)));
        put("rpm", self.rpm.map(|v| json!(v)));
        put("tpm", self.tpm.map(|v| json!(v)));
        put("max_parallel", self.max_parallel.map(|v| json!(v)));
        put("expires_in", self.expires_in.as_ref().map(|v| json!(v)));
        put("metadata", (!self.metadata.is_empty()).then(|| json!(self.metadata)));
        put("mcp_servers", self.mcp_servers.as_ref().map(|v| json!(v)));
        put("mcp_tools", self.mcp_tools.as_ref().map(|v| json!(v)));
        kwargs
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once: only its hash is kept).
    Create {
        #[command(flatten)]
        settings: KeySettings,
    },
    /// The workspace's keys: id, name, user, models, limits, status.
    List,
    /// One key's settings and standing.
    Info { key_id: String },
    /// Change a key's settings (those given; the others stay).
    Update {
        key_id: String,
        #[command(flatten)]
        settings: KeySettings,
    },
    /// Revoke a key: refused from now on, on every instance.
    Revoke { key_id: String },
    /// Set (or with no --max-budget clear) a user's budget (all their keys) or the workspace's.
    SetBudget {
        /// The user; without it, the workspace's budget.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        max_budget: Option<f64>,
        #[arg(long)]
        budget_duration: Option<String>,
    },
    /// The workspace's user and workspace budgets, and spend per key, user and workspace.
    Budgets,
}

pub fn run(args: KeysArgs) -> ExitCode {
    match Client::connect(&args.connection, &args.workspace, args.output).and_then(|client| execute(&client, &args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrolite keys: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(client: &Client, args: &KeysArgs) -> Result<(), String> {
    let answer = match &args.command {
        KeysCommand::Create { settings } => client.call("create_key", Value::Object(settings.kwargs()))?,
        KeysCommand::List => client.call("list_keys", json!({}))?,
        KeysCommand::Info { key_id } => client.call("key_info", json!({"key_id": key_id}))?,
        KeysCommand::Update { key_id, settings } => {
            let mut kwargs = settings.kwargs();
            kwargs.insert("key_id".into(), json!(key_id));
            client.call("update_key", Value::Object(kwargs))?
        }
        KeysCommand::Revoke { key_id } => client.call("revoke_key", json!({"key_id": key_id}))?,
        KeysCommand::SetBudget { user, max_budget, budget_duration } => client
            .call("set_budget", json!({"user": user, "max_budget": max_budget, "budget_duration": budget_duration}))?,
        KeysCommand::Budgets => client.call("list_budgets", json!({}))?,
    };
    if args.output == Output::Json {
        print_json(&answer);
        return Ok(());
    }
    match &args.command {
        KeysCommand::Create { .. } => {
            println!("{}", text(&answer["key"]));
            eprintln!(
                "created {} ({}): keep the key now, it is not shown again",
                text(&answer["id"]),
                text(&answer["name"])
            );
        }
        KeysCommand::List => {
            let rows = rows(&answer, |k| {
                vec![
                    text(&k["id"]),
                    text(&k["key_hint"]),
                    text(&k["name"]),
                    text(&k["user"]),
                    text(&k["models"]),
                    text(&k["max_budget"]),
                    text(&k["rpm"]),
                    text(&k["status"]),
                ]
            });
            print_table(&["ID", "KEY", "NAME", "USER", "MODELS", "BUDGET", "RPM", "STATUS"], &rows);
        }
        KeysCommand::Revoke { key_id } => println!("revoked {key_id}"),
        KeysCommand::Budgets => {
            let rows = rows(&answer["spend"], |s| {
                vec![text(&s["scope"]), text(&s["name"]), text(&s["spend"]), text(&s["reserved"])]
            });
            print_table(&["SCOPE", "NAME", "SPEND", "RESERVED"], &rows);
        }
        KeysCommand::SetBudget { .. } => print_json(&answer),
        KeysCommand::Info { .. } | KeysCommand::Update { .. } => print_json(&answer),
    }
    Ok(())
}
