//! Running sessions by (workspace, service_id), read without locks on every request.

use super::session::Session;
use arc_swap::ArcSwap;
use foldhash::HashMap;
use std::sync::Arc;

/// workspace -> service_id -> session; nested so a lookup borrows the path's `&str`s.
type Table = HashMap<String, HashMap<String, Arc<Session>>>;

/// The table of running services. Readers load a snapshot; writers (start / stop, rare)
/// publish a new one.
#[derive(Default)]
pub struct Registry {
    table: ArcSwap<Table>,
}

impl Registry {
    /// The session serving `service_id` in `workspace`.
    pub fn get(&self, workspace: &str, service_id: &str) -> Option<Arc<Session>> {
        self.table.load().get(workspace)?.get(service_id).cloned()
    }

    pub fn find_session(&self, workspace: &str, session_id: &str) -> Option<Arc<Session>> {
        self.table.load().get(workspace)?.values().find(|s| s.id == session_id).cloned()
    }

    pub fn sessions_in(&self, workspace: &str) -> Vec<Arc<Session>> {
        let mut found: Vec<_> =
            self.table.load().get(workspace).map(|m| m.values().cloned().collect()).unwrap_or_default();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Every running session, ordered by workspace and id.
    pub fn all(&self) -> Vec<Arc<Session>> {
        let mut found: Vec<_> = self.table.load().values().flat_map(|m| m.values().cloned()).collect();
        found.sort_by(|a, b| (&a.workspace, &a.id).cmp(&(&b.workspace, &b.id)));
        found
    }

    /// Whether any service of `workspace` is running.
    pub fn has_workspace(&self, workspace: &str) -> bool {
        self.table.load().get(workspace).is_some_and(|m| !m.is_empty())
    }

    pub fn insert(&self, session: Arc<Session>) {
        self.table.rcu(|t| {
            let mut next = Table::clone(t);
            next.entry(session.workspace.clone()).or_default().insert(session.service_id.clone(), session.clone());
            next
        });
    }

    pub fn remove(&self, workspace: &str, service_id: &str) {
        self.table.rcu(|t| {
            let mut next = Table::clone(t);
            if let Some(services) = next.get_mut(workspace) {
                services.remove(service_id);
                if services.is_empty() {
                    next.remove(workspace);
                }
            }
            next
        });
    }
}
