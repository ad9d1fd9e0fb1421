//! API keys: opaque `sk-fl-...` secrets a workspace hands to its users, accepted wherever a
//! token is (Bearer or `x-api-key`) but only in their own workspace, each with its own limits.
//!
//! Only a key's SHA-256 is kept (in the store, in Redis, in memory); the secret is shown once,
//! when the key is created. The ring in memory is what every request checks: a revoked or
//! expired key is refused from the moment the ring learns of it (at once on the instance that
//! revoked it, and on the others when the announcement arrives).

use crate::clock::unix_now;
use foldhash::HashMap;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// What every key starts with, so a key is told from a JWT without parsing either.
pub const PREFIX: &str = "sk-fl-";
/// Random characters after the prefix: 40 of 62 symbols, about 238 bits.
const SECRET_CHARS: usize = 40;

/// A key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key's public id (`key_` and 16 hex digits): what `key_info`, `update_key` and
    /// `revoke_key` take, and what spend is recorded under.
    pub id: String,
    pub workspace: String,
    /// SHA-256 of the key, hex.
    pub hash: String,
    /// The key's first and last characters, for people to recognise it (`sk-fl-Ab...9z`).
    pub hint: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Whose key it is: a user's budget counts all of that user's keys.
    #[serde(default)]
    pub user: Option<String>,
    /// The models the key may call (the app's model names); empty: all.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub budget_duration: Option<String>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub max_parallel: Option<u64>,
    /// Unix seconds after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The app MCP servers the key reaches (by name); empty: all the app has.
    #[serde(default)]
    pub mcp_servers: Vec<String>,
    /// The MCP tools the key may list and call (`{server}-{tool}`); empty: all.
    #[serde(default)]
    pub mcp_tools: Vec<String>,
    pub created_at: u64,
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

impl KeyRecord {
    /// `active`, `revoked` or `expired`, as lists show it.
    pub fn status(&self, now: u64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        }
    }

    /// Whether the key may call `model` (its list, or every model when it has none).
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// A key a request presented, as its claims carry it. Two are equal when they are the same key.
#[derive(Debug, Clone)]
pub struct KeyRef(pub Arc<KeyRecord>);

impl PartialEq for KeyRef {
    fn eq(&self, other: &KeyRef) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for KeyRef {}

impl std::ops::Deref for KeyRef {
    type Target = KeyRecord;
    fn deref(&self) -> &KeyRecord {
        &self.0
    }
}

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum ApiKeyError {
    #[error("invalid API key: no such key")]
    Unknown,
    #[error("this API key was revoked")]
    Revoked,
    #[error("this API key expired")]
    Expired,
}

/// A new key's secret and its record (the secret is not kept anywhere).
pub struct NewKey {
    pub secret: String,
    pub record: KeyRecord,
}

/// SHA-256 of a key, hex: how a key is found without keeping it.
pub fn hash(secret: &str) -> String {
    super::encode_hex(&digest(secret))
}

/// SHA-256 of a key, as bytes.
fn digest(secret: &str) -> KeyDigest {
    Sha256::digest(secret.as_bytes()).into()
}

/// Makes a key for `workspace`; the caller fills in the record's limits.
pub fn generate(workspace: &str) -> NewKey {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let random: String = (0..SECRET_CHARS).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    let secret = format!("{PREFIX}{random}");
    let hint = format!("{}...{}", &secret[..PREFIX.len() + 2], &secret[secret.len() - 2..]);
    let record = KeyRecord {
        id: format!("key_{:016x}", rng.gen::<u64>()),
        workspace: workspace.to_owned(),
        hash: hash(&secret),
        hint,
        name: None,
        user: None,
        models: Vec::new(),
        max_budget: None,
        budget_duration: None,
        rpm: None,
        tpm: None,
        max_parallel: None,
        expires_at: None,
        metadata: BTreeMap::new(),
        mcp_servers: Vec::new(),
        mcp_tools: Vec::new(),
        created_at: unix_now(),
        revoked_at: None,
    };
    NewKey { secret, record }
}

/// Every key this instance knows, by hash (what requests look up) and by id.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<Keys>,
}

/// A key's SHA-256, as bytes: what the ring is indexed by. A record's hex is read once, when the
/// record arrives, so a request hashes its key and looks the digest up without writing hex.
type KeyDigest = [u8; 32];

/// The digest a record's hex `hash` stands for; `None` for one no secret can match.
fn digest_of(record: &KeyRecord) -> Option<KeyDigest> {
    super::decode_hex(&record.hash)?.try_into().ok()
}

#[derive(Debug, Default)]
struct Keys {
    by_digest: HashMap<KeyDigest, Arc<KeyRecord>>,
    by_id: HashMap<String, Arc<KeyRecord>>,
}

impl Keys {
    /// Adds `record`, or replaces the one with its id (and the old digest with it).
    fn index(&mut self, record: Arc<KeyRecord>) {
        if let Some(old) = self.by_id.insert(record.id.clone(), record.clone()) {
            if let Some(digest) = digest_of(&old) {
                self.by_digest.remove(&digest);
            }
        }
        if let Some(digest) = digest_of(&record) {
            self.by_digest.insert(digest, record);
        }
    }
}

impl KeyRing {
    /// The key `secret` stands for, if it is known, not revoked and not expired.
    pub fn verify(&self, secret: &str) -> Result<KeyRef, ApiKeyError> {
        let digest = digest(secret);
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let record = keys.by_digest.get(&digest).ok_or(ApiKeyError::Unknown)?;
        match record.status(unix_now()) {
            "revoked" => Err(ApiKeyError::Revoked),
            "expired" => Err(ApiKeyError::Expired),
            _ => Ok(KeyRef(record.clone())),
        }
    }

    /// Adds a key, or replaces the one with its id.
    pub fn put(&self, record: KeyRecord) {
        self.keys.write().unwrap_or_else(|p| p.into_inner()).index(Arc::new(record));
    }

    /// Replaces every key at once (a reload from the shared state).
    pub fn replace_all(&self, records: impl IntoIterator<Item = KeyRecord>) {
        let mut fresh = Keys::default();
        for record in records {
            fresh.index(Arc::new(record));
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyRecord>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).by_id.get(id).cloned()
    }

    /// The keys of `workspace`, oldest first.
    pub fn list(&self, workspace: &str) -> Vec<Arc<KeyRecord>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = keys.by_id.values().filter(|k| k.workspace == workspace).cloned().collect();
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        list
    }

    pub fn all(&self) -> Vec<KeyRecord> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.by_id.values().map(|k| (**k).clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_by_its_secret_only_while_active() {
        let ring = KeyRing::default();
        let NewKey { secret, mut record } = generate("team");
        assert!(secret.starts_with(PREFIX) && secret.len() == PREFIX.len() + SECRET_CHARS);
        assert!(!record.hash.contains(&secret[PREFIX.len()..]), "only the hash is kept");
        assert_eq!(ring.verify(&secret), Err(ApiKeyError::Unknown));
        ring.put(record.clone());
        assert_eq!(ring.verify(&secret).map(|k| k.id.clone()), Ok(record.id.clone()));
        assert_eq!(ring.verify(&format!("{secret}x")), Err(ApiKeyError::Unknown));

        record.expires_at = Some(unix_now() - 1);
        ring.put(record.clone());
        assert_eq!(ring.verify(&secret), Err(ApiKeyError::Expired));
        record.expires_at = None;
        record.revoked_at = Some(unix_now());
        ring.put(record.clone());
        assert_eq!(ring.verify(&secret), Err(ApiKeyError::Revoked));
        assert_eq!(ring.list("team").len(), 1);
        assert!(ring.list("other").is_empty());

        // The same id with another secret (a record replaced): the old secret no longer opens it.
        let other = generate("team");
        let rotated = KeyRecord { hash: other.record.hash.clone(), revoked_at: None, ..record.clone() };
        ring.put(rotated);
        assert_eq!(ring.verify(&secret), Err(ApiKeyError::Unknown));
        assert_eq!(ring.verify(&other.secret).map(|k| k.id.clone()), Ok(record.id.clone()));
        // A record whose hash is not a SHA-256 in hex matches no secret, and is still listed.
        ring.replace_all([KeyRecord { hash: "not hex".into(), ..record.clone() }]);
        assert_eq!(ring.verify(&other.secret), Err(ApiKeyError::Unknown));
        assert_eq!(ring.list("team").len(), 1);
    }

    #[test]
    fn a_model_list_limits_a_key_and_an_empty_one_does_not() {
        let NewKey { mut record, .. } = generate("team");
        assert!(record.allows_model("anything"));
        record.models = vec!["gpt-4o".into()];
        assert!(record.allows_model("gpt-4o"));
        assert!(!record.allows_model("claude"));
    }
}
