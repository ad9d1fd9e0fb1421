//! Starting and stopping the server: data dir, tokens, the apps to run, the listener,
//! and a graceful drain on Ctrl-C / SIGTERM.

use crate::apps::responses::ResponseStore;
use crate::apps::{demo, Controller, ControllerError, Source};
use crate::auth::{write_private, KeyError, Tokens};
use crate::cluster::{Cluster, Event};
use crate::http::{self, serve, AppState, Limits};
use crate::hypha::client::ClientError;
use crate::hypha::{HyphaOptions, HyphaWorker};
use crate::manifest::litellm;
use crate::manifest::validate::{self, LoadError};
use crate::store::spend_logs::{PgSpendLogs, SpendLogs, SqliteSpendLogs};
use crate::store::{PgStore, ResponseDb, SqliteStore, Store, StoreError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often in-memory spend is written to the store.
const SPEND_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const RESPONSES_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
const RESPONSES_PURGE_INTERVAL: Duration = Duration::from_secs(300);
/// How often queued spend records are written (sooner when a batch waits), and how often
/// records past the retention are removed.
const SPEND_LOG_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const SPEND_LOG_PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// How long spend records are kept unless `--spend-log-retention` says otherwise.
pub const DEFAULT_SPEND_LOG_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// The port `ferrolite serve` listens on by default.
pub const DEFAULT_PORT: u16 = 9527;

/// How `serve` is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Manifests to install and start in the default workspace; none means the demo app.
    pub configs: Vec<PathBuf>,
    pub limits: Limits,
    /// How long in-flight requests may take to finish once shutdown starts.
    pub drain_timeout: Duration,
    /// Share state with other instances through this Redis.
    pub redis_url: Option<String>,
    /// Keep the durable state in this PostgreSQL database instead of SQLite files in the data dir.
    pub database_url: Option<String>,
    /// How long stored Responses API answers are kept.
    pub responses_ttl: Duration,
    /// How long spend records are kept.
    pub spend_log_retention: Duration,
    /// A Hypha server's JWT secret: its tokens are accepted beside ferrolite's.
    pub hypha_jwt_secret: Option<String>,
    /// A Hypha server asked about its tokens (the worker's server when its secret is not given).
    pub hypha_token_server: Option<String>,
    /// Let apps installed by non-admin tokens call loopback, link-local and private addresses.
    pub allow_private_upstreams: bool,
    /// Serve `GET /metrics` without a token (it needs an admin token otherwise).
    pub metrics_public: bool,
    /// How client connections are served (the slowloris guard).
    pub connections: serve::ConnectionSettings,
    /// Threads that serve connections, each on its own runtime (`http::serve::Lanes`); 0 serves
    /// them on the caller's runtime.
    pub io_threads: usize,
    /// How upstreams are called: TLS ones over HTTP/2 where they offer it instead of the lanes'
    /// own HTTP/1.1 keep-alive connections, and how many requests an HTTP/2 connection carries.
    pub upstream: crate::transport::Settings,
    /// Worker mode: run the `llm-proxy` apps of this Hypha server.
    pub hypha: Option<HyphaSettings>,
}

/// `--hypha-server`, `--hypha-token`, `--hypha-workspace`.
#[derive(Debug, Clone)]
pub struct HyphaSettings {
    pub server_url: String,
    pub token: String,
    pub workspace: String,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            data_dir,
            configs: Vec::new(),
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(30),
            redis_url: None,
            database_url: None,
            responses_ttl: crate::apps::responses::DEFAULT_TTL,
            spend_log_retention: DEFAULT_SPEND_LOG_RETENTION,
            hypha_jwt_secret: None,
            hypha_token_server: None,
            allow_private_upstreams: false,
            metrics_public: false,
            connections: serve::ConnectionSettings::default(),
            io_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            upstream: Default::default(),
            hypha: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{file}: {source}")]
    Load { file: String, source: LoadError },
    #[error("{file}: {source}")]
    App { file: String, source: ControllerError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("restoring stored apps: {0}")]
    Restore(ControllerError),
    #[error("--redis-url: {0}")]
    Cluster(crate::cluster::ClusterError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot start the connection threads: {0}")]
    Lanes(std::io::Error),
    #[error("--hypha-server: {0}")]
    Hypha(crate::cluster::ClusterError),
}

/// A started app's address, as the banner prints it.
#[derive(Debug, Clone)]
pub struct StartedApp {
    pub url: String,
    pub models: Vec<String>,
}

/// A listening server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub apps: Vec<StartedApp>,
    /// A token for the default workspace, ready for an SDK.
    pub token: String,
    pub admin_token_file: PathBuf,
    /// The admin token, when this start created it (printed once).
    pub new_admin_token: Option<String>,
    pub mounted_routes: usize,
    /// Worker mode: the Hypha worker, and what its registration came to when the server started.
    pub hypha: Option<(HyphaWorker, Result<String, ClientError>)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
}

/// The workspace `serve` puts its apps in.
pub const DEFAULT_WORKSPACE: &str = demo::WORKSPACE;

/// Starts listening and serving; returns once the listener is bound and the apps run.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartupError> {
    let mut secret = crate::auth::load_or_create_secret(&config.data_dir)?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartupError::Bind { addr: addr.clone(), source })?;
    let local = listener.local_addr().map_err(|source| StartupError::Bind { addr, source })?;

    // The id this instance's figures are kept under, in Redis and in a shared store alike.
    let instance = match (&config.database_url, &config.redis_url) {
        (None, None) => None,
        _ => Some(crate::cluster::instance_id(&config.data_dir).map_err(StartupError::Cluster)?),
    };
    // PostgreSQL first: its migrations make the tables the other stores use.
    let store: Store = match (&config.database_url, &instance) {
        (Some(url), Some(instance)) => PgStore::open(url, instance)?.into(),
        _ => SqliteStore::open(&config.data_dir)?.into(),
    };
    let cluster = match (&config.redis_url, instance) {
        (Some(url), Some(instance)) => {
            let cluster = Arc::new(Cluster::connect(url, instance).await.map_err(StartupError::Cluster)?);
            // Behind one load balancer, a token from any instance must pass on every other; the
            // data dir keeps the secret the cluster uses, so `ferrolite token --data-dir` signs
            // tokens every instance accepts.
            // (Blocking calls, as the restore below: nothing else runs yet.)
            let shared = cluster.shared_secret(&secret).map_err(StartupError::Cluster)?;
            if shared != secret {
                crate::auth::replace_secret(&config.data_dir, &shared)?;
                secret = shared;
            }
            Some(cluster)
        }
        _ => None,
    };
    let response_db = match &config.database_url {
        Some(url) => ResponseDb::postgres(url)?,
        None => ResponseDb::open(&config.data_dir)?,
    };
    let mut responses = ResponseStore::new(response_db, config.responses_ttl);
    if let Some(cluster) = &cluster {
        responses = responses.with_cluster(cluster.clone());
    }
    // One key ring: the controller fills it, the tokens check requests against it.
    let keys = Arc::new(crate::auth::keys::KeyRing::default());
    let mut controller = Controller::new(format!("http://{local}"), store, responses)
        .allow_private_upstreams(config.allow_private_upstreams)
        .upstream(config.upstream)
        .with_keys(keys.clone());
    if let Some(cluster) = &cluster {
        controller = controller.with_cluster(cluster.clone());
    }
    for (session, error) in controller.restore().map_err(StartupError::Restore)? {
        eprintln!(
            "ferrolite: stored session {} of app {} did not restart: {error}",
            session.session_id, session.app_id
        );
    }
    let (apps, root) = start_apps(&controller, &config.configs)?;
    let mut tokens = Tokens::from_secret(&secret).with_keys(keys);
    if let Some(hypha_secret) = &config.hypha_jwt_secret {
        tokens = tokens.with_hypha_secret(hypha_secret.as_bytes());
    }
    let (admin_token_file, new_admin_token) = write_admin_token(&config.data_dir, &tokens)?;
    let token = tokens.issue(DEFAULT_WORKSPACE, false, Duration::from_secs(30 * 24 * 3600));
    crate::observability::metrics::install();
    let spend_logs = Arc::new(match &config.database_url {
        Some(url) => SpendLogs::new(PgSpendLogs::open(url)?, config.spend_log_retention),
        None => SpendLogs::new(SqliteSpendLogs::open(&config.data_dir)?, config.spend_log_retention),
    });
    let mut state = AppState::new(controller, tokens, config.limits, spend_logs)
        .with_metrics_public(config.metrics_public)
        .with_upstream(config.upstream);
    if let Some(server) = &config.hypha_token_server {
        state = state.with_hypha_token_check(server);
    }
    let (router, mounted_routes) = http::router(state.clone());
    // The WebSocket door is mounted last: it calls the finished HTTP router in-process, and a
    // socket that stays open is not an in-flight request.
    let router = crate::rpc::mount(router, state.clone());
    let mut background =
        vec![spend_flusher(state.clone()), responses_keeper(state.clone()), spend_log_writer(state.spend_logs.clone())];
    background.push(health_checker(state.clone()));
    if let Some(cluster) = cluster {
        background.extend(cluster_tasks(state.clone(), cluster));
    }
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = rx.await;
    };
    // The alias must rewrite before routing, so it wraps the router as a service.
    let door = http::Door::new(state.clone(), router);
    let hypha = match config.hypha {
        Some(settings) => Some(start_hypha(&config.data_dir, settings, state.clone(), door.clone()).await?),
        None => None,
    };
    let service = tower::ServiceExt::map_request(door, move |r: axum::extract::Request| match &root {
        Some(alias) => alias.rewrite(r),
        None => r,
    });
    let task = if config.io_threads == 0 {
        tokio::spawn(serve::serve(listener, service, config.connections, shutdown))
    } else {
        let hooks = serve::LaneHooks {
            on_start: crate::transport::use_lane_pool,
            every_second: crate::transport::sweep_lane_pool,
        };
        let lanes =
            serve::Lanes::start(config.io_threads, service, config.connections, hooks).map_err(StartupError::Lanes)?;
        tokio::spawn(serve::serve_on_lanes(listener, lanes, shutdown))
    };
    Ok(RunningServer {
        addr: local,
        state,
        apps,
        token,
        admin_token_file,
        new_admin_token,
        mounted_routes,
        hypha,
        shutdown: Some(tx),
        task,
        background,
        drain_timeout: config.drain_timeout,
    })
}

/// How long start-up waits for the worker's registration before it reports what happened (the
/// client keeps reconnecting in the background either way).
const HYPHA_READY_WAIT: Duration = Duration::from_secs(15);

/// Joins the Hypha server as its llm-proxy worker, the requests of its sessions served by `door`.
async fn start_hypha(
    data_dir: &Path,
    settings: HyphaSettings,
    state: AppState,
    door: http::Door,
) -> Result<(HyphaWorker, Result<String, ClientError>), StartupError> {
    // The data dir's instance id keeps the client id across restarts.
    let instance = crate::cluster::instance_id(data_dir).map_err(StartupError::Hypha)?;
    let options = HyphaOptions {
        server_url: settings.server_url,
        token: settings.token,
        workspace: settings.workspace,
        client_id: format!("ferrolite-{instance}"),
    };
    let worker = HyphaWorker::start(options, state, tower::util::BoxCloneSyncService::new(door));
    let ready = worker.ready(HYPHA_READY_WAIT).await;
    Ok((worker, ready))
}

/// Installs and starts the apps named on the command line (the demo app when none is), and
/// lists them with the sessions restored from the store; with a litellm config among them, the
/// alias that serves it at the server root too.
fn start_apps(
    controller: &Controller,
    configs: &[PathBuf],
) -> Result<(Vec<StartedApp>, Option<http::RootAlias>), StartupError> {
    let mut apps = Vec::new();
    // Apps named on the command line are (re)installed and (re)started with what the file says
    // now; one already running as the file says is left running.
    let start_app = |doc: serde_json::Value, file: String| -> Result<StartedApp, StartupError> {
        // What the file asks that ferrolite does not do is said at every start: by the install's
        // validation, or, for an app left running as it was, by validating it here.
        let warn = |warnings: &[String]| warnings.iter().for_each(|w| tracing::warn!(file = %file, "{w}"));
        if let Some(session) = controller.running_unchanged(DEFAULT_WORKSPACE, &doc) {
            let manifest =
                if litellm::is_litellm_config(&doc) { litellm::to_manifest(&doc, "litellm") } else { doc.clone() };
            if let Ok(validated) = validate::validate(&manifest) {
                warn(&validated.warnings.iter().map(ToString::to_string).collect::<Vec<_>>());
            }
            let info = session.info(controller.base_url());
            return Ok(StartedApp { url: info.url, models: info.models });
        }
        let app = controller
            .install(DEFAULT_WORKSPACE, Source::Document(doc), true, true)
            .map_err(|source| StartupError::App { file: file.clone(), source })?;
        warn(&app.warnings);
        for running in controller.registry().sessions_in(DEFAULT_WORKSPACE) {
            if running.app_id == app.id {
                controller
                    .stop(DEFAULT_WORKSPACE, &running.id)
                    .map_err(|source| StartupError::App { file: file.clone(), source })?;
            }
        }
        let session =
            controller.start(DEFAULT_WORKSPACE, &app.id).map_err(|source| StartupError::App { file, source })?;
        Ok(StartedApp { url: session.url, models: session.models })
    };
    if configs.is_empty() {
        apps.push(start_app(demo::manifest(), "the embedded demo app".into())?);
    }
    let mut root = None;
    for file in configs {
        let name = file.display().to_string();
        let doc = validate::load_file(file).map_err(|source| StartupError::Load { file: name.clone(), source })?;
        if litellm::is_litellm_config(&doc) && root.is_none() {
            let general = doc.get("general_settings");
            root = Some(http::RootAlias::new(DEFAULT_WORKSPACE, litellm::SERVICE_ID).with_pass_through(general));
        }
        apps.push(start_app(doc, name)?);
    }
    // Sessions restored from the store serve too: list them after the ones started above.
    for session in controller.registry().all() {
        let info = session.info(controller.base_url());
        if !apps.iter().any(|a| a.url == info.url) {
            apps.push(StartedApp { url: info.url, models: info.models });
        }
    }
    Ok((apps, root))
}

/// Spend lives in memory on the request path; this writes it through every second, and takes
/// up what the other instances sharing the store wrote.
fn spend_flusher(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SPEND_FLUSH_INTERVAL);
        loop {
            tick.tick().await;
            let state = state.clone();
            let done = tokio::task::spawn_blocking(move || {
                if let Err(e) = state.controller.flush_spend() {
                    tracing::warn!("cannot store spend: {e}");
                }
                if let Err(e) = state.controller.take_up_others_spend() {
                    tracing::warn!("cannot read the other instances' spend: {e}");
                }
            });
            let _ = done.await;
        }
    })
}

/// Runs the background health checks of the apps that turn them on, each at its interval;
/// an app's checks start with it and end with it.
fn health_checker(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut due: std::collections::HashMap<String, std::time::Instant> = Default::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let sessions = state.controller.registry().all();
            due.retain(|id, _| sessions.iter().any(|s| &s.id == id));
            let now = std::time::Instant::now();
            for session in sessions {
                let Some(interval) = session.table.health_check_interval else { continue };
                let next = due.entry(session.id.clone()).or_insert(now);
                if *next > now {
                    continue;
                }
                *next = now + interval;
                let (table, state) = (session.table.clone(), state.clone());
                tokio::spawn(async move { crate::router::health::check(&table, &state.http).await });
            }
        }
    })
}

/// Writes recorded responses to the data dir's file every 200 ms, and removes expired ones
/// every few minutes (Redis expires its copies itself).
fn responses_keeper(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESPONSES_FLUSH_INTERVAL);
        let mut last_purge = std::time::Instant::now();
        loop {
            tick.tick().await;
            let purge = last_purge.elapsed() >= RESPONSES_PURGE_INTERVAL;
            if purge {
                last_purge = std::time::Instant::now();
            }
            let state = state.clone();
            let kept = tokio::task::spawn_blocking(move || {
                let responses = state.controller.responses();
                responses.flush()?;
                if purge {
                    responses.purge_expired()?;
                }
                Ok::<_, crate::apps::responses::ResponsesError>(())
            })
            .await;
            if let Ok(Err(e)) = kept {
                tracing::warn!("cannot keep stored responses: {e}");
            }
        }
    })
}

/// Writes queued spend records every second, or as soon as a batch waits, and removes those
/// past the retention every few minutes (and once at start).
fn spend_log_writer(logs: Arc<SpendLogs>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SPEND_LOG_FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_purge: Option<std::time::Instant> = None;
        loop {
            // A ready batch is written alone; the tick writes whatever waits.
            let whole = tokio::select! {
                _ = tick.tick() => false,
                _ = logs.queue().ready() => true,
            };
            let purge = last_purge.is_none_or(|at| at.elapsed() >= SPEND_LOG_PURGE_INTERVAL);
            if purge {
                last_purge = Some(std::time::Instant::now());
            }
            let logs = logs.clone();
            let kept = tokio::task::spawn_blocking(move || {
                if whole {
                    logs.flush_full_batches()?;
                } else {
                    logs.flush()?;
                }
                if purge {
                    logs.purge_expired()?;
                }
                Ok::<_, StoreError>(())
            })
            .await;
            if let Ok(Err(e)) = kept {
                tracing::warn!("cannot keep the spend log: {e}");
            }
        }
    })
}

/// What an instance runs to stay in step with the others: it applies their announcements in
/// order, reads the whole shared state again whenever its subscriber (re)connects, and
/// exchanges spend, load and cooldown figures every 200 ms (`apps/figures.rs`).
fn cluster_tasks(state: AppState, cluster: Arc<Cluster>) -> Vec<JoinHandle<()>> {
    enum Step {
        Apply(Event),
        Resync,
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Step>();
    let listener = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            loop {
                let (subscribed, each) = (tx.clone(), tx.clone());
                let listened = cluster
                    .listen(
                        move || drop(subscribed.send(Step::Resync)),
                        move |event| drop(each.send(Step::Apply(event))),
                    )
                    .await;
                if let Err(e) = listened {
                    tracing::warn!("shared state: {e}; listening again in 1s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let applier = {
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(step) = rx.recv().await {
                let state = state.clone();
                let done = tokio::task::spawn_blocking(move || match step {
                    Step::Apply(event) => state.controller.apply_remote(event),
                    Step::Resync => state.controller.resync(),
                })
                .await;
                if let Ok(Err(e)) = done {
                    tracing::warn!("cannot take up the other instances' changes: {e}");
                }
            }
        })
    };
    let exchanger = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut exchange = crate::apps::figures::Exchange::default();
        let mut was_healthy = true;
        loop {
            tick.tick().await;
            if let Err(e) = cluster.tend_leases().await {
                tracing::debug!("budget leases not tended this round: {e}");
            }
            let floors = state.controller.caller_budgets().floors();
            let result = exchange.round(state.controller.registry(), &cluster, &floors).await;
            // One line when the figures stop flowing and one when they flow again.
            match (&result, was_healthy) {
                (Err(e), true) => tracing::warn!("shared state: {e}; budgets and routing use this instance's figures and the others' last known ones"),
                (Ok(()), false) => tracing::info!("shared state: figures flow again"),
                _ => {}
            }
            was_healthy = result.is_ok();
        }
    });
    vec![listener, applier, exchanger]
}

/// The admin token's file name in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The admin token lives in the data dir (0600), written on first start; returned when new.
fn write_admin_token(data_dir: &Path, tokens: &Tokens) -> Result<(PathBuf, Option<String>), StartupError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    // Kept while it still passes: an instance that took up its cluster's secret, or whose
    // token expired, writes a new one.
    if let Ok(text) = std::fs::read_to_string(&path) {
        if tokens.verify(text.trim()).is_ok() {
            return Ok((path, None));
        }
    }
    let token = tokens.issue(DEFAULT_WORKSPACE, true, Duration::from_secs(365 * 24 * 3600));
    write_private(&path, &format!("{token}\n")).map_err(|source| StartupError::Write { path: path.clone(), source })?;
    Ok((path, Some(token)))
}

impl RunningServer {
    /// Stops accepting connections and waits (up to the drain timeout) for in-flight requests.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some((worker, _)) = &self.hypha {
            worker.close();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let drained = match tokio::time::timeout(self.drain_timeout, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!("drain timeout reached; closing the remaining connections");
                self.task.abort();
                Ok(())
            }
        };
        for task in &self.background {
            task.abort();
        }
        if let Err(e) = self.state.controller.flush_spend() {
            tracing::warn!("cannot store spend at shutdown: {e}");
        }
        if let Err(e) = self.state.controller.responses().flush() {
            tracing::warn!("cannot store responses at shutdown: {e}");
        }
        if let Err(e) = self.state.spend_logs.flush() {
            tracing::warn!("cannot write the spend log at shutdown: {e}");
        }
        drained
    }

    /// The lines `ferrolite serve` prints once it is ready.
    pub fn banner(&self) -> String {
        let mut out = format!("ferrolite {} listening on http://{}\n", env!("CARGO_PKG_VERSION"), self.addr);
        for app in &self.apps {
            out += &format!("  service: {}   (models: {})\n", app.url, app.models.join(", "));
        }
        out += &format!("  token:   {}\n", self.token);
        out += &format!("  console: http://{}/ui   (sign in with the token)\n", self.addr);
        match &self.hypha {
            Some((_, Ok(service))) => out += &format!("  hypha:   worker {service} runs llm-proxy apps\n"),
            Some((_, Err(e))) => out += &format!("  hypha:   not registered yet ({e}); retrying\n"),
            None => {}
        }
        match &self.new_admin_token {
            Some(admin) => out += &format!("  admin token (also in {}): {admin}\n", self.admin_token_file.display()),
            None => out += &format!("  admin token in {}\n", self.admin_token_file.display()),
        }
        if let Some(app) = self.apps.first() {
            let model = app.models.first().map(String::as_str).unwrap_or("MODEL");
            out += &format!(
                "try:\n  curl {}/chat/completions -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n    -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'\n",
                app.url
            );
        }
        out
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// The data dir used when none is given: `$FERROLITE_DATA_DIR`, else the XDG data home.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROLITE_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("ferrolite");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/ferrolite"),
        None => PathBuf::from("ferrolite-data"),
    }
}
