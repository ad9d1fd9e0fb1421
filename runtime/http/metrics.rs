//! `GET /metrics`: the Prometheus text exposition, for admin tokens (or anyone with
//! `--metrics-public`).

use super::AppState;
use crate::exchange::ApiError;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

/// Prometheus' text format version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn serve(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics_public {
        let claims = match state.tokens.authenticate(&headers) {
            Ok(claims) => claims,
            Err(e) => return ApiError::from(e).into_response(),
        };
        if !claims.admin {
            return ApiError::forbidden(format!(
                "/metrics needs an admin token (a token of workspace {:?} is not one), or a server started with --metrics-public",
                claims.ws
            ))
            .into_response();
        }
    }
    for session in state.controller.registry().all() {
        session.table.sample_gauges();
    }
    let text = crate::observability::metrics::render(state.in_flight.current());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}
