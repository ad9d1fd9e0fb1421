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
use crate::store::{ResponseDb, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
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

/// Where responses are kept: the local file always; Redis too when instances share state.
pub struct ResponseStore {
    db: Arc<ResponseDb>,
    cluster: Option<Arc<Cluster>>,
    ttl: Duration,
}

impl ResponseStore {
    pub fn new(db: ResponseDb, ttl: Duration) -> ResponseStore {
        ResponseStore { db: Arc::new(db), cluster: None, ttl }
    }

    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> ResponseStore {
        self.cluster = Some(cluster);
        self
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Keeps `record` as response `id` of `workspace`. With Redis away the local copy still
    /// lets this instance continue the conversation; the failure is logged, not the client's.
    pub async fn put(&self, workspace: &str, id: &str, record: &Record) -> Result<(), ResponsesError> {
        let text = serde_json::to_string(record).map_err(|e| ResponsesError::Store(e.to_string()))?;
        if let Some(cluster) = &self.cluster {
            if let Err(e) = cluster.put_response(workspace, id, &text, self.ttl).await {
                tracing::warn!(response = id, "cannot share a stored response: {e}");
            }
        }
        let expires_at = crate::clock::unix_now().saturating_add(self.ttl.as_secs());
        let (db, workspace, id) = (self.db.clone(), workspace.to_owned(), id.to_owned());
        blocking(move || db.put(&workspace, &id, &text, expires_at)).await
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
            None => {
                let (db, ws, rid, now) =
                    (self.db.clone(), workspace.to_owned(), id.to_owned(), crate::clock::unix_now());
                blocking(move || db.get(&ws, &rid, now)).await?
            }
        };
        // A record that does not read (another version's, a foreign writer's) is not there.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Deletes response `id` everywhere; whether it was stored.
    pub async fn delete(&self, workspace: &str, id: &str) -> Result<bool, ResponsesError> {
        let mut deleted = false;
        if let Some(cluster) = &self.cluster {
            deleted = cluster.delete_response(workspace, id).await.map_err(|e| ResponsesError::Store(e.to_string()))?;
        }
        let (db, workspace, id) = (self.db.clone(), workspace.to_owned(), id.to_owned());
        Ok(blocking(move || db.delete(&workspace, &id)).await? || deleted)
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
        store.put("ws", "resp_1", &record(1, None)).await.unwrap();
        store.put("ws", "resp_2", &record(2, Some("resp_1"))).await.unwrap();
        store.put("ws", "resp_3", &record(3, Some("resp_2"))).await.unwrap();
        let chain = store.chain("ws", "resp_3").await.unwrap();
        let ids: Vec<&str> = chain.iter().map(|r| r.response["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["resp_1", "resp_2", "resp_3"]);
        assert!(matches!(store.chain("other", "resp_3").await, Err(ResponsesError::NotFound(_))));
        assert!(store.delete("ws", "resp_2").await.unwrap());
        match store.chain("ws", "resp_3").await {
            Err(ResponsesError::BrokenChain { missing, of }) => {
                assert_eq!((missing.as_str(), of.as_str()), ("resp_2", "resp_3"))
            }
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }
}
