//! The `ferrolite` command line.

pub mod apps;
pub mod keys;
pub mod spend;

use crate::auth::Tokens;
use crate::manifest::{self, validate};
use crate::server::{self, ServerConfig};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// ferrolite: an OpenAI-compatible LLM gateway that runs llm-proxy app manifests.
#[derive(Debug, Parser)]
#[command(name = "ferrolite", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server. With no --config it starts the embedded demo app of mock models.
    Serve(ServeArgs),
    /// Print the app manifest's JSON Schema.
    Schema,
    /// Print the OpenAPI 3.1 document of a service's routes.
    Openapi,
    /// Check manifests (JSON or YAML): every error, one per line, as FILE: /json/path: reason.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `json`: one object per file, `{file, ok, errors: [{pointer, message}], warnings: [...]}`.
        #[arg(long, short, value_enum, default_value_t = apps::Output::Text)]
        output: apps::Output,
    },
    /// Manage apps on a running server (install, start, stop, list, ps, logs, uninstall).
    Apps(apps::AppsArgs),
    /// Manage a workspace's API keys on a running server (create, list, info, update, revoke).
    Keys(keys::KeysArgs),
    /// Read a running server's spend log: one record per request served.
    Spend(spend::SpendArgs),
    /// Print a signed token for a workspace.
    Token {
        #[arg(long)]
        workspace: String,
        #[arg(long, env = "FERROLITE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        expires_in: u64,
        /// An admin token acts on every workspace.
        #[arg(long)]
        admin: bool,
    },
    /// Print a shell completion script: `ferrolite completions bash > /etc/bash_completion.d/ferrolite`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = server::DEFAULT_PORT)]
    pub port: u16,
    /// Where the server secret, tokens and app store live.
    #[arg(long, env = "FERROLITE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A manifest to install and start in the default workspace (repeatable).
    #[arg(long = "config")]
    pub configs: Vec<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Log lines on stderr as text or as one JSON object per line (with the request's span).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve GET /metrics without a token (by default it needs an admin token).
    #[arg(long)]
    pub metrics_public: bool,
    /// Export request spans to this OpenTelemetry collector (OTLP over HTTP, e.g.
    /// http://127.0.0.1:4318/v1/traces). Needs a binary built with `--features otlp`.
    #[arg(long, env = "FERROLITE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// A route family's own body limit, as FAMILY=BYTES (e.g. audio=104857600); repeatable.
    #[arg(long = "body-limit", value_parser = parse_family_limit)]
    pub body_limits: Vec<(String, usize)>,
    /// Requests served at once; beyond it new ones get 503 with Retry-After.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Requests per minute each workspace may send to its services (unlimited by default).
    #[arg(long)]
    pub workspace_rpm: Option<u64>,
    /// Requests per minute each token may send (unlimited by default).
    #[arg(long)]
    pub token_rpm: Option<u64>,
    /// Let apps installed by non-admin tokens call loopback, link-local and private addresses
    /// (only admins' apps may otherwise: a guard against server-side request forgery).
    #[arg(long)]
    pub allow_private_upstreams: bool,
    /// Share apps, sessions, spend, load and cooldowns with other instances through Redis.
    #[arg(long, env = "FERROLITE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Keep apps, secrets, sessions, API keys, budgets, spend, spend logs and stored responses in
    /// this PostgreSQL database (`postgres://user:pass@host/db`) instead of SQLite in the data
    /// dir: the system of record of every instance that names it. Its schema is migrated at start.
    #[arg(long, env = "FERROLITE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Accept the tokens of the Hypha server with this JWT secret (its HYPHA_JWT_SECRET) beside
    /// ferrolite's own; a token of another workspace still gets 403 on a protected service.
    #[arg(long, env = "HYPHA_JWT_SECRET", hide_env_values = true)]
    pub hypha_jwt_secret: Option<String>,
    /// How long stored Responses API answers (`store: true`) are kept, e.g. 30d, 12h, 3600s.
    #[arg(long, default_value = "30d", value_parser = parse_ttl)]
    pub responses_ttl: Duration,
    /// How long spend log records (one per request served) are kept, e.g. 30d, 12h, 90m.
    #[arg(long, default_value = "30d", value_parser = parse_ttl)]
    pub spend_log_retention: Duration,
    /// Seconds a client may take to send a request's head before its connection is closed
    /// (the slowloris guard).
    #[arg(long, default_value_t = 30.0, value_parser = parse_positive_seconds)]
    pub header_read_timeout: f64,
    /// Seconds a new request may be held while its I/O thread is behind the streams it carries
    /// (with 256 requests in flight or more, a turn of its event loop over 50 ms), so that they keep
    /// their pace; 0 holds none. At most 60.
    #[arg(long, default_value_t = 3.0, value_parser = parse_hold_seconds)]
    pub overload_hold: f64,
    /// Threads serving connections, each with its own event loop [default: one per core];
    /// 0 serves them on the shared runtime. At most 1024.
    #[arg(long, env = "FERROLITE_IO_THREADS", value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub io_threads: Option<u16>,
    /// Which calls to HTTPS upstreams go over HTTP/2 where the upstream offers it (ALPN):
    /// `streams` (streamed answers: one connection carries a hundred, with less memory and CPU
    /// per stream; short JSON calls keep each I/O thread's own HTTP/1.1 keep-alive connections,
    /// as nginx and litellm call theirs, which cost fewer instructions), `always` (every call;
    /// the flag alone), or `never`.
    #[arg(long, env = "FERROLITE_UPSTREAM_HTTP2", value_name = "WHEN", num_args = 0..=1,
        default_value = "streams", default_missing_value = "always", value_parser = parse_http2)]
    pub upstream_http2: crate::transport::Http2,
    /// The most requests one upstream HTTP/2 connection carries at once; past it ferrolite opens
    /// another to the same upstream rather than queue streams behind each other. Keep it at or
    /// under the provider's own limit (its SETTINGS_MAX_CONCURRENT_STREAMS, 100 to 256 at most
    /// providers). 1 to 10000.
    #[arg(long, env = "FERROLITE_UPSTREAM_HTTP2_STREAMS",
        default_value_t = crate::transport::spread::DEFAULT_STREAMS_PER_CONNECTION as u16,
        value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub upstream_http2_streams: u16,
    /// Run as the llm-proxy worker of this Hypha server (http(s)://host[:port]): the apps its
    /// users install through public/server-apps run here, served at Hypha's URL too.
    #[arg(long, env = "FERROLITE_HYPHA_SERVER", requires = "hypha_token")]
    pub hypha_server: Option<String>,
    /// The token the worker connects with, of --hypha-workspace (for `public`, one Hypha's root
    /// issued: generate_token({"workspace": "public", "permission": "admin"})).
    #[arg(long, env = "FERROLITE_HYPHA_TOKEN", hide_env_values = true)]
    pub hypha_token: Option<String>,
    /// The Hypha workspace the worker registers in: `public` serves every workspace's apps.
    #[arg(long, env = "FERROLITE_HYPHA_WORKSPACE", default_value = "public")]
    pub hypha_workspace: String,
}

pub use crate::observability::logging::LogFormat;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Schema => {
            print!("{}", manifest::json_schema_text());
            ExitCode::SUCCESS
        }
        Command::Openapi => {
            print!("{}", crate::catalogue::OPENAPI_JSON);
            ExitCode::SUCCESS
        }
        Command::Validate { files, output } => validate_files(&files, output),
        Command::Token { workspace, data_dir, expires_in, admin } => {
            if let Err(reason) = crate::grammar::name(&workspace) {
                eprintln!("ferrolite token: --workspace {reason}");
                return ExitCode::FAILURE;
            }
            let dir = data_dir.unwrap_or_else(server::default_data_dir);
            match Tokens::load_or_create(&dir) {
                Ok(tokens) => {
                    println!("{}", tokens.issue(&workspace, admin, Duration::from_secs(expires_in)));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ferrolite token: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(args) => serve(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ferrolite", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Apps(args) => apps::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Spend(args) => spend::run(args),
    }
}

fn validate_files(files: &[PathBuf], output: apps::Output) -> ExitCode {
    if output == apps::Output::Json {
        return validate_files_json(files);
    }
    let mut failed = false;
    for file in files {
        let name = file.display();
        let doc = match validate::load_manifest_file(file) {
            Ok(doc) => doc,
            Err(e) => {
                println!("{name}: {e}");
                failed = true;
                continue;
            }
        };
        match validate::validate(&doc) {
            Ok(ok) => {
                for w in &ok.warnings {
                    println!("{name}: {w}");
                }
                let config = &ok.manifest.config;
                let mut models: Vec<&str> = config.model_list.iter().map(|m| m.model_name.as_str()).collect();
                models.dedup();
                println!("{name}: OK ({} model name(s), {} deployment(s))", models.len(), config.model_list.len());
            }
            Err(invalid) => {
                failed = true;
                for finding in &invalid.findings {
                    println!("{name}: {finding}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `validate --output json`: a JSON array, one object per file; exit 1 on any error.
fn validate_files_json(files: &[PathBuf]) -> ExitCode {
    let findings = |list: &[validate::Finding]| -> Vec<serde_json::Value> {
        list.iter().map(|f| serde_json::json!({"pointer": f.pointer, "message": f.message})).collect()
    };
    let mut failed = false;
    let mut report = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let entry = match validate::load_manifest_file(file).map(|doc| validate::validate(&doc)) {
            Err(e) => {
                serde_json::json!({"file": name, "ok": false, "errors": [{"pointer": "", "message": e.to_string()}], "warnings": []})
            }
            Ok(Ok(ok)) => {
                serde_json::json!({"file": name, "ok": true, "errors": [], "warnings": findings(&ok.warnings)})
            }
            Ok(Err(invalid)) => {
                let (errors, warnings): (Vec<_>, Vec<_>) =
                    invalid.findings.into_iter().partition(|f| f.severity == validate::Severity::Error);
                serde_json::json!({"file": name, "ok": false, "errors": findings(&errors), "warnings": findings(&warnings)})
            }
        };
        failed |= entry["ok"] == false;
        report.push(entry);
    }
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let _logging = match crate::observability::logging::init(args.log_format, args.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("ferrolite: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrolite: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = ServerConfig::new(args.data_dir.unwrap_or_else(server::default_data_dir));
    config.host = args.host;
    config.port = args.port;
    config.configs = args.configs;
    config.limits.max_body_bytes = args.max_body_bytes;
    config.limits.family_body_bytes = args.body_limits.into_iter().collect();
    config.redis_url = args.redis_url;
    config.database_url = args.database_url;
    config.responses_ttl = args.responses_ttl;
    config.spend_log_retention = args.spend_log_retention;
    config.hypha_jwt_secret = args.hypha_jwt_secret.filter(|s| !s.is_empty());
    config.allow_private_upstreams = args.allow_private_upstreams;
    config.metrics_public = args.metrics_public;
    config.connections.header_read_timeout = std::time::Duration::from_secs_f64(args.header_read_timeout);
    config.connections.overload_hold = std::time::Duration::from_secs_f64(args.overload_hold);
    if let Some(threads) = args.io_threads {
        config.io_threads = usize::from(threads);
    }
    config.upstream = crate::transport::Settings {
        http2: args.upstream_http2,
        streams_per_connection: usize::from(args.upstream_http2_streams),
    };
    config.limits.max_in_flight = args.max_in_flight.max(1);
    config.limits.rates.per_workspace = args.workspace_rpm;
    config.limits.rates.per_token = args.token_rpm;
    // Without the Hypha server's JWT secret its tokens are checked by asking it.
    if config.hypha_jwt_secret.is_none() {
        config.hypha_token_server = args.hypha_server.clone();
    }
    if let (Some(server_url), Some(token)) = (args.hypha_server, args.hypha_token) {
        config.hypha = Some(server::HyphaSettings { server_url, token, workspace: args.hypha_workspace });
    }
    runtime.block_on(async move {
        let running = match server::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ferrolite: {e}");
                return ExitCode::FAILURE;
            }
        };
        print!("{}", running.banner());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        server::shutdown_signal().await;
        eprintln!("ferrolite: shutting down, draining in-flight requests");
        match running.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferrolite: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// A number of seconds above zero and at most a day (`Duration` cannot hold every float).
fn parse_positive_seconds(text: &str) -> Result<f64, String> {
    seconds_where(text, |s| s > 0.0 && s <= 86_400.0, "seconds above 0 and at most 86400")
}

/// `--overload-hold`: from zero (none held) to a minute.
fn parse_hold_seconds(text: &str) -> Result<f64, String> {
    seconds_where(text, |s| (0.0..=60.0).contains(&s), "seconds from 0 to 60")
}

/// `--upstream-http2`'s value; a boolean as the bare flag's environment variable took it.
fn parse_http2(text: &str) -> Result<crate::transport::Http2, String> {
    use crate::transport::Http2;
    match text.to_ascii_lowercase().as_str() {
        "streams" => Ok(Http2::Streams),
        "always" | "true" | "1" | "yes" | "on" => Ok(Http2::Always),
        "never" | "false" | "0" | "no" | "off" => Ok(Http2::Never),
        _ => Err(format!("{text:?}: expected streams, always or never")),
    }
}

/// Seconds read from `text` that `fits` accepts (NaN never does); `expected` says which.
fn seconds_where(text: &str, fits: impl Fn(f64) -> bool, expected: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if fits(seconds) {
        Ok(seconds)
    } else {
        Err(format!("{text:?}: expected {expected}"))
    }
}

/// A retention such as `30d`, `12h` or `3600s` (at least a second).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    crate::router::spend::parse_duration(text)
        .ok_or_else(|| format!("{text:?}: expected a positive number with a unit: s, m, h, d or w (e.g. 30d)"))
}

fn parse_family_limit(text: &str) -> Result<(String, usize), String> {
    let (family, bytes) = text.split_once('=').ok_or("expected FAMILY=BYTES")?;
    let known: Vec<&str> = crate::catalogue::ROUTES.iter().map(|r| r.family).collect();
    if !known.contains(&family) {
        return Err(format!("unknown route family {family:?}; families: {}", {
            let mut k = known.clone();
            k.dedup();
            k.join(", ")
        }));
    }
    Ok((family.to_owned(), bytes.parse().map_err(|e| format!("{bytes:?}: {e}"))?))
}
