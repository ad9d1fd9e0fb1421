//! Apps and sessions: the server-apps controller behind every door (CLI, HTTP, RPC).
//!
//! An *app* is an installed, validated manifest; a *session* is a running service built from
//! one. Running sessions live in a [`Registry`] that the request path reads without locks.

pub mod demo;
pub mod logs;
pub mod registry;
pub mod session;

use crate::auth::unix_now;
use crate::manifest::validate::{self, Finding, Invalid};
use crate::manifest::Manifest;
use logs::LogType;
pub use registry::Registry;
use serde::Serialize;
use serde_json::Value;
use session::{SecretSource, Session, SessionInfo, SessionSpec, StartError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// An installed app.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub workspace: String,
    pub manifest: Manifest,
    pub installed_at: u64,
}

/// What `install` and `list_apps` report about an app.
#[derive(Debug, Clone, Serialize)]
pub struct AppInfo {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub app_type: &'static str,
    pub version: Option<String>,
    pub description: Option<String>,
    pub workspace: String,
    pub service_id: Option<String>,
    pub models: Vec<String>,
    pub installed_at: u64,
    /// Validation warnings (e.g. a literal key in the manifest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Why a controller call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("app {0:?} is already installed; pass overwrite=true to replace it")]
    AppExists(String),
    #[error("app {0:?} is not installed in this workspace")]
    AppNotFound(String),
    #[error("session {0:?} is not running in this workspace")]
    SessionNotFound(String),
    #[error("service id already in use: {0:?} is served by session {1:?}; stop it first or choose another service_id")]
    ServiceIdInUse(String, String),
    #[error("cannot start: {0}")]
    Start(#[from] StartError),
}

/// The environment and per-workspace secrets that `HYPHA_SECRET:` and `os.environ/` read.
struct Secrets<'a> {
    workspace: Option<&'a HashMap<String, String>>,
}

impl SecretSource for Secrets<'_> {
    fn env(&self, var: &str) -> Option<String> {
        std::env::var(var).ok()
    }

    fn workspace_secret(&self, key: &str) -> Option<String> {
        self.workspace.and_then(|m| m.get(key).cloned())
    }
}

#[derive(Default)]
struct State {
    /// (workspace, app id) -> app.
    apps: BTreeMap<(String, String), App>,
    /// workspace -> key -> value.
    secrets: HashMap<String, HashMap<String, String>>,
}

/// The server-apps controller.
pub struct Controller {
    state: Mutex<State>,
    registry: Registry,
    /// `http://host:port`, for the URLs sessions report.
    base_url: String,
}

impl Controller {
    pub fn new(base_url: String) -> Controller {
        Controller {
            state: Mutex::default(),
            registry: Registry::default(),
            base_url,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates and stores a manifest. Nothing is stored when validation fails.
    pub fn install(
        &self,
        workspace: &str,
        doc: &Value,
        overwrite: bool,
    ) -> Result<AppInfo, ControllerError> {
        let validated = validate::validate(doc)?;
        let id = app_id(&validated.manifest);
        let mut state = self.lock();
        let key = (workspace.to_owned(), id.clone());
        if state.apps.contains_key(&key) && !overwrite {
            return Err(ControllerError::AppExists(id));
        }
        let app = App {
            id,
            workspace: workspace.to_owned(),
            manifest: validated.manifest,
            installed_at: unix_now(),
        };
        let info = app_info(&app, &validated.warnings);
        state.apps.insert(key, app);
        Ok(info)
    }

    /// Starts a session of an installed app and registers its service.
    pub fn start(&self, workspace: &str, app_id: &str) -> Result<SessionInfo, ControllerError> {
        let state = self.lock();
        let app = state
            .apps
            .get(&(workspace.to_owned(), app_id.to_owned()))
            .ok_or_else(|| ControllerError::AppNotFound(app_id.to_owned()))?;
        let session_id = new_session_id(app_id);
        let secrets = Secrets {
            workspace: state.secrets.get(workspace),
        };
        let session = Session::build(
            SessionSpec {
                id: session_id,
                app_id: app_id.to_owned(),
                workspace: workspace.to_owned(),
                manifest: &app.manifest,
                created: unix_now(),
            },
            &secrets,
        )?;
        if let Some(existing) = self.registry.get(workspace, &session.service_id) {
            return Err(ControllerError::ServiceIdInUse(
                session.service_id.clone(),
                existing.id.clone(),
            ));
        }
        let strategy = session.strategy;
        session.logs.push(
            LogType::Log,
            format!(
                "session {} started: service {} with {} deployment(s) of {} model(s), routing {}",
                session.id,
                session.service_id,
                session.deployments.len(),
                session.model_names.len(),
                strategy
            ),
        );
        if !crate::router::is_built(strategy) {
            session.logs.push(
                LogType::Log,
                format!("routing strategy {strategy} is not built yet; using simple-shuffle"),
            );
        }
        let info = session.info(&self.base_url);
        self.registry.insert(Arc::new(session));
        Ok(info)
    }

    /// Stops a running session; its service answers 404 from then on.
    pub fn stop(&self, workspace: &str, session_id: &str) -> Result<(), ControllerError> {
        let _guard = self.lock();
        let session = self
            .registry
            .find_session(workspace, session_id)
            .ok_or_else(|| ControllerError::SessionNotFound(session_id.to_owned()))?;
        session
            .logs
            .push(LogType::Log, format!("session {session_id} stopped"));
        self.registry.remove(workspace, &session.service_id);
        Ok(())
    }

    pub fn list_apps(&self, workspace: &str) -> Vec<AppInfo> {
        self.lock()
            .apps
            .values()
            .filter(|a| a.workspace == workspace)
            .map(|a| app_info(a, &[]))
            .collect()
    }

    pub fn list_running(&self, workspace: &str) -> Vec<SessionInfo> {
        self.registry
            .sessions_in(workspace)
            .iter()
            .map(|s| s.info(&self.base_url))
            .collect()
    }

    /// Stores a workspace secret for `HYPHA_SECRET:KEY` references.
    pub fn set_env(&self, workspace: &str, key: &str, value: &str) {
        self.lock()
            .secrets
            .entry(workspace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    }
}

/// An app's id: the manifest's `id` when given, else its name made URL-safe.
pub fn app_id(manifest: &Manifest) -> String {
    if let Some(id) = manifest.extra.get("id").and_then(Value::as_str) {
        return id.to_owned();
    }
    let mut slug = String::with_capacity(manifest.name.len());
    for c in manifest.name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "app".to_owned()
    } else {
        slug.to_owned()
    }
}

fn new_session_id(app_id: &str) -> String {
    let n: u32 = rand::random();
    format!("{app_id}-{n:08x}")
}

fn app_info(app: &App, warnings: &[Finding]) -> AppInfo {
    let m = &app.manifest;
    let mut models: Vec<String> = Vec::new();
    for e in &m.config.model_list {
        if !models.contains(&e.model_name) {
            models.push(e.model_name.clone());
        }
    }
    AppInfo {
        id: app.id.clone(),
        name: m.name.clone(),
        app_type: "llm-proxy",
        version: m.version.clone(),
        description: m.description.clone(),
        workspace: app.workspace.clone(),
        service_id: m.config.service_id.clone(),
        models,
        installed_at: app.installed_at,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
    }
}
