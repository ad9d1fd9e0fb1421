//! The server-apps controller over HTTP, in Hypha's service-call convention:
//! `POST /{workspace}/services/server-apps/{function}` with JSON keyword arguments (or `GET`
//! with query parameters). The workspace `public` means the caller's own.

use super::AppState;
use crate::apps::{ControllerError, Source};
use crate::auth::Claims;
use crate::exchange::{parse_json, ApiError};
use crate::manifest::validate::Severity;
use crate::observability::session_log::LogType;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tracing::Instrument;

/// The controller's service id, as Hypha names it.
pub const SERVICE_ID: &str = "server-apps";

/// Every function the controller serves.
pub const FUNCTIONS: &[&str] = &[
    "install",
    "start",
    "stop",
    "list_apps",
    "list_running",
    "get_logs",
    "get_usage",
    "get_spend_logs",
    "uninstall",
    "set_env",
    "get_env",
    "validate",
    "create_key",
    "list_keys",
    "key_info",
    "update_key",
    "revoke_key",
    "set_budget",
    "list_budgets",
];

/// Each function's positional parameters, in order: RPC callers may pass them without names
/// (`controller.start(app_id, wait_for_service=...)`), HTTP callers always name them.
pub const POSITIONAL: &[(&str, &[&str])] = &[
    ("install", &["source"]),
    ("start", &["app_id"]),
    ("stop", &["session_id"]),
    ("get_logs", &["session_id", "type", "offset", "limit"]),
    ("get_usage", &["session_id"]),
    ("uninstall", &["app_id"]),
    ("set_env", &["key", "value"]),
    ("get_env", &["key"]),
    ("key_info", &["key_id"]),
    ("update_key", &["key_id"]),
    ("revoke_key", &["key_id"]),
];

/// Largest controller call body (a manifest is small; this bounds a hostile one).
const MAX_CALL_BYTES: usize = 8 * 1024 * 1024;

/// `GET /{workspace}/services/server-apps`: what the service offers.
pub async fn describe(State(state): State<AppState>, Path(workspace): Path<String>, headers: HeaderMap) -> Response {
    match caller_workspace(&state, &headers, &workspace) {
        Ok(ws) => Json(json!({"id": format!("{ws}/{SERVICE_ID}"), "name": "Server Apps", "functions": FUNCTIONS}))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `/{workspace}/services/server-apps/{function}`.
pub async fn call(
    State(state): State<AppState>,
    Path((workspace, function)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!("controller", %workspace, %function);
    match serve(state, &workspace, &function, query, &headers, body).instrument(span).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The workspace a call acts on, once the token may act there.
fn caller_workspace(state: &AppState, headers: &HeaderMap, workspace: &str) -> Result<String, ApiError> {
    caller(state, headers, workspace).map(|(ws, _)| ws)
}

/// The workspace a call acts on and whether the caller is an admin.
fn caller(state: &AppState, headers: &HeaderMap, workspace: &str) -> Result<(String, bool), ApiError> {
    let claims: Claims = state.tokens.authenticate(headers)?;
    acting_workspace(&claims, workspace)
}

/// Where a token's holder may act when it names `workspace` (`public`: its own), and whether
/// it is an admin. Both doors (HTTP, RPC) check the caller here.
pub(crate) fn acting_workspace(claims: &Claims, workspace: &str) -> Result<(String, bool), ApiError> {
    if workspace == "public" {
        return Ok((claims.ws.to_string(), claims.admin));
    }
    if !claims.may_enter(workspace) {
        return Err(ApiError::forbidden(format!(
            "a token of workspace {:?} cannot use the controller of workspace {workspace:?}",
            claims.ws
        )));
    }
    Ok((workspace.to_owned(), claims.admin))
}

async fn serve(
    state: AppState,
    workspace: &str,
    function: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let claims: Claims = state.tokens.authenticate(headers)?;
    let (workspace, admin) = acting_workspace(&claims, workspace)?;
    check_function(function)?;
    super::keys::check_caller(&claims, function)?;
    let mut kwargs = query_kwargs(query.as_deref());
    let bytes = super::limits::read_body(body, MAX_CALL_BYTES).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        match parse_json::<Value>(&bytes) {
            Ok(Value::Object(body)) => kwargs.extend(body),
            Ok(_) => return Err(ApiError::bad_request("the body must be a JSON object of keyword arguments")),
            Err(e) => {
                return Err(ApiError::bad_request(format!("the body is not valid JSON: {e}")).with_code("invalid_json"))
            }
        }
    }
    execute(state, workspace, admin, function.to_owned(), kwargs).await
}

/// Refuses a function the controller does not have, naming the ones it has.
pub(crate) fn check_function(function: &str) -> Result<(), ApiError> {
    if FUNCTIONS.contains(&function) {
        return Ok(());
    }
    Err(ApiError::not_found(format!("server-apps has no function {function:?}; it has: {}", FUNCTIONS.join(", "))))
}

/// Runs one controller function for a caller already checked: the one implementation behind
/// every door.
pub(crate) async fn execute(
    state: AppState,
    workspace: String,
    admin: bool,
    function: String,
    kwargs: Map<String, Value>,
) -> Result<Value, ApiError> {
    check_function(&function)?;
    // The store writes synchronously (fsync); keep that off the async workers.
    tokio::task::spawn_blocking(move || run(&state, &workspace, admin, &function, &kwargs))
        .await
        .map_err(|e| ApiError::internal(format!("controller call failed: {e}")))?
}

fn run(
    state: &AppState,
    workspace: &str,
    admin: bool,
    function: &str,
    kwargs: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let c = &state.controller;
    let to_value = |v: Result<Value, ControllerError>| v.map_err(ApiError::from);
    match function {
        "install" => {
            let source = source(kwargs, function)?;
            let overwrite = flag(kwargs, "overwrite")?;
            to_value(c.install(workspace, source, overwrite, admin).map(|info| json!(info)))
        }
        "validate" => {
            let findings = c.check(source(kwargs, function)?, admin);
            let list = |severity| {
                let found = findings.iter().filter(|f| f.severity == severity);
                found.map(|f| json!({"path": f.pointer, "message": f.message})).collect::<Vec<_>>()
            };
            let errors = list(Severity::Error);
            Ok(json!({"valid": errors.is_empty(), "errors": errors, "warnings": list(Severity::Warning)}))
        }
        "start" => {
            let app_id = required_str(kwargs, "app_id")?;
            let session = c.start(workspace, app_id)?;
            if let Some(Value::String(wanted)) = kwargs.get("wait_for_service") {
                if *wanted != session.service_id && !wanted.ends_with(&format!(":{}", session.service_id)) {
                    tracing::info!(%wanted, service = %session.service_id, "wait_for_service names another service");
                }
            }
            Ok(json!(session))
        }
        "stop" => {
            let session_id = required_str(kwargs, "session_id")?;
            to_value(c.stop(workspace, session_id).map(|()| json!({"id": session_id, "status": "stopped"})))
        }
        "list_apps" => Ok(json!(c.list_apps(workspace))),
        "list_running" => Ok(json!(c.list_running(workspace))),
        "uninstall" => {
            let app_id = required_str(kwargs, "app_id")?;
            to_value(c.uninstall(workspace, app_id).map(|()| json!({"id": app_id, "status": "uninstalled"})))
        }
        "get_logs" => {
            let session_id = required_str(kwargs, "session_id")?;
            let kind = match kwargs.get("type").and_then(Value::as_str) {
                None => None,
                Some("log") => Some(LogType::Log),
                Some("error") => Some(LogType::Error),
                Some(other) => {
                    return Err(ApiError::bad_request(format!("type {other:?} is not log or error")).with_param("type"))
                }
            };
            let offset = number(kwargs, "offset")?.unwrap_or(0);
            let limit = number(kwargs, "limit")?;
            to_value(c.get_logs(workspace, session_id, kind, offset, limit).map(|page| json!(page)))
        }
        "get_usage" => {
            let session_id = required_str(kwargs, "session_id")?;
            Ok(c.get_usage(workspace, session_id)?)
        }
        "get_spend_logs" => {
            let query = super::spend_logs::query(workspace, kwargs)?;
            let page = state.spend_logs.page(&query).map_err(ControllerError::from)?;
            Ok(json!(page))
        }
        "set_env" => {
            let key = required_str(kwargs, "key")?;
            let value = required_str(kwargs, "value")?;
            to_value(c.set_env(workspace, key, value).map(|()| json!({"key": key, "status": "set"})))
        }
        "get_env" => Ok(json!(c.get_env(workspace, kwargs.get("key").and_then(Value::as_str)))),
        f if super::keys::FUNCTIONS.contains(&f) => super::keys::run(c, workspace, f, kwargs),
        _ => unreachable!("checked against FUNCTIONS"),
    }
}

/// The manifest of `install` and `validate`: `source` text or a `manifest` object.
fn source(kwargs: &Map<String, Value>, function: &str) -> Result<Source, ApiError> {
    match (kwargs.get("source"), kwargs.get("manifest")) {
        (Some(Value::String(text)), _) => Ok(Source::Text(text.clone())),
        (_, Some(m @ Value::Object(_))) => Ok(Source::Document(m.clone())),
        (_, Some(Value::String(text))) => Ok(Source::Text(text.clone())),
        _ => Err(ApiError::bad_request(format!(
            "{function} needs `source` (manifest text, JSON or YAML) or `manifest` (an object)"
        ))
        .with_param("source")),
    }
}

fn query_kwargs(query: Option<&str>) -> Map<String, Value> {
    super::query::pairs(query).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect()
}

fn required_str<'a>(kwargs: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    kwargs
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("missing argument `{name}`")).with_param(name))
}

/// A boolean argument, also accepted as "true"/"false" from a query string.
fn flag(kwargs: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match kwargs.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be true or false")).with_param(name)),
    }
}

/// A non-negative integer argument, also accepted as a string from a query string.
fn number(kwargs: &Map<String, Value>, name: &str) -> Result<Option<usize>, ApiError> {
    match kwargs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64().map(|n| n as usize)),
        Some(Value::String(s)) if s.parse::<usize>().is_ok() => Ok(s.parse().ok()),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a non-negative integer")).with_param(name)),
    }
}
