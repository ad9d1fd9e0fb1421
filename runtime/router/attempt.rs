//! One attempt: a request sent to one deployment through its provider, bounded by the deadline
//! (408 past it), with the deployment's secrets masked in whatever error comes back.

use super::Routed;
use crate::catalogue::Route;
use crate::exchange::{ApiError, Outcome, Payload};
use crate::providers::{self, auth, Deployment, ProviderCall};
use axum::http::StatusCode;
use std::time::{Duration, Instant};

/// One try on deployment `d`.
pub async fn attempt(
    r: &Routed<'_>,
    d: &Deployment,
    payload: Payload,
    deadline: Option<Instant>,
) -> Result<Outcome, ApiError> {
    let provider_route = r.route.provider_route(d.provider).ok_or_else(|| unsupported_route(d, r.route))?;
    let call = ProviderCall {
        upstream: r.upstream,
        answer_limit: r.answer_limit,
        body_limit: r.body_limit,
        deployment: d,
        settings: &r.table.settings,
        logs: &r.table.logs,
        route: r.route,
        provider_route,
        params: r.params,
        query: r.query,
        headers: r.headers,
        payload,
    };
    let result = match deadline {
        None => providers::serve(call).await,
        Some(deadline) => {
            let budget = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout_at(deadline.into(), providers::serve(call)).await {
                Ok(result) => result,
                Err(_) => Err(timed_out(d, budget)),
            }
        }
    };
    result.map_err(|e| auth::scrub(e, d))
}

/// When an attempt on `d` must end: the request's deadline or the deployment's own `timeout`,
/// whichever comes first.
pub fn deadline(request: Option<Instant>, d: &Deployment) -> Option<Instant> {
    let own = d.params.timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
    match (request, own) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn timed_out(d: &Deployment, budget: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout_error",
        format!("deployment {} did not answer within the {:.1}s timeout", d.id, budget.as_secs_f64()),
    )
    .with_code("timeout")
}

/// 400: the deployment's provider does not serve this route.
pub fn unsupported_route(d: &Deployment, route: &Route) -> ApiError {
    ApiError::bad_request(format!(
        "model {:?} is served by provider {}, which does not serve {} {}",
        d.model_name,
        d.provider,
        route.method.as_http(),
        route.path
    ))
    .with_code("unsupported_route")
}
