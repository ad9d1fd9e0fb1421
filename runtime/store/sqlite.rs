//! The embedded SQLite store in the data dir (`ferrolite.db`, mode 0600, WAL journal).

use super::{BudgetSetting, SpendRow, StoreError, StoredApp, StoredSession};
use crate::auth::keys::KeyRecord;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS apps (
    workspace    TEXT NOT NULL,
    id           TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    installed_at INTEGER NOT NULL,
    trusted      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, id)
);
CREATE TABLE IF NOT EXISTS secrets (
    workspace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (workspace, key)
);
CREATE TABLE IF NOT EXISTS spend (
    workspace TEXT NOT NULL,
    app_id    TEXT NOT NULL,
    scope     TEXT NOT NULL,
    period    INTEGER NOT NULL,
    micros    INTEGER NOT NULL,
    PRIMARY KEY (workspace, app_id, scope)
);
CREATE TABLE IF NOT EXISTS budgets (
    workspace TEXT NOT NULL,
    subject   TEXT NOT NULL,
    setting   TEXT NOT NULL,
    PRIMARY KEY (workspace, subject)
);
CREATE TABLE IF NOT EXISTS api_keys (
    id        TEXT NOT NULL PRIMARY KEY,
    workspace TEXT NOT NULL,
    record    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    workspace  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, session_id)
);
";

/// SQLite-backed store. Writes are rare (install / start / stop), so one connection behind a
/// mutex is enough; the request path never touches it.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) `ferrolite.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        // WAL + synchronous=FULL: a committed transaction survives kill -9 and power loss.
        let conn = super::open_db(data_dir, "ferrolite.db", SCHEMA, super::Durability::Full)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    /// An in-memory store, for tests and `--ephemeral` runs.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn put_app(&self, app: &StoredApp) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO apps (workspace, id, manifest, installed_at, trusted) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (workspace, id) DO UPDATE SET
               manifest = excluded.manifest, installed_at = excluded.installed_at, trusted = excluded.trusted",
            params![app.workspace, app.id, app.manifest.to_string(), app.installed_at as i64, app.trusted],
        )?;
        Ok(())
    }

    /// Removes an app and every session record of it, in one transaction.
    pub fn delete_app(&self, workspace: &str, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM sessions WHERE workspace = ?1 AND app_id = ?2", params![workspace, id])?;
        tx.execute("DELETE FROM apps WHERE workspace = ?1 AND id = ?2", params![workspace, id])?;
        tx.commit()?;
        Ok(())
    }

    pub fn apps(&self) -> Result<Vec<StoredApp>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT workspace, id, manifest, installed_at, trusted FROM apps ORDER BY workspace, id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })?;
        let mut apps = Vec::new();
        for row in rows {
            let (workspace, id, manifest, installed_at, trusted) = row?;
            let manifest =
                serde_json::from_str(&manifest).map_err(|e| StoreError::Corrupt(format!("{workspace}/{id}"), e))?;
            apps.push(StoredApp { workspace, id, manifest, installed_at: installed_at as u64, trusted });
        }
        Ok(apps)
    }

    pub fn put_secret(&self, workspace: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO secrets (workspace, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (workspace, key) DO UPDATE SET value = excluded.value",
            params![workspace, key, value],
        )?;
        Ok(())
    }

    /// Sets (or with `None` removes) a user's or a workspace's budget (`subject`: `user:NAME`
    /// or `workspace`).
    pub fn put_budget(
        &self,
        workspace: &str,
        subject: &str,
        setting: Option<&BudgetSetting>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        match setting {
            Some(setting) => {
                let text = serde_json::to_string(setting).map_err(|e| StoreError::Corrupt(subject.to_owned(), e))?;
                conn.execute(
                    "INSERT INTO budgets (workspace, subject, setting) VALUES (?1, ?2, ?3)
                     ON CONFLICT (workspace, subject) DO UPDATE SET setting = excluded.setting",
                    params![workspace, subject, text],
                )?;
            }
            None => {
                conn.execute("DELETE FROM budgets WHERE workspace = ?1 AND subject = ?2", params![workspace, subject])?;
            }
        }
        Ok(())
    }

    pub fn budgets(&self) -> Result<Vec<BudgetSetting>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT subject, setting FROM budgets")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (subject, setting) = row?;
            out.push(serde_json::from_str(&setting).map_err(|e| StoreError::Corrupt(subject, e))?);
        }
        Ok(out)
    }

    /// The stored spend rows of `app_id` in every workspace: (workspace, scope, period, micros).
    pub fn caller_spend(&self, app_id: &str) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT workspace, scope, period, micros FROM spend WHERE app_id = ?1")?;
        let rows = stmt.query_map(params![app_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds or replaces an API key (its record: the hash, never the key).
    pub fn put_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let record = serde_json::to_string(key).map_err(|e| StoreError::Corrupt(key.id.clone(), e))?;
        self.conn().execute(
            "INSERT INTO api_keys (id, workspace, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET workspace = excluded.workspace, record = excluded.record",
            params![key.id, key.workspace, record],
        )?;
        Ok(())
    }

    /// Every API key, revoked ones included (their spend and logs still name them).
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, record FROM api_keys")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut keys = Vec::new();
        for row in rows {
            let (id, record) = row?;
            keys.push(serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(id, e))?);
        }
        Ok(keys)
    }

    pub fn delete_secret(&self, workspace: &str, key: &str) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM secrets WHERE workspace = ?1 AND key = ?2", params![workspace, key])?;
        Ok(())
    }

    /// workspace -> key -> value.
    pub fn secrets(&self) -> Result<HashMap<String, HashMap<String, String>>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT workspace, key, value FROM secrets")?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
        for row in rows {
            let (workspace, key, value) = row?;
            out.entry(workspace).or_default().insert(key, value);
        }
        Ok(out)
    }

    pub fn put_session(&self, s: &StoredSession) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO sessions (workspace, session_id, app_id, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![s.workspace, s.session_id, s.app_id, s.started_at as i64],
        )?;
        Ok(())
    }

    pub fn delete_session(&self, workspace: &str, session_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE workspace = ?1 AND session_id = ?2", params![workspace, session_id])?;
        Ok(())
    }

    pub fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT workspace, session_id, app_id, started_at FROM sessions ORDER BY started_at")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredSession {
                workspace: r.get(0)?,
                session_id: r.get(1)?,
                app_id: r.get(2)?,
                started_at: r.get::<_, i64>(3)? as u64,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>().map_err(StoreError::from)
    }

    /// Records spend rows in one transaction: one fsync per flush, not one per row (a flush
    /// covers every deployment that served since the last, which may be hundreds). A figure
    /// never goes backwards within a period.
    pub fn put_spends(&self, rows: &[SpendRow<'_>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO spend (workspace, app_id, scope, period, micros) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (workspace, app_id, scope) DO UPDATE SET
                   micros = CASE WHEN excluded.period = spend.period THEN max(spend.micros, excluded.micros) ELSE excluded.micros END,
                   period = excluded.period",
            )?;
            for r in SpendRow::in_key_order(rows) {
                upsert.execute(params![r.workspace, r.app_id, r.scope, r.period as i64, r.micros as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// An app's stored spend: scope (`app` or a deployment id) -> (period, micro-dollars).
    pub fn spend(&self, workspace: &str, app_id: &str) -> Result<HashMap<String, (u64, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT scope, period, micros FROM spend WHERE workspace = ?1 AND app_id = ?2")?;
        let rows = stmt.query_map(params![workspace, app_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (scope, period, micros) = row?;
            out.insert(scope, (period, micros));
        }
        Ok(out)
    }

    /// Whether an app is stored (for tests of the nothing-stored-on-failure rule).
    pub fn has_app(&self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .conn()
            .query_row("SELECT 1 FROM apps WHERE workspace = ?1 AND id = ?2", params![workspace, id], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_survives_reopen_and_uninstall_removes_sessions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store
                .put_app(&StoredApp {
                    workspace: "w".into(),
                    id: "a".into(),
                    manifest: json!({"name": "a"}),
                    trusted: false,
                    installed_at: 1,
                })
                .unwrap();
            store.put_secret("w", "KEY", "value").unwrap();
            store
                .put_session(&StoredSession {
                    workspace: "w".into(),
                    session_id: "a-1".into(),
                    app_id: "a".into(),
                    started_at: 2,
                })
                .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.apps().unwrap().len(), 1);
        assert_eq!(store.secrets().unwrap()["w"]["KEY"], "value");
        assert_eq!(store.sessions().unwrap()[0].session_id, "a-1");
        store.delete_app("w", "a").unwrap();
        assert!(store.apps().unwrap().is_empty());
        assert!(store.sessions().unwrap().is_empty(), "an uninstalled app's sessions go with it");
    }
}
