//! The controller's API key functions (`create_key`, `list_keys`, `key_info`, `update_key`,
//! `revoke_key`), for both doors. Keys are managed with tokens only: a key that could make
//! keys could make itself one without its limits.

use crate::apps::keys::KeySpec;
use crate::apps::{Controller, ControllerError};
use crate::auth::keys::KeyRecord;
use crate::auth::Claims;
use crate::clock::unix_now;
use crate::exchange::ApiError;
use serde_json::{json, Map, Value};

/// The key functions, as the controller lists them.
pub const FUNCTIONS: &[&str] = &["create_key", "list_keys", "key_info", "update_key", "revoke_key"];

/// Refuses a key function to a caller that presented an API key.
pub fn check_caller(claims: &Claims, function: &str) -> Result<(), ApiError> {
    if claims.key.is_some() && FUNCTIONS.contains(&function) {
        return Err(ApiError::forbidden(format!("{function} needs a workspace token: API keys cannot manage keys")));
    }
    Ok(())
}

/// A key as the functions show it: its settings and standing, never its hash.
pub fn view(key: &KeyRecord) -> Value {
    json!({
        "id": key.id,
        "key_hint": key.hint,
        "workspace": key.workspace,
        "name": key.name,
        "user": key.user,
        "models": key.models,
        "max_budget": key.max_budget,
        "budget_duration": key.budget_duration,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "max_parallel": key.max_parallel,
        "expires_at": key.expires_at,
        "metadata": key.metadata,
        "mcp_servers": key.mcp_servers,
        "mcp_tools": key.mcp_tools,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
        "status": key.status(unix_now()),
    })
}

fn key_id(kwargs: &Map<String, Value>) -> Result<&str, ApiError> {
    kwargs
        .get("key_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing argument `key_id`").with_param("key_id"))
}

/// Runs one key function in `workspace`.
pub fn run(c: &Controller, workspace: &str, function: &str, kwargs: &Map<String, Value>) -> Result<Value, ApiError> {
    let spec = || KeySpec::from_kwargs(kwargs).map_err(|e| ApiError::from(ControllerError::from(e)));
    match function {
        "create_key" => {
            let (secret, key) = c.create_key(workspace, spec()?)?;
            let mut shown = view(&key);
            // The one time the key is shown.
            shown["key"] = json!(secret);
            Ok(shown)
        }
        "list_keys" => Ok(Value::Array(c.list_keys(workspace).iter().map(view).collect())),
        "key_info" => Ok(view(&c.key_info(workspace, key_id(kwargs)?)?)),
        "update_key" => Ok(view(&c.update_key(workspace, key_id(kwargs)?, spec()?)?)),
        "revoke_key" => Ok(view(&c.revoke_key(workspace, key_id(kwargs)?)?)),
        other => Err(ApiError::not_found(format!("no key function {other:?}"))),
    }
}
