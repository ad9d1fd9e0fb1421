//! Durable state: installed apps, workspace secrets, which sessions were running, stored
//! Responses API answers (`responses.rs`) and the spend log (`spend_logs/`).
//!
//! Every change is one transaction, so a crash (even `kill -9`) leaves either the old state or
//! the new one, never half of a change. On start the server reloads apps and secrets and
//! starts again every session that was running. The database is SQLite in the data dir, or
//! with `--database-url` PostgreSQL (`postgres/`), shared by every instance and their system of
//! record.

pub mod postgres;
pub mod responses;
pub mod spend_logs;
pub mod sqlite;

pub use self::postgres::PgStore;
pub use responses::{ResponseDb, ResponseRow};
pub use sqlite::SqliteStore;

use crate::auth::keys::KeyRecord;
use std::collections::HashMap;

/// The controller's store: the same calls whichever database keeps it. Blocking: callers run
/// it off the event loop (PostgreSQL's calls move off a runtime's thread by themselves).
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl From<SqliteStore> for Store {
    fn from(store: SqliteStore) -> Store {
        Store::Sqlite(store)
    }
}

impl From<PgStore> for Store {
    fn from(store: PgStore) -> Store {
        Store::Postgres(store)
    }
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl Store {
            $(pub fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                match self {
                    Store::Sqlite(store) => store.$name($($arg),*),
                    Store::Postgres(store) => store.$name($($arg),*),
                }
            })*
        }
    };
}

delegate! {
    put_app(app: &StoredApp) -> ();
    delete_app(workspace: &str, id: &str) -> ();
    apps() -> Vec<StoredApp>;
    put_secret(workspace: &str, key: &str, value: &str) -> ();
    delete_secret(workspace: &str, key: &str) -> ();
    secrets() -> HashMap<String, HashMap<String, String>>;
    put_budget(workspace: &str, subject: &str, setting: Option<&BudgetSetting>) -> ();
    budgets() -> Vec<BudgetSetting>;
    caller_spend(app_id: &str) -> Vec<(String, String, u64, u64)>;
    put_key(key: &KeyRecord) -> ();
    keys() -> Vec<KeyRecord>;
    put_session(s: &StoredSession) -> ();
    delete_session(workspace: &str, session_id: &str) -> ();
    sessions() -> Vec<StoredSession>;
    put_spends(rows: &[SpendRow<'_>]) -> ();
    spend(workspace: &str, app_id: &str) -> HashMap<String, (u64, u64)>;
    has_app(workspace: &str, id: &str) -> bool;
}

impl Store {
    /// Every other instance's stored spend: only a shared store has any (SQLite keeps this
    /// instance's alone).
    pub fn others_spend(&self) -> Result<Vec<InstanceSpend>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(Vec::new()),
            Store::Postgres(store) => store.others_spend(),
        }
    }

    /// Whether every instance shares this store, so that it, not what one instance holds, is
    /// what an emptied Redis is seeded with.
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }
}

/// A stored app: its id, workspace and the manifest as installed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredApp {
    pub workspace: String,
    pub id: String,
    pub manifest: serde_json::Value,
    pub installed_at: u64,
    /// Installed by an admin or from the command line (may call private addresses).
    pub trusted: bool,
}

/// A session that was running when last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub workspace: String,
    pub session_id: String,
    pub app_id: String,
    pub started_at: u64,
}

/// An app's, a deployment's or a caller scope's spend in one budget period, as flushed from
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendRow<'a> {
    pub workspace: &'a str,
    /// The app's id; empty for a caller scope.
    pub app_id: &'a str,
    /// `app`, a deployment's id, or a caller scope's id.
    pub scope: &'a str,
    pub period: u64,
    /// The budget period's length (`None`: all time).
    pub period_secs: Option<u64>,
    pub micros: u64,
}

impl SpendRow<'_> {
    /// `rows` in the order of the spend table's key. A flush can carry one row for every
    /// deployment that served since the last (tens of thousands in a large group), and
    /// upserts that walk the key's b-tree in order find their pages where the last one left
    /// off: into a 100,000-row table, rows in key order took a third of the time of the same
    /// rows in random order. Ledgers come in table order, which is near key order for the
    /// generated ids (`gpt/0`, `gpt/1`, ...) but not for ids an app sets itself (UUIDs, often).
    /// The sort is stable, so two rows of one key keep their order.
    pub fn in_key_order<'r, 'a>(rows: &'r [SpendRow<'a>]) -> Vec<&'r SpendRow<'a>> {
        let mut sorted: Vec<&SpendRow<'a>> = rows.iter().collect();
        sorted.sort_by(|a, b| a.key().cmp(&b.key()));
        sorted
    }

    /// Rows in key order with each key's run folded into one row: within one period the highest
    /// figure, and a later period replaces an earlier one. Its upsert leaves what the run's
    /// upserts one after another would, as long as periods only move forward (a ledger's do).
    pub fn merged<'a>(in_order: &[&SpendRow<'a>]) -> Vec<SpendRow<'a>> {
        let mut out: Vec<SpendRow<'a>> = Vec::with_capacity(in_order.len());
        for &row in in_order {
            match out.last_mut() {
                Some(last) if last.key() == row.key() => {
                    let micros = if last.period == row.period { last.micros.max(row.micros) } else { row.micros };
                    *last = SpendRow { micros, ..*row };
                }
                _ => out.push(*row),
            }
        }
        out
    }

    fn key(&self) -> (&str, &str, &str) {
        (self.workspace, self.app_id, self.scope)
    }
}

/// One instance's stored spend of one scope in one budget period, as a shared store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpend {
    pub instance: String,
    pub workspace: String,
    /// The app's id; empty for a caller scope (an API key, a user, a workspace).
    pub app_id: String,
    /// `app`, a deployment's id, or a caller scope's id.
    pub scope: String,
    pub period: u64,
    pub period_secs: Option<u64>,
    pub micros: u64,
}

/// A user's or a workspace's budget, as `set_budget` sets it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BudgetSetting {
    pub workspace: String,
    /// The user whose keys it limits; none: the whole workspace.
    #[serde(default)]
    pub user: Option<String>,
    pub max_budget: f64,
    #[serde(default)]
    pub budget_duration: Option<String>,
}

impl BudgetSetting {
    /// Its scope's name in the store and Redis: `user:NAME` or `workspace`.
    pub fn subject(&self) -> String {
        match &self.user {
            Some(user) => format!("user:{user}"),
            None => "workspace".to_owned(),
        }
    }
}

/// How a database file commits: `Full` survives power loss, `Normal` a crash of the process.
#[derive(Debug, Clone, Copy)]
pub enum Durability {
    Full,
    Normal,
}

/// Opens (creating if needed) the SQLite file `name` in `data_dir`, readable by its owner only,
/// in WAL mode with `durability`, and applies `schema`.
pub fn open_db(
    data_dir: &std::path::Path,
    name: &str,
    schema: &str,
    durability: Durability,
) -> Result<rusqlite::Connection, StoreError> {
    let path = data_dir.join(name);
    let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
    let conn = rusqlite::Connection::open(&path).map_err(open_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
    conn.pragma_update(None, "synchronous", synchronous).map_err(open_err)?;
    conn.execute_batch(schema).map_err(open_err)?;
    Ok(conn)
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("store {path}: written by a newer ferrolite (layout version {found}; this one reads up to {known})")]
    Newer { path: String, found: i64, known: i64 },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("store (postgres): {0}")]
    Postgres(String),
    #[error("store: the stored record of {0} is not JSON: {1}")]
    Corrupt(String, serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::SpendRow;

    fn row<'a>(workspace: &'a str, scope: &'a str, period: u64, micros: u64) -> SpendRow<'a> {
        SpendRow { workspace, app_id: "app", scope, period, period_secs: Some(60), micros }
    }

    #[test]
    fn spend_rows_are_written_in_key_order_with_a_key_once() {
        let rows = [
            row("w2", "app", 1, 5),
            row("w1", "d-b", 1, 7),
            row("w1", "d-a", 1, 3),
            row("w1", "d-b", 1, 4),
            row("w1", "d-a", 2, 1),
        ];
        let sorted = SpendRow::in_key_order(&rows);
        let keys: Vec<(&str, &str, u64)> = sorted.iter().map(|r| (r.workspace, r.scope, r.micros)).collect();
        // Stable: a key's rows keep the order they came in.
        assert_eq!(keys, [("w1", "d-a", 3), ("w1", "d-a", 1), ("w1", "d-b", 7), ("w1", "d-b", 4), ("w2", "app", 5)]);
        let merged = SpendRow::merged(&sorted);
        // d-a: a later period replaces the earlier; d-b: the highest of one period.
        assert_eq!(merged, [row("w1", "d-a", 2, 1), row("w1", "d-b", 1, 7), row("w2", "app", 1, 5)]);
    }
}
