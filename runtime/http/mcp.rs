//! `/{workspace}/apps/{service_id}/mcp`: the app's MCP gateway behind the same tokens,
//! visibility and rate limits as its LLM routes; and its REST door for callers that do not
//! speak MCP (`/mcp-rest/tools/*`, catalogue routes served locally).

use super::AppState;
use crate::apps::session::Session;
use crate::exchange::{ApiError, Payload};
use crate::mcp::{Access, GatewayError, Scoped};
use crate::observability::request_id::RequestId;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rmcp::model::{CallToolRequestParams, CallToolResponse, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument;

/// Admits the caller as [`super::dispatch::admit`] does, then hands the request to the app's
/// MCP endpoint.
pub async fn serve(
    State(state): State<AppState>,
    Path((workspace, service_id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let request_id = RequestId::from_headers(request.headers());
    let span = tracing::info_span!(
        "mcp",
        id = request_id.as_str(),
        workspace = workspace.as_str(),
        service = service_id.as_str()
    );
    let mut response = admitted(&state, &workspace, &service_id, request)
        .instrument(span)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(crate::observability::request_id::HEADER, request_id.header_value());
    response
}

async fn admitted(
    state: &AppState,
    workspace: &str,
    service_id: &str,
    mut request: Request,
) -> Result<Response, ApiError> {
    let (session, claims) = super::dispatch::admit(state, request.headers(), workspace, service_id).await?;
    super::limits::check_rates(state, workspace, request.headers())?;
    let key = claims.as_ref().and_then(|c| c.key.as_ref());
    // A key's rpm and requests at once count MCP messages as they count LLM requests.
    let place = key.map(|k| state.key_limits.admit(k)).transpose()?.flatten();
    // A key's own lists travel with the request to the MCP handler, which filters by them.
    if let Some(key) = key {
        request.extensions_mut().insert(Access::new(key.mcp_servers.clone(), key.mcp_tools.clone()));
    }
    let response = endpoint(&session)?.serve(request).await;
    Ok(match place {
        Some(place) => super::limits::hold(response, place),
        None => response,
    })
}

/// The app's MCP endpoint, or a 404 saying the manifest sets no servers.
fn endpoint(session: &Session) -> Result<&crate::mcp::Endpoint, ApiError> {
    session.mcp.as_deref().ok_or_else(|| {
        ApiError::not_found(format!(
            "service {:?} has no MCP servers: its manifest sets no config.mcp_servers",
            session.service_id
        ))
    })
}

fn no_server(server: &str) -> ApiError {
    ApiError::not_found(format!("this app has no MCP server {server:?}")).with_param("server_id")
}

/// One tool as litellm's `/mcp-rest/tools/list` shows it.
#[derive(Serialize)]
pub struct RestTool {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(rename = "inputSchema")]
    input_schema: Value,
    mcp_info: McpInfo,
}

#[derive(Serialize)]
struct McpInfo {
    server_name: String,
}

/// litellm's answer to `/mcp-rest/tools/list`: `error` is `partial_failure` only when servers
/// failed and none answered with a tool, as there.
#[derive(Serialize)]
pub struct RestToolList {
    tools: Vec<RestTool>,
    error: Option<&'static str>,
    message: String,
}

/// `GET /mcp-rest/tools/list[?server_id=NAME]`.
pub async fn rest_tools_list(
    session: &Session,
    access: &Access,
    server_id: Option<&str>,
) -> Result<RestToolList, ApiError> {
    // No servers is an empty list, as litellm answers it; a named server must exist.
    let Some(gateway) = session.mcp.as_deref().map(|mcp| Scoped { gateway: mcp.gateway(), access }) else {
        return match server_id {
            Some(server) => Err(no_server(server)),
            None => Ok(RestToolList { tools: Vec::new(), error: None, message: "Successfully retrieved tools".into() }),
        };
    };
    if let Some(server) = server_id.filter(|s| !gateway.has_server(s)) {
        return Err(no_server(server));
    }
    let listing = gateway.tool_listing().await;
    let tools: Vec<RestTool> = listing
        .tools
        .into_iter()
        .filter(|(server, _)| server_id.is_none_or(|s| s == *server))
        .map(|(server, tool)| RestTool {
            name: tool.name.into_owned(),
            description: tool.description.map(|d| d.into_owned()),
            input_schema: Value::Object((*tool.input_schema).clone()),
            mcp_info: McpInfo { server_name: server.to_owned() },
        })
        .collect();
    let failed = !listing.failed.is_empty() && tools.is_empty();
    Ok(RestToolList {
        error: failed.then_some("partial_failure"),
        message: if failed {
            format!("Failed to get tools from servers: {}", listing.failed.join("; "))
        } else {
            "Successfully retrieved tools".to_owned()
        },
        tools,
    })
}

/// The body of `POST /mcp-rest/tools/call`.
#[derive(Deserialize)]
struct RestCall {
    name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
    /// With it, `name` may be the server's own tool name (litellm accepts both).
    #[serde(default)]
    server_id: Option<String>,
}

/// `POST /mcp-rest/tools/call`: the tool's `CallToolResult` as MCP has it (`content`,
/// `structuredContent`, `isError`); a failure before the tool ran is an OpenAI-style error.
pub async fn rest_tools_call(session: &Session, access: &Access, payload: &Payload) -> Result<Value, ApiError> {
    let gateway = Scoped { gateway: endpoint(session)?.gateway(), access };
    let Payload::Json(body) = payload else {
        return Err(ApiError::bad_request("send a JSON body {name, arguments}"));
    };
    let call = RestCall::deserialize(&**body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let name = match &call.server_id {
        Some(server) if !gateway.has_server(server) => return Err(no_server(server)),
        Some(server) if !call.name.starts_with(&format!("{server}-")) => crate::mcp::prefixed(server, &call.name),
        _ => call.name,
    };
    let mut params = CallToolRequestParams::new(name);
    if let Some(arguments) = call.arguments {
        params = params.with_arguments(arguments);
    }
    match gateway.call(params).await {
        Ok(CallToolResponse::Complete(result)) => {
            serde_json::to_value(result).map_err(|e| ApiError::internal(format!("encoding the tool's result: {e}")))
        }
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "the tool asked for input or started a task, which only MCP clients can give: call it at /mcp",
        )),
        Err(e @ (GatewayError::UnknownName { .. } | GatewayError::NotAllowed { .. })) => {
            Err(ApiError::bad_request(e.to_string()).with_param("name"))
        }
        Err(GatewayError::Forbidden(message)) => Err(ApiError::forbidden(message).with_param("name")),
        // The tool's own server refused the arguments.
        Err(GatewayError::Upstream(e)) if e.code == ErrorCode::INVALID_PARAMS => {
            Err(ApiError::bad_request(e.message).with_param("arguments"))
        }
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, "api_error", e.to_string())),
    }
}
