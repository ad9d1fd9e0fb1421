//! `/{workspace}/apps/{service_id}/mcp`: the app's MCP gateway behind the same tokens,
//! visibility and rate limits as its LLM routes.

use super::AppState;
use crate::exchange::ApiError;
use crate::observability::request_id::RequestId;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
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

async fn admitted(state: &AppState, workspace: &str, service_id: &str, request: Request) -> Result<Response, ApiError> {
    let (session, _) = super::dispatch::admit(state, request.headers(), workspace, service_id).await?;
    super::limits::check_rates(state, workspace, crate::auth::presented_token(request.headers()))?;
    let endpoint = session.mcp.as_ref().ok_or_else(|| {
        ApiError::not_found(format!(
            "service {service_id:?} has no MCP servers: its manifest sets no config.mcp_servers"
        ))
    })?;
    Ok(endpoint.serve(request).await)
}
