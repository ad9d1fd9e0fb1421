//! Responses API state: what `store` keeps, and what `previous_response_id` continues from.
//!
//! Every response a client asks to store (`store` defaults to true, as OpenAI's) is recorded
//! with its own input items, whichever deployment answered it: a translated provider or an
//! OpenAI pass-through. A later request naming it as `previous_response_id` is sent with the
//! whole conversation as its input (each earlier turn's input and output, oldest first), so it
//! continues on any deployment of any provider. Records live in the data dir's
//! `responses.db`; with `--redis-url` also in Redis, which every instance reads (its local
//! copy only while Redis cannot answer). They are scoped to the caller's workspace and expire
//! after `--responses-ttl`.
//!
//! - `items.rs`: input items as stored (with ids) and as resent upstream;
//! - `recorder.rs`: the create request prepared and its answer recorded on the way out;
//! - this file: the store itself and the conversation chain.

pub mod items;
pub mod recorder;

use crate::cluster::Cluster;
use crate::store::{ResponseDb, ResponseRow, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long stored responses are kept unless `--responses-ttl` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest conversation `previous_response_id` walks back through.
const MAX_TURNS: usize = 1000;

/// One stored response: the response object as the client got it, the input items of its own
/// request (with ids), and the response it continued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub response: Value,
    pub input: Vec<Value>,
    #[serde(default)]
    pub previous: Option<String>,
}

impl Record {
    /// A record's JSON with `response` written as the text it came as: an answer is recorded
    /// without being parsed and written again.
    pub fn encode(response: &str, input: &[Value], previous: Option<&str>) -> String {
        let input = serde_json::to_string(input).unwrap_or_else(|_| "[]".into());
        let mut out = String::with_capacity(response.len() + input.len() + 64);
        out.push_str("{\"response\":");
        out.push_str(response);
        out.push_str(",\"input\":");
        out.push_str(&input);
        if let Some(previous) = previous {
            out.push_str(",\"previous\":");
            out.push_str(&Value::String(previous.to_owned()).to_string());
        }
        out.push('}');
        out
    }
}

/// Why stored state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResponsesError {
    #[error("no response with id {0:?} is stored in this workspace (it was never stored, was deleted, or expired)")]
    NotFound(String),
    #[error("response {missing:?}, an earlier turn of {of:?}, is no longer stored (deleted or expired): the conversation cannot be continued from {of:?}")]
    BrokenChain { missing: String, of: String },
    #[error("the conversation ending in {0:?} is longer than {MAX_TURNS} turns")]
    TooLong(String),
    #[error("stored responses: {0}")]
    Store(String),
    /// The answer to record could not be read (the upstream's body failed or is too large).
    #[error("{0}")]
    Answer(String),
}

impl From<StoreError> for ResponsesError {
    fn from(e: StoreError) -> ResponsesError {
        ResponsesError::Store(e.to_string())
    }
}

/// A stored response's (workspace, id).
type Key = (String, String);
/// A record held in memory: its JSON and its expiry (Unix seconds).
type Held = (Arc<str>, u64);

/// Where responses are kept: the local file always; Redis too when instances share state.
///
/// A request never waits on the local file: what it records is held in memory (`pending`,
/// where reads find it at once) and written in one transaction per flush, every 200 ms and at
/// shutdown. A crash loses at most the last flush interval's records, as for spend.
pub struct ResponseStore {
    db: Arc<ResponseDb>,
    cluster: Option<Arc<Cluster>>,
    ttl: Duration,
    /// Recorded, not yet in the file.
    pending: Mutex<HashMap<Key, Held>>,
    /// Held by a flush for its whole course and by a delete, so a delete cannot land between a
    /// flush's reading of `pending` and its write (which would bring the record back).
    flushing: Arc<Mutex<()>>,
}

impl ResponseStore {
    pub fn new(db: ResponseDb, ttl: Duration) -> ResponseStore {
        ResponseStore { db: Arc::new(db), cluster: None, ttl, pending: Mutex::default(), flushing: Arc::default() }
    }

    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> ResponseStore {
        self.cluster = Some(cluster);
        self
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<Key, Held>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `record` (a [`Record`]'s JSON, see [`Record::encode`]) as response `id` of
    /// `workspace`. With Redis away the local copy still lets this instance continue the
    /// conversation; the failure is logged, not the client's.
    pub async fn put(&self, workspace: &str, id: &str, record: String) -> Result<(), ResponsesError> {
        let text: Arc<str> = record.into();
        if let Some(cluster) = &self.cluster {
            if let Err(e) = cluster.put_response(workspace, id, &text, self.ttl).await {
                tracing::warn!(response = id, "cannot share a stored response: {e}");
            }
        }
        let expires_at = crate::clock::unix_now().saturating_add(self.ttl.as_secs());
        self.pending().insert((workspace.to_owned(), id.to_owned()), (text, expires_at));
        Ok(())
    }

    /// The record of response `id` in `workspace`, if stored and not expired. With Redis, Redis
    /// says (a response deleted through another instance is gone here too); the local copy
    /// answers only while Redis cannot.
    pub async fn get(&self, workspace: &str, id: &str) -> Result<Option<Record>, ResponsesError> {
        let shared = match &self.cluster {
            Some(cluster) => match cluster.get_response(workspace, id).await {
                Ok(found) => Some(found),
                Err(e) => {
                    tracing::warn!(response = id, "cannot read shared responses, reading the local copy: {e}");
                    None
                }
            },
            None => None,
        };
        let text = match shared {
            Some(text) => text,
            None => self.get_local(workspace, id).await?,
        };
        // A record that does not read (another version's, a foreign writer's) is not there.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn get_local(&self, workspace: &str, id: &str) -> Result<Option<String>, ResponsesError> {
        let now = crate::clock::unix_now();
        let key = (workspace.to_owned(), id.to_owned());
        if let Some((text, expires_at)) = self.pending().get(&key) {
            return Ok((*expires_at > now).then(|| text.to_string()));
        }
        let db = self.db.clone();
        blocking(move || db.get(&key.0, &key.1, now)).await
    }

    /// Deletes response `id` everywhere; whether it was stored.
    pub async fn delete(&self, workspace: &str, id: &str) -> Result<bool, ResponsesError> {
        let mut deleted = false;
        if let Some(cluster) = &self.cluster {
            deleted = cluster.delete_response(workspace, id).await.map_err(|e| ResponsesError::Store(e.to_string()))?;
        }
        let key = (workspace.to_owned(), id.to_owned());
        let pending = self.pending().remove(&key).is_some();
        let (db, flushing) = (self.db.clone(), self.flushing.clone());
        let in_file = blocking(move || {
            let _flush = flushing.lock().unwrap_or_else(|p| p.into_inner());
            db.delete(&key.0, &key.1)
        })
        .await?;
        Ok(deleted || pending || in_file)
    }

    /// Writes the records held in memory to the file (blocking: run it off the event loop).
    pub fn flush(&self) -> Result<usize, ResponsesError> {
        let _flush = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let batch: Vec<(Key, Held)> = self.pending().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let rows: Vec<ResponseRow<'_>> = batch
            .iter()
            .map(|((workspace, id), (text, expires_at))| ResponseRow {
                workspace,
                id,
                record: text,
                expires_at: *expires_at,
            })
            .collect();
        self.db.put_many(&rows)?;
        // Only what was written leaves memory: a record put again meanwhile stays for the next.
        let mut pending = self.pending();
        for (key, (text, _)) in &batch {
            if pending.get(key).is_some_and(|(now, _)| Arc::ptr_eq(now, text)) {
                pending.remove(key);
            }
        }
        Ok(batch.len())
    }

    /// The conversation ending in response `id`, oldest turn first.
    pub async fn chain(&self, workspace: &str, id: &str) -> Result<Vec<Record>, ResponsesError> {
        let mut turns = Vec::new();
        let mut next = Some(id.to_owned());
        while let Some(current) = next {
            if turns.len() == MAX_TURNS {
                return Err(ResponsesError::TooLong(id.to_owned()));
            }
            let record = match self.get(workspace, &current).await? {
                Some(record) => record,
                None if current == id => return Err(ResponsesError::NotFound(current)),
                None => return Err(ResponsesError::BrokenChain { missing: current, of: id.to_owned() }),
            };
            next = record.previous.clone();
            turns.push(record);
        }
        turns.reverse();
        Ok(turns)
    }

    /// Removes the local records expired by now (Redis expires its own).
    pub fn purge_expired(&self) -> Result<usize, ResponsesError> {
        Ok(self.db.purge(crate::clock::unix_now())?)
    }
}

/// Runs a SQLite call off the event loop.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ResponsesError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ResponsesError::Store(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(n: u32, previous: Option<&str>) -> Record {
        Record {
            response: json!({"id": format!("resp_{n}"), "output": []}),
            input: vec![
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": n.to_string()}]}),
            ],
            previous: previous.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_chain_reads_oldest_first_and_names_a_missing_turn() {
        let store = ResponseStore::new(ResponseDb::in_memory().unwrap(), DEFAULT_TTL);
        for (n, previous) in [(1, None), (2, Some("resp_1")), (3, Some("resp_2"))] {
            let r = record(n, previous);
            let text = Record::encode(&r.response.to_string(), &r.input, r.previous.as_deref());
            assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r, "a record reads back as written");
            store.put("ws", &format!("resp_{n}"), text).await.unwrap();
        }
        let chain = store.chain("ws", "resp_3").await.unwrap();
        let ids: Vec<&str> = chain.iter().map(|r| r.response["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["resp_1", "resp_2", "resp_3"]);
        assert!(matches!(store.chain("other", "resp_3").await, Err(ResponsesError::NotFound(_))));
        // Written to the file in one batch, and read from there afterwards.
        assert_eq!(store.flush().unwrap(), 3);
        assert_eq!(store.flush().unwrap(), 0, "nothing left in memory");
        assert_eq!(store.chain("ws", "resp_3").await.unwrap().len(), 3);
        assert!(store.delete("ws", "resp_2").await.unwrap());
        match store.chain("ws", "resp_3").await {
            Err(ResponsesError::BrokenChain { missing, of }) => {
                assert_eq!((missing.as_str(), of.as_str()), ("resp_2", "resp_3"))
            }
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }
}
