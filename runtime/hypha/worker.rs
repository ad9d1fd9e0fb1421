//! The `server-app-worker` service Hypha's server-apps hands `llm-proxy` apps to: `compile`
//! checks a manifest at install, `start` runs the app in ferrolite and serves it on Hypha's URL
//! through the session's own client (an `asgi` service), `stop` ends it, `get_logs` reads its log.
//!
//! Hypha calls every function as root from the `public` workspace; the app's own workspace and
//! client id come in the arguments. A Hypha session (`{workspace}/{client_id}`) maps to one
//! ferrolite session of an app installed under Hypha's app id in that workspace.

use super::asgi::{Asgi, AsgiHandler, HttpService};
use super::client::{Client, ClientConfig, ClientError};
use super::service::{Call, Function, Handler, Service};
use crate::apps::{ControllerError, Source};
use crate::http::AppState;
use crate::manifest::validate::Severity;
use crate::manifest::Visibility;
use crate::observability::session_log::LogType;
use crate::rpc::codec;
use crate::rpc::Args;
use futures::future::BoxFuture;
use rmpv::Value;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use std::collections::{HashMap, VecDeque};
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
    Function { name: "compile", doc: "Check an llm-proxy manifest with ferrolite's validator at install." },
    Function { name: "start", doc: "Run an llm-proxy app and serve it through Hypha's URL." },
    Function { name: "stop", doc: "Stop a session (idempotent)." },
    Function { name: "get_logs", doc: "A page of a session's log: {items: [{type, content}], total, offset, limit}." },
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
        Arc::new(Worker { state, http, server_url, sessions: Mutex::default(), stopped: Mutex::default() })
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

    /// `start(config)`: installs and starts the app in ferrolite (workspace = Hypha's), then
    /// joins Hypha as the session's client and registers the app's `asgi` service there.
    async fn start(self: &Arc<Self>, args: &Args) -> Result<Value, WorkerError> {
        let config = object(args, 0, "config", "start")?;
        let config: StartConfig = serde_json::from_value(Json::Object(config))
            .map_err(|e| WorkerError::Arguments("start", format!("config: {e}")))?;
        if let Some(running) = lock(&self.sessions).get(&config.id) {
            return Ok(codec::from_json(&running.info));
        }
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
        let live: Vec<String> = lock(&self.sessions).values().map(|s| s.session_id.clone()).collect();
        let state = self.state.clone();
        let (workspace, service) = (config.workspace.clone(), service_id.clone());
        let started = blocking(move || {
            let controller = &state.controller;
            let app = controller.install(&workspace, Source::Document(Json::Object(document)), true, false)?;
            // A session of this app whose Hypha session ended unseen (no stop came) holds the id.
            for left in controller.registry().sessions_in(&workspace) {
                if left.app_id == app.id && left.service_id == service && !live.contains(&left.id) {
                    controller.stop(&workspace, &left.id)?;
                }
            }
            Ok(controller.start(&workspace, &app.id)?)
        })
        .await?;
        let session = self.state.controller.registry().find_session(&started.workspace, &started.id);
        let visibility = match session.as_ref().map(|s| s.visibility) {
            Some(Visibility::Public) => "public",
            _ => "protected",
        };
        let asgi = Asgi::new(self.http.clone(), self.state.clone(), started.workspace.clone(), service_id.clone());
        let service = Service {
            name: service_id.clone(),
            kind: "asgi".into(),
            description: format!(
                "llm-proxy app {} served by ferrolite (models: {}): the OpenAI-compatible routes under /v1",
                started.app_id,
                started.models.join(", ")
            ),
            visibility,
            app_id: config.app_id.clone(),
            extra: Map::new(),
            functions: vec![Function { name: "serve", doc: "Serve one HTTP request (ASGI)." }],
            handler: Arc::new(AsgiHandler(Arc::new(asgi))),
        };
        let client = Client::spawn(
            ClientConfig {
                server_url: self.server_url.clone(),
                workspace: Some(config.workspace.clone()),
                client_id: config.client_id.clone(),
                token: config.token.clone(),
            },
            vec![service],
        );
        let joined = match client.ready(SESSION_READY).await {
            Ok(joined) => joined,
            Err(e) => {
                client.close();
                let (state, workspace, id) = (self.state.clone(), started.workspace.clone(), started.id.clone());
                blocking(move || Ok(state.controller.stop(&workspace, &id)?)).await?;
                return Err(WorkerError::Join(e));
            }
        };
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
        let running = HyphaSession {
            workspace: started.workspace,
            app_id: started.app_id,
            session_id: started.id,
            info: info.clone(),
            client,
        };
        lock(&self.sessions).insert(config.id, Arc::new(running));
        Ok(codec::from_json(&info))
    }

    /// `stop(session_id)`: ends the ferrolite session and leaves Hypha as its client. A session
    /// already stopped (or never started here) is not an error: Hypha may ask twice.
    async fn stop(&self, args: &Args) -> Result<Value, WorkerError> {
        let id = args.str(0, "session_id").ok_or(WorkerError::Arguments("stop", "missing `session_id`".into()))?;
        let Some(session) = lock(&self.sessions).remove(id) else {
            return Ok(Value::Nil);
        };
        session.client.close();
        let app_in_use =
            lock(&self.sessions).values().any(|s| s.workspace == session.workspace && s.app_id == session.app_id);
        let state = self.state.clone();
        let ended = session.clone();
        blocking(move || {
            let controller = &state.controller;
            match controller.stop(&ended.workspace, &ended.session_id) {
                Ok(()) | Err(ControllerError::SessionNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            // The app lives in Hypha; ferrolite's copy goes with its last session.
            if !app_in_use {
                match controller.uninstall(&ended.workspace, &ended.app_id) {
                    Ok(()) | Err(ControllerError::AppNotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
        .await?;
        tracing::info!(hypha_session = %id, session = %session.session_id, "stopped");
        let mut stopped = lock(&self.stopped);
        if stopped.len() == STOPPED_KEPT {
            stopped.pop_front();
        }
        stopped.push_back(Stopped {
            id: id.to_owned(),
            workspace: session.workspace.clone(),
            session_id: session.session_id.clone(),
        });
        Ok(Value::Nil)
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
    fn call(&self, call: Call) -> BoxFuture<'static, Result<Value, String>> {
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
                outcome.map_err(|e| e.to_string())
            }
            .instrument(span),
        )
    }
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
}
