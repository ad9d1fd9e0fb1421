//! The server's `built-in` service: the `message_cache` a client sends a message of more than
//! ~257 KB through (`create`, then `set` each 256 KiB chunk, then `process`), joined here and
//! dispatched as if it had come in one frame.

use super::codec::{self, map, Frame};
use super::{lock, Answer, Args, Client, Hub, Outcome};
use rmpv::Value;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Bytes one connection may hold in unfinished messages (the HTTP body limit's size).
const MAX_CACHED_BYTES: usize = 32 * 1024 * 1024;

/// One connection's unfinished messages, by key (also the Hypha worker's client's, whose
/// server sends it big messages the same way).
#[derive(Default)]
pub struct Cache {
    messages: Mutex<HashMap<String, BTreeMap<u64, Vec<u8>>>>,
}

impl Cache {
    fn held(messages: &HashMap<String, BTreeMap<u64, Vec<u8>>>) -> usize {
        messages.values().flat_map(BTreeMap::values).map(Vec::len).sum()
    }

    /// Starts (or restarts) the message `key`.
    pub fn create(&self, key: String) {
        lock(&self.messages).insert(key, BTreeMap::new());
    }

    pub fn remove(&self, key: &str) {
        lock(&self.messages).remove(key);
    }

    /// Stores a chunk at `index`, or after the last one.
    pub fn put(&self, key: &str, index: Option<u64>, data: Vec<u8>) -> Result<(), String> {
        let mut messages = lock(&self.messages);
        if Cache::held(&messages) + data.len() > MAX_CACHED_BYTES {
            messages.remove(key);
            return Err(format!("message {key} is over the {MAX_CACHED_BYTES} byte limit"));
        }
        let chunks = messages.get_mut(key).ok_or_else(|| format!("message {key} does not exist"))?;
        let index = index.unwrap_or(chunks.len() as u64);
        chunks.insert(index, data);
        Ok(())
    }

    /// The message's chunks joined in index order, forgotten here.
    pub fn take(&self, key: &str) -> Result<Vec<u8>, String> {
        let chunks = lock(&self.messages).remove(key).ok_or_else(|| format!("message {key} does not exist"))?;
        Ok(chunks.into_values().flatten().collect())
    }
}

/// `services.built-in.*` on any server identity.
pub(super) async fn serve(hub: &Arc<Hub>, client: &Arc<Client>, target: &str, function: &str, args: &Args) -> Outcome {
    let cache = &client.chunks;
    let key = || args.str(0, "key").map(str::to_owned).ok_or_else(|| "missing argument `key`".to_owned());
    let done = Ok(Answer::Value(Value::Nil));
    match function {
        "get_service" => Ok(Answer::Value(describe(target))),
        "message_cache.create" => {
            cache.create(key()?);
            done
        }
        "message_cache.set" | "message_cache.append" => {
            let (index, data) = if function.ends_with("set") {
                (args.get(1, "index").and_then(Value::as_u64), args.get(2, "data"))
            } else {
                (None, args.get(1, "data"))
            };
            let data = match data {
                Some(Value::Binary(bytes)) => bytes.clone(),
                _ => return Err("`data` must be bytes".to_owned()),
            };
            cache.put(&key()?, index, data)?;
            done
        }
        "message_cache.remove" => {
            cache.remove(&key()?);
            done
        }
        "message_cache.process" => {
            let bytes = cache.take(&key()?)?;
            let mut frame = Frame::decode(&bytes).map_err(|e| e.to_string())?;
            // Whatever the joined message says, it comes from this client, to this target.
            frame.set_main("from", Value::from(client.id.as_str()));
            frame.set_main("to", Value::from(target));
            frame.extra.retain(|(k, _)| !matches!(k.as_str(), Some("from" | "to" | "ws" | "user")));
            tokio::spawn(hub.clone().route(client.clone(), frame));
            done
        }
        other => Err(format!("built-in has no function {other:?}")),
    }
}

/// What `get_service("built-in")` answers: api_version 3 lets the client send chunks in parallel.
fn describe(target: &str) -> Value {
    let function = |name: &str, doc: &str| {
        super::method(target, &format!("built-in.message_cache.{name}"), name, doc, json!({"type": "object"}))
    };
    map([
        ("id", Value::from("built-in")),
        ("name", Value::from("ferrolite built-in services")),
        ("type", Value::from("built-in")),
        ("config", codec::from_json(&json!({"api_version": 3, "visibility": "public", "require_context": true}))),
        (
            "message_cache",
            map([
                ("create", function("create", "Start a chunked message.")),
                ("set", function("set", "Store one chunk at its index.")),
                ("append", function("append", "Store the next chunk.")),
                ("process", function("process", "Join the chunks and dispatch the message.")),
                ("remove", function("remove", "Drop a chunked message.")),
            ]),
        ),
    ])
}
