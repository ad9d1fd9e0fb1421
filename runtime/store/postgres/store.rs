//! The controller's state in PostgreSQL: the same tables and calls as `sqlite.rs`, shared by
//! every instance that names the database.

use super::{pg_int, PgClient};
use crate::auth::keys::KeyRecord;
use crate::store::{BudgetSetting, InstanceSpend, SpendRow, StoreError, StoredApp, StoredSession};
use std::collections::HashMap;

/// The controller's store in PostgreSQL.
pub struct PgStore {
    pg: PgClient,
    /// This instance's id: its spend figures are its own rows.
    instance: String,
}

fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt(what, e)
}

impl PgStore {
    /// Connects to `url` and brings its schema up to date; `instance` names this instance's
    /// spend figures.
    pub fn open(url: &str, instance: &str) -> Result<PgStore, StoreError> {
        let pg = PgClient::connect(url)?;
        let applied = super::migrate(&pg, None)?;
        if !applied.is_empty() {
            tracing::info!(?applied, "postgres schema migrated");
        }
        Ok(PgStore { pg, instance: instance.to_owned() })
    }

    pub fn put_app(&self, app: &StoredApp) -> Result<(), StoreError> {
        let manifest = app.manifest.to_string();
        self.pg.with(|c| {
            c.execute(
                "INSERT INTO apps (workspace, id, manifest, installed_at, trusted) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (workspace, id) DO UPDATE SET
                   manifest = excluded.manifest, installed_at = excluded.installed_at, trusted = excluded.trusted",
                &[&app.workspace, &app.id, &manifest, &pg_int(app.installed_at), &app.trusted],
            )
        })?;
        Ok(())
    }

    pub fn delete_app(&self, workspace: &str, id: &str) -> Result<(), StoreError> {
        self.pg.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM sessions WHERE workspace = $1 AND app_id = $2", &[&workspace, &id])?;
            tx.execute("DELETE FROM apps WHERE workspace = $1 AND id = $2", &[&workspace, &id])?;
            tx.commit()
        })
    }

    pub fn apps(&self) -> Result<Vec<StoredApp>, StoreError> {
        let rows = self.pg.with(|c| {
            c.query("SELECT workspace, id, manifest, installed_at, trusted FROM apps ORDER BY workspace, id", &[])
        })?;
        rows.iter()
            .map(|r| {
                let (workspace, id): (String, String) = (r.get(0), r.get(1));
                let manifest = serde_json::from_str(r.get(2)).map_err(corrupt(format!("{workspace}/{id}")))?;
                let installed_at = u64::try_from(r.get::<_, i64>(3)).unwrap_or(0);
                Ok(StoredApp { workspace, id, manifest, installed_at, trusted: r.get(4) })
            })
            .collect()
    }

    pub fn put_secret(&self, workspace: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.pg.with(|c| {
            c.execute(
                "INSERT INTO secrets (workspace, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (workspace, key) DO UPDATE SET value = excluded.value",
                &[&workspace, &key, &value],
            )
        })?;
        Ok(())
    }

    pub fn delete_secret(&self, workspace: &str, key: &str) -> Result<(), StoreError> {
        self.pg.with(|c| c.execute("DELETE FROM secrets WHERE workspace = $1 AND key = $2", &[&workspace, &key]))?;
        Ok(())
    }

    pub fn secrets(&self) -> Result<HashMap<String, HashMap<String, String>>, StoreError> {
        let rows = self.pg.with(|c| c.query("SELECT workspace, key, value FROM secrets", &[]))?;
        let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
        for r in &rows {
            out.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
        }
        Ok(out)
    }

    pub fn put_budget(
        &self,
        workspace: &str,
        subject: &str,
        setting: Option<&BudgetSetting>,
    ) -> Result<(), StoreError> {
        match setting {
            Some(setting) => {
                let text = serde_json::to_string(setting).map_err(corrupt(subject.to_owned()))?;
                self.pg.with(|c| {
                    c.execute(
                        "INSERT INTO budgets (workspace, subject, setting) VALUES ($1, $2, $3)
                         ON CONFLICT (workspace, subject) DO UPDATE SET setting = excluded.setting",
                        &[&workspace, &subject, &text],
                    )
                })?;
            }
            None => {
                self.pg.with(|c| {
                    c.execute("DELETE FROM budgets WHERE workspace = $1 AND subject = $2", &[&workspace, &subject])
                })?;
            }
        }
        Ok(())
    }

    pub fn budgets(&self) -> Result<Vec<BudgetSetting>, StoreError> {
        let rows = self.pg.with(|c| c.query("SELECT subject, setting FROM budgets", &[]))?;
        rows.iter().map(|r| serde_json::from_str(r.get(1)).map_err(corrupt(r.get(0)))).collect()
    }

    /// This instance's spend rows of `app_id` in every workspace.
    pub fn caller_spend(&self, app_id: &str) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let rows = self.pg.with(|c| {
            c.query(
                "SELECT workspace, scope, period, micros FROM spend WHERE app_id = $1 AND instance = $2",
                &[&app_id, &self.instance],
            )
        })?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), unsigned(r.get(2)), unsigned(r.get(3)))).collect())
    }

    pub fn put_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let record = serde_json::to_string(key).map_err(corrupt(key.id.clone()))?;
        self.pg.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, workspace, record) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET workspace = excluded.workspace, record = excluded.record",
                &[&key.id, &key.workspace, &record],
            )
        })?;
        Ok(())
    }

    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = self.pg.with(|c| c.query("SELECT id, record FROM api_keys", &[]))?;
        rows.iter().map(|r| serde_json::from_str(r.get(1)).map_err(corrupt(r.get(0)))).collect()
    }

    pub fn put_session(&self, s: &StoredSession) -> Result<(), StoreError> {
        self.pg.with(|c| {
            c.execute(
                "INSERT INTO sessions (workspace, session_id, app_id, started_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace, session_id) DO UPDATE SET
                   app_id = excluded.app_id, started_at = excluded.started_at",
                &[&s.workspace, &s.session_id, &s.app_id, &pg_int(s.started_at)],
            )
        })?;
        Ok(())
    }

    pub fn delete_session(&self, workspace: &str, session_id: &str) -> Result<(), StoreError> {
        self.pg.with(|c| {
            c.execute("DELETE FROM sessions WHERE workspace = $1 AND session_id = $2", &[&workspace, &session_id])
        })?;
        Ok(())
    }

    pub fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let rows = self.pg.with(|c| {
            c.query("SELECT workspace, session_id, app_id, started_at FROM sessions ORDER BY started_at", &[])
        })?;
        Ok(rows
            .iter()
            .map(|r| StoredSession {
                workspace: r.get(0),
                session_id: r.get(1),
                app_id: r.get(2),
                started_at: unsigned(r.get(3)),
            })
            .collect())
    }

    /// As SQLite's, in this instance's own rows (see the `spend` table's migration): one
    /// statement, and a figure never goes backwards within a period. The rows go as arrays in
    /// one round trip: a flush of a large group carries a row for every deployment that served
    /// since the last, and a statement each made it thousands of round trips a second.
    pub fn put_spends(&self, rows: &[SpendRow<'_>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        // One row a key: a statement's upsert cannot touch a row twice.
        let rows = SpendRow::merged(&SpendRow::in_key_order(rows));
        let workspaces: Vec<&str> = rows.iter().map(|r| r.workspace).collect();
        let apps: Vec<&str> = rows.iter().map(|r| r.app_id).collect();
        let scopes: Vec<&str> = rows.iter().map(|r| r.scope).collect();
        let periods: Vec<i64> = rows.iter().map(|r| pg_int(r.period)).collect();
        let secs: Vec<Option<i64>> = rows.iter().map(|r| r.period_secs.map(pg_int)).collect();
        let micros: Vec<i64> = rows.iter().map(|r| pg_int(r.micros)).collect();
        self.pg.with(|c| {
            c.execute(
                "INSERT INTO spend (workspace, app_id, scope, instance, period, period_secs, micros)
                 SELECT w, a, s, $4, p, ps, m
                 FROM unnest($1::text[], $2::text[], $3::text[], $5::int8[], $6::int8[], $7::int8[]) AS r(w, a, s, p, ps, m)
                 ON CONFLICT (workspace, app_id, scope, instance) DO UPDATE SET
                   micros = CASE WHEN excluded.period = spend.period THEN GREATEST(spend.micros, excluded.micros)
                            ELSE excluded.micros END,
                   period = excluded.period, period_secs = excluded.period_secs",
                &[&workspaces, &apps, &scopes, &self.instance, &periods, &secs, &micros],
            )
            .map(drop)
        })
    }

    /// This instance's spend of an app: scope -> (period, micro-dollars).
    pub fn spend(&self, workspace: &str, app_id: &str) -> Result<HashMap<String, (u64, u64)>, StoreError> {
        let rows = self.pg.with(|c| {
            c.query(
                "SELECT scope, period, micros FROM spend WHERE workspace = $1 AND app_id = $2 AND instance = $3",
                &[&workspace, &app_id, &self.instance],
            )
        })?;
        Ok(rows.iter().map(|r| (r.get(0), (unsigned(r.get(1)), unsigned(r.get(2))))).collect())
    }

    /// Every other instance's spend rows, of every app and caller scope.
    pub fn others_spend(&self) -> Result<Vec<InstanceSpend>, StoreError> {
        let rows = self.pg.with(|c| {
            c.query(
                "SELECT instance, workspace, app_id, scope, period, period_secs, micros FROM spend WHERE instance <> $1",
                &[&self.instance],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| InstanceSpend {
                instance: r.get(0),
                workspace: r.get(1),
                app_id: r.get(2),
                scope: r.get(3),
                period: unsigned(r.get(4)),
                period_secs: r.get::<_, Option<i64>>(5).map(unsigned),
                micros: unsigned(r.get(6)),
            })
            .collect())
    }

    pub fn has_app(&self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        let rows =
            self.pg.with(|c| c.query("SELECT 1 FROM apps WHERE workspace = $1 AND id = $2", &[&workspace, &id]))?;
        Ok(!rows.is_empty())
    }
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
