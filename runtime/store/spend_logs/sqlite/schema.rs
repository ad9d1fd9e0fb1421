//! `spend_logs.db`'s tables, and the one change of layout a file written by an earlier
//! ferrolite goes through when it opens.

use crate::store::StoreError;
use rusqlite::Connection;

/// The layout this version writes (`PRAGMA user_version`).
const VERSION: i64 = 2;

/// Version 2: a row refers to its route (app, model, deployment, key, user) in `spend_routes`
/// instead of carrying the six names itself. The workspace stays in the row, for the index
/// every page reads by.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spend_routes (
    id         INTEGER PRIMARY KEY,
    workspace  TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    service_id TEXT NOT NULL,
    model      TEXT,
    deployment TEXT,
    key_id     TEXT,
    user_id    TEXT
);
CREATE INDEX IF NOT EXISTS spend_routes_by_names
    ON spend_routes (workspace, app_id, service_id, model, deployment, key_id, user_id);
CREATE TABLE IF NOT EXISTS spend_logs (
    id                INTEGER PRIMARY KEY,
    at_ms             INTEGER NOT NULL,
    request_id        TEXT NOT NULL,
    workspace         TEXT NOT NULL,
    route             INTEGER NOT NULL REFERENCES spend_routes (id),
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    cost              REAL NOT NULL,
    status            INTEGER NOT NULL,
    outcome           TEXT NOT NULL,
    latency_ms        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_logs_by_time ON spend_logs (workspace, at_ms, id);
-- Purges walk the rowid order instead of an index on at_ms, which cost every append a third
-- b-tree insert (version 1 made one).
DROP INDEX IF EXISTS spend_logs_expiry;
PRAGMA user_version = 2;
";

/// Brings `conn`'s file to this version's layout, then makes sure its tables exist.
pub fn prepare(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open { path: path.to_owned(), source };
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(open_err)?;
    if version > VERSION {
        return Err(StoreError::Newer { path: path.to_owned(), found: version, known: VERSION });
    }
    bring_up(conn).map_err(open_err)
}

fn bring_up(conn: &mut Connection) -> rusqlite::Result<()> {
    // Versions 0 and 1 had the same columns (1 only dropped an index).
    let names_in_rows: bool =
        conn.query_row("SELECT count(*) > 0 FROM pragma_table_info('spend_logs') WHERE name = 'app_id'", [], |row| {
            row.get(0)
        })?;
    if names_in_rows {
        from_version_1(conn)?;
    }
    conn.execute_batch(SCHEMA)
}

/// Version 1's rows (the names in the row) moved into version 2's tables, ids kept, in one
/// transaction: a crash midway leaves the file as it was.
fn from_version_1(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "ALTER TABLE spend_logs RENAME TO spend_logs_v1;
         DROP INDEX IF EXISTS spend_logs_by_time;
         DROP INDEX IF EXISTS spend_logs_expiry;",
    )?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(
        "INSERT INTO spend_routes (workspace, app_id, service_id, model, deployment, key_id, user_id)
             SELECT DISTINCT workspace, app_id, service_id, model, deployment, key_id, user_id FROM spend_logs_v1;
         INSERT INTO spend_logs (id, at_ms, request_id, workspace, route, prompt_tokens, completion_tokens,
                                 cached_tokens, cost, status, outcome, latency_ms)
             SELECT l.id, l.at_ms, l.request_id, l.workspace, r.id, l.prompt_tokens, l.completion_tokens,
                    l.cached_tokens, l.cost, l.status, l.outcome, l.latency_ms
             FROM spend_logs_v1 l JOIN spend_routes r
               ON r.workspace = l.workspace AND r.app_id = l.app_id AND r.service_id = l.service_id
              AND r.model IS l.model AND r.deployment IS l.deployment AND r.key_id IS l.key_id
              AND r.user_id IS l.user_id;
         DROP TABLE spend_logs_v1;",
    )?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::super::SqliteSpendLogs;
    use crate::observability::spend_log::SpendOutcome;
    use crate::store::spend_logs::{SpendLogStore, SpendQuery};
    use crate::store::StoreError;
    use rusqlite::Connection;

    /// Version 1's table, as ferrolite wrote it until version 2.
    const VERSION_1: &str = "
        CREATE TABLE spend_logs (
            id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, request_id TEXT NOT NULL, key_id TEXT, user_id TEXT,
            workspace TEXT NOT NULL, app_id TEXT NOT NULL, service_id TEXT NOT NULL, model TEXT, deployment TEXT,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
            cost REAL NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL, latency_ms REAL NOT NULL);
        CREATE INDEX spend_logs_by_time ON spend_logs (workspace, at_ms, id);
        INSERT INTO spend_logs VALUES
            (7, 1000, 'r1', 'key-a', 'ada', 'w', 'app', 'svc', 'gpt', 'gpt/0', 10, 2, 1, 0.25, 200, 'ok', 1.5),
            (8, 2000, 'r2', NULL, NULL, 'w', 'app', 'svc', 'gpt', 'gpt/0', 3, 0, 0, 0.0, 502, 'error', 9.0),
            (9, 3000, 'r3', 'key-a', 'ada', 'w', 'app', 'svc', 'gpt', 'gpt/0', 1, 1, 0, 0.5, 200, 'ok', 2.0),
            (10, 4000, 'r4', NULL, NULL, 'v', 'app', 'svc', NULL, NULL, 0, 0, 0, 0.0, 400, 'error', 0.5);
        PRAGMA user_version = 1;
    ";

    fn count(path: &std::path::Path, sql: &str) -> i64 {
        Connection::open(path).unwrap().query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn a_version_1_file_keeps_every_record_and_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend_logs.db");
        Connection::open(&path).unwrap().execute_batch(VERSION_1).unwrap();

        let logs = SqliteSpendLogs::open(dir.path()).unwrap();
        let page = logs.page(&SpendQuery::workspace("w")).unwrap();
        let ids: Vec<&str> = page.items.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["r3", "r2", "r1"]);
        let r1 = &page.items[2];
        assert_eq!(
            (r1.key_id.as_deref(), r1.user.as_deref(), r1.deployment.as_deref()),
            (Some("key-a"), Some("ada"), Some("gpt/0"))
        );
        assert_eq!(
            (r1.prompt_tokens, r1.completion_tokens, r1.cached_tokens, r1.cost, r1.status),
            (10, 2, 1, 0.25, 200)
        );
        assert_eq!((page.items[1].key_id.as_deref(), page.items[1].outcome), (None, SpendOutcome::Error));
        let other = logs.page(&SpendQuery::workspace("v")).unwrap();
        assert_eq!((other.items.len(), other.items[0].model.as_deref()), (1, None), "NULL names stay NULL");
        let by_key = logs.page(&SpendQuery { key_id: Some("key-a".into()), ..SpendQuery::workspace("w") }).unwrap();
        assert_eq!(by_key.items.len(), 2);
        drop(logs);

        assert_eq!(count(&path, "SELECT count(*) FROM spend_routes"), 3, "one route per distinct set of names");
        let conn = Connection::open(&path).unwrap();
        let ids: String = conn
            .query_row("SELECT group_concat(id) FROM (SELECT id FROM spend_logs ORDER BY id)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ids, "7,8,9,10", "ids kept: cursors handed out before still point where they did");
        assert_eq!(count(&path, "PRAGMA user_version"), 2);
        assert_eq!(count(&path, "SELECT count(*) FROM sqlite_master WHERE name = 'spend_logs_v1'"), 0);
    }

    #[test]
    fn a_file_of_a_newer_layout_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend_logs.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE later (x); PRAGMA user_version = 9;").unwrap();
        let Err(error) = SqliteSpendLogs::open(dir.path()) else { panic!("a newer file opened") };
        assert!(matches!(error, StoreError::Newer { found: 9, known: 2, .. }), "{error}");
        assert!(error.to_string().contains("spend_logs.db") && error.to_string().contains("newer"), "{error}");
        assert_eq!(count(&path, "SELECT count(*) FROM sqlite_master WHERE name = 'spend_logs'"), 0);
    }
}
