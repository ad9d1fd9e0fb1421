//! API keys as the controller manages them: created (the key shown once), listed, changed and
//! revoked in a workspace; kept in the store, shared through Redis with `--redis-url`, and put
//! in the key ring every request checks.

use super::{Controller, ControllerError};
use crate::auth::keys::{self, KeyRecord};
use crate::clock::unix_now;
use crate::router::spend::parse_duration;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Why a key's settings were refused: the field and the reason.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct KeySpecError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> KeySpecError {
    KeySpecError { field, reason: reason.into() }
}

/// The settings `create_key` and `update_key` take; on update, only those given change.
#[derive(Debug, Default, PartialEq)]
pub struct KeySpec {
    name: Option<Option<String>>,
    user: Option<Option<String>>,
    models: Option<Vec<String>>,
    max_budget: Option<Option<f64>>,
    budget_duration: Option<Option<String>>,
    rpm: Option<Option<u64>>,
    tpm: Option<Option<u64>>,
    max_parallel: Option<Option<u64>>,
    expires_at: Option<Option<u64>>,
    metadata: Option<BTreeMap<String, String>>,
    mcp_servers: Option<Vec<String>>,
    mcp_tools: Option<Vec<String>>,
}

/// A user id or metadata key: letters, digits and `_ . @ + -`, at most 128 characters.
fn identifier(field: &'static str, text: &str) -> Result<String, KeySpecError> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '+' | '-'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(bad(field, format!("{text:?} is not 1 to 128 letters, digits or _ . @ + -")))
    }
}

/// Free text shown to people (a name, a metadata value): printable, at most `max` characters.
fn label(field: &'static str, text: &str, max: usize) -> Result<String, KeySpecError> {
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(bad(field, format!("must be at most {max} printable characters")));
    }
    Ok(text.to_owned())
}

/// `null` clears a setting; anything else is read by `read`.
fn setting<T>(
    kwargs: &Map<String, Value>,
    field: &'static str,
    read: impl Fn(&Value) -> Result<T, KeySpecError>,
) -> Result<Option<Option<T>>, KeySpecError> {
    match kwargs.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => read(v).map(|v| Some(Some(v))),
    }
}

/// A count: a positive integer, or its text (a query string's).
fn count(field: &'static str, v: &Value) -> Result<u64, KeySpecError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| *n > 0).ok_or_else(|| bad(field, format!("{v} is not a positive integer")))
}

fn text<'a>(field: &'static str, v: &'a Value) -> Result<&'a str, KeySpecError> {
    v.as_str().ok_or_else(|| bad(field, format!("{v} is not a string")))
}

/// A list given as a JSON list of strings or one comma-separated string.
fn list(field: &'static str, v: &Value) -> Result<Vec<String>, KeySpecError> {
    let items: Vec<String> = match v {
        Value::String(s) => s.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect(),
        Value::Array(items) => {
            items.iter().map(|i| text(field, i).map(|s| s.trim().to_owned())).collect::<Result<_, _>>()?
        }
        _ => return Err(bad(field, "must be a list of names")),
    };
    for item in &items {
        label(field, item, 256)?;
        if item.is_empty() {
            return Err(bad(field, "a model name is empty"));
        }
    }
    Ok(items)
}

/// A list setting: absent, `null` (cleared: everything) or names.
fn names(kwargs: &Map<String, Value>, field: &'static str) -> Result<Option<Vec<String>>, KeySpecError> {
    match kwargs.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(v) => list(field, v).map(Some),
    }
}

/// `{"team": "a"}` or `["team=a", ...]` (the command line's `--metadata k=v`).
fn metadata(v: &Value) -> Result<BTreeMap<String, String>, KeySpecError> {
    const FIELD: &str = "metadata";
    let pairs: Vec<(String, String)> = match v {
        Value::Object(map) => {
            map.iter().map(|(k, v)| Ok((k.clone(), text(FIELD, v)?.to_owned()))).collect::<Result<_, _>>()?
        }
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let pair = text(FIELD, i)?;
                let (k, v) = pair.split_once('=').ok_or_else(|| bad(FIELD, format!("{pair:?} is not key=value")))?;
                Ok((k.to_owned(), v.to_owned()))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(FIELD, "must be an object of strings or a list of key=value")),
    };
    pairs.into_iter().map(|(k, v)| Ok((identifier(FIELD, &k)?, label(FIELD, &v, 512)?))).collect()
}

impl KeySpec {
    /// Reads the settings from a controller call's keyword arguments.
    pub fn from_kwargs(kwargs: &Map<String, Value>) -> Result<KeySpec, KeySpecError> {
        let expires_at = match kwargs.get("expires_in") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::Number(n)) => {
                let secs = n.as_u64().filter(|s| *s > 0).ok_or_else(|| bad("expires_in", "must be positive"))?;
                Some(Some(unix_now() + secs))
            }
            Some(Value::String(s)) => {
                let d =
                    parse_duration(s).ok_or_else(|| bad("expires_in", format!("{s:?} is not like 30d, 12h, 90m")))?;
                Some(Some(unix_now() + d.as_secs()))
            }
            Some(v) => return Err(bad("expires_in", format!("{v} is not a duration"))),
        };
        let max_budget = setting(kwargs, "max_budget", |v| {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            n.filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| bad("max_budget", format!("{v} is not a dollar amount")))
        })?;
        let budget_duration = setting(kwargs, "budget_duration", |v| {
            let s = text("budget_duration", v)?;
            parse_duration(s)
                .map(|_| s.to_owned())
                .ok_or_else(|| bad("budget_duration", format!("{s:?} is not like 30d, 7d, 24h")))
        })?;
        Ok(KeySpec {
            name: setting(kwargs, "name", |v| label("name", text("name", v)?, 128))?,
            user: setting(kwargs, "user", |v| identifier("user", text("user", v)?))?,
            models: names(kwargs, "models")?,
            max_budget,
            budget_duration,
            rpm: setting(kwargs, "rpm", |v| count("rpm", v))?,
            tpm: setting(kwargs, "tpm", |v| count("tpm", v))?,
            max_parallel: setting(kwargs, "max_parallel", |v| count("max_parallel", v))?,
            expires_at,
            metadata: match kwargs.get("metadata") {
                None => None,
                Some(Value::Null) => Some(BTreeMap::new()),
                Some(v) => Some(metadata(v)?),
            },
            mcp_servers: names(kwargs, "mcp_servers")?,
            mcp_tools: names(kwargs, "mcp_tools")?,
        })
    }

    fn apply(self, key: &mut KeyRecord) {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *slot = value;
            }
        }
        set(&mut key.name, self.name);
        set(&mut key.user, self.user);
        set(&mut key.models, self.models);
        set(&mut key.max_budget, self.max_budget);
        set(&mut key.budget_duration, self.budget_duration);
        set(&mut key.rpm, self.rpm);
        set(&mut key.tpm, self.tpm);
        set(&mut key.max_parallel, self.max_parallel);
        set(&mut key.expires_at, self.expires_at);
        set(&mut key.metadata, self.metadata);
        set(&mut key.mcp_servers, self.mcp_servers);
        set(&mut key.mcp_tools, self.mcp_tools);
    }
}

impl Controller {
    /// Creates a key in `workspace`: its secret (shown this once) and its record.
    pub fn create_key(&self, workspace: &str, spec: KeySpec) -> Result<(String, KeyRecord), ControllerError> {
        let _change = self.one_change();
        let keys::NewKey { secret, mut record } = keys::generate(workspace);
        spec.apply(&mut record);
        self.keep_key(&record)?;
        Ok((secret, record))
    }

    /// The keys of `workspace`, oldest first.
    pub fn list_keys(&self, workspace: &str) -> Vec<KeyRecord> {
        self.keys.list(workspace).into_iter().map(|k| (*k).clone()).collect()
    }

    /// One key of `workspace`, by id.
    pub fn key_info(&self, workspace: &str, id: &str) -> Result<KeyRecord, ControllerError> {
        self.keys
            .get(id)
            .filter(|k| k.workspace == workspace)
            .map(|k| (*k).clone())
            .ok_or_else(|| ControllerError::KeyNotFound(id.to_owned()))
    }

    /// Changes the settings `spec` gives; a revoked key stays revoked.
    pub fn update_key(&self, workspace: &str, id: &str, spec: KeySpec) -> Result<KeyRecord, ControllerError> {
        let _change = self.one_change();
        let mut key = self.key_info(workspace, id)?;
        spec.apply(&mut key);
        self.keep_key(&key)?;
        Ok(key)
    }

    /// Revokes a key: refused from now on, here at once and on the other instances as soon as
    /// they hear of it. Its record stays, so its spend and logs still name it.
    pub fn revoke_key(&self, workspace: &str, id: &str) -> Result<KeyRecord, ControllerError> {
        let _change = self.one_change();
        let mut key = self.key_info(workspace, id)?;
        key.revoked_at.get_or_insert_with(unix_now);
        self.keep_key(&key)?;
        Ok(key)
    }

    /// Stores a key's record everywhere it is kept: the shared state first (so another
    /// instance never refuses a key this one accepts), then the store and the ring.
    fn keep_key(&self, key: &KeyRecord) -> Result<(), ControllerError> {
        if let Some(cluster) = &self.cluster {
            cluster.put_key(key)?;
        }
        self.store.put_key(key)?;
        self.keys.put(key.clone());
        Ok(())
    }

    /// A key another instance changed, read back from the shared state.
    pub(super) fn adopt_key(&self, key: KeyRecord) -> Result<(), ControllerError> {
        self.store.put_key(&key)?;
        self.keys.put(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> Result<KeySpec, KeySpecError> {
        KeySpec::from_kwargs(v.as_object().unwrap())
    }

    #[test]
    fn settings_read_from_kwargs_and_bad_ones_name_their_field() {
        let s = spec(json!({"user": "ada@example.com", "models": "a, b", "rpm": "60", "max_budget": 10,
            "budget_duration": "30d", "metadata": ["team=ml"], "expires_in": "1h"}))
        .unwrap();
        assert_eq!(s.models, Some(vec!["a".into(), "b".into()]));
        assert_eq!(s.rpm, Some(Some(60)));
        assert_eq!(s.metadata.unwrap()["team"], "ml");
        assert!(s.expires_at.unwrap().unwrap() > unix_now());
        for (bad_kwargs, field) in [
            (json!({"rpm": 0}), "rpm"),
            (json!({"tpm": "lots"}), "tpm"),
            (json!({"user": "a b"}), "user"),
            (json!({"max_budget": -1}), "max_budget"),
            (json!({"budget_duration": "monthly"}), "budget_duration"),
            (json!({"expires_in": "soon"}), "expires_in"),
            (json!({"metadata": ["novalue"]}), "metadata"),
            (json!({"models": [1]}), "models"),
        ] {
            assert_eq!(spec(bad_kwargs.clone()).unwrap_err().field, field, "{bad_kwargs}");
        }
    }

    #[test]
    fn an_update_changes_only_what_it_names_and_null_clears() {
        let keys::NewKey { mut record, .. } = keys::generate("team");
        spec(json!({"rpm": 5, "user": "u1"})).unwrap().apply(&mut record);
        spec(json!({"tpm": 100, "user": null})).unwrap().apply(&mut record);
        assert_eq!((record.rpm, record.tpm, record.user), (Some(5), Some(100), None));
    }
}
