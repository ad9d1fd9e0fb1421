//! PostgreSQL as the system of record (`--database-url postgres://...`): one connection per
//! store (the controller's, the spend log's, stored responses'), its schema brought up to date
//! by the numbered migrations of `migrations/` when the server starts.
//!
//! The `postgres` crate is a synchronous client that runs its own small tokio runtime, which
//! must not be started on a thread of another runtime: every call goes through
//! [`PgClient::with`], which runs it on a thread of its own when the caller is inside a runtime
//! (the controller's calls mostly come from `spawn_blocking` threads already).

mod store;

pub use store::PgStore;

use super::StoreError;
use postgres::{Client, NoTls};
use std::sync::Mutex;

/// The schema's versions, oldest first: each applied once, in its own transaction, and
/// recorded in `schema_migrations`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "controller", include_str!("migrations/0001_controller.sql")),
    (2, "spend_logs_and_responses", include_str!("migrations/0002_spend_logs_and_responses.sql")),
];

/// Taken for the length of a migration, so instances starting together apply each once.
const MIGRATION_LOCK: i64 = 0x6665_7272_6f6c;

/// One connection to the database, made again when it broke.
pub struct PgClient {
    url: String,
    /// Boxed: a client is large, and the stores that hold this are enums.
    client: Mutex<Option<Box<Client>>>,
}

impl PgClient {
    /// Connects (the schema is not touched: see [`migrate`]).
    pub fn connect(url: &str) -> Result<PgClient, StoreError> {
        let pg = PgClient { url: url.to_owned(), client: Mutex::new(None) };
        pg.with(|_| Ok(()))?;
        Ok(pg)
    }

    /// Runs `f` on the connection, connecting first if there is none or it broke. A call that
    /// failed because the connection broke is tried once more on a new one.
    pub fn with<T: Send>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, postgres::Error> + Send + Sync,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
            for attempt in 0..2 {
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    let client = Client::connect(&self.url, NoTls).map_err(|e| StoreError::Postgres(e.to_string()))?;
                    *slot = Some(Box::new(client));
                }
                let Some(client) = slot.as_mut() else { unreachable!("connected above") };
                match f(client) {
                    Ok(value) => return Ok(value),
                    Err(e) if attempt == 0 && client.is_closed() => {
                        tracing::warn!("postgres connection lost, reconnecting: {e}");
                    }
                    Err(e) => return Err(StoreError::Postgres(e.to_string())),
                }
            }
            Err(StoreError::Postgres("the connection broke twice".into()))
        })
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        // Closing runs the client's runtime, which cannot be done on a runtime's thread.
        let client = self.client.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if client.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::spawn(move || drop(client));
        }
    }
}

/// Runs `f` here, or on a thread of its own when this thread belongs to a tokio runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Applies the migrations past the database's version, up to `target` (all of them: `None`);
/// the versions it applied.
pub fn migrate(pg: &PgClient, target: Option<i64>) -> Result<Vec<i64>, StoreError> {
    pg.with(|client| {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )?;
        let current: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.get(0);
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if *version <= current || target.is_some_and(|t| *version > t) {
                continue;
            }
            tx.batch_execute(sql)?;
            tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[version, name])?;
            applied.push(*version);
        }
        tx.commit()?;
        Ok(applied)
    })
}

/// The versions recorded in `schema_migrations`, oldest first.
pub fn applied_migrations(pg: &PgClient) -> Result<Vec<i64>, StoreError> {
    pg.with(|client| {
        let rows = client.query("SELECT version FROM schema_migrations ORDER BY version", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
}

/// Counts past `i64::MAX` are stored as that.
pub(crate) fn pg_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
