//! The controller's API key and budget functions (`create_key`, `list_keys`, `key_info`,
//! `update_key`, `revoke_key`, `set_budget`, `list_budgets`), for both doors. They take tokens
//! only: a key that could make keys or raise budgets could free itself of its limits.

use crate::apps::keys::KeySpec;
use crate::apps::{Controller, ControllerError};
use crate::auth::keys::KeyRecord;
use crate::auth::Claims;
use crate::clock::unix_now;
use crate::exchange::ApiError;
use serde_json::{json, Map, Value};

/// The key functions, as the controller lists them.
pub const FUNCTIONS: &[&str] =
    &["create_key", "list_keys", "key_info", "update_key", "revoke_key", "set_budget", "list_budgets"];

/// Refuses a key function to a caller that presented an API key.
pub fn check_caller(claims: &Claims, function: &str) -> Result<(), ApiError> {
    if claims.key.is_some() && FUNCTIONS.contains(&function) {
        return Err(ApiError::forbidden(format!("{function} needs a workspace token: API keys cannot manage keys")));
    }
    Ok(())
}

/// A key as the functions show it: its settings, standing and spend this budget period,
/// never its hash.
pub fn view(c: &Controller, key: &KeyRecord) -> Value {
    let spend = c.caller_budgets().spend(&key.workspace);
    let spent = spend.iter().find(|(kind, name, ..)| kind == "key" && *name == key.id).map_or(0.0, |s| s.2);
    json!({
        "spend": spent,
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

fn optional_str<'a>(kwargs: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    match kwargs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(v) => Err(ApiError::bad_request(format!("{name}: {v} is not a non-empty string")).with_param(name)),
    }
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
            let mut shown = view(c, &key);
            // The one time the key is shown.
            shown["key"] = json!(secret);
            Ok(shown)
        }
        "list_keys" => Ok(Value::Array(c.list_keys(workspace).iter().map(|k| view(c, k)).collect())),
        "key_info" => Ok(view(c, &c.key_info(workspace, key_id(kwargs)?)?)),
        "update_key" => Ok(view(c, &c.update_key(workspace, key_id(kwargs)?, spec()?)?)),
        "revoke_key" => Ok(view(c, &c.revoke_key(workspace, key_id(kwargs)?)?)),
        "set_budget" => {
            let user = optional_str(kwargs, "user")?;
            let max_budget = match kwargs.get("max_budget") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    Some(v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())).ok_or_else(|| {
                        ApiError::bad_request(format!("max_budget: {v} is not a dollar amount"))
                            .with_param("max_budget")
                    })?)
                }
            };
            let duration = optional_str(kwargs, "budget_duration")?;
            let set = c.set_budget(workspace, user, max_budget, duration)?;
            Ok(json!({"workspace": workspace, "user": user, "budget": set}))
        }
        "list_budgets" => {
            let settings = c.caller_budgets().settings(workspace);
            let spend: Vec<Value> = c
                .caller_budgets()
                .spend(workspace)
                .into_iter()
                .map(|(scope, name, spent, reserved)| json!({"scope": scope, "name": name, "spend": spent, "reserved": reserved}))
                .collect();
            Ok(json!({"budgets": settings, "spend": spend}))
        }
        other => Err(ApiError::not_found(format!("no key function {other:?}"))),
    }
}
