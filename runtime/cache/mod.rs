//! The response cache (litellm's `cache: true`): exact-match answers of chat completions, text
//! completions and embeddings, kept in this process or in the shared Redis, so a repeated
//! request is answered without a provider call, a budget reservation or spend.
//!
//! An entry is the whole (non-streamed) answer; a streamed answer is assembled into one before
//! it is kept, and replayed as a stream when asked for one (`replay.rs`).

pub mod key;
pub mod record;
pub mod replay;

use crate::catalogue::Operation;
use crate::cluster::{Cluster, ClusterError};
use crate::manifest::{CacheType, CallType, LitellmSettings};
use hashlink::LruCache;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;

pub use replay::Shape;

/// How long an entry lives when neither the app nor the request says.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
const DEFAULT_MAX_ENTRIES: usize = 1000;

/// The response header that says whether the answer came from the cache (`hit`) or not (`miss`).
pub const STATUS_HEADER: &str = "x-ferrolite-cache";
/// litellm's header naming the entry's key.
pub const KEY_HEADER: &str = "x-litellm-cache-key";

/// What went wrong with the cache: bad controls from the client, or the shared store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache: {0}")]
    Controls(String),
    #[error(transparent)]
    Shared(#[from] ClusterError),
}

/// A request's `cache` field, as litellm reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controls {
    /// Do not answer from the cache.
    #[serde(default, rename = "no-cache")]
    pub no_cache: bool,
    /// Do not keep this answer.
    #[serde(default, rename = "no-store")]
    pub no_store: bool,
    /// Seconds this answer's entry lives.
    #[serde(default)]
    pub ttl: Option<f64>,
    /// Accept an entry only if it is at most this many seconds old.
    #[serde(default, rename = "s-maxage")]
    pub s_maxage: Option<f64>,
    /// litellm's per-request namespace: accepted, not used (an app's namespace is its own).
    #[serde(default)]
    pub namespace: Option<String>,
}

impl Controls {
    /// The controls of a request body's `cache` field (none: the defaults).
    pub fn of(field: Option<&Value>) -> Result<Controls, CacheError> {
        let Some(field) = field.filter(|v| !v.is_null()) else { return Ok(Controls::default()) };
        let controls: Controls =
            Controls::deserialize(field).map_err(|e| CacheError::Controls(format!("invalid `cache` controls: {e}")))?;
        for (name, value) in [("ttl", controls.ttl), ("s-maxage", controls.s_maxage)] {
            if value.is_some_and(|v| !(0.0..=3.0e7).contains(&v)) {
                return Err(CacheError::Controls(format!("`cache.{name}` must be a number of seconds from 0 to 3e7")));
            }
        }
        Ok(controls)
    }
}

/// A kept answer and when it was kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub answer: Value,
}

/// An entry in memory, with the moment it stops being served.
struct Held {
    expires_ms: u64,
    entry: Entry,
}

/// One app's response cache, built when its session starts.
pub struct ResponseCache {
    ops: Vec<Operation>,
    ttl: Duration,
    namespace: String,
    /// Kept in Redis (when the server has one), else in `local`.
    shared: bool,
    local: Mutex<LruCache<String, Held>>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("ops", &self.ops)
            .field("ttl", &self.ttl)
            .field("namespace", &self.namespace)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// The app's cache, when its settings turn one on.
    pub fn new(settings: &LitellmSettings) -> Option<ResponseCache> {
        if !settings.cache {
            return None;
        }
        let params = settings.cache_params.clone().unwrap_or_default();
        let all = [CallType::Acompletion, CallType::AtextCompletion, CallType::Aembedding];
        let types = params.supported_call_types.clone().unwrap_or_else(|| all.to_vec());
        let mut ops = Vec::new();
        for t in types {
            let op = match t {
                CallType::Completion | CallType::Acompletion => Operation::ChatCompletions,
                CallType::TextCompletion | CallType::AtextCompletion => Operation::Completions,
                CallType::Embedding | CallType::Aembedding => Operation::Embeddings,
                // Not cached (`validate` says so).
                _ => continue,
            };
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        let ttl = params.ttl.map_or(DEFAULT_TTL, Duration::from_secs_f64);
        let size = params.max_size_in_memory.map_or(DEFAULT_MAX_ENTRIES, |n| n as usize);
        Some(ResponseCache {
            ops,
            ttl,
            namespace: params.namespace.unwrap_or_else(|| "default".to_owned()),
            shared: params.kind == CacheType::Redis,
            local: Mutex::new(LruCache::new(size)),
        })
    }

    /// Whether answers of `op` are cached, and in which stream format.
    pub fn serves(&self, op: Operation) -> bool {
        self.ops.contains(&op)
    }

    /// Whether the app asked for Redis.
    pub fn wants_shared(&self) -> bool {
        self.shared
    }

    /// The entry under `key` that is no older than `max_age`, if any.
    pub async fn get(
        &self,
        cluster: Option<&Cluster>,
        key: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<Entry>, CacheError> {
        let now = crate::clock::now_ms();
        let entry = match cluster.filter(|_| self.shared) {
            Some(cluster) => cluster
                .get_cached(&self.namespace, key)
                .await?
                .and_then(|text| serde_json::from_str::<Entry>(&text).ok()),
            None => {
                let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
                match local.get(key) {
                    Some(held) if held.expires_ms > now => Some(held.entry.clone()),
                    Some(_) => {
                        local.remove(key);
                        None
                    }
                    None => None,
                }
            }
        };
        let young_enough = |e: &Entry| max_age.is_none_or(|age| now.saturating_sub(e.at_ms) <= age.as_millis() as u64);
        Ok(entry.filter(young_enough))
    }

    /// Keeps `answer` under `key` for `ttl` (the app's when `None`).
    pub async fn put(
        &self,
        cluster: Option<&Cluster>,
        key: &str,
        answer: Value,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let ttl = ttl.unwrap_or(self.ttl);
        if ttl.is_zero() {
            return Ok(());
        }
        let now = crate::clock::now_ms();
        let entry = Entry { at_ms: now, answer };
        match cluster.filter(|_| self.shared) {
            Some(cluster) => {
                let text = serde_json::to_string(&entry).map_err(|e| CacheError::Controls(e.to_string()))?;
                cluster.put_cached(&self.namespace, key, &text, ttl).await?;
            }
            None => {
                let held = Held { expires_ms: now + ttl.as_millis() as u64, entry };
                self.local.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), held);
            }
        }
        Ok(())
    }
}

/// The stream format of `op`'s answers, for the operations the cache serves.
pub fn shape(op: Operation) -> Option<Shape> {
    match op {
        Operation::ChatCompletions => Some(Shape::Chat),
        Operation::Completions => Some(Shape::Text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache(params: Value) -> ResponseCache {
        let settings: LitellmSettings = serde_json::from_value(json!({"cache": true, "cache_params": params})).unwrap();
        ResponseCache::new(&settings).unwrap()
    }

    #[test]
    fn controls_read_litellm_names_and_refuse_others() {
        let c = Controls::of(Some(&json!({"no-cache": true, "ttl": 5, "s-maxage": 1.5}))).unwrap();
        assert!(c.no_cache && !c.no_store);
        assert_eq!((c.ttl, c.s_maxage), (Some(5.0), Some(1.5)));
        assert_eq!(Controls::of(None).unwrap(), Controls::default());
        assert!(Controls::of(Some(&json!({"no_cache": true}))).is_err());
        assert!(Controls::of(Some(&json!({"ttl": -1}))).is_err());
        assert!(Controls::of(Some(&json!("yes"))).is_err());
    }

    #[test]
    fn supported_call_types_pick_the_operations() {
        let c = cache(json!({"supported_call_types": ["aembedding"]}));
        assert!(c.serves(Operation::Embeddings));
        assert!(!c.serves(Operation::ChatCompletions));
        let all = cache(json!({}));
        assert!(all.serves(Operation::ChatCompletions) && all.serves(Operation::Completions));
        let off: LitellmSettings = serde_json::from_value(json!({"cache_params": {"type": "local"}})).unwrap();
        assert!(ResponseCache::new(&off).is_none());
    }

    #[tokio::test]
    async fn local_entries_expire_and_honour_max_age_and_size() {
        let c = cache(json!({"max_size_in_memory": 2}));
        c.put(None, "a", json!(1), None).await.unwrap();
        assert_eq!(c.get(None, "a", None).await.unwrap().unwrap().answer, json!(1));
        c.put(None, "short", json!(2), Some(Duration::from_millis(30))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(c.get(None, "short", None).await.unwrap().is_none());
        assert!(c.get(None, "a", Some(Duration::from_millis(10))).await.unwrap().is_none());
        assert!(c.get(None, "a", Some(Duration::from_secs(10))).await.unwrap().is_some());
        c.put(None, "b", json!(3), None).await.unwrap();
        c.put(None, "c", json!(4), None).await.unwrap();
        // Two entries at most: the least recently used ("a") went.
        assert!(c.get(None, "a", None).await.unwrap().is_none());
        assert!(c.get(None, "c", None).await.unwrap().is_some());
    }
}
