//! The spend log's store: every served request's [`SpendRecord`], written behind the request
//! path in batches and read back a page at a time, newest first, by workspace and filters.
//!
//! Requests push records into a bounded queue (`observability::spend_log`) and never wait;
//! [`SpendLogs::flush`] drains it into the store in one transaction per batch (every second and
//! whenever a batch waits, from a background task, and at shutdown). Records older than the
//! retention are purged. The store is a [`SpendLogStore`], so another database can keep the
//! records without any caller changing: SQLite (`sqlite.rs`), or PostgreSQL (`postgres.rs`)
//! with `--database-url`.

mod postgres;
mod sqlite;

pub use self::postgres::PgSpendLogs;
pub use sqlite::SqliteSpendLogs;

use super::StoreError;
use crate::observability::spend_log::{SpendOutcome, SpendQueue, SpendRecord, BATCH};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records a page holds unless asked otherwise, and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Where spend records are kept.
pub trait SpendLogStore: Send + Sync {
    /// Appends `records` in one transaction.
    fn append(&self, records: &[SpendRecord]) -> Result<(), StoreError>;
    /// The records that match `query`, newest first, a page at a time.
    fn page(&self, query: &SpendQuery) -> Result<SpendPage, StoreError>;
    /// Removes the records of requests accepted before `before_ms`; how many.
    fn purge(&self, before_ms: u64) -> Result<usize, StoreError>;
}

/// Which records a page holds: one workspace's, filtered, after the cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendQuery {
    pub workspace: String,
    /// Accepted at or after (Unix milliseconds).
    pub start_ms: Option<u64>,
    /// Accepted before (Unix milliseconds).
    pub end_ms: Option<u64>,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
    /// An app id or a service id.
    pub app: Option<String>,
    pub status: Option<StatusFilter>,
    pub limit: usize,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
}

impl SpendQuery {
    /// Every record of `workspace`, a first page of the default size.
    pub fn workspace(workspace: impl Into<String>) -> SpendQuery {
        SpendQuery {
            workspace: workspace.into(),
            start_ms: None,
            end_ms: None,
            key_id: None,
            user: None,
            model: None,
            app: None,
            status: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// A page of records, and the cursor of the next one when there is more.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendPage {
    pub items: Vec<SpendRecord>,
    pub next_cursor: Option<String>,
}

impl SpendPage {
    /// A page of `limit` records from up to `limit + 1` rows read newest first with their
    /// ids: the one past the limit says there is a next page, which starts after the last kept.
    fn from_rows(mut rows: Vec<(i64, SpendRecord)>, limit: usize) -> SpendPage {
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(id, r)| Cursor { at_ms: r.at_ms, id: *id }.to_string())
        } else {
            None
        };
        SpendPage { items: rows.into_iter().map(|(_, r)| r).collect(), next_cursor }
    }
}

/// Which statuses match: one code (`429`), a class (`5xx`) or an outcome (`ok`, `error`,
/// `client_disconnected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Code(u16),
    /// The hundreds digit: 4 for `4xx`.
    Class(u16),
    Outcome(SpendOutcome),
}

/// A filter value that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{0:?} is not a status: give a code (200), a class (5xx) or an outcome (ok, error, client_disconnected)")]
    Status(String),
    #[error("{0:?} is not a cursor: pass on the next_cursor of the previous page as it is")]
    Cursor(String),
}

impl FromStr for StatusFilter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<StatusFilter, FilterError> {
        let bad = || FilterError::Status(text.to_owned());
        if let Some(outcome) = SpendOutcome::parse(text) {
            return Ok(StatusFilter::Outcome(outcome));
        }
        let b = text.as_bytes();
        match b {
            [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(StatusFilter::Class(u16::from(d - b'0'))),
            [b'1'..=b'5', _, _] => text.parse().map(StatusFilter::Code).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// Where a page ended: the last record's time and its place in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: u64,
    pub id: i64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.at_ms, self.id)
    }
}

impl FromStr for Cursor {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Cursor, FilterError> {
        let bad = || FilterError::Cursor(text.to_owned());
        let (at, id) = text.split_once('-').ok_or_else(bad)?;
        Ok(Cursor { at_ms: at.parse().map_err(|_| bad())?, id: id.parse().map_err(|_| bad())? })
    }
}

/// The spend log: the queue requests push into, the store it drains to, and the retention.
pub struct SpendLogs {
    queue: Arc<SpendQueue>,
    store: Box<dyn SpendLogStore>,
    retention: Duration,
    /// Held from a flush's drain to its write, so a page read after a flush sees every record
    /// pushed before it, even those another flush was writing.
    flushing: Mutex<()>,
}

impl SpendLogs {
    pub fn new(store: impl SpendLogStore + 'static, retention: Duration) -> SpendLogs {
        SpendLogs { queue: Arc::default(), store: Box::new(store), retention, flushing: Mutex::new(()) }
    }

    /// Where requests push their records.
    pub fn queue(&self) -> &Arc<SpendQueue> {
        &self.queue
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Writes the records queued when it is called to the store, a batch per transaction
    /// (blocking: run it off the event loop); how many. Records pushed while it writes wait for
    /// the next flush, so a steady stream of requests cannot keep it writing (a page read
    /// waiting on it). A batch the store refuses is lost, and said so.
    pub fn flush(&self) -> Result<usize, StoreError> {
        self.write_batches(false)
    }

    /// Writes only whole batches of [`BATCH`] records, while one waits; how many. The writer
    /// calls it when the queue says a batch is ready: the rest waits for its tick, so records
    /// arriving during a write are not committed a few at a time (each commit rewrites the
    /// table's and the index's last pages).
    pub fn flush_full_batches(&self) -> Result<usize, StoreError> {
        self.write_batches(true)
    }

    fn write_batches(&self, whole_only: bool) -> Result<usize, StoreError> {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        // Counted after taking the lock: a flush that drained records before this one holds
        // them until they are written.
        let queued = self.queue.pending();
        let mut written = 0;
        loop {
            let take = match whole_only {
                true if self.queue.pending() < BATCH => break,
                true => BATCH,
                false => BATCH.min(queued.saturating_sub(written)),
            };
            let batch = self.queue.drain(take);
            if batch.is_empty() {
                break;
            }
            if let Err(e) = self.store.append(&batch) {
                tracing::warn!(lost = batch.len(), "cannot write spend log records: {e}");
                return Err(e);
            }
            written += batch.len();
        }
        Ok(written)
    }

    /// Removes the records older than the retention; how many.
    pub fn purge_expired(&self) -> Result<usize, StoreError> {
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        self.store.purge(crate::clock::now_ms().saturating_sub(retention_ms))
    }

    /// A page of records, with every record queued so far written first.
    pub fn page(&self, query: &SpendQuery) -> Result<SpendPage, StoreError> {
        self.flush()?;
        self.store.page(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_and_cursors_read_or_say_why_not() {
        assert_eq!("429".parse(), Ok(StatusFilter::Code(429)));
        assert_eq!("5xx".parse(), Ok(StatusFilter::Class(5)));
        assert_eq!("client_disconnected".parse(), Ok(StatusFilter::Outcome(SpendOutcome::ClientDisconnected)));
        for bad in ["", "600", "20", "2000", "6xx", "okay", "4x4"] {
            assert_eq!(bad.parse::<StatusFilter>(), Err(FilterError::Status(bad.into())), "{bad:?}");
        }
        let cursor = Cursor { at_ms: 1_735_689_600_000, id: 42 };
        assert_eq!(cursor.to_string().parse(), Ok(cursor));
        assert!("x-1".parse::<Cursor>().is_err() && "17".parse::<Cursor>().is_err());
    }

    fn push(logs: &SpendLogs, count: usize) {
        use crate::observability::spend_log::{SpendEnd, SpendNames, SpendOrigin, SpendTicket};
        for _ in 0..count {
            let app = SpendNames { workspace: "w".into(), ..Default::default() };
            let origin = SpendOrigin { app, ..Default::default() };
            SpendTicket::new(logs.queue().clone(), origin, std::time::Instant::now())
                .finish(SpendEnd { status: 200, ..Default::default() });
        }
    }

    #[test]
    fn a_ready_batch_is_written_whole_and_the_rest_waits_for_the_tick() {
        let logs = SpendLogs::new(SqliteSpendLogs::in_memory().unwrap(), Duration::from_secs(60));
        push(&logs, BATCH - 1);
        assert_eq!(logs.flush_full_batches().unwrap(), 0, "no whole batch waits yet");
        push(&logs, BATCH + 5);
        assert_eq!(logs.flush_full_batches().unwrap(), 2 * BATCH);
        assert_eq!(logs.queue().pending(), 4);
        // The tick's flush writes the remainder.
        assert_eq!(logs.flush().unwrap(), 4);
        assert_eq!(logs.queue().pending(), 0);
        let page = logs.page(&SpendQuery { limit: MAX_LIMIT, ..SpendQuery::workspace("w") }).unwrap();
        assert_eq!(page.items.len(), MAX_LIMIT);
        assert!(page.next_cursor.is_some(), "{} records written in all", 2 * BATCH + 4);
    }
}
