//! Routes ferrolite answers itself from the app's state: models, model info, health,
//! `/utils/token_counter`, supported parameters, stored Responses API answers, and the MCP
//! gateway's REST door (in `http::mcp`).

use super::AppState;
use crate::apps::responses::{items, Record, ResponsesError};
use crate::apps::session::Session;
use crate::catalogue::LocalHandler;
use crate::exchange::{ApiError, Payload};
use crate::providers::deployment::redact;
use crate::providers::Deployment;
use crate::tokenizer;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Keys of `litellm_params` never shown as written unless they are references.
const SECRET_PARAMS: &[&str] = &["api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"];

/// What a local route reads besides its body.
pub struct Local<'a> {
    pub state: &'a AppState,
    pub session: &'a Session,
    /// The app's MCP servers and tools the caller's key reaches.
    pub mcp_access: &'a crate::mcp::Access,
    /// The workspace of the caller's token (where its stored responses live).
    pub caller: &'a str,
    pub params: &'a [(&'static str, String)],
    pub query: Option<&'a str>,
}

impl Local<'_> {
    fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }
}

pub async fn serve(handler: LocalHandler, local: &Local<'_>, payload: &Payload) -> Result<Response, ApiError> {
    let Local { state, session, query, .. } = *local;
    let table = &session.table;
    let response = match handler {
        LocalHandler::ListModels => {
            let names = table.model_names.iter().chain(&table.listed_aliases);
            let data: Vec<Value> = names.map(|m| model_object(session, m)).collect();
            Json(json!({"object": "list", "data": data})).into_response()
        }
        LocalHandler::GetModel => {
            let name = local.param("model");
            if table.group_name(name).is_none() {
                return Err(ApiError::not_found(format!(
                    "model {name:?} is not served by this app; available models: {}",
                    table.model_names.join(", ")
                ))
                .with_code("model_not_found"));
            }
            Json(model_object(session, name)).into_response()
        }
        LocalHandler::ModelInfo => {
            let data: Vec<Value> = table.deployments.iter().map(model_info).collect();
            Json(json!({"data": data})).into_response()
        }
        LocalHandler::Health => Json(health(state, session).await).into_response(),
        LocalHandler::HealthLiveliness => Json(json!("I'm alive!")).into_response(),
        LocalHandler::HealthReadiness => Json(json!({
            "status": "healthy",
            "service_id": session.service_id,
            "deployments": table.deployments.len(),
            "ferrolite_version": env!("CARGO_PKG_VERSION"),
        }))
        .into_response(),
        LocalHandler::TokenCounter => {
            let model = payload.field("model").and_then(Value::as_str).unwrap_or_default();
            let total = match (payload.field("messages"), payload.field("prompt")) {
                (Some(Value::Array(messages)), _) => tokenizer::count_chat(&chat_texts(messages)),
                (_, Some(prompt)) => tokenizer::count_value(prompt),
                _ => return Err(ApiError::bad_request("send `messages` or `prompt` to count").with_param("messages")),
            };
            let model_used = table.group(model).and_then(|mut g| g.next()).map(|d| d.upstream_model.clone());
            Json(json!({
                "total_tokens": total,
                "request_model": model,
                "model_used": model_used.unwrap_or_else(|| model.to_owned()),
                "tokenizer_type": "ferrolite-estimate",
            }))
            .into_response()
        }
        LocalHandler::GetResponse => {
            let id = local.param("response_id");
            let record = stored(local, id).await?;
            Json(record.response).into_response()
        }
        LocalHandler::DeleteResponse => {
            let id = local.param("response_id");
            let store = state.controller.responses();
            if !store.delete(local.caller, id).await? {
                return Err(ResponsesError::NotFound(id.to_owned()).into());
            }
            Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
        }
        LocalHandler::ListResponseInputItems => {
            let id = local.param("response_id");
            let page = items::PageQuery::read(|key| super::query::param(query, key).map(|v| v.into_owned()))
                .map_err(|e| ApiError::bad_request(e.to_string()).with_param(e.param()))?;
            let store = state.controller.responses();
            let chain = store.chain(local.caller, id).await.map_err(|e| ApiError::from(e).with_param("response_id"))?;
            Json(items::page(items::listed(&chain), &page)).into_response()
        }
        LocalHandler::SupportedOpenaiParams => {
            let model = super::query::param(query, "model")
                .ok_or_else(|| ApiError::bad_request("pass ?model=NAME").with_param("model"))?;
            let deployment = table.group(&model).and_then(|mut g| g.next()).ok_or_else(|| {
                ApiError::not_found(format!("model {model:?} is not served by this app")).with_code("model_not_found")
            })?;
            Json(json!({"supported_openai_params": deployment.provider.spec().chat_params})).into_response()
        }
        LocalHandler::McpRestToolsList => {
            let server = super::query::param(query, "server_id");
            Json(super::mcp::rest_tools_list(session, local.mcp_access, server.as_deref()).await?).into_response()
        }
        LocalHandler::McpRestToolsCall => {
            Json(super::mcp::rest_tools_call(session, local.mcp_access, payload).await?).into_response()
        }
    };
    Ok(response)
}

/// A stored response of the caller's workspace (404 naming it otherwise).
async fn stored(local: &Local<'_>, id: &str) -> Result<Record, ApiError> {
    let store = local.state.controller.responses();
    match store.get(local.caller, id).await? {
        Some(record) => Ok(record),
        None => Err(ApiError::from(ResponsesError::NotFound(id.to_owned())).with_param("response_id")),
    }
}

fn model_object(session: &Session, name: &str) -> Value {
    json!({"id": name, "object": "model", "created": session.created, "owned_by": "ferrolite"})
}

fn chat_texts(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let role = m["role"].as_str().unwrap_or_default().to_owned();
            (role, crate::api::openai::text_of(m.get("content")))
        })
        .collect()
}

/// A deployment's params as /v1/model/info shows them: secrets only as references or masked.
fn public_params(d: &Deployment) -> Map<String, Value> {
    let mut params = match serde_json::to_value(&d.params) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for key in SECRET_PARAMS {
        if let Some(Value::String(v)) = params.get_mut(*key) {
            if !(v.starts_with("os.environ/") || v.starts_with("HYPHA_SECRET:")) {
                *v = redact(v);
            }
        }
    }
    params
}

fn model_info(d: &Deployment) -> Value {
    let mut info = d.model_info.clone().unwrap_or_default();
    info.insert("id".into(), json!(d.id));
    info.entry("mode").or_insert_with(|| json!("chat"));
    info.insert("provider".into(), json!(d.provider));
    json!({"model_name": d.model_name, "litellm_params": public_params(d), "model_info": info})
}

/// litellm's health report: each deployment checked, healthy or not with the reason.
async fn health(state: &AppState, session: &Session) -> Value {
    let table = &session.table;
    // With background checks on, their last answers (as litellm's /health gives them); a
    // deployment not checked yet is probed now.
    let checks = table.deployments.iter().zip(&table.stats).map(|(d, stats)| async move {
        let Some(interval) = table.health_check_interval else {
            return (d, crate::providers::health::probe(&state.http, d).await);
        };
        let kept = stats.health.lock().ok().and_then(|h| h.clone());
        let answer = match kept {
            Some(checked) => checked.error.map_or(Ok(()), Err),
            None => {
                let answer = crate::providers::health::probe(&state.http, d).await;
                crate::router::health::record(d, stats, interval, answer.clone());
                answer
            }
        };
        (d, answer)
    });
    let results = futures::future::join_all(checks).await;
    let mut healthy = Vec::new();
    let mut unhealthy = Vec::new();
    for (d, result) in results {
        let mut entry = json!({"model": d.upstream_model, "model_name": d.model_name, "deployment": d.id});
        if let Some(base) = &d.api_base {
            entry["api_base"] = json!(base);
        }
        match result {
            Ok(()) => healthy.push(entry),
            Err(reason) => {
                entry["error"] = json!(reason);
                unhealthy.push(entry);
            }
        }
    }
    let mut report = json!({
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
    });
    if let Some(mcp) = &session.mcp {
        // The app's MCP servers: one that does not answer is left out of the tool lists.
        let servers: Vec<Value> = mcp
            .gateway()
            .health()
            .await
            .into_iter()
            .map(|(name, answer)| match answer {
                Ok(tools) => json!({"server": name, "healthy": true, "tools": tools}),
                Err(error) => json!({"server": name, "healthy": false, "error": error}),
            })
            .collect();
        report["mcp_servers"] = Value::Array(servers);
    }
    report
}
