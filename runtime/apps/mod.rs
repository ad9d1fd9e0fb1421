//! Apps and sessions: the server-apps controller behind every door (CLI, HTTP, RPC).
//!
//! An *app* is an installed, validated manifest; a *session* is a running service built from
//! one. Running sessions live in a [`Registry`] that the request path reads without locks;
//! apps, secrets and running sessions are written through to the [`Store`] so a
//! restart (even after `kill -9`) serves the same services at the same URLs.

pub mod budgets;
pub mod demo;
pub mod figures;
pub mod keys;
pub mod registry;
pub mod responses;
pub mod session;
mod stored_spend;
mod sync;
pub mod upstream_guard;

use crate::auth::keys::KeyRing;
use crate::clock::unix_now;
use crate::cluster::{Cluster, ClusterError, SharedApp, SharedSession};
use crate::grammar::{self, quoted};
use crate::manifest::validate::{self, Finding, Invalid, LoadError};
use crate::manifest::{litellm, Manifest};
use crate::observability::session_log::{LogItem, LogType};
use crate::providers::deployment::redact;
use crate::store::{SpendRow, Store, StoreError, StoredApp, StoredSession};
pub use registry::Registry;
use serde::Serialize;
use serde_json::Value;
use session::{SecretSource, Session, SessionInfo, SessionSpec, StartError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// An installed app.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub workspace: String,
    pub manifest: Manifest,
    /// The manifest as installed, for the store.
    pub document: Value,
    pub installed_at: u64,
    /// Installed by an admin (or from the command line): may call private addresses.
    pub trusted: bool,
    pub keeping: Keeping,
}

/// Where an app and its sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keeping {
    /// Written to the store (and shared with other instances): a restart serves it again.
    #[default]
    Stored,
    /// In this process only, for a door that owns its lifecycle: a Hypha worker's app ends with
    /// its Hypha session, which Hypha forgets when the worker's connection ends, so a restart
    /// must not bring it back. Never stored, shared with other instances or restored.
    Transient,
}

/// What `HYPHA_SECRET:KEY` references of a starting session read.
#[derive(Debug, Clone, Copy, Default)]
pub enum WorkspaceSecrets<'a> {
    /// The workspace's secrets stored here (`set_env`).
    #[default]
    Stored,
    /// Secrets the calling door read elsewhere (a Hypha workspace's env), used for this start only.
    Given(&'a HashMap<String, String>),
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

/// What `get_logs` returns.
#[derive(Debug, Clone, Serialize)]
pub struct LogsPage {
    pub items: Vec<LogItem>,
    pub total: usize,
    pub offset: usize,
    pub limit: Option<usize>,
}

/// A workspace secret as `get_env` shows it: never the value itself.
#[derive(Debug, Clone, Serialize)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
}

/// What `install` is given.
#[derive(Debug, Clone)]
pub enum Source {
    /// Manifest text, JSON or YAML (or a litellm config).
    Text(String),
    /// A parsed manifest.
    Document(Value),
}

/// Why a controller call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("manifest is {0}")]
    Unreadable(LoadError),
    #[error("app {} is already installed; pass overwrite=true to replace it", quoted(.0))]
    AppExists(String),
    #[error("app {} is not installed in this workspace", quoted(.0))]
    AppNotFound(String),
    #[error("session {} is not running in this workspace", quoted(.0))]
    SessionNotFound(String),
    #[error("API key {} is not a key of this workspace", quoted(.0))]
    KeyNotFound(String),
    #[error(transparent)]
    KeySpec(#[from] keys::KeySpecError),
    /// A name a caller gave does not keep to its grammar (`grammar.rs`).
    #[error("{0} {1}")]
    InvalidName(&'static str, String),
    #[error("service id already in use: {0:?} is served by session {1:?}; stop it first or choose another service_id")]
    ServiceIdInUse(String, String),
    #[error("cannot start: {0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
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
    /// Recently stopped sessions, so their logs stay readable.
    stopped: VecDeque<Arc<Session>>,
}

impl State {
    /// Whether the app is [`Keeping::Transient`] (its sessions too).
    fn is_transient(&self, workspace: &str, app_id: &str) -> bool {
        self.apps.get(&(workspace.to_owned(), app_id.to_owned())).is_some_and(|a| a.keeping == Keeping::Transient)
    }
}

/// How many stopped sessions keep their logs.
const STOPPED_KEPT: usize = 64;

/// The server-apps controller.
pub struct Controller {
    state: Mutex<State>,
    /// Held by each change for its whole course (shared state written, then this instance's):
    /// a resync reading the shared state then applying it must not run between the two halves
    /// of a change, or it would undo it.
    changes: Mutex<()>,
    registry: Registry,
    store: Store,
    /// Shared state with other instances (`--redis-url`), when configured.
    cluster: Option<Arc<Cluster>>,
    /// Stored Responses API answers (`store: true`).
    responses: Arc<responses::ResponseStore>,
    /// `http://host:port`, for the URLs sessions report.
    base_url: String,
    /// `--allow-private-upstreams`: every app may call loopback and private addresses.
    allow_private_upstreams: bool,
    /// What every app's MCP servers are called through: one pool, apart from the LLM routes'
    /// (a session does not hold the server's state), with the same `--upstream-http2`.
    mcp_http: Arc<crate::transport::UpstreamClient>,
    /// The API keys every request checks (shared with the tokens).
    keys: Arc<KeyRing>,
    /// Key, user and workspace budgets and spend.
    budgets: budgets::CallerBudgets,
}

/// Whether a change starts here (and is announced to other instances) or was announced by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Remote,
}

impl Controller {
    /// A controller keeping apps in `store` and stored Responses answers in `responses`.
    pub fn new(base_url: String, store: impl Into<Store>, responses: responses::ResponseStore) -> Controller {
        Controller {
            state: Mutex::default(),
            changes: Mutex::default(),
            registry: Registry::default(),
            store: store.into(),
            cluster: None,
            responses: Arc::new(responses),
            base_url,
            allow_private_upstreams: false,
            mcp_http: Default::default(),
            keys: Default::default(),
            budgets: Default::default(),
        }
    }

    /// Keeps API keys in `ring`, the one the tokens check.
    pub fn with_keys(mut self, ring: Arc<KeyRing>) -> Controller {
        self.keys = ring;
        self
    }

    /// Lets every app (not only admins') call loopback, link-local and private addresses.
    pub fn allow_private_upstreams(mut self, allow: bool) -> Controller {
        self.allow_private_upstreams = allow;
        self
    }

    /// Calls MCP servers as `settings` say (`--upstream-http2`: TLS ones over HTTP/2 where they
    /// offer it). Set on the controller just built, before any session shares its client.
    pub fn upstream(mut self, settings: crate::transport::Settings) -> Controller {
        match Arc::get_mut(&mut self.mcp_http) {
            Some(http) => http.configure(settings),
            None => tracing::warn!("upstream settings on a controller whose MCP client is shared: left unchanged"),
        }
        self
    }

    /// Shares apps, sessions and secrets with other instances through Redis.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Controller {
        self.cluster = Some(cluster);
        self
    }

    pub fn responses(&self) -> &Arc<responses::ResponseStore> {
        &self.responses
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
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

    /// One change at a time (see `changes`); taken at the public entry points only.
    fn one_change(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads stored apps and secrets and restarts the sessions that were running. Sessions
    /// that cannot start now (a secret gone from the environment) are reported, not fatal.
    pub fn restore(&self) -> Result<Vec<(StoredSession, ControllerError)>, ControllerError> {
        let _change = self.one_change();
        // With Redis the shared state is the truth; alone, the local store is.
        let (secrets, apps, sessions, keys, budget_settings) = match &self.cluster {
            Some(cluster) => {
                let shared = self.shared_at_start(cluster)?;
                let keys: Vec<_> = shared.keys.into_values().collect();
                for key in &keys {
                    self.store.put_key(key)?;
                }
                let settings: Vec<_> = shared.budgets.into_values().collect();
                for s in &settings {
                    self.store.put_budget(&s.workspace, &s.subject(), Some(s))?;
                }
                let apps = shared.apps.into_iter().map(|((workspace, id), a)| StoredApp {
                    workspace,
                    id,
                    manifest: a.manifest,
                    installed_at: a.installed_at,
                    trusted: a.trusted,
                });
                let sessions = shared.sessions.into_iter().map(|((workspace, session_id), s)| StoredSession {
                    workspace,
                    session_id,
                    app_id: s.app_id,
                    started_at: s.started_at,
                });
                let mut sessions = sessions.collect::<Vec<_>>();
                sessions.sort_by_key(|s| s.started_at);
                (shared.secrets, apps.collect::<Vec<_>>(), sessions, keys, settings)
            }
            None => (
                self.store.secrets()?,
                self.store.apps()?,
                self.store.sessions()?,
                self.store.keys()?,
                self.store.budgets()?,
            ),
        };
        self.keys.replace_all(keys);
        self.restore_budgets(budget_settings)?;
        {
            let mut state = self.lock();
            state.secrets = secrets;
            for stored in apps {
                match validate::validate(&stored.manifest) {
                    Ok(ok) => {
                        state.apps.insert(
                            (stored.workspace.clone(), stored.id.clone()),
                            App {
                                id: stored.id,
                                workspace: stored.workspace,
                                manifest: ok.manifest,
                                document: stored.manifest,
                                installed_at: stored.installed_at,
                                trusted: stored.trusted,
                                keeping: Keeping::Stored,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(app = %stored.id, workspace = %stored.workspace, "stored app no longer validates: {e}")
                    }
                }
            }
        }
        let mut failed = Vec::new();
        for s in sessions {
            let restarted = self.start_session(
                &s.workspace,
                &s.app_id,
                Some(s.session_id.clone()),
                Origin::Remote,
                Default::default(),
            );
            if let Err(e) = restarted {
                tracing::warn!(session = %s.session_id, "cannot restart session: {e}");
                let _ = self.store.delete_session(&s.workspace, &s.session_id);
                failed.push((s, e));
            }
        }
        Ok(failed)
    }

    /// Validates and stores a manifest. Nothing is stored when validation fails.
    /// `trusted` installs (admin tokens, the command line) may point at private addresses.
    /// The running session of an app installed from exactly `doc` (by the command line), if
    /// any. An instance restarted with the same `--config` keeps serving it rather than
    /// reinstalling and restarting it, which, with several instances, would stop it on every
    /// instance for a moment on each restart of any one of them.
    pub fn running_unchanged(&self, workspace: &str, doc: &serde_json::Value) -> Option<Arc<Session>> {
        let converted;
        let doc = if litellm::is_litellm_config(doc) {
            converted = litellm::to_manifest(doc, "litellm");
            &converted
        } else {
            doc
        };
        let id = app_id(&validate::validate(doc).ok()?.manifest);
        let unchanged = self
            .lock()
            .apps
            .get(&(workspace.to_owned(), id.clone()))
            .is_some_and(|app| app.trusted && app.document == *doc);
        if !unchanged {
            return None;
        }
        self.registry.sessions_in(workspace).into_iter().find(|s| s.app_id == id)
    }

    pub fn install(
        &self,
        workspace: &str,
        source: Source,
        overwrite: bool,
        trusted: bool,
    ) -> Result<AppInfo, ControllerError> {
        self.install_app(workspace, source, overwrite, trusted, Keeping::Stored)
    }

    /// Installs (or replaces) an app held in memory only ([`Keeping::Transient`]), for a door
    /// that owns its lifecycle.
    pub fn install_transient(
        &self,
        workspace: &str,
        source: Source,
        trusted: bool,
    ) -> Result<AppInfo, ControllerError> {
        self.install_app(workspace, source, true, trusted, Keeping::Transient)
    }

    fn install_app(
        &self,
        workspace: &str,
        source: Source,
        overwrite: bool,
        trusted: bool,
        keeping: Keeping,
    ) -> Result<AppInfo, ControllerError> {
        check_name("workspace", grammar::name(workspace))?;
        let doc = match source {
            Source::Text(text) => validate::parse_text(&text).map_err(ControllerError::Unreadable)?,
            Source::Document(doc) => doc,
        };
        let doc = if litellm::is_litellm_config(&doc) { litellm::to_manifest(&doc, "litellm") } else { doc };
        let validated = validate::validate(&doc)?;
        if !trusted && !self.allow_private_upstreams {
            let findings = upstream_guard::check_manifest(&validated.manifest);
            if !findings.is_empty() {
                return Err(Invalid { findings }.into());
            }
        }
        let id = app_id(&validated.manifest);
        let _change = self.one_change();
        let mut state = self.lock();
        let key = (workspace.to_owned(), id.clone());
        if state.apps.contains_key(&key) && !overwrite {
            return Err(ControllerError::AppExists(id));
        }
        let replaced = state.apps.get(&key).map(|a| a.keeping);
        let app = App {
            id,
            workspace: workspace.to_owned(),
            manifest: validated.manifest,
            document: doc,
            installed_at: unix_now(),
            trusted,
            keeping,
        };
        match keeping {
            Keeping::Stored => {
                if let Some(cluster) = &self.cluster {
                    let shared = SharedApp { manifest: app.document.clone(), installed_at: app.installed_at, trusted };
                    cluster.put_app(workspace, &app.id, &shared)?;
                }
                self.store.put_app(&StoredApp {
                    workspace: app.workspace.clone(),
                    id: app.id.clone(),
                    manifest: app.document.clone(),
                    installed_at: app.installed_at,
                    trusted,
                })?;
            }
            // A stored app replaced by a transient one must not come back at the next restart.
            Keeping::Transient if replaced == Some(Keeping::Stored) => {
                if let Some(cluster) = &self.cluster {
                    cluster.delete_app(workspace, &app.id)?;
                }
                self.store.delete_app(workspace, &app.id)?;
            }
            Keeping::Transient => {}
        }
        let info = app_info(&app, &validated.warnings);
        state.apps.insert(key, app);
        Ok(info)
    }

    /// What `install` would find wrong with `source`, storing nothing: every finding, errors
    /// first, warnings after (text that does not parse is one error at the root).
    pub fn check(&self, source: Source, trusted: bool) -> Vec<Finding> {
        let doc = match source {
            Source::Text(text) => match validate::parse_text(&text) {
                Ok(doc) => doc,
                Err(e) => {
                    let message = e.to_string();
                    return vec![Finding { severity: validate::Severity::Error, pointer: String::new(), message }];
                }
            },
            Source::Document(doc) => doc,
        };
        let doc = if litellm::is_litellm_config(&doc) { litellm::to_manifest(&doc, "litellm") } else { doc };
        match validate::validate(&doc) {
            Err(invalid) => invalid.findings,
            Ok(validated) => {
                let mut findings = Vec::new();
                if !trusted && !self.allow_private_upstreams {
                    findings = upstream_guard::check_manifest(&validated.manifest);
                }
                findings.extend(validated.warnings);
                findings
            }
        }
    }

    /// Starts a session of an installed app and registers its service.
    pub fn start(&self, workspace: &str, app_id: &str) -> Result<SessionInfo, ControllerError> {
        self.start_with(workspace, app_id, WorkspaceSecrets::Stored)
    }

    /// `start`, its `HYPHA_SECRET:` references read from `secrets`.
    pub fn start_with(
        &self,
        workspace: &str,
        app_id: &str,
        secrets: WorkspaceSecrets<'_>,
    ) -> Result<SessionInfo, ControllerError> {
        check_name("workspace", grammar::name(workspace))?;
        let _change = self.one_change();
        self.start_session(workspace, app_id, None, Origin::Local, secrets)
    }

    fn start_session(
        &self,
        workspace: &str,
        app_id: &str,
        session_id: Option<String>,
        origin: Origin,
        secrets: WorkspaceSecrets<'_>,
    ) -> Result<SessionInfo, ControllerError> {
        let state = self.lock();
        let app = state
            .apps
            .get(&(workspace.to_owned(), app_id.to_owned()))
            .ok_or_else(|| ControllerError::AppNotFound(app_id.to_owned()))?;
        let secrets = Secrets {
            workspace: match secrets {
                WorkspaceSecrets::Stored => state.secrets.get(workspace),
                WorkspaceSecrets::Given(given) => Some(given),
            },
        };
        let session = Session::build(
            SessionSpec {
                id: session_id.unwrap_or_else(|| new_session_id(app_id)),
                app_id: app_id.to_owned(),
                workspace: workspace.to_owned(),
                manifest: &app.manifest,
                created: unix_now(),
                public_only: !app.trusted && !self.allow_private_upstreams,
                mcp_http: self.mcp_http.clone(),
            },
            &secrets,
        )?;
        // The final base URL of each deployment (Bedrock's is built from its region) is checked
        // here; each connection is checked again when it is made.
        if !app.trusted && !self.allow_private_upstreams {
            for d in &session.table.deployments {
                if let Some(base) = &d.api_base {
                    upstream_guard::check_url(base)
                        .map_err(|reason| StartError::PrivateUpstream(d.id.clone(), reason))?;
                }
            }
        }
        if let Some(existing) = self.registry.get(workspace, &session.service_id) {
            return Err(ControllerError::ServiceIdInUse(session.service_id.clone(), existing.id.clone()));
        }
        let table = &session.table;
        table.logs.push(
            LogType::Log,
            format!(
                "{} session {} started: service {} with {} deployment(s) of {} model(s), routing {}",
                unix_now(),
                session.id,
                session.service_id,
                table.deployments.len(),
                table.model_names.len(),
                table.strategy
            ),
        );
        if session.cache.as_ref().is_some_and(|c| c.wants_shared()) && self.cluster.is_none() {
            table.logs.push(
                LogType::Log,
                format!(
                    "{} warning: cache_params.type is redis but this server has no --redis-url: answers are cached in this process only",
                    unix_now()
                ),
            );
        }
        // Spend carries over from earlier sessions of the app (and from before a restart).
        for (scope, (period, micros)) in self.store.spend(workspace, app_id)? {
            if scope == APP_SCOPE {
                table.app_spend.restore(period, micros);
            } else if let Some(i) = table.deployment_index(&scope) {
                table.deployment_spend[i].restore(period, micros);
            }
        }
        // A shared store's other instances' spend counts too.
        stored_spend::take_up_app(table, workspace, app_id, &stored_spend::sums(&self.store.others_spend()?));
        if app.keeping == Keeping::Stored {
            if let (Some(cluster), Origin::Local) = (&self.cluster, origin) {
                let shared = SharedSession { app_id: app_id.to_owned(), started_at: session.created };
                cluster.put_session(workspace, &session.id, &shared)?;
            }
            self.store.put_session(&StoredSession {
                workspace: workspace.to_owned(),
                session_id: session.id.clone(),
                app_id: app_id.to_owned(),
                started_at: session.created,
            })?;
        }
        if let (Some(cluster), Some(mcp)) = (&self.cluster, &session.mcp) {
            let relay = sync::McpRelay {
                cluster: cluster.clone(),
                workspace: workspace.into(),
                service_id: session.service_id.clone(),
            };
            mcp.gateway().notices().set_relay(Box::new(relay));
        }
        let info = session.info(&self.base_url);
        self.registry.insert(Arc::new(session));
        Ok(info)
    }

    /// Stops a running session; its service answers 404 from then on.
    pub fn stop(&self, workspace: &str, session_id: &str) -> Result<(), ControllerError> {
        let _change = self.one_change();
        self.stop_session(workspace, session_id, Origin::Local)
    }

    fn stop_session(&self, workspace: &str, session_id: &str, origin: Origin) -> Result<(), ControllerError> {
        let mut state = self.lock();
        let session = self
            .registry
            .find_session(workspace, session_id)
            .ok_or_else(|| ControllerError::SessionNotFound(session_id.to_owned()))?;
        let transient = state.is_transient(workspace, &session.app_id);
        if let (Some(cluster), Origin::Local, false) = (&self.cluster, origin, transient) {
            cluster.delete_session(workspace, session_id)?;
        }
        self.write_spend(std::slice::from_ref(&session))?;
        self.store.delete_session(workspace, session_id)?;
        self.registry.remove(workspace, &session.service_id);
        session.table.logs.push(LogType::Log, format!("{} session {session_id} stopped", unix_now()));
        if state.stopped.len() == STOPPED_KEPT {
            state.stopped.pop_front();
        }
        state.stopped.push_back(session);
        Ok(())
    }

    /// Stops the app's sessions, then removes it.
    pub fn uninstall(&self, workspace: &str, app_id: &str) -> Result<(), ControllerError> {
        let _change = self.one_change();
        self.uninstall_app(workspace, app_id, Origin::Local)
    }

    fn uninstall_app(&self, workspace: &str, app_id: &str, origin: Origin) -> Result<(), ControllerError> {
        if !self.lock().apps.contains_key(&(workspace.to_owned(), app_id.to_owned())) {
            return Err(ControllerError::AppNotFound(app_id.to_owned()));
        }
        for session in self.registry.sessions_in(workspace).iter().filter(|s| s.app_id == app_id) {
            self.stop_session(workspace, &session.id, origin)?;
        }
        let mut state = self.lock();
        let transient = state.is_transient(workspace, app_id);
        if let (Some(cluster), Origin::Local, false) = (&self.cluster, origin, transient) {
            cluster.delete_app(workspace, app_id)?;
        }
        self.store.delete_app(workspace, app_id)?;
        state.apps.remove(&(workspace.to_owned(), app_id.to_owned()));
        Ok(())
    }

    pub fn list_apps(&self, workspace: &str) -> Vec<AppInfo> {
        self.lock().apps.values().filter(|a| a.workspace == workspace).map(|a| app_info(a, &[])).collect()
    }

    pub fn list_running(&self, workspace: &str) -> Vec<SessionInfo> {
        self.registry.sessions_in(workspace).iter().map(|s| s.info(&self.base_url)).collect()
    }

    /// A page of a session's log (running or recently stopped).
    pub fn get_logs(
        &self,
        workspace: &str,
        session_id: &str,
        kind: Option<LogType>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<LogsPage, ControllerError> {
        let session = self.registry.find_session(workspace, session_id).or_else(|| {
            self.lock().stopped.iter().rev().find(|s| s.workspace == workspace && s.id == session_id).cloned()
        });
        let session = session.ok_or_else(|| ControllerError::SessionNotFound(session_id.to_owned()))?;
        let (items, total) = session.table.logs.read(kind, offset, limit);
        Ok(LogsPage { items, total, offset, limit })
    }

    /// Writes every running session's changed spend to the store.
    pub fn flush_spend(&self) -> Result<(), ControllerError> {
        self.write_spend(&self.registry.all())?;
        self.write_caller_spend()
    }

    /// Writes the changed spend of `sessions` in one transaction.
    fn write_spend(&self, sessions: &[Arc<Session>]) -> Result<(), ControllerError> {
        let mut rows = Vec::new();
        for session in sessions {
            dirty_spend(session, &mut rows);
        }
        Ok(self.store.put_spends(&rows)?)
    }

    /// Usage and spend of a running (or recently stopped) session: per app, model and deployment.
    pub fn get_usage(&self, workspace: &str, session_id: &str) -> Result<Value, ControllerError> {
        let session = self.registry.find_session(workspace, session_id).or_else(|| {
            self.lock().stopped.iter().rev().find(|s| s.workspace == workspace && s.id == session_id).cloned()
        });
        let session = session.ok_or_else(|| ControllerError::SessionNotFound(session_id.to_owned()))?;
        let mut report = usage_report(&session);
        // The workspace's spend per API key, user and the workspace itself (across its apps).
        let callers: Vec<Value> = self
            .budgets
            .spend(workspace)
            .into_iter()
            .map(|(scope, name, spend, reserved)| serde_json::json!({"scope": scope, "name": name, "spend": spend, "reserved": reserved}))
            .collect();
        report["callers"] = Value::Array(callers);
        Ok(report)
    }

    /// Stores a workspace secret for `HYPHA_SECRET:KEY` references (used at the next start).
    pub fn set_env(&self, workspace: &str, key: &str, value: &str) -> Result<(), ControllerError> {
        check_name("workspace", grammar::name(workspace))?;
        check_name("key", grammar::secret_key(key))?;
        let _change = self.one_change();
        if let Some(cluster) = &self.cluster {
            cluster.put_secret(workspace, key, value)?;
        }
        let mut state = self.lock();
        self.store.put_secret(workspace, key, value)?;
        state.secrets.entry(workspace.to_owned()).or_default().insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// The workspace's secrets (or one of them), masked to their last four characters.
    pub fn get_env(&self, workspace: &str, key: Option<&str>) -> Vec<EnvEntry> {
        let state = self.lock();
        let mut entries: Vec<EnvEntry> = state
            .secrets
            .get(workspace)
            .into_iter()
            .flatten()
            .filter(|(k, _)| key.is_none_or(|want| want == k.as_str()))
            .map(|(k, v)| EnvEntry { key: k.clone(), value: redact(v) })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }
}

/// A grammar's refusal of the name a caller gave for `what`.
fn check_name(what: &'static str, checked: Result<(), String>) -> Result<(), ControllerError> {
    checked.map_err(|reason| ControllerError::InvalidName(what, reason))
}

/// The spend scope of a whole app (deployments use their ids).
pub(crate) const APP_SCOPE: &str = "app";

/// The session's spend changed since its last flush (the app's and each deployment's), taken.
fn dirty_spend<'a>(session: &'a Session, rows: &mut Vec<SpendRow<'a>>) {
    let (workspace, app_id) = (session.workspace.as_str(), session.app_id.as_str());
    for (scope, ledger) in figures::ledgers(&session.table) {
        if let Some((period, micros)) = ledger.take_dirty() {
            rows.push(SpendRow { workspace, app_id, scope, period, period_secs: ledger.period_secs(), micros });
        }
    }
}

fn usage_report(session: &Session) -> Value {
    use serde_json::json;
    let budget = |b: Option<crate::router::spend::Budget>| {
        b.map(|b| json!({"max_budget": b.max_usd, "budget_duration_seconds": b.period.map(|p| p.as_secs())}))
    };
    use crate::router::history::{self, Bucket};
    let table = &session.table;
    let history: Vec<Vec<Bucket>> = table.stats.iter().map(|s| s.history.buckets()).collect();
    let mut models: BTreeMap<String, crate::router::stats::Totals> = BTreeMap::new();
    let mut model_spend: BTreeMap<String, f64> = BTreeMap::new();
    let deployments: Vec<Value> = table
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let t = table.stats[i].totals();
            let m = models.entry(d.model_name.clone()).or_default();
            m.requests += t.requests;
            m.errors += t.errors;
            m.prompt_tokens += t.prompt_tokens;
            m.completion_tokens += t.completion_tokens;
            let spend = table.deployment_spend[i].spent();
            *model_spend.entry(d.model_name.clone()).or_default() += spend;
            json!({
                "deployment": d.id, "model_name": d.model_name, "provider": d.provider, "model": d.upstream_model,
                "requests": t.requests, "errors": t.errors, "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens, "in_flight": table.stats[i].in_flight(),
                "spend": spend, "budget": budget(table.deployment_budgets[i]),
                "cooling_down_for": table.stats[i].cooling_for().map(|d| d.as_secs_f64()),
                "history": history[i].iter().map(Bucket::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let per_model: Vec<Value> = models
        .iter()
        .map(|(name, t)| json!({"model_name": name, "requests": t.requests, "errors": t.errors, "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens, "spend": model_spend[name]}))
        .collect();
    json!({
        "session_id": session.id, "app_id": session.app_id, "service_id": session.service_id,
        "spend": table.app_spend.spent(), "budget": budget(table.app_budget),
        // What this instance's requests in flight hold against the app's budget.
        "reserved": table.app_spend.reserved() as f64 / 1e6,
        "models": per_model, "deployments": deployments,
        "history": {
            "bucket_seconds": history::LAYOUT.bucket_seconds, "buckets_kept": history::LAYOUT.buckets_kept,
            "app": history::merge(history.iter().map(Vec::as_slice)).iter().map(Bucket::to_json).collect::<Vec<_>>(),
        },
    })
}

/// An app's id: the manifest's `id` when given, else its name made URL-safe.
pub fn app_id(manifest: &Manifest) -> String {
    if let Some(id) = &manifest.id {
        return id.clone(); // its grammar is the schema's
    }
    let mut slug = String::with_capacity(manifest.name.len().min(64));
    for c in manifest.name.chars() {
        if slug.len() == 64 {
            break; // the grammar's longest name
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ResponseDb, SqliteStore};
    use serde_json::json;
    use std::time::Duration;

    fn controller(dir: &std::path::Path) -> Controller {
        let store = SqliteStore::open(dir).expect("store");
        let responses = responses::ResponseStore::new(ResponseDb::open(dir).expect("db"), Duration::from_secs(60));
        Controller::new("http://127.0.0.1:1".into(), store, responses)
    }

    fn app(id: &str, api_key: &str) -> Source {
        Source::Document(json!({
            "id": id, "name": id, "type": "llm-proxy",
            "config": {"service_id": id, "model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o", "api_key": api_key}}]},
        }))
    }

    #[test]
    fn a_transient_app_and_its_session_are_gone_after_a_restart_and_stored_ones_come_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = controller(dir.path());
        first.install("ws", app("kept", "sk-literal"), false, false).expect("installed");
        first.start("ws", "kept").expect("started");
        first.install_transient("ws", app("held", "sk-literal"), false).expect("installed");
        first.start("ws", "held").expect("started");
        drop(first);

        let again = controller(dir.path());
        assert!(again.restore().expect("restored").is_empty());
        let running: Vec<String> = again.list_running("ws").into_iter().map(|s| s.app_id).collect();
        assert_eq!(running, ["kept"]);
        let installed: Vec<String> = again.list_apps("ws").into_iter().map(|a| a.id).collect();
        assert_eq!(installed, ["kept"]);
    }

    #[test]
    fn given_workspace_secrets_replace_the_stored_ones_for_one_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let controller = controller(dir.path());
        controller.set_env("ws", "KEY", "stored").expect("set");
        controller.install_transient("ws", app("a", "HYPHA_SECRET:OTHER"), false).expect("installed");
        let given = HashMap::from([("OTHER".to_owned(), "sk-given".to_owned())]);
        controller.start_with("ws", "a", WorkspaceSecrets::Given(&given)).expect("resolved from the given secrets");
        controller.install_transient("ws", app("b", "HYPHA_SECRET:KEY"), false).expect("installed");
        let missing = controller.start_with("ws", "b", WorkspaceSecrets::Given(&given)).expect_err("KEY is not given");
        assert!(missing.to_string().contains("HYPHA_SECRET:KEY"), "{missing}");
    }
}
