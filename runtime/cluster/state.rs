//! The controller's shared state: installed apps, workspace secrets, running sessions and API
//! keys, one Redis hash each (field `workspace<US>id`). Every write is announced; `seed` puts back what an
//! instance holds without overwriting anything already there.

use super::{field, split, Cluster, ClusterError, Event, SECRET};
use crate::auth::keys::KeyRecord;
use crate::store::BudgetSetting;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

const APPS: &str = "ferrolite:apps";
const SECRETS: &str = "ferrolite:secrets";
const SESSIONS: &str = "ferrolite:sessions";
/// API keys by id (their records: hashes, never the keys).
const KEYS: &str = "ferrolite:keys";
/// User and workspace budgets, field `workspace<US>subject`.
const BUDGETS: &str = "ferrolite:budget-settings";

/// A stored app as Redis keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedApp {
    pub manifest: Value,
    pub installed_at: u64,
    #[serde(default)]
    pub trusted: bool,
}

/// A running session as Redis keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedSession {
    pub app_id: String,
    pub started_at: u64,
}

/// Everything the controller shares, as one instance holds it (or Redis does).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (workspace, app id) -> app.
    pub apps: HashMap<(String, String), SharedApp>,
    /// workspace -> key -> value.
    pub secrets: HashMap<String, HashMap<String, String>>,
    /// (workspace, session id) -> session.
    pub sessions: HashMap<(String, String), SharedSession>,
    /// Key id -> key.
    pub keys: HashMap<String, KeyRecord>,
    /// (workspace, subject) -> a user's or the workspace's budget.
    pub budgets: HashMap<(String, String), BudgetSetting>,
}

fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Entries of a hash whose field and value both read; others (a foreign writer) are skipped.
fn decode<T: for<'de> Deserialize<'de>>(all: HashMap<String, String>) -> HashMap<(String, String), T> {
    all.into_iter().filter_map(|(f, v)| Some((split(&f)?, serde_json::from_str(&v).ok()?))).collect()
}

impl Cluster {
    pub fn put_app(&self, workspace: &str, app_id: &str, app: &SharedApp) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HSET").arg(APPS).arg(field(workspace, app_id)).arg(encode(app)))?;
        self.publish(Event::Install { workspace: workspace.into(), app_id: app_id.into() })
    }

    pub fn get_app(&self, workspace: &str, app_id: &str) -> Result<Option<SharedApp>, ClusterError> {
        let raw: Option<String> = self.run(redis::cmd("HGET").arg(APPS).arg(field(workspace, app_id)))?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    pub fn delete_app(&self, workspace: &str, app_id: &str) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HDEL").arg(APPS).arg(field(workspace, app_id)))?;
        self.publish(Event::Uninstall { workspace: workspace.into(), app_id: app_id.into() })
    }

    pub fn put_secret(&self, workspace: &str, key: &str, value: &str) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HSET").arg(SECRETS).arg(field(workspace, key)).arg(value))?;
        self.publish(Event::SetEnv { workspace: workspace.into(), key: key.into() })
    }

    pub fn get_secret(&self, workspace: &str, key: &str) -> Result<Option<String>, ClusterError> {
        self.run(redis::cmd("HGET").arg(SECRETS).arg(field(workspace, key)))
    }

    /// Records a start and announces it.
    pub fn put_session(&self, workspace: &str, session_id: &str, s: &SharedSession) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HSET").arg(SESSIONS).arg(field(workspace, session_id)).arg(encode(s)))?;
        self.publish(Event::Start {
            workspace: workspace.into(),
            app_id: s.app_id.clone(),
            session_id: session_id.into(),
        })
    }

    pub fn delete_session(&self, workspace: &str, session_id: &str) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HDEL").arg(SESSIONS).arg(field(workspace, session_id)))?;
        self.publish(Event::Stop { workspace: workspace.into(), session_id: session_id.into() })
    }

    /// Records an API key (created, changed or revoked) and announces it.
    pub fn put_key(&self, key: &KeyRecord) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HSET").arg(KEYS).arg(&key.id).arg(encode(key)))?;
        self.publish(Event::Key { id: key.id.clone() })
    }

    /// Sets (or with `None` removes) a user's or workspace's budget, and announces it.
    pub fn put_budget(
        &self,
        workspace: &str,
        subject: &str,
        setting: Option<&BudgetSetting>,
    ) -> Result<(), ClusterError> {
        let field = field(workspace, subject);
        match setting {
            Some(setting) => self.run::<i64>(redis::cmd("HSET").arg(BUDGETS).arg(field).arg(encode(setting)))?,
            None => self.run::<i64>(redis::cmd("HDEL").arg(BUDGETS).arg(field))?,
        };
        self.publish(Event::Budget { workspace: workspace.into(), subject: subject.into() })
    }

    pub fn get_budget(&self, workspace: &str, subject: &str) -> Result<Option<BudgetSetting>, ClusterError> {
        let raw: Option<String> = self.run(redis::cmd("HGET").arg(BUDGETS).arg(field(workspace, subject)))?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    pub fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, ClusterError> {
        let raw: Option<String> = self.run(redis::cmd("HGET").arg(KEYS).arg(id))?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// The whole shared state, read in one round trip (so it is one moment's state).
    pub fn snapshot(&self) -> Result<Snapshot, ClusterError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGETALL").arg(APPS).cmd("HGETALL").arg(SECRETS).cmd("HGETALL").arg(SESSIONS);
        pipe.cmd("HGETALL").arg(KEYS).cmd("HGETALL").arg(BUDGETS);
        type Hash = HashMap<String, String>;
        let (apps, secrets, sessions, keys, budgets): (Hash, Hash, Hash, Hash, Hash) = self.run_pipe(&pipe)?;
        let keys = keys.into_iter().filter_map(|(id, v)| Some((id, serde_json::from_str(&v).ok()?))).collect();
        let mut by_workspace: HashMap<String, HashMap<String, String>> = HashMap::new();
        for (f, v) in secrets {
            if let Some((w, k)) = split(&f) {
                by_workspace.entry(w).or_default().insert(k, v);
            }
        }
        Ok(Snapshot {
            apps: decode(apps),
            secrets: by_workspace,
            sessions: decode(sessions),
            keys,
            budgets: decode(budgets),
        })
    }

    /// Puts back what this instance holds where Redis has nothing (HSETNX: an entry another
    /// instance already put back stays). Not announced: every instance reads the whole state
    /// after it finds Redis was emptied.
    pub fn seed(&self, mine: &Snapshot) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        for ((workspace, id), app) in &mine.apps {
            pipe.cmd("HSETNX").arg(APPS).arg(field(workspace, id)).arg(encode(app)).ignore();
        }
        for (workspace, keys) in &mine.secrets {
            for (key, value) in keys {
                pipe.cmd("HSETNX").arg(SECRETS).arg(field(workspace, key)).arg(value).ignore();
            }
        }
        for ((workspace, id), session) in &mine.sessions {
            pipe.cmd("HSETNX").arg(SESSIONS).arg(field(workspace, id)).arg(encode(session)).ignore();
        }
        for (id, key) in &mine.keys {
            pipe.cmd("HSETNX").arg(KEYS).arg(id).arg(encode(key)).ignore();
        }
        for ((workspace, subject), setting) in &mine.budgets {
            pipe.cmd("HSETNX").arg(BUDGETS).arg(field(workspace, subject)).arg(encode(setting)).ignore();
        }
        let secret = self.secret.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(secret) = secret else { return self.run_pipe::<()>(&pipe) };
        pipe.cmd("SET").arg(SECRET).arg(&secret).arg("NX").ignore().cmd("GET").arg(SECRET);
        let (shared,): (String,) = self.run_pipe(&pipe)?;
        if shared != secret {
            // Another instance found Redis empty first and put its own secret there.
            tracing::error!(
                "the cluster's token secret changed while redis was away: tokens signed by this instance are refused by \
                 instances started since, and theirs here; restart this instance to take up the new secret"
            );
        }
        Ok(())
    }
}
