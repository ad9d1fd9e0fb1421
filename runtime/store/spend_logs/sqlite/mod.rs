//! Spend records in SQLite: `spend_logs.db` in the data dir, a file of its own so that its
//! appends and purges never wait behind the app store's fsyncs (`ferrolite.db` commits with
//! `synchronous=FULL`) and an operator can archive or drop it alone. It commits with
//! `synchronous=NORMAL`: a crash of ferrolite loses nothing written, one of the machine at most
//! the last batches, as for stored responses.
//!
//! A row keeps its workspace and refers to the rest of its names (app, model, deployment, key,
//! user) by a route id (`routes.rs`); `schema.rs` has the tables and brings an older file's
//! rows over.

mod routes;
mod schema;

use super::{Cursor, SpendLogStore, SpendPage, SpendQuery, StatusFilter};
use crate::observability::metrics::LabelText;
use crate::observability::spend_log::{SpendOutcome, SpendRecord};
use crate::store::StoreError;
use routes::{Names, RouteIds};
use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// What a page reads, in [`read_row`]'s order: the row and its route's names. `CROSS JOIN` keeps
/// the row the outer loop, so the page walks `spend_logs_by_time` in order and looks each route
/// up by id.
const FROM: &str = "SELECT l.id, l.at_ms, l.request_id, r.key_id, r.user_id, l.workspace, r.app_id, r.service_id, \
    r.model, r.deployment, l.prompt_tokens, l.completion_tokens, l.cached_tokens, l.cost, l.status, l.outcome, \
    l.latency_ms FROM spend_logs l CROSS JOIN spend_routes r ON r.id = l.route";

/// The file in the data dir.
const FILE: &str = "spend_logs.db";

/// Rows a purge deletes per statement, so a large purge never holds the file for long.
const PURGE_CHUNK: usize = 10_000;

/// The spend log in SQLite.
pub struct SqliteSpendLogs {
    inner: Mutex<Inner>,
}

struct Inner {
    conn: Connection,
    /// The ids of the routes committed to the file.
    routes: RouteIds,
}

impl SqliteSpendLogs {
    /// Opens (creating if needed) `spend_logs.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SqliteSpendLogs, StoreError> {
        let mut conn = crate::store::open_db(data_dir, FILE, "", crate::store::Durability::Normal)?;
        schema::prepare(&mut conn, &data_dir.join(FILE).display().to_string())?;
        SqliteSpendLogs::with(conn)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<SqliteSpendLogs, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        schema::prepare(&mut conn, ":memory:")?;
        SqliteSpendLogs::with(conn)
    }

    fn with(conn: Connection) -> Result<SqliteSpendLogs, StoreError> {
        // The bundled SQLite enforces foreign keys by default: every appended row would open
        // `spend_routes` and look its route up (nine more steps of the row's program, ~940
        // instructions a pass-through). A row's route id is always one this file holds:
        // `RouteIds` hands out only ids read from it or added to it in the same transaction,
        // and routes are never deleted.
        conn.pragma_update(None, "foreign_keys", false)?;
        Ok(SqliteSpendLogs { inner: Mutex::new(Inner { conn, routes: RouteIds::default() }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SpendLogStore for SqliteSpendLogs {
    fn append(&self, records: &[SpendRecord]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let Inner { conn, routes } = &mut *inner;
        let tx = conn.transaction()?;
        let mut pending = routes.pending();
        let rows = records
            .iter()
            .map(|record| Ok((record, pending.id(&tx, names(record))?)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let found = pending.found();
        {
            let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
            if chunks.len() > 0 {
                let mut insert = tx.prepare_cached(insert_sql(ROWS_PER_INSERT))?;
                for chunk in &mut chunks {
                    insert.execute(params_from_iter(chunk.iter().flat_map(|&(r, route)| row_values(r, route))))?;
                }
            }
            let mut insert = tx.prepare_cached(insert_sql(1))?;
            for &(record, route) in chunks.remainder() {
                insert.execute(params_from_iter(row_values(record, route)))?;
            }
        }
        tx.commit()?;
        routes.learn(found);
        Ok(())
    }

    fn page(&self, q: &SpendQuery) -> Result<SpendPage, StoreError> {
        let mut sql = format!("{FROM} WHERE l.workspace = ?");
        let mut args: Vec<Sql> = vec![Sql::Text(q.workspace.clone())];
        let mut and = |clause: &str, values: Vec<Sql>| {
            sql.push_str(" AND ");
            sql.push_str(clause);
            args.extend(values);
        };
        if let Some(start) = q.start_ms {
            and("l.at_ms >= ?", vec![Sql::Integer(sql_int(start))]);
        }
        if let Some(end) = q.end_ms {
            and("l.at_ms < ?", vec![Sql::Integer(sql_int(end))]);
        }
        let text = |s: &String| Sql::Text(s.clone());
        if let Some(key) = &q.key_id {
            and("r.key_id = ?", vec![text(key)]);
        }
        if let Some(user) = &q.user {
            and("r.user_id = ?", vec![text(user)]);
        }
        if let Some(model) = &q.model {
            and("r.model = ?", vec![text(model)]);
        }
        if let Some(app) = &q.app {
            and("(r.app_id = ? OR r.service_id = ?)", vec![text(app), text(app)]);
        }
        match q.status {
            Some(StatusFilter::Code(code)) => and("l.status = ?", vec![Sql::Integer(code.into())]),
            Some(StatusFilter::Class(class)) => {
                let low = i64::from(class) * 100;
                and("l.status >= ? AND l.status < ?", vec![Sql::Integer(low), Sql::Integer(low + 100)])
            }
            Some(StatusFilter::Outcome(outcome)) => and("l.outcome = ?", vec![Sql::Text(outcome.as_str().into())]),
            None => {}
        }
        if let Some(Cursor { at_ms, id }) = q.cursor {
            let at = Sql::Integer(sql_int(at_ms));
            and("(l.at_ms < ? OR (l.at_ms = ? AND l.id < ?))", vec![at.clone(), at, Sql::Integer(id)]);
        }
        // One more than asked: whether there is a next page.
        sql.push_str(" ORDER BY l.at_ms DESC, l.id DESC LIMIT ?");
        args.push(Sql::Integer(sql_int(q.limit as u64 + 1)));
        let inner = self.lock();
        let mut select = inner.conn.prepare_cached(&sql)?;
        let rows = select.query_map(params_from_iter(args), read_row)?.collect::<Result<_, _>>()?;
        Ok(SpendPage::from_rows(rows, q.limit))
    }

    /// Rows are appended in the order requests finish, so the rowid order is the time order
    /// but for requests that ran long: everything before the first row younger than
    /// `before_ms` is older, and goes. A straggler (a long stream, recorded late) holds back
    /// the rows after it until it expires too, minutes later.
    fn purge(&self, before_ms: u64) -> Result<usize, StoreError> {
        let boundary: Option<i64> = self
            .lock()
            .conn
            .query_row("SELECT id FROM spend_logs WHERE at_ms >= ?1 ORDER BY id LIMIT 1", [sql_int(before_ms)], |row| {
                row.get(0)
            })
            .optional()?;
        let boundary = boundary.unwrap_or(i64::MAX);
        let mut purged = 0;
        loop {
            // In chunks, so a large purge never holds the file for long.
            let conn = &self.lock().conn;
            let lowest: Option<i64> = conn.query_row("SELECT min(id) FROM spend_logs", [], |row| row.get(0))?;
            let Some(lowest) = lowest.filter(|&id| id < boundary) else { return Ok(purged) };
            let upto = lowest.saturating_add(PURGE_CHUNK as i64).min(boundary);
            purged += conn.execute("DELETE FROM spend_logs WHERE id < ?1", [upto])?;
        }
    }
}

/// Rows one INSERT writes: a statement's fixed cost (its cursors, its halt) is paid once per
/// chunk, not once per record.
const ROWS_PER_INSERT: usize = 32;

/// The INSERT of `rows` records (1 or [`ROWS_PER_INSERT`]), made once.
fn insert_sql(rows: usize) -> &'static str {
    static ONE: OnceLock<String> = OnceLock::new();
    static CHUNK: OnceLock<String> = OnceLock::new();
    let make = || {
        let row = format!("({})", ["?"; 11].join(", "));
        format!(
            "INSERT OR FAIL INTO spend_logs (at_ms, request_id, workspace, route, prompt_tokens, completion_tokens, \
             cached_tokens, cost, status, outcome, latency_ms) VALUES {}",
            vec![row; rows].join(", ")
        )
    };
    if rows == 1 {
        ONE.get_or_init(make)
    } else {
        CHUNK.get_or_init(make)
    }
}

/// A record's route, as `spend_routes` keeps it.
fn names(r: &SpendRecord) -> Names<'_> {
    [
        Some(&*r.workspace),
        Some(&*r.app_id),
        Some(&*r.service_id),
        r.model.as_deref(),
        r.deployment.as_deref(),
        r.key_id.as_deref(),
        r.user.as_deref(),
    ]
}

/// A record's 11 column values, in [`insert_sql`]'s order, borrowed from it.
fn row_values(r: &SpendRecord, route: i64) -> [ToSqlOutput<'_>; 11] {
    fn value(v: ValueRef<'_>) -> ToSqlOutput<'_> {
        ToSqlOutput::Borrowed(v)
    }
    fn text(s: &str) -> ToSqlOutput<'_> {
        value(ValueRef::Text(s.as_bytes()))
    }
    fn int(n: u64) -> ToSqlOutput<'static> {
        value(ValueRef::Integer(sql_int(n)))
    }
    [
        int(r.at_ms),
        text(&r.request_id),
        text(&r.workspace),
        value(ValueRef::Integer(route)),
        int(r.prompt_tokens),
        int(r.completion_tokens),
        int(r.cached_tokens),
        value(ValueRef::Real(r.cost)),
        int(u64::from(r.status)),
        text(r.outcome.as_str()),
        value(ValueRef::Real(r.latency_ms)),
    ]
}

/// SQLite integers are signed: counts past `i64::MAX` are stored as that.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<(i64, SpendRecord)> {
    let count = |i: usize| row.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    let outcome: String = row.get(15)?;
    let record = SpendRecord {
        at_ms: count(1)?,
        request_id: row.get(2)?,
        key_id: row.get(3)?,
        user: row.get(4)?,
        workspace: row.get(5)?,
        app_id: row.get(6)?,
        service_id: row.get(7)?,
        model: row.get::<_, Option<String>>(8)?.map(LabelText::from_owned),
        deployment: row.get::<_, Option<String>>(9)?.map(LabelText::from_owned),
        prompt_tokens: count(10)?,
        completion_tokens: count(11)?,
        cached_tokens: count(12)?,
        cost: row.get(13)?,
        status: row.get(14)?,
        // A row another version wrote with an outcome this one does not know reads as an error.
        outcome: SpendOutcome::parse(&outcome).unwrap_or(SpendOutcome::Error),
        latency_ms: row.get(16)?,
    };
    Ok((row.get(0)?, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: u64, id: &str, model: &str, status: u16) -> SpendRecord {
        SpendRecord {
            at_ms,
            request_id: id.into(),
            key_id: Some(format!("key-{model}")),
            user: None,
            workspace: "w".into(),
            app_id: "app".into(),
            service_id: "svc".into(),
            model: Some(LabelText::from_owned(model.to_owned())),
            deployment: Some(format!("{model}/0").into()),
            prompt_tokens: 10,
            completion_tokens: 2,
            cached_tokens: 1,
            cost: 0.25,
            status,
            outcome: if status < 400 { SpendOutcome::Ok } else { SpendOutcome::Error },
            latency_ms: 1.5,
        }
    }

    fn ids(page: &SpendPage) -> Vec<&str> {
        page.items.iter().map(|r| r.request_id.as_str()).collect()
    }

    #[test]
    fn pages_run_newest_first_through_ties_and_filters() {
        let db = SqliteSpendLogs::in_memory().unwrap();
        let mut other = record(5_000, "elsewhere", "a", 200);
        other.workspace = "v".into();
        // Two records of the same millisecond: the cursor must not skip or repeat either.
        let batch =
            [record(1_000, "r1", "a", 200), record(2_000, "r2", "b", 502), record(2_000, "r3", "a", 200), other];
        db.append(&batch).unwrap();
        db.append(&[record(3_000, "r4", "b", 429)]).unwrap();

        let mut query = SpendQuery { limit: 2, ..SpendQuery::workspace("w") };
        let first = db.page(&query).unwrap();
        assert_eq!(ids(&first), ["r4", "r3"]);
        query.cursor = Some(first.next_cursor.as_deref().unwrap().parse().unwrap());
        let second = db.page(&query).unwrap();
        assert_eq!((ids(&second), second.next_cursor.as_deref()), (vec!["r2", "r1"], None), "r3 and r2 tie");
        assert_eq!(second.items[1], batch[0], "a record reads back as written");

        let filtered = |q: SpendQuery| ids(&db.page(&q).unwrap()).into_iter().map(str::to_owned).collect::<Vec<_>>();
        let all = SpendQuery::workspace("w");
        assert_eq!(filtered(SpendQuery { model: Some("a".into()), ..all.clone() }), ["r3", "r1"]);
        assert_eq!(filtered(SpendQuery { key_id: Some("key-b".into()), ..all.clone() }), ["r4", "r2"]);
        assert_eq!(filtered(SpendQuery { status: Some(StatusFilter::Class(5)), ..all.clone() }), ["r2"]);
        assert_eq!(filtered(SpendQuery { status: Some(StatusFilter::Code(429)), ..all.clone() }), ["r4"]);
        let errors = SpendQuery { status: Some(StatusFilter::Outcome(SpendOutcome::Error)), ..all.clone() };
        assert_eq!(filtered(errors), ["r4", "r2"]);
        assert_eq!(filtered(SpendQuery { start_ms: Some(2_000), end_ms: Some(3_000), ..all.clone() }), ["r3", "r2"]);
        assert_eq!(filtered(SpendQuery { app: Some("svc".into()), user: Some("u".into()), ..all.clone() }), [""; 0]);
        assert_eq!(filtered(SpendQuery::workspace("v")), ["elsewhere"]);

        assert_eq!(db.purge(2_000).unwrap(), 1, "r1 alone is older");
        assert_eq!(filtered(all).len(), 3);
    }

    #[test]
    fn a_purge_takes_what_is_older_in_chunks_and_a_straggler_waits() {
        let db = SqliteSpendLogs::in_memory().unwrap();
        // More than two chunks of old records, then a long stream recorded late (accepted at
        // 500, after records of 3,000), then young ones.
        let old: Vec<SpendRecord> =
            (0..PURGE_CHUNK * 2 + 7).map(|i| record(i as u64 % 1_000, "old", "a", 200)).collect();
        db.append(&old).unwrap();
        db.append(&[record(3_000, "young", "a", 200), record(500, "straggler", "a", 200)]).unwrap();
        db.append(&[record(4_000, "younger", "a", 200)]).unwrap();
        assert_eq!(db.purge(2_000).unwrap(), old.len(), "every record before the first young one");
        let left = |db: &SqliteSpendLogs| ids(&db.page(&SpendQuery::workspace("w")).unwrap()).join(",");
        assert_eq!(left(&db), "younger,young,straggler", "the straggler waits behind a younger record");
        assert_eq!(db.purge(2_000).unwrap(), 0, "nothing more goes until the young one expires");
        assert_eq!(db.purge(3_500).unwrap(), 2);
        assert_eq!(left(&db), "younger");
        assert_eq!(db.purge(10_000).unwrap(), 1, "all of it");
        assert_eq!(db.purge(10_000).unwrap(), 0, "an empty log purges nothing");
    }

    #[test]
    fn records_written_in_chunks_read_back_as_written() {
        let db = SqliteSpendLogs::in_memory().unwrap();
        let mut batch: Vec<SpendRecord> =
            (0..ROWS_PER_INSERT * 2 + 3).map(|i| record(i as u64, &format!("r{i}"), "m", 200)).collect();
        batch[5].user = Some("ada".into());
        batch[40].key_id = None;
        db.append(&batch).unwrap();
        let page = db.page(&SpendQuery { limit: 500, ..SpendQuery::workspace("w") }).unwrap();
        let mut read = page.items;
        read.reverse();
        assert_eq!(read, batch, "newest first, otherwise as written");
    }

    #[test]
    fn a_route_is_stored_once_and_found_again_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let routes = |dir: &std::path::Path| -> i64 {
            Connection::open(dir.join("spend_logs.db"))
                .unwrap()
                .query_row("SELECT count(*) FROM spend_routes", [], |row| row.get(0))
                .unwrap()
        };
        let db = SqliteSpendLogs::open(dir.path()).unwrap();
        let mut keyless = record(3, "r3", "a", 200);
        keyless.key_id = None;
        db.append(&[record(1, "r1", "a", 200), record(2, "r2", "b", 200), keyless.clone()]).unwrap();
        db.append(&[record(4, "r4", "a", 200)]).unwrap();
        assert_eq!(routes(dir.path()), 3, "a, b, and a without its key");
        drop(db);
        let db = SqliteSpendLogs::open(dir.path()).unwrap();
        db.append(&[record(5, "r5", "b", 200), keyless]).unwrap();
        assert_eq!(routes(dir.path()), 3, "found in the file, not added again");
        let page = db.page(&SpendQuery { model: Some("a".into()), ..SpendQuery::workspace("w") }).unwrap();
        assert_eq!(ids(&page), ["r4", "r3", "r3", "r1"]);
    }

    #[test]
    fn a_reopened_file_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        SqliteSpendLogs::open(dir.path()).unwrap().append(&[record(1, "r1", "a", 200)]).unwrap();
        let reopened = SqliteSpendLogs::open(dir.path()).unwrap();
        assert_eq!(ids(&reopened.page(&SpendQuery::workspace("w")).unwrap()), ["r1"]);
    }
}
