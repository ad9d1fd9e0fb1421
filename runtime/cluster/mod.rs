//! Several ferrolite instances behind one load balancer, sharing state through Redis
//! (`ferrolite serve --redis-url redis://...`).
//!
//! - Installed apps, workspace secrets and running sessions live in Redis hashes and every
//!   change is announced on a pub/sub channel, so every instance installs, starts and stops the
//!   same things (`state.rs`). Announcements are at most once: after any (re)connect of its
//!   subscriber an instance reads the whole shared state again, and when it finds Redis was
//!   emptied (the epoch key changed) it first puts back what it holds.
//! - Spend, load and cooldowns are figures each instance writes under its own id and every
//!   instance sums (`figures.rs`), exchanged every 200 ms off the request path: a write repeated
//!   after a failure never counts twice, and an instance's figures survive Redis restarting.
//! - Budgets: each instance leases headroom of every budget it serves (held in Redis against
//!   all of them at once by a Lua script), reserves requests' worst-case costs on its leases,
//!   and folds their real costs into its spend figure (`budgets.rs`, `leases.rs`).
//! - Stored Responses API answers: one expiring key each (`responses.rs`).
//!
//! Requests wait on Redis only to lease more budget headroom (at most 500 ms, and not at all once
//! Redis failed to answer, until the figures flow again) and to read or write a stored
//! response: with Redis away, each instance routes and budgets on its local view plus the last
//! figures it read, and controller changes fail with 503 so no instance drifts from the others.
//! See README.

mod budgets;
mod cache;
mod figures;
mod leases;
mod responses;
mod state;

pub use budgets::{Floor, Limit, ScopePeriod};
pub use figures::{LoadFigure, Others, Outgoing, SpendFigure, StoredFigures};
pub use leases::{LeaseHold, Reserved};
pub use state::{SharedApp, SharedSession, Snapshot};

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const EVENTS: &str = "ferrolite:events";
const SECRET: &str = "ferrolite:server-secret";
/// Set (to a random value) by the first instance that finds Redis without it: a different
/// value later means Redis lost everything in between.
const EPOCH: &str = "ferrolite:epoch";
/// Separates the parts of hash fields and keys (no identifier may contain it).
const SEP: char = '\u{1f}';

/// A change one instance made that the others apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Install {
        workspace: String,
        app_id: String,
    },
    Uninstall {
        workspace: String,
        app_id: String,
    },
    Start {
        workspace: String,
        app_id: String,
        session_id: String,
    },
    Stop {
        workspace: String,
        session_id: String,
    },
    SetEnv {
        workspace: String,
        key: String,
    },
    /// An API key was created, changed or revoked.
    Key {
        id: String,
    },
    /// A user's or a workspace's budget was set or cleared.
    Budget {
        workspace: String,
        subject: String,
    },
    /// A client cancelled an MCP tool call at an instance that is not serving it.
    McpCancel {
        workspace: String,
        service_id: String,
        caller: u64,
        request_id: rmcp::model::RequestId,
    },
    /// An app's MCP upstream said a list changed (`method` is the notification's).
    McpListChanged {
        workspace: String,
        service_id: String,
        method: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: Event,
}

/// Redis failed, is unreachable, or did not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("shared state (redis) unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("shared state (redis) did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot keep this instance's id in {path}: {source}")]
    InstanceId { path: String, source: std::io::Error },
}

/// This instance's handle on the shared state.
pub struct Cluster {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    /// This instance's id: it ignores its own announcements and writes its figures under it.
    pub instance: String,
    healthy: AtomicBool,
    /// The epoch this instance last saw.
    epoch: Mutex<Option<String>>,
    /// The token-signing secret (hex) this instance took up, put back when Redis was emptied.
    secret: Mutex<Option<String>>,
    /// This instance's leases of budget headroom.
    leases: leases::Leases,
}

/// How long any one Redis call may take (connect, or one answer).
const TIMEOUT: Duration = Duration::from_secs(2);

/// The instance id's file in the data dir.
const INSTANCE_FILE: &str = "instance-id";

/// This instance's id: kept in the data dir, so a restarted instance takes up its own figures
/// again instead of adding a second set beside them.
pub fn instance_id(data_dir: &Path) -> Result<String, ClusterError> {
    let path = data_dir.join(INSTANCE_FILE);
    let fail = |source| ClusterError::InstanceId { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) if is_instance_id(text.trim()) => Ok(text.trim().to_owned()),
        Ok(_) => Err(fail(std::io::Error::other("not 16 lowercase hex digits; delete it to get a new id"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("{:016x}", rand::random::<u64>());
            std::fs::write(&path, format!("{id}\n")).map_err(fail)?;
            Ok(id)
        }
        Err(e) => Err(fail(e)),
    }
}

fn is_instance_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Cluster {
    /// Connects (failing start-up if Redis cannot be reached now).
    pub async fn connect(url: &str, instance: String) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), config).await?;
        let (epoch, secret) = (Mutex::new(None), Mutex::new(None));
        Ok(Cluster {
            client,
            conn,
            instance,
            healthy: AtomicBool::new(true),
            epoch,
            secret,
            leases: Default::default(),
        })
    }

    fn sync_conn(&self) -> Result<redis::Connection, ClusterError> {
        let conn = self.client.get_connection_with_timeout(TIMEOUT)?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.set_write_timeout(Some(TIMEOUT))?;
        Ok(conn)
    }

    /// Runs a blocking command (controller paths run on blocking threads).
    fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ClusterError> {
        let mut conn = self.sync_conn()?;
        Ok(cmd.query(&mut conn)?)
    }

    /// Runs a blocking pipeline.
    fn run_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, ClusterError> {
        let mut conn = self.sync_conn()?;
        Ok(pipe.query(&mut conn)?)
    }

    /// The token-signing secret all instances share: the first instance's own wins (SET NX), and
    /// an instance that finds Redis emptied puts the one it uses back.
    pub fn shared_secret(&self, proposal: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(SECRET).arg(crate::auth::encode_hex(proposal)).arg("NX").ignore().cmd("GET").arg(SECRET);
        let (hex,): (String,) = self.run_pipe(&pipe)?;
        let secret = crate::auth::decode_hex(&hex).filter(|b| b.len() == 32).unwrap_or_else(|| proposal.to_vec());
        *self.secret.lock().unwrap_or_else(|p| p.into_inner()) = Some(crate::auth::encode_hex(&secret));
        Ok(secret)
    }

    /// Looks at the epoch (claiming one when Redis has none). `Some(fresh)` when it differs
    /// from the one seen last (always on the first look); `fresh` when this call set it, that
    /// is Redis held no shared state at all.
    pub fn epoch_changed(&self) -> Result<Option<bool>, ClusterError> {
        let proposal = format!("{:016x}", rand::random::<u64>());
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(EPOCH).arg(&proposal).arg("NX").cmd("GET").arg(EPOCH);
        let (set, current): (Option<String>, String) = self.run_pipe(&pipe)?;
        let mut seen = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        if seen.as_deref() == Some(current.as_str()) {
            return Ok(None);
        }
        *seen = Some(current);
        Ok(Some(set.is_some()))
    }

    /// Announces a change to the other instances.
    pub fn publish(&self, event: Event) -> Result<(), ClusterError> {
        let message = serde_json::to_string(&Envelope { from: self.instance.clone(), event }).unwrap_or_default();
        self.run::<i64>(redis::cmd("PUBLISH").arg(EVENTS).arg(message)).map(|_| ())
    }

    /// Whether the last exchange of figures succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Subscribes to other instances' announcements: `subscribed` runs once the subscription
    /// stands (before any message), then `apply` for each announcement (on this task).
    pub async fn listen(
        &self,
        subscribed: impl FnOnce() + Send,
        mut apply: impl FnMut(Event) + Send,
    ) -> Result<(), ClusterError> {
        use futures::StreamExt;
        let mut pubsub = tokio::time::timeout(TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| ClusterError::Timeout(TIMEOUT))??;
        tokio::time::timeout(TIMEOUT, pubsub.subscribe(EVENTS)).await.map_err(|_| ClusterError::Timeout(TIMEOUT))??;
        subscribed();
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(payload) = message.get_payload::<String>() else { continue };
            let Ok(envelope) = serde_json::from_str::<Envelope>(&payload) else { continue };
            if envelope.from != self.instance {
                apply(envelope.event);
            }
        }
        Ok(())
    }
}

fn field(workspace: &str, id: &str) -> String {
    format!("{workspace}{SEP}{id}")
}

fn split(field: &str) -> Option<(String, String)> {
    field.split_once(SEP).map(|(w, i)| (w.to_owned(), i.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_kept_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let first = instance_id(dir.path()).unwrap();
        assert!(is_instance_id(&first), "{first}");
        assert_eq!(instance_id(dir.path()).unwrap(), first, "the same id after a restart");
        std::fs::write(dir.path().join(INSTANCE_FILE), "../x\n").unwrap();
        let e = instance_id(dir.path()).unwrap_err().to_string();
        assert!(e.contains("instance-id") && e.contains("16 lowercase hex"), "{e}");
    }
}
