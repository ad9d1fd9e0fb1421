//! `ferrolite spend logs ...`: a workspace's spend log on a running server, read through the
//! controller's `get_spend_logs`, as a table for people or as CSV or JSON for scripts. Values
//! are checked here first, so a bad one is named by its option.

use super::apps::{print_table, Client, Connection, Output};
use clap::ValueEnum;
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct SpendArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: SpendCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SpendCommand {
    /// One record per request served (who, which model and deployment, tokens, cost, status,
    /// latency), newest first.
    Logs(LogsArgs),
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The workspace to read; `public` means the token's own (an admin token may name any).
    #[arg(long, default_value = "public")]
    pub workspace: String,
    /// Only the last 30m, 1h, 7d, ... (instead of --start).
    #[arg(long, value_parser = parse_since, conflicts_with = "start")]
    pub since: Option<Duration>,
    /// From this time on: Unix seconds or RFC 3339 (2025-01-31T12:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub start: Option<String>,
    /// Before this time: Unix seconds or RFC 3339.
    #[arg(long, value_parser = parse_time)]
    pub end: Option<String>,
    /// Only this API key's requests (its id).
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// Only requests that asked for this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Only this app's requests (its app id or service id).
    #[arg(long)]
    pub app: Option<String>,
    /// A status code (429), a class (5xx) or an outcome (ok, error, client_disconnected).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<String>,
    /// Records to print, at most 1000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Where to go on from: the cursor the previous page ended with.
    #[arg(long)]
    pub cursor: Option<String>,
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    /// A header line, then one line per record with every field (`time` in RFC 3339).
    Csv,
    /// The controller's page as it is: `{"items": [...], "next_cursor": ...}`.
    Json,
}

/// A record's fields in the order the controller sends them: the CSV columns.
const FIELDS: &[&str] = &[
    "time",
    "request_id",
    "key_id",
    "user",
    "workspace",
    "app_id",
    "service_id",
    "model",
    "deployment",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "status",
    "outcome",
    "latency_ms",
];

pub fn run(args: SpendArgs) -> ExitCode {
    let SpendCommand::Logs(logs) = &args.command;
    let result = Client::connect(&args.connection, &logs.workspace, Output::Json).and_then(|client| {
        let page = client.call("get_spend_logs", Value::Object(arguments(logs)))?;
        print(&page, logs.output);
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrolite spend: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The `get_spend_logs` arguments of the options given.
fn arguments(logs: &LogsArgs) -> Map<String, Value> {
    let mut kwargs = Map::new();
    let since = logs.since.map(|d| {
        let start_ms = crate::clock::now_ms().saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        json!(start_ms as f64 / 1000.0)
    });
    let given = [
        ("start", since.or_else(|| logs.start.clone().map(Value::String))),
        ("end", logs.end.clone().map(Value::String)),
        ("key", logs.key.clone().map(Value::String)),
        ("user", logs.user.clone().map(Value::String)),
        ("model", logs.model.clone().map(Value::String)),
        ("app", logs.app.clone().map(Value::String)),
        ("status", logs.status.clone().map(Value::String)),
        ("limit", Some(json!(logs.limit))),
        ("cursor", logs.cursor.clone().map(Value::String)),
    ];
    for (name, value) in given {
        if let Some(value) = value {
            kwargs.insert(name.to_owned(), value);
        }
    }
    kwargs
}

fn print(page: &Value, format: Format) {
    let items = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(page).unwrap_or_default()),
        Format::Csv => {
            println!("{}", FIELDS.join(","));
            for item in items {
                let cells: Vec<String> = FIELDS.iter().map(|f| csv_cell(&item[*f])).collect();
                println!("{}", cells.join(","));
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(table_row).collect();
            let header =
                ["TIME", "REQUEST", "APP", "MODEL", "DEPLOYMENT", "KEY", "USER", "TOKENS", "COST", "STATUS", "MS"];
            print_table(&header, &rows);
        }
    }
    // The way on goes to stderr, so the CSV or table on stdout stays whole.
    if let (Some(cursor), Format::Csv | Format::Table) = (page["next_cursor"].as_str(), format) {
        eprintln!("more records: --cursor {cursor}");
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break; null empty.
fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn table_row(r: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let tokens = format!("{}/{}/{}", r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"]);
    let cost = r["cost"].as_f64().map_or_else(|| "-".into(), |c| format!("${c:.6}"));
    let status = format!("{} {}", r["status"], text(&r["outcome"]));
    let latency = r["latency_ms"].as_f64().map_or_else(|| "-".into(), |ms| format!("{ms:.1}"));
    vec![
        text(&r["time"]),
        text(&r["request_id"]),
        text(&r["app_id"]),
        text(&r["model"]),
        text(&r["deployment"]),
        text(&r["key_id"]),
        text(&r["user"]),
        tokens,
        cost,
        status,
        latency,
    ]
}

fn parse_since(text: &str) -> Result<Duration, String> {
    crate::router::spend::parse_duration(text)
        .ok_or_else(|| format!("{text:?}: expected a positive number with a unit: s, m, h, d or w (e.g. 1h)"))
}

fn parse_time(text: &str) -> Result<String, String> {
    match crate::clock::parse_instant(text) {
        Some(_) => Ok(text.to_owned()),
        None => Err(format!("{text:?}: expected Unix seconds or an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)")),
    }
}

fn parse_status(text: &str) -> Result<String, String> {
    text.parse::<crate::store::spend_logs::StatusFilter>().map(|_| text.to_owned()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observability::spend_log::{SpendOutcome, SpendRecord};

    #[test]
    fn csv_columns_are_the_fields_of_a_record_and_cells_are_quoted_when_needed() {
        let record = SpendRecord {
            at_ms: 0,
            request_id: "r".into(),
            key_id: None,
            user: None,
            workspace: "w".into(),
            app_id: "a".into(),
            service_id: "s".into(),
            model: None,
            deployment: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost: 0.0,
            status: 200,
            outcome: SpendOutcome::Ok,
            latency_ms: 0.0,
        };
        let json = serde_json::to_value(record).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, FIELDS);
        assert_eq!(csv_cell(&json!("a,b \"c\"")), "\"a,b \"\"c\"\"\"");
        assert_eq!((csv_cell(&Value::Null), csv_cell(&json!(0.5))), (String::new(), "0.5".to_owned()));
    }
}
