//! Keeping this instance's apps, secrets and sessions the same as the other instances': their
//! announcements applied one by one, and the whole shared state read again after every
//! reconnect of the subscriber (announcements made while it was away are lost). When Redis was
//! emptied (it restarted without persistence), an instance puts back what it holds first, so
//! the apps survive as long as one instance runs.

use super::{App, Controller, ControllerError, Keeping, Origin};
use crate::cluster::{Cluster, Event, SharedApp, SharedSession, Snapshot};
use crate::manifest::validate;
use crate::store::StoredApp;
use std::collections::HashSet;
use std::sync::Arc;

impl Controller {
    /// The shared state a starting instance restores. Redis holding nothing at all (this call
    /// set its epoch) is seeded with what this instance stored.
    pub(super) fn shared_at_start(&self, cluster: &Cluster) -> Result<Snapshot, ControllerError> {
        if cluster.epoch_changed()? == Some(true) {
            let stored = self.stored_snapshot()?;
            if !stored.apps.is_empty() {
                tracing::warn!(
                    apps = stored.apps.len(),
                    "shared state (redis) is empty: seeding it with this instance's stored apps, secrets and sessions"
                );
            }
            cluster.seed(&stored)?;
            self.put_back_others_spend(cluster)?;
        }
        Ok(cluster.snapshot()?)
    }

    /// Reads the whole shared state again and applies the difference (after the subscriber
    /// (re)connects). Redis found emptied since the last look is first seeded with what this
    /// instance holds now.
    pub fn resync(&self) -> Result<(), ControllerError> {
        let Some(cluster) = self.cluster.clone() else { return Ok(()) };
        let _change = self.one_change();
        if cluster.epoch_changed()?.is_some() {
            // A shared store is the system of record: what it keeps, not what this instance
            // happens to hold, goes back (an install another instance made while Redis was
            // away included).
            if self.store.is_shared() {
                tracing::warn!("shared state (redis) was emptied: putting back the stored apps, secrets and sessions");
                cluster.seed(&self.stored_snapshot()?)?;
            } else {
                tracing::warn!(
                    "shared state (redis) was emptied: putting back this instance's apps, secrets and sessions"
                );
                cluster.seed(&self.held_snapshot())?;
            }
            // This instance's own figures go back with its next floors; those of instances
            // that are gone only a shared store still has.
            self.put_back_others_spend(&cluster)?;
        }
        self.converge(cluster.snapshot()?)
    }

    /// Makes this instance hold what `shared` holds.
    fn converge(&self, shared: Snapshot) -> Result<(), ControllerError> {
        for ((workspace, subject), setting) in &shared.budgets {
            self.adopt_budget(workspace, subject, Some(setting.clone()))?;
        }
        for key in shared.keys.values() {
            if self.keys.get(&key.id).is_none_or(|known| *known != *key) {
                self.adopt_key(key.clone())?;
            }
        }
        for (workspace, keys) in &shared.secrets {
            for (key, value) in keys {
                let known = self.lock().secrets.get(workspace).and_then(|k| k.get(key)) == Some(value);
                if !known {
                    self.adopt_secret(workspace, key, value)?;
                }
            }
        }
        for ((workspace, id), app) in &shared.apps {
            let known = self.lock().apps.get(&(workspace.clone(), id.clone())).is_some_and(|a| {
                a.installed_at == app.installed_at && a.document == app.manifest && a.trusted == app.trusted
            });
            if !known {
                if let Err(e) = self.adopt_app(workspace, id, app.clone()) {
                    tracing::warn!(app = %id, workspace = %workspace, "cannot take up a shared app: {e}");
                }
            }
        }
        // Transient apps and sessions are this instance's own: never shared, so never missing.
        for running in self.registry.all() {
            if self.lock().is_transient(&running.workspace, &running.app_id) {
                continue;
            }
            if !shared.sessions.contains_key(&(running.workspace.clone(), running.id.clone())) {
                self.stop_session(&running.workspace, &running.id, Origin::Remote)?;
            }
        }
        let mut starts: Vec<_> = shared.sessions.iter().collect();
        starts.sort_by_key(|(_, s)| s.started_at);
        for ((workspace, session_id), s) in starts {
            if self.registry.find_session(workspace, session_id).is_none() {
                let started = self.start_session(
                    workspace,
                    &s.app_id,
                    Some(session_id.clone()),
                    Origin::Remote,
                    Default::default(),
                );
                if let Err(e) = started {
                    tracing::warn!(session = %session_id, workspace = %workspace, "cannot start a shared session: {e}");
                }
            }
        }
        let gone: Vec<(String, String)> = self
            .lock()
            .apps
            .iter()
            .filter(|(k, a)| a.keeping == Keeping::Stored && !shared.apps.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for (workspace, id) in gone {
            match self.uninstall_app(&workspace, &id, Origin::Remote) {
                Ok(()) | Err(ControllerError::AppNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Applies a change another instance announced.
    pub fn apply_remote(&self, event: Event) -> Result<(), ControllerError> {
        let Some(cluster) = self.cluster.clone() else { return Ok(()) };
        let _change = self.one_change();
        match event {
            Event::Install { workspace, app_id } => {
                if let Some(shared) = cluster.get_app(&workspace, &app_id)? {
                    self.adopt_app(&workspace, &app_id, shared)?;
                }
            }
            Event::Uninstall { workspace, app_id } => match self.uninstall_app(&workspace, &app_id, Origin::Remote) {
                Ok(()) | Err(ControllerError::AppNotFound(_)) => {}
                Err(e) => return Err(e),
            },
            Event::Start { workspace, app_id, session_id } => {
                if self.registry.find_session(&workspace, &session_id).is_none() {
                    self.start_session(&workspace, &app_id, Some(session_id), Origin::Remote, Default::default())?;
                }
            }
            Event::Stop { workspace, session_id } => match self.stop_session(&workspace, &session_id, Origin::Remote) {
                Ok(()) | Err(ControllerError::SessionNotFound(_)) => {}
                Err(e) => return Err(e),
            },
            Event::McpCancel { workspace, service_id, caller, request_id } => {
                let session = self.registry.get(&workspace, &service_id);
                if let Some(mcp) = session.as_ref().and_then(|s| s.mcp.as_deref()) {
                    mcp.gateway().notices().inflight.cancel(caller, request_id);
                }
            }
            Event::McpListChanged { workspace, service_id, method } => {
                let session = self.registry.get(&workspace, &service_id);
                let change = crate::mcp::forward::ListChange::from_method(&method);
                if let (Some(mcp), Some(change)) = (session.as_ref().and_then(|s| s.mcp.as_deref()), change) {
                    mcp.gateway().notices().announce(change);
                }
            }
            Event::Budget { workspace, subject } => {
                let setting = cluster.get_budget(&workspace, &subject)?;
                self.adopt_budget(&workspace, &subject, setting)?;
            }
            Event::Key { id } => {
                if let Some(key) = cluster.get_key(&id)? {
                    self.adopt_key(key)?;
                }
            }
            Event::SetEnv { workspace, key } => {
                if let Some(value) = cluster.get_secret(&workspace, &key)? {
                    self.adopt_secret(&workspace, &key, &value)?;
                }
            }
        }
        Ok(())
    }

    /// Stores and holds an app installed by another instance.
    fn adopt_app(&self, workspace: &str, app_id: &str, shared: SharedApp) -> Result<(), ControllerError> {
        let validated = validate::validate(&shared.manifest)?;
        self.store.put_app(&StoredApp {
            workspace: workspace.to_owned(),
            id: app_id.to_owned(),
            manifest: shared.manifest.clone(),
            installed_at: shared.installed_at,
            trusted: shared.trusted,
        })?;
        let app = App {
            id: app_id.to_owned(),
            workspace: workspace.to_owned(),
            manifest: validated.manifest,
            document: shared.manifest,
            installed_at: shared.installed_at,
            trusted: shared.trusted,
            keeping: Keeping::Stored,
        };
        self.lock().apps.insert((workspace.to_owned(), app_id.to_owned()), app);
        Ok(())
    }

    fn adopt_secret(&self, workspace: &str, key: &str, value: &str) -> Result<(), ControllerError> {
        self.store.put_secret(workspace, key, value)?;
        self.lock().secrets.entry(workspace.to_owned()).or_default().insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// What this instance holds now, as the shared state keeps it.
    fn held_snapshot(&self) -> Snapshot {
        let state = self.lock();
        let apps = state
            .apps
            .iter()
            .filter(|(_, a)| a.keeping == Keeping::Stored)
            .map(|(k, a)| {
                let app = SharedApp { manifest: a.document.clone(), installed_at: a.installed_at, trusted: a.trusted };
                (k.clone(), app)
            })
            .collect();
        let sessions = self
            .registry
            .all()
            .iter()
            .filter(|s| !state.is_transient(&s.workspace, &s.app_id))
            .map(|s| {
                let shared = SharedSession { app_id: s.app_id.clone(), started_at: s.created };
                ((s.workspace.clone(), s.id.clone()), shared)
            })
            .collect();
        let keys = self.keys.all().into_iter().map(|k| (k.id.clone(), k)).collect();
        let budgets = self
            .store
            .budgets()
            .unwrap_or_default()
            .into_iter()
            .map(|b| ((b.workspace.clone(), b.subject()), b))
            .collect();
        Snapshot { apps, secrets: state.secrets.clone(), sessions, keys, budgets }
    }

    /// What this instance's store holds, as the shared state keeps it.
    fn stored_snapshot(&self) -> Result<Snapshot, ControllerError> {
        let apps = self.store.apps()?.into_iter().map(|a| {
            let app = SharedApp { manifest: a.manifest, installed_at: a.installed_at, trusted: a.trusted };
            ((a.workspace, a.id), app)
        });
        let apps: std::collections::HashMap<_, _> = apps.collect();
        // A stored session of an app no longer stored cannot start anywhere: not seeded.
        let installed: HashSet<(String, String)> = apps.keys().cloned().collect();
        let sessions = self
            .store
            .sessions()?
            .into_iter()
            .filter(|s| installed.contains(&(s.workspace.clone(), s.app_id.clone())))
            .map(|s| ((s.workspace, s.session_id), SharedSession { app_id: s.app_id, started_at: s.started_at }))
            .collect();
        let keys = self.store.keys()?.into_iter().map(|k| (k.id.clone(), k)).collect();
        let budgets = self.store.budgets()?.into_iter().map(|b| ((b.workspace.clone(), b.subject()), b)).collect();
        Ok(Snapshot { apps, secrets: self.store.secrets()?, sessions, keys, budgets })
    }
}

/// An app's MCP notices that this instance cannot act on, passed to the others over Redis:
/// a client's cancel may reach another instance than the call it names, and an upstream's list
/// change another than the client listening for it.
pub(super) struct McpRelay {
    pub cluster: Arc<Cluster>,
    pub workspace: String,
    pub service_id: String,
}

impl McpRelay {
    fn publish(&self, event: Event) {
        let cluster = self.cluster.clone();
        // Redis's client here is blocking; the door must not wait on it.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cluster.publish(event) {
                tracing::warn!(error = %e, "an MCP notice could not be passed to the other instances");
            }
        });
    }
}

impl crate::mcp::forward::Relay for McpRelay {
    fn cancel(&self, caller: u64, request_id: rmcp::model::RequestId) {
        let (workspace, service_id) = (self.workspace.clone(), self.service_id.clone());
        self.publish(Event::McpCancel { workspace, service_id, caller, request_id });
    }

    fn list_changed(&self, change: crate::mcp::forward::ListChange) {
        let (workspace, service_id) = (self.workspace.clone(), self.service_id.clone());
        self.publish(Event::McpListChanged { workspace, service_id, method: change.method().to_owned() });
    }
}
