//! Several ferrolite instances behind one load balancer, sharing state through Redis
//! (`ferrolite serve --redis-url redis://...`).
//!
//! Shared: installed apps, workspace secrets and running sessions (written to Redis hashes,
//! announced on a pub/sub channel so every instance installs, starts and stops the same
//! things), spend (INCRBY on per-period counters, so budgets hold across instances), in-flight
//! counts and per-minute usage (INCR/DECR and HINCRBY, read back every 200 ms for routing), and
//! cooldowns (announced to all).
//!
//! When Redis is unreachable, requests keep flowing on each instance's local view (routing and
//! budgets then count only local traffic) and controller changes fail with 503, so no instance
//! drifts from the others; see README.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const APPS: &str = "ferrolite:apps";
const SECRETS: &str = "ferrolite:secrets";
const SESSIONS: &str = "ferrolite:sessions";
const EVENTS: &str = "ferrolite:events";
/// Separates workspace and id in hash fields (neither may contain it).
const SEP: char = '\u{1f}';

/// A change one instance made that the others apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Install { workspace: String, app_id: String },
    Uninstall { workspace: String, app_id: String },
    Start { workspace: String, app_id: String, session_id: String },
    Stop { workspace: String, session_id: String },
    SetEnv { workspace: String, key: String },
    Cooldown { workspace: String, service_id: String, deployment: usize, millis: u64 },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: Event,
}

/// A stored app as Redis keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedApp {
    pub manifest: Value,
    pub installed_at: u64,
    #[serde(default)]
    pub trusted: bool,
}

/// A running session as Redis keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedSession {
    pub app_id: String,
    pub started_at: u64,
}

/// Redis failed (or is unreachable).
#[derive(Debug, thiserror::Error)]
#[error("shared state (redis) unavailable: {0}")]
pub struct ClusterError(#[from] redis::RedisError);

/// This instance's handle on the shared state.
pub struct Cluster {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    /// This instance's id, so it ignores its own announcements.
    pub instance: String,
    healthy: AtomicBool,
}

fn field(workspace: &str, id: &str) -> String {
    format!("{workspace}{SEP}{id}")
}

fn split(field: &str) -> Option<(String, String)> {
    field.split_once(SEP).map(|(w, i)| (w.to_owned(), i.to_owned()))
}

const TIMEOUT: Duration = Duration::from_secs(2);

impl Cluster {
    /// Connects (failing start-up if Redis cannot be reached now).
    pub async fn connect(url: &str) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Cluster {
            client,
            conn,
            instance: format!("{:016x}", rand::random::<u64>()),
            healthy: AtomicBool::new(true),
        })
    }

    fn sync_conn(&self) -> Result<redis::Connection, ClusterError> {
        let conn = self.client.get_connection_with_timeout(TIMEOUT)?;
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.set_write_timeout(Some(TIMEOUT))?;
        Ok(conn)
    }

    /// Runs a blocking command (controller paths run on blocking threads).
    fn run<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> Result<T, ClusterError> {
        let mut conn = self.sync_conn()?;
        Ok(cmd.query(&mut conn)?)
    }

    /// The token-signing secret all instances share: the first instance's own wins (SET NX).
    pub async fn shared_secret(&self, proposal: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let mut conn = self.conn.clone();
        let key = "ferrolite:server-secret";
        let _: bool = conn.set_nx(key, crate::auth::encode_hex(proposal)).await?;
        let hex: String = conn.get(key).await?;
        Ok(crate::auth::decode_hex(&hex).filter(|b| b.len() == 32).unwrap_or_else(|| proposal.to_vec()))
    }

    /// Announces a change to the other instances.
    pub fn publish(&self, event: Event) -> Result<(), ClusterError> {
        let message = serde_json::to_string(&Envelope { from: self.instance.clone(), event }).unwrap_or_default();
        self.run::<i64>(redis::cmd("PUBLISH").arg(EVENTS).arg(message)).map(|_| ())
    }

    pub fn put_app(&self, workspace: &str, app_id: &str, app: &SharedApp) -> Result<(), ClusterError> {
        let value = serde_json::to_string(app).unwrap_or_default();
        self.run::<i64>(redis::cmd("HSET").arg(APPS).arg(field(workspace, app_id)).arg(value))?;
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

    /// Every shared app: (workspace, id) -> app.
    pub fn apps(&self) -> Result<HashMap<(String, String), SharedApp>, ClusterError> {
        let all: HashMap<String, String> = self.run(redis::cmd("HGETALL").arg(APPS))?;
        Ok(all.into_iter().filter_map(|(f, v)| Some((split(&f)?, serde_json::from_str(&v).ok()?))).collect())
    }

    pub fn put_secret(&self, workspace: &str, key: &str, value: &str) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HSET").arg(SECRETS).arg(field(workspace, key)).arg(value))?;
        self.publish(Event::SetEnv { workspace: workspace.into(), key: key.into() })
    }

    pub fn get_secret(&self, workspace: &str, key: &str) -> Result<Option<String>, ClusterError> {
        self.run(redis::cmd("HGET").arg(SECRETS).arg(field(workspace, key)))
    }

    /// Every shared secret: workspace -> key -> value.
    pub fn secrets(&self) -> Result<HashMap<String, HashMap<String, String>>, ClusterError> {
        let all: HashMap<String, String> = self.run(redis::cmd("HGETALL").arg(SECRETS))?;
        let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
        for (f, v) in all {
            if let Some((w, k)) = split(&f) {
                out.entry(w).or_default().insert(k, v);
            }
        }
        Ok(out)
    }

    /// Records a start; fails with `false` when another instance already serves that session.
    pub fn put_session(
        &self,
        workspace: &str,
        session_id: &str,
        s: &SharedSession,
        announce: bool,
    ) -> Result<(), ClusterError> {
        let value = serde_json::to_string(s).unwrap_or_default();
        self.run::<i64>(redis::cmd("HSET").arg(SESSIONS).arg(field(workspace, session_id)).arg(value))?;
        if announce {
            self.publish(Event::Start {
                workspace: workspace.into(),
                app_id: s.app_id.clone(),
                session_id: session_id.into(),
            })?;
        }
        Ok(())
    }

    pub fn delete_session(&self, workspace: &str, session_id: &str) -> Result<(), ClusterError> {
        self.run::<i64>(redis::cmd("HDEL").arg(SESSIONS).arg(field(workspace, session_id)))?;
        self.publish(Event::Stop { workspace: workspace.into(), session_id: session_id.into() })
    }

    /// Every running session: (workspace, session id) -> session.
    pub fn sessions(&self) -> Result<HashMap<(String, String), SharedSession>, ClusterError> {
        let all: HashMap<String, String> = self.run(redis::cmd("HGETALL").arg(SESSIONS))?;
        Ok(all.into_iter().filter_map(|(f, v)| Some((split(&f)?, serde_json::from_str(&v).ok()?))).collect())
    }

    /// Whether the last shared-state call on the request path succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn note<T>(&self, result: redis::RedisResult<T>) -> Option<T> {
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result.ok()
    }

    fn spend_key(workspace: &str, app_id: &str, scope: &str, period: u64) -> String {
        format!("ferrolite:spend:{workspace}:{app_id}:{scope}:{period}")
    }

    /// Adds spend atomically; returns the shared total in micro-dollars.
    pub async fn add_spend(&self, workspace: &str, app_id: &str, scope: &str, period: u64, micros: u64) -> Option<u64> {
        let mut conn = self.conn.clone();
        let key = Self::spend_key(workspace, app_id, scope, period);
        self.note(conn.incr(&key, micros).await)
    }

    /// The shared spend in micro-dollars (`None` when Redis cannot answer).
    pub async fn spend(&self, workspace: &str, app_id: &str, scope: &str, period: u64) -> Option<u64> {
        let mut conn = self.conn.clone();
        let key = Self::spend_key(workspace, app_id, scope, period);
        self.note(conn.get::<_, Option<u64>>(&key).await).map(|v| v.unwrap_or(0))
    }

    fn load_key(workspace: &str, session_id: &str, deployment: usize) -> String {
        format!("ferrolite:load:{workspace}:{session_id}:{deployment}")
    }

    /// Adds to a deployment's shared in-flight count (+1 / -1), requests and tokens this minute.
    pub async fn add_load(
        &self,
        workspace: &str,
        session_id: &str,
        deployment: usize,
        in_flight: i64,
        requests: u64,
        tokens: u64,
    ) {
        let mut conn = self.conn.clone();
        let key = Self::load_key(workspace, session_id, deployment);
        let minute = crate::clock::unix_now() / 60;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HINCRBY")
            .arg(&key)
            .arg("in_flight")
            .arg(in_flight)
            .ignore()
            .cmd("HINCRBY")
            .arg(&key)
            .arg(format!("requests:{minute}"))
            .arg(requests)
            .ignore()
            .cmd("HINCRBY")
            .arg(&key)
            .arg(format!("tokens:{minute}"))
            .arg(tokens)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(3600)
            .ignore();
        self.note(pipe.query_async::<()>(&mut conn).await);
    }

    /// Every listed deployment's shared (in_flight, requests, tokens) this minute.
    pub async fn load(&self, keys: &[(String, String, usize)]) -> Option<Vec<(i64, u64, u64)>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let mut conn = self.conn.clone();
        let minute = crate::clock::unix_now() / 60;
        let mut pipe = redis::pipe();
        for (ws, session, d) in keys {
            pipe.cmd("HMGET")
                .arg(Self::load_key(ws, session, *d))
                .arg("in_flight")
                .arg(format!("requests:{minute}"))
                .arg(format!("tokens:{minute}"));
        }
        let rows: Vec<(Option<i64>, Option<u64>, Option<u64>)> = self.note(pipe.query_async(&mut conn).await)?;
        Some(rows.into_iter().map(|(f, r, t)| (f.unwrap_or(0).max(0), r.unwrap_or(0), t.unwrap_or(0))).collect())
    }

    /// Announces a cooldown (fire and forget: routing never waits on it).
    pub async fn announce_cooldown(&self, workspace: &str, service_id: &str, deployment: usize, millis: u64) {
        let mut conn = self.conn.clone();
        let event = Event::Cooldown { workspace: workspace.into(), service_id: service_id.into(), deployment, millis };
        let message = serde_json::to_string(&Envelope { from: self.instance.clone(), event }).unwrap_or_default();
        self.note(conn.publish::<_, _, i64>(EVENTS, message).await);
    }

    /// Subscribes to other instances' announcements; `apply` runs for each (on this task).
    pub async fn listen(&self, mut apply: impl FnMut(Event) + Send) -> Result<(), ClusterError> {
        use futures::StreamExt;
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(EVENTS).await?;
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
