//! The one place errors become HTTP responses: a status and an OpenAI-style JSON body
//! `{"error": {"message", "type", "param", "code"}}`.

use crate::apps::ControllerError;
use crate::auth::AuthError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: invalid_request_error, authentication_error, ...
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Seconds the client should wait (sent as `Retry-After`; also honoured by retries).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into(), param: None, code: None, retry_after: None }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: Option<u64>) -> ApiError {
        self.retry_after = seconds;
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> ApiError {
        self.code = Some(code.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "permission_error", message).with_code("forbidden")
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body is larger than the {limit} byte limit"),
        )
        .with_code("payload_too_large")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// A part of ferrolite that is not built yet: said plainly, never faked.
    pub fn not_built(what: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented_error",
            format!("{} is not built yet in ferrolite", what.into()),
        )
        .with_code("not_implemented")
    }

    /// The JSON body, also used for SSE error events.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let code = match e {
            AuthError::Missing => "missing_token",
            AuthError::Malformed | AuthError::BadSignature => "invalid_token",
            AuthError::Expired => "token_expired",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", e.to_string()).with_code(code)
    }
}

impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> ApiError {
        let message = e.to_string();
        match e {
            ControllerError::Invalid(ref invalid) => {
                let mut error = ApiError::bad_request(message).with_code("invalid_manifest");
                if let Some(first) = invalid.findings.first() {
                    error = error.with_param(first.pointer.clone());
                }
                error
            }
            ControllerError::Unreadable(_) => ApiError::bad_request(message).with_code("invalid_manifest"),
            ControllerError::Store(_) => ApiError::internal(message).with_code("store_error"),
            ControllerError::Cluster(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                .with_code("shared_state_unavailable"),
            ControllerError::AppExists(_) | ControllerError::ServiceIdInUse(..) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_request_error", message).with_code("conflict")
            }
            ControllerError::AppNotFound(_) | ControllerError::SessionNotFound(_) => ApiError::not_found(message),
            ControllerError::Start(_) => ApiError::bad_request(message).with_code("start_failed"),
        }
    }
}
