//! Stored Responses API answers (`store: true`), in their own SQLite file beside the app store
//! (`responses.db` in the data dir). They are written on the request path of every stored
//! response, so this file commits with `synchronous=NORMAL` (survives a crash of ferrolite, not
//! necessarily of the machine) and never waits behind the app store's fsyncs. With
//! `--database-url` they are kept in PostgreSQL's `responses` table instead.

use super::postgres::{pg_int, PgClient};
use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    workspace  TEXT NOT NULL,
    id         TEXT NOT NULL,
    record     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
";

/// One stored response on its way to the file.
#[derive(Debug, Clone, Copy)]
pub struct ResponseRow<'a> {
    pub workspace: &'a str,
    pub id: &'a str,
    /// The record as JSON.
    pub record: &'a str,
    pub expires_at: u64,
}

/// The stored responses of every workspace, each a JSON record kept until `expires_at`.
pub struct ResponseDb {
    db: Db,
}

enum Db {
    Sqlite(Mutex<Connection>),
    Postgres(PgClient),
}

impl ResponseDb {
    /// Opens (creating if needed) `responses.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<ResponseDb, StoreError> {
        let conn = super::open_db(data_dir, "responses.db", SCHEMA, super::Durability::Normal)?;
        Ok(ResponseDb { db: Db::Sqlite(Mutex::new(conn)) })
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<ResponseDb, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(ResponseDb { db: Db::Sqlite(Mutex::new(conn)) })
    }

    /// The `responses` table of the PostgreSQL database at `url` (its schema migrated by the
    /// controller's store, opened first).
    pub fn postgres(url: &str) -> Result<ResponseDb, StoreError> {
        Ok(ResponseDb { db: Db::Postgres(PgClient::connect(url)?) })
    }

    fn conn(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
        conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn put(&self, workspace: &str, id: &str, record: &str, expires_at: u64) -> Result<(), StoreError> {
        self.put_many(&[ResponseRow { workspace, id, record, expires_at }])
    }

    /// Writes `rows` in one transaction (the store batches what requests recorded).
    pub fn put_many(&self, rows: &[ResponseRow<'_>]) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO responses (workspace, id, record, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace, id) DO UPDATE SET record = excluded.record, expires_at = excluded.expires_at";
        let conn = match &self.db {
            Db::Sqlite(conn) => conn,
            Db::Postgres(pg) => {
                return pg.with(|c| {
                    let mut tx = c.transaction()?;
                    let insert = tx.prepare(UPSERT)?;
                    for row in rows {
                        tx.execute(&insert, &[&row.workspace, &row.id, &row.record, &pg_int(row.expires_at)])?;
                    }
                    tx.commit()
                });
            }
        };
        let mut conn = Self::conn(conn);
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(UPSERT)?;
            for row in rows {
                insert.execute(params![row.workspace, row.id, row.record, row.expires_at as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The record, unless it expired before `now`.
    pub fn get(&self, workspace: &str, id: &str, now: u64) -> Result<Option<String>, StoreError> {
        const SELECT: &str = "SELECT record FROM responses WHERE workspace = $1 AND id = $2 AND expires_at > $3";
        match &self.db {
            Db::Sqlite(conn) => Ok(Self::conn(conn)
                .query_row(SELECT, params![workspace, id, now as i64], |row| row.get(0))
                .optional()?),
            Db::Postgres(pg) => {
                let rows = pg.with(|c| c.query(SELECT, &[&workspace, &id, &pg_int(now)]))?;
                Ok(rows.first().map(|r| r.get(0)))
            }
        }
    }

    /// Whether a record was there to delete.
    pub fn delete(&self, workspace: &str, id: &str) -> Result<bool, StoreError> {
        const DELETE: &str = "DELETE FROM responses WHERE workspace = $1 AND id = $2";
        let n = match &self.db {
            Db::Sqlite(conn) => Self::conn(conn).execute(DELETE, params![workspace, id])? as u64,
            Db::Postgres(pg) => pg.with(|c| c.execute(DELETE, &[&workspace, &id]))?,
        };
        Ok(n > 0)
    }

    /// Removes every record expired by `now`; returns how many.
    pub fn purge(&self, now: u64) -> Result<usize, StoreError> {
        const PURGE: &str = "DELETE FROM responses WHERE expires_at <= $1";
        Ok(match &self.db {
            Db::Sqlite(conn) => Self::conn(conn).execute(PURGE, params![now as i64])?,
            Db::Postgres(pg) => pg.with(|c| c.execute(PURGE, &[&pg_int(now)]))? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_scoped_by_workspace_and_expire() {
        let db = ResponseDb::in_memory().unwrap();
        db.put("ws-a", "resp_1", "{\"a\":1}", 100).unwrap();
        db.put("ws-a", "resp_2", "{}", 200).unwrap();
        assert_eq!(db.get("ws-a", "resp_1", 50).unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(db.get("ws-b", "resp_1", 50).unwrap(), None);
        assert_eq!(db.get("ws-a", "resp_1", 100).unwrap(), None, "expired at its instant");
        assert_eq!(db.purge(150).unwrap(), 1);
        assert!(db.get("ws-a", "resp_2", 150).unwrap().is_some());
        assert!(db.delete("ws-a", "resp_2").unwrap());
        assert!(!db.delete("ws-a", "resp_2").unwrap());
    }

    #[test]
    fn reopened_file_keeps_records() {
        let dir = tempfile::tempdir().unwrap();
        ResponseDb::open(dir.path()).unwrap().put("w", "resp_x", "{}", u64::MAX / 2).unwrap();
        assert!(ResponseDb::open(dir.path()).unwrap().get("w", "resp_x", 1).unwrap().is_some());
    }
}
