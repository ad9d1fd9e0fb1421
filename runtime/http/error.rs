//! The one place errors become HTTP responses: the domain's [`ApiError`] as its status and
//! OpenAI-style JSON body, and the errors of the controller, auth and shared state as
//! [`ApiError`]s.

use crate::apps::responses::ResponsesError;
use crate::apps::ControllerError;
use crate::auth::keys::ApiKeyError;
use crate::auth::AuthError;
use crate::cluster::ClusterError;
use crate::exchange::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

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
            AuthError::Key(ApiKeyError::Unknown) => "invalid_api_key",
            AuthError::Key(ApiKeyError::Revoked) => "api_key_revoked",
            AuthError::Key(ApiKeyError::Expired) => "api_key_expired",
            AuthError::Unverifiable => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", e.to_string())
                    .with_code("token_check_unavailable")
            }
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
            ControllerError::KeyNotFound(_) => ApiError::not_found(message).with_param("key_id"),
            ControllerError::KeySpec(ref bad) => {
                ApiError::bad_request(message).with_param(bad.field).with_code("invalid_key_setting")
            }
            ControllerError::Start(_) => ApiError::bad_request(message).with_code("start_failed"),
            ControllerError::InvalidName(what, _) => {
                ApiError::bad_request(message).with_param(what).with_code("invalid_name")
            }
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", e.to_string())
            .with_code("shared_state_unavailable")
    }
}

impl From<ResponsesError> for ApiError {
    fn from(e: ResponsesError) -> ApiError {
        let message = e.to_string();
        match e {
            ResponsesError::NotFound(_) | ResponsesError::BrokenChain { .. } => {
                ApiError::not_found(message).with_code("response_not_found")
            }
            ResponsesError::TooLong(_) => ApiError::bad_request(message).with_code("conversation_too_long"),
            ResponsesError::Store(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                .with_code("response_store_unavailable"),
            ResponsesError::Answer(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "server_error", message).with_code("upstream_error")
            }
        }
    }
}
