//! MCP tools from the LLM routes: a Responses or chat completions request with a tool
//! `{"type": "mcp", "server_label": NAME, ...}` naming one of the app's MCP servers has the
//! gateway run the tool loop itself, as OpenAI's Responses API does with remote MCP servers:
//! the server's tools go to the model as functions, the model's calls of them run through the
//! gateway, their results go back to the model, until it answers.
//!
//! - `spec.rs`: the request's `mcp` tools read and checked (only the app's servers);
//! - `toolbox.rs`: their tools listed, named for the model (`names.rs`), and called;
//! - `model.rs`: one model turn through the router, what the turns add up to;
//! - `responses.rs`, `chat.rs`: the loop in each API's terms;
//! - `items.rs`: the Responses API's `mcp_*` items; `stream.rs`: the final answer as events.

mod chat;
pub mod items;
mod model;
pub mod names;
mod responses;
pub mod spec;
mod stream;
mod toolbox;

use crate::catalogue::Operation;
use crate::exchange::{ApiError, JsonBody, Outcome, Payload};
use crate::mcp::Scoped;
use crate::router::plan::Target;
use crate::router::{failover, Routed};
use axum::http::StatusCode;
use model::Model;
use serde_json::{Map, Value};

/// The most model turns one request runs: a model that keeps calling tools is stopped there.
pub const MAX_TURNS: usize = 8;

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Responses,
    Chat,
}

/// Why a request with MCP tools cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid mcp tool: {reason}")]
    BadTool { param: String, reason: String },
    #[error("only this app's configured MCP servers can be used, named by `server_label`: a gateway does not fetch a `server_url` or `connector_id` a request brings")]
    RemoteServer { param: String },
    #[error("this app's MCP servers are called with the headers and credentials the app configured: a request cannot bring its own")]
    OwnCredentials { param: String },
    #[error("this app has no MCP servers: an mcp tool cannot be used")]
    NoServers { param: String },
    #[error("this app has no MCP server {server:?}; its MCP servers are: {known}")]
    UnknownServer { param: String, server: String, known: String },
    #[error("MCP server {server:?} is named by two mcp tools")]
    DuplicateServer { param: String, server: String },
    #[error("chat completions have no way to ask for approval: their mcp tools take `require_approval: \"never\"` (or none); use the Responses API for approvals")]
    ApprovalInChat { param: String },
    #[error("invalid MCP item: {reason}")]
    BadItem { param: String, reason: String },
    #[error("no mcp_approval_request {0:?} in this conversation: an mcp_approval_response answers a request of the response it continues (previous_response_id)")]
    UnknownApproval(String),
    #[error("`n` greater than 1 cannot be combined with mcp tools: each choice would run tools of its own")]
    ManyChoices,
    #[error("error retrieving tool list from MCP server {server:?}: {reason}")]
    ListFailed { server: String, reason: String },
    #[error(
        "the model asked for MCP tools in {MAX_TURNS} turns in a row without answering: the tool loop stops there"
    )]
    TooManyTurns,
    #[error("the model's answer could not be read: {0}")]
    Answer(String),
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> ApiError {
        let message = error.to_string();
        match error {
            AgentError::BadTool { param, .. }
            | AgentError::RemoteServer { param }
            | AgentError::OwnCredentials { param }
            | AgentError::NoServers { param }
            | AgentError::UnknownServer { param, .. }
            | AgentError::DuplicateServer { param, .. }
            | AgentError::ApprovalInChat { param }
            | AgentError::BadItem { param, .. } => {
                ApiError::bad_request(message).with_param(param).with_code("invalid_mcp_tool")
            }
            AgentError::UnknownApproval(_) => {
                ApiError::bad_request(message).with_param("input").with_code("invalid_mcp_tool")
            }
            AgentError::ManyChoices => ApiError::bad_request(message).with_param("n"),
            // OpenAI answers a server it cannot list with 424 too.
            AgentError::ListFailed { .. } => {
                ApiError::new(StatusCode::FAILED_DEPENDENCY, "external_connector_error", message)
                    .with_code("mcp_list_tools_failed")
            }
            AgentError::TooManyTurns => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", message)
                    .with_code("mcp_max_turns")
            }
            AgentError::Answer(_) => ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message),
        }
    }
}

/// Whether a `tool_choice` makes the model call a tool: only the first turn is held to it,
/// or the loop would never end.
fn forces(choice: &Value) -> bool {
    match choice {
        Value::String(mode) => mode == "required",
        Value::Object(_) => true,
        _ => false,
    }
}

/// Serves a provider-routed request: through the MCP tool loop when it has `mcp` tools, else
/// through the router as it is (a continued conversation's MCP items taken out, which no
/// upstream would take without the loop to read them).
pub async fn serve(
    op: Operation,
    gateway: Option<Scoped<'_>>,
    routed: Routed<'_>,
    target: Target<'_>,
    payload: Payload,
) -> Result<Outcome, ApiError> {
    let dialect = match op {
        Operation::CreateResponse | Operation::CountInputTokens => Dialect::Responses,
        Operation::ChatCompletions => Dialect::Chat,
        _ => return failover::serve(routed, target, payload).await,
    };
    let Payload::Json(body) = &payload else { return failover::serve(routed, target, payload).await };
    let tools = body.field("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let specs = if op == Operation::CountInputTokens { Vec::new() } else { spec::read(dialect, tools, gateway)? };
    let model = Model { routed, target };
    match (specs.is_empty(), gateway) {
        (false, Some(gateway)) => {
            let body = body.as_object().cloned().unwrap_or_default();
            // Boxed: the loop's state is large, and every request's future would otherwise carry
            // (and move) room for it, MCP tools or not.
            match dialect {
                Dialect::Responses => Box::pin(responses::run(model, gateway, specs, body)).await,
                Dialect::Chat => Box::pin(chat::run(model, gateway, specs, body)).await,
            }
        }
        _ => match without_mcp_items(body) {
            Some(stripped) => failover::serve(routed, target, Payload::json(stripped)).await,
            None => failover::serve(routed, target, payload).await,
        },
    }
}

/// The body without the MCP items of its `input`, when it has any.
fn without_mcp_items(body: &JsonBody) -> Option<Value> {
    let is_mcp = |item: &Value| item.get("type").and_then(Value::as_str).is_some_and(items::McpItem::is_mcp);
    // Read by field: a pass-through's body is not read whole for this.
    let input = body.field("input").and_then(Value::as_array)?;
    if !input.iter().any(is_mcp) {
        return None;
    }
    let mut body: Map<String, Value> = body.as_object()?.clone();
    let kept = input.iter().filter(|i| !is_mcp(i)).cloned().collect();
    body.insert("input".into(), Value::Array(kept));
    Some(Value::Object(body))
}
