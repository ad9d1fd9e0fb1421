//! The `server-app-worker` service Hypha's server-apps hands `llm-proxy` apps to: `compile`
//! checks a manifest at install, `start` runs the app in ferrolite and serves it on Hypha's URL
//! through the session's own client (an `asgi` service), `stop` ends it, `get_logs` reads its log.
//!
//! Hypha calls every function as root from the `public` workspace; the app's own workspace and
//! client id come in the arguments. A Hypha session (`{workspace}/{client_id}`) maps to one
//! ferrolite session of an app installed under Hypha's app id in that workspace.
//!
//! A session lives as long as Hypha keeps it, which is as long as the connections that carry it
//! (hypha 0.21.137): Hypha stops a session whose client disconnects, and forgets every session
//! of a worker whose own connection ends, a restart of either included. So the session's app
//! is held in memory only (`Keeping::Transient`: a restarted ferrolite has none to bring back),
//! its client never reconnects, and a session ends here as soon as either connection does: a
//! service left registered would be an orphan that makes Hypha's URL answer "Multiple services
//! found" once the app is started again.

use super::asgi::{Asgi, HttpService};
use super::client::{Client, ClientConfig, ClientError, ConnectionInfo, Reconnect, CALL_TIMEOUT};
use super::service::{Call, Function, Handler, Service};
use super::session::{self, Described};
use crate::apps::{Controller, ControllerError, Source, WorkspaceSecrets};
use crate::http::AppState;
use crate::manifest::validate::{SecretRef, Severity};
use crate::manifest::Visibility;
use crate::observability::session_log::LogType;
use crate::rpc::codec;
use crate::rpc::{Answer, Args};
use futures::future::BoxFuture;
use rmpv::Value;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

/// The worker service's name: `{workspace}/{client_id}:ferrolite-worker`.
pub const SERVICE_NAME: &str = "ferrolite-worker";
/// How long a session's client may take to connect and register its service.
const SESSION_READY: Duration = Duration::from_secs(20);
/// Stopped sessions whose logs stay readable.
const STOPPED_KEPT: usize = 64;
/// The manifest keys ferrolite reads; the rest is Hypha's bookkeeping (`startup_config`,
/// `startup_context`, `_rtype`, ...), and the app's id is Hypha's.
const APP_KEYS: [&str; 5] = ["name", "type", "version", "description", "config"];

const FUNCTIONS: [Function; 4] = [
    Function::new("compile", "Check an llm-proxy manifest with ferrolite's validator at install."),
    Function::new("start", "Run an llm-proxy app and serve it through Hypha's URL."),
    Function::new("stop", "Stop a session (idempotent)."),
    Function::new("get_logs", "A page of a session's log: {items: [{type, content}], total, offset, limit}."),
];

/// Why a worker function failed; the caller's `RemoteException` carries the message.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}: {1}")]
    Arguments(&'static str, String),
    #[error("invalid llm-proxy manifest:\n{0}")]
    Invalid(String),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("session {0} is not running on this worker")]
    UnknownSession(String),
    #[error("the session's client could not join Hypha: {0}")]
    Join(ClientError),
    #[error("cannot read the workspace's env from Hypha (for HYPHA_SECRET:): {0}")]
    Env(ClientError),
    #[error("cannot register the session's service {0:?} in Hypha: {1}")]
    Register(String, ClientError),
    #[error("the worker's connection to Hypha ended while the session started")]
    WorkerLost,
    #[error("the controller's task failed: {0}")]
    Task(String),
}

/// What `start` is handed (other keys are ignored).
#[derive(Debug, Deserialize)]
struct StartConfig {
    /// `{workspace}/{client_id}`: the session's id in Hypha.
    id: String,
    app_id: String,
    workspace: String,
    client_id: String,
    /// A token for `client_id` in `workspace`.
    token: String,
    manifest: Map<String, Json>,
}

/// A running Hypha session.
struct HyphaSession {
    workspace: String,
    app_id: String,
    /// ferrolite's own session id.
    session_id: String,
    info: Json,
    client: Client,
}

/// A stopped session, for `get_logs`.
struct Stopped {
    id: String,
    workspace: String,
    session_id: String,
}

pub struct Worker {
    state: AppState,
    http: HttpService,
    /// The Hypha server the worker reached: the sessions' clients connect there too (the
    /// `server_url` Hypha hands over is its public URL, which this host may not reach).
    server_url: String,
    sessions: Mutex<HashMap<String, Arc<HyphaSession>>>,
    stopped: Mutex<VecDeque<Stopped>>,
    /// How many times the worker's own connection ended: a start that began before the last
    /// time made a session Hypha already forgot.
    lost: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The app as ferrolite validates and installs it.
fn app_document(manifest: &Map<String, Json>) -> Map<String, Json> {
    APP_KEYS
        .iter()
        .filter_map(|k| manifest.get(*k).filter(|v| !v.is_null()).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

fn service_id(document: &Map<String, Json>) -> Option<&str> {
    document.get("config")?.get("service_id")?.as_str()
}

/// A JSON object argument.
fn object(
    args: &Args,
    index: usize,
    name: &'static str,
    function: &'static str,
) -> Result<Map<String, Json>, WorkerError> {
    match args.get(index, name).map(codec::to_json) {
        Some(Json::Object(map)) => Ok(map),
        _ => Err(WorkerError::Arguments(function, format!("`{name}` must be an object"))),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, WorkerError> + Send + 'static,
) -> Result<T, WorkerError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| WorkerError::Task(e.to_string()))?
}

impl Worker {
    pub fn new(state: AppState, http: HttpService, server_url: String) -> Arc<Worker> {
        Arc::new(Worker {
            state,
            http,
            server_url,
            sessions: Mutex::default(),
            stopped: Mutex::default(),
            lost: AtomicU64::new(0),
        })
    }

    /// The service the worker's own client registers.
    pub fn service(self: &Arc<Self>) -> Service {
        let mut extra = Map::new();
        extra.insert("supported_types".into(), json!(["llm-proxy"]));
        // Hypha hands the worker its public URL; the sessions connect to the worker's own anyway.
        extra.insert("use_local_url".into(), json!(false));
        Service {
            name: SERVICE_NAME.into(),
            kind: "server-app-worker".into(),
            description: format!("ferrolite {}: runs llm-proxy apps", env!("CARGO_PKG_VERSION")),
            visibility: "public",
            app_id: "*".into(),
            extra,
            functions: FUNCTIONS.to_vec(),
            handler: Arc::new(WorkerHandler(self.clone())),
        }
    }

    /// Closes every session's client (the server shuts down; Hypha then stops the apps).
    pub fn close_all(&self) {
        for (_, session) in lock(&self.sessions).drain() {
            session.client.close();
        }
    }

    /// Ends every session: the worker's own connection ended, and Hypha forgets a worker's
    /// sessions with it.
    pub async fn end_all(&self, why: &str) {
        self.lost.fetch_add(1, Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.sessions).keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.end(&id, None, why).await {
                tracing::warn!(hypha_session = %id, "cannot stop: {e}");
            }
        }
    }

    /// `compile(manifest, files, config)` -> `[manifest, files]`: every error with its JSON path
    /// (nothing is installed), and the start-up settings Hypha needs for this app.
    fn compile(&self, args: &Args) -> Result<Value, WorkerError> {
        let mut manifest = object(args, 0, "manifest", "compile")?;
        let files = args.get(1, "files").cloned().unwrap_or(Value::Array(Vec::new()));
        let document = app_document(&manifest);
        let findings = self.state.controller.check(Source::Document(Json::Object(document.clone())), false);
        let errors: Vec<String> =
            findings.iter().filter(|f| f.severity == Severity::Error).map(ToString::to_string).collect();
        if !errors.is_empty() {
            return Err(WorkerError::Invalid(errors.join("\n")));
        }
        // Hypha waits for the service to appear; without a service_id its name (`llm-{client}`)
        // is known only at start, which returns once the service is registered anyway.
        let wait = service_id(&document).map_or(json!(false), |id| json!(id));
        let startup = manifest.entry("startup_config").or_insert_with(|| json!({}));
        if !startup.is_object() {
            *startup = json!({});
        }
        if let Json::Object(startup) = startup {
            startup.insert("wait_for_service".into(), wait);
            // Hypha counts only its own URL's traffic as activity; the native URL's would not
            // keep the app alive.
            startup.entry("stop_after_inactive").or_insert(json!(0));
        }
        Ok(Value::Array(vec![codec::from_json(&Json::Object(manifest)), files]))
    }

    /// `start(config)`: joins Hypha as the session's client, reads the workspace's env there when
    /// the app names `HYPHA_SECRET:`s, installs and starts the app in ferrolite (workspace =
    /// Hypha's), then registers the app's service on that client. A failure undoes what was done
    /// and names what is missing (Hypha's start shows the message).
    async fn start(self: &Arc<Self>, args: &Args) -> Result<Value, WorkerError> {
        let config = object(args, 0, "config", "start")?;
        let config: StartConfig = serde_json::from_value(Json::Object(config))
            .map_err(|e| WorkerError::Arguments("start", format!("config: {e}")))?;
        if let Some(running) = lock(&self.sessions).get(&config.id) {
            return Ok(codec::from_json(&running.info));
        }
        let epoch = self.lost.load(Ordering::SeqCst);
        let client = Client::spawn(
            ClientConfig {
                server_url: self.server_url.clone(),
                workspace: Some(config.workspace.clone()),
                client_id: config.client_id.clone(),
                token: config.token.clone(),
                reconnect: Reconnect::Never,
            },
            Vec::new(),
        );
        let started = match self.start_on(&client, &config).await {
            Ok(started) => started,
            Err(e) => {
                client.close();
                return Err(e);
            }
        };
        let info = started.info.clone();
        let session_id = started.session_id.clone();
        lock(&self.sessions).insert(config.id.clone(), Arc::new(started));
        if self.lost.load(Ordering::SeqCst) != epoch {
            self.end(&config.id, Some(&session_id), "the worker's connection to Hypha ended while it started").await?;
            return Err(WorkerError::WorkerLost);
        }
        // The session's connection is its life in Hypha: when it ends, so does the session.
        let (worker, id) = (self.clone(), config.id);
        tokio::spawn(
            async move {
                if let Some(why) = client.ended().await {
                    let why = format!("its connection to Hypha ended ({why}), and Hypha stops a session with it");
                    if let Err(e) = worker.end(&id, Some(&session_id), &why).await {
                        tracing::warn!(hypha_session = %id, "cannot stop: {e}");
                    }
                }
            }
            .in_current_span(),
        );
        Ok(codec::from_json(&info))
    }

    async fn start_on(&self, client: &Client, config: &StartConfig) -> Result<HyphaSession, WorkerError> {
        let joined = client.ready(SESSION_READY).await.map_err(WorkerError::Join)?;
        let mut document = app_document(&config.manifest);
        if crate::grammar::name(&config.app_id).is_ok() {
            document.insert("id".into(), json!(config.app_id));
        }
        let service_id = match service_id(&document) {
            Some(id) => id.to_owned(),
            None => {
                let id = format!("llm-{}", config.client_id);
                if let Some(Json::Object(app)) = document.get_mut("config") {
                    app.insert("service_id".into(), json!(id));
                }
                id
            }
        };
        // In a Hypha session, HYPHA_SECRET: names the Hypha workspace's env, read as the
        // session's own client; ferrolite's stored secrets play no part.
        let secrets = if names_workspace_secrets(&Json::Object(document.clone())) {
            workspace_env(client, &joined).await?
        } else {
            HashMap::new()
        };
        let live: Vec<String> = lock(&self.sessions).values().map(|s| s.session_id.clone()).collect();
        let state = self.state.clone();
        let (workspace, service) = (config.workspace.clone(), service_id.clone());
        let started = blocking(move || {
            let controller = &state.controller;
            let app = controller.install_transient(&workspace, Source::Document(Json::Object(document)), false)?;
            // A session of this app whose Hypha session ended unseen (no stop came) holds the id.
            for left in controller.registry().sessions_in(&workspace) {
                if left.app_id == app.id && left.service_id == service && !live.contains(&left.id) {
                    controller.stop(&workspace, &left.id)?;
                }
            }
            match controller.start_with(&workspace, &app.id, WorkspaceSecrets::Given(&secrets)) {
                Ok(started) => Ok(started),
                Err(e) => {
                    discard(controller, &workspace, None, &app.id)?;
                    Err(e.into())
                }
            }
        })
        .await?;
        let session = self.state.controller.registry().find_session(&started.workspace, &started.id);
        let visibility = match session.as_ref().map(|s| s.visibility) {
            Some(Visibility::Public) => "public",
            _ => "protected",
        };
        let asgi = Asgi::new(self.http.clone(), self.state.clone(), started.workspace.clone(), service_id.clone());
        let described = Described {
            description: format!(
                "llm-proxy app {} served by ferrolite (models: {}): the OpenAI-compatible routes under /v1, \
                 the same at {}, and their functions (chat_completions, create_response, embeddings, ...)",
                started.app_id,
                started.models.join(", "),
                started.url
            ),
            visibility,
            app_id: config.app_id.clone(),
        };
        if let Err(e) = client.add_service(session::service(asgi, described)).await {
            let (state, ended) = (self.state.clone(), started.clone());
            blocking(move || Ok(discard(&state.controller, &ended.workspace, Some(&ended.id), &ended.app_id)?)).await?;
            return Err(WorkerError::Register(service_id, e));
        }
        let hypha_url = joined.public_base_url.as_deref().unwrap_or(&self.server_url).trim_end_matches('/').to_owned();
        let hypha_url = format!("{hypha_url}/{}/apps/{service_id}/v1", started.workspace);
        if let Some(session) = &session {
            session.table.logs.push(
                LogType::Log,
                format!(
                    "{} hypha session {}: served at {hypha_url} and at {}",
                    crate::clock::unix_now(),
                    config.id,
                    started.url
                ),
            );
        }
        tracing::info!(hypha_session = %config.id, session = %started.id, %hypha_url, "started");
        let info = json!({
            "id": config.id,
            "session_id": started.id,
            "app_id": started.app_id,
            "workspace": started.workspace,
            "service_id": service_id,
            "url": hypha_url,
            "native_url": started.url,
            "models": started.models,
            "status": "running",
        });
        Ok(HyphaSession {
            workspace: started.workspace,
            app_id: started.app_id,
            session_id: started.id,
            info,
            client: client.clone(),
        })
    }

    /// `stop(session_id)`. A session already stopped (or never started here) is not an error:
    /// Hypha may ask twice.
    async fn stop(&self, args: &Args) -> Result<Value, WorkerError> {
        let id = args.str(0, "session_id").ok_or(WorkerError::Arguments("stop", "missing `session_id`".into()))?;
        self.end(id, None, "Hypha stopped it").await?;
        Ok(Value::Nil)
    }

    /// Ends Hypha session `id` (if it is still the ferrolite session `only`, when given): leaves
    /// Hypha as its client and stops the ferrolite session, writing `why` in its log.
    async fn end(&self, id: &str, only: Option<&str>, why: &str) -> Result<(), WorkerError> {
        let session = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(id) {
                Some(s) if only.is_none_or(|only| only == s.session_id) => sessions.remove(id),
                _ => None,
            }
        };
        let Some(session) = session else { return Ok(()) };
        session.client.close();
        tracing::info!(hypha_session = %id, session = %session.session_id, "stopping: {why}");
        if let Some(running) = self.state.controller.registry().find_session(&session.workspace, &session.session_id) {
            let line = format!("{} hypha session {id} ends: {why}", crate::clock::unix_now());
            running.table.logs.push(LogType::Log, line);
        }
        let (state, ended) = (self.state.clone(), session.clone());
        blocking(move || Ok(discard(&state.controller, &ended.workspace, Some(&ended.session_id), &ended.app_id)?))
            .await?;
        let mut stopped = lock(&self.stopped);
        if stopped.len() == STOPPED_KEPT {
            stopped.pop_front();
        }
        stopped.push_back(Stopped {
            id: id.to_owned(),
            workspace: session.workspace.clone(),
            session_id: session.session_id.clone(),
        });
        Ok(())
    }

    /// `get_logs(session_id, type, offset, limit)` of a running or recently stopped session.
    fn get_logs(&self, args: &Args) -> Result<Value, WorkerError> {
        let id = args.str(0, "session_id").ok_or(WorkerError::Arguments("get_logs", "missing `session_id`".into()))?;
        let (workspace, session_id) = match lock(&self.sessions).get(id) {
            Some(s) => (s.workspace.clone(), s.session_id.clone()),
            None => {
                let stopped = lock(&self.stopped);
                let s =
                    stopped.iter().rev().find(|s| s.id == id).ok_or_else(|| WorkerError::UnknownSession(id.into()))?;
                (s.workspace.clone(), s.session_id.clone())
            }
        };
        let kind = match args.str(1, "type") {
            None => None,
            Some("log") => Some(LogType::Log),
            Some("error") => Some(LogType::Error),
            Some(other) => {
                return Err(WorkerError::Arguments("get_logs", format!("type {other:?} is not log or error")))
            }
        };
        let number = |index, name| {
            args.get(index, name).and_then(Value::as_u64).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let page = self.state.controller.get_logs(
            &workspace,
            &session_id,
            kind,
            number(2, "offset").unwrap_or(0),
            number(3, "limit"),
        )?;
        Ok(codec::from_json(&json!(page)))
    }
}

/// Dispatches Hypha's calls to the worker's functions.
struct WorkerHandler(Arc<Worker>);

impl Handler for WorkerHandler {
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Answer, String>> {
        let worker = self.0.clone();
        let span = tracing::info_span!("worker", function = %call.function);
        Box::pin(
            async move {
                // The worker is public so that every workspace's apps can reach it, but only
                // Hypha's server-apps (root) may run, stop or read sessions through it.
                if call.caller_user != "root" {
                    return Err(format!(
                        "only Hypha's server-apps may call the worker, not user {:?}",
                        call.caller_user
                    ));
                }
                let args = &call.args;
                let outcome = match call.function.as_str() {
                    "compile" => worker.compile(args),
                    "start" => worker.start(args).await,
                    "stop" => worker.stop(args).await,
                    "get_logs" => worker.get_logs(args),
                    other => return Err(format!("the worker has no function {other:?}")),
                };
                outcome.map(Answer::Value).map_err(|e| e.to_string())
            }
            .instrument(span),
        )
    }
}

/// Stops ferrolite's session `session_id` (if given and still running) and, once no session of
/// the app is left, ferrolite's copy of the app: the app lives in Hypha.
fn discard(
    controller: &Controller,
    workspace: &str,
    session_id: Option<&str>,
    app_id: &str,
) -> Result<(), ControllerError> {
    if let Some(id) = session_id {
        match controller.stop(workspace, id) {
            Ok(()) | Err(ControllerError::SessionNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if controller.registry().sessions_in(workspace).iter().any(|s| s.app_id == app_id) {
        return Ok(());
    }
    match controller.uninstall(workspace, app_id) {
        Ok(()) | Err(ControllerError::AppNotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a string of the app names a `HYPHA_SECRET:` (only then is Hypha asked for the env).
fn names_workspace_secrets(value: &Json) -> bool {
    match value {
        Json::String(s) => matches!(SecretRef::parse(s), Some(SecretRef::Workspace(_))),
        Json::Array(items) => items.iter().any(names_workspace_secrets),
        Json::Object(map) => map.values().any(names_workspace_secrets),
        _ => false,
    }
}

/// The Hypha workspace's env (`get_env()` on the workspace manager, as the session's client:
/// its token may read and write its workspace), as text.
async fn workspace_env(client: &Client, joined: &ConnectionInfo) -> Result<HashMap<String, String>, WorkerError> {
    let manager = format!("*/{}", joined.manager_id);
    let env = client
        .call(&manager, "services.default.get_env", Vec::new(), None, CALL_TIMEOUT)
        .await
        .map_err(WorkerError::Env)?;
    let env = match codec::to_json(&env) {
        Json::Object(env) => env,
        Json::Null => Map::new(),
        other => return Err(WorkerError::Env(ClientError::Protocol(format!("get_env answered {other}")))),
    };
    let text = |value: Json| match value {
        Json::String(text) => text,
        other => other.to_string(),
    };
    Ok(env.into_iter().map(|(key, value)| (key, text(value))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_document_keeps_the_manifest_keys_ferrolite_reads() {
        let manifest = json!({
            "name": "n", "type": "llm-proxy", "description": null, "config": {"model_list": []},
            "_rtype": "pydantic-model", "startup_config": {"timeout": 60}, "id": "hypha-alias",
        });
        let Json::Object(manifest) = manifest else { unreachable!() };
        let document = app_document(&manifest);
        assert_eq!(Json::Object(document), json!({"name": "n", "type": "llm-proxy", "config": {"model_list": []}}));
    }

    #[test]
    fn only_an_app_naming_a_hypha_secret_reads_the_workspace_env() {
        let params = |key: &str| json!({"config": {"model_list": [{"litellm_params": {"api_key": key}}]}});
        assert!(names_workspace_secrets(&params("HYPHA_SECRET:OPENAI_KEY")));
        assert!(!names_workspace_secrets(&params("os.environ/OPENAI_KEY")));
        assert!(!names_workspace_secrets(&params("sk-literal")));
    }
}
