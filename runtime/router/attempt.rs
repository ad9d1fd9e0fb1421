//! One attempt: a request sent to one deployment through its provider, bounded by the deadline
//! (408 past it), with the deployment's secrets masked in whatever error comes back.
//!
//! The deadline covers the whole exchange of a JSON answer: its head and its body, which is read
//! here (and its usage with it) before anything goes to the client, so an upstream that sends
//! its headers and then trickles the body gets a 408, not a 200 that never ends. A stream's
//! deadline ends at its head; from there its chunks are bounded by `stream_timeout`.

use super::Routed;
use crate::catalogue::Route;
use crate::exchange::{usage, ApiError, Outcome, Payload, WholeError};
use crate::providers::{self, auth, Deployment, ProviderCall};
use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::Response;
use std::time::{Duration, Instant};

/// How an attempt failed.
#[derive(Debug)]
pub enum Failed {
    /// The upstream gave no (good) answer: retried or fallen back from as the breaker says.
    Upstream(ApiError),
    /// A 2xx JSON answer that broke off or is not JSON: the upstream took the request, so it
    /// is not sent again.
    Answer(ApiError),
}

/// When an exchange must end, and the length of the timeout that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub length: Duration,
}

impl Deadline {
    /// The deadline of a timeout of `length` from `start`; none past the clock's end.
    pub fn after(start: Instant, length: Duration) -> Option<Deadline> {
        Some(Deadline { at: start.checked_add(length)?, length })
    }
}

/// One try on deployment `d`: its answer, a JSON one read whole.
pub async fn attempt(
    r: &Routed<'_>,
    d: &Deployment,
    payload: Payload,
    stream: bool,
    deadline: Option<Deadline>,
) -> Result<Outcome, Failed> {
    let provider_route =
        r.route.provider_route(d.provider).ok_or_else(|| Failed::Upstream(unsupported_route(d, r.route)))?;
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
        stream,
    };
    // Boxed: the provider's exchange is the request's largest future, and every layer above
    // would otherwise copy it in whole when it is made.
    let exchange = Box::pin(async {
        let outcome = providers::serve(call).await.map_err(Failed::Upstream)?;
        read_json(outcome, r.answer_limit, r.route.model_field.is_some(), &d.id).await.map_err(Failed::Answer)
    });
    let result = match deadline {
        None => exchange.await,
        Some(deadline) => match crate::transport::deadline::within(deadline.at, deadline.length, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failed::Upstream(timed_out(d, deadline.length))),
        },
    };
    result.map_err(|failed| match failed {
        Failed::Upstream(e) => Failed::Upstream(auth::scrub(e, d)),
        Failed::Answer(e) => Failed::Answer(auth::scrub(e, d)),
    })
}

/// A JSON answer read whole, and its usage with it on routes that count tokens; an answer
/// whose usage the provider gave (a translation's, in memory already) or that is not JSON goes
/// on as it is.
async fn read_json(outcome: Outcome, limit: usize, count_usage: bool, who: &str) -> Result<Outcome, ApiError> {
    if outcome.usage.is_some() || !content_type_is(&outcome.response, "application/json") {
        return Ok(outcome);
    }
    let Outcome { response, deployment, usage: known } = outcome;
    let (parts, mut body) = response.into_parts();
    let broken = |message: String| {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message).with_code("bad_upstream_answer")
    };
    let bytes = crate::exchange::whole(&mut body, limit).await.map_err(|e| match e {
        WholeError::TooLarge(_) => broken(format!("deployment {who}'s answer is {e}")),
        WholeError::Broken(_) => broken(format!("deployment {who}'s answer broke off: {e}")),
    })?;
    let usage = match (known, count_usage) {
        (Some(usage), _) => Some(usage),
        (None, true) => {
            usage::from_answer(&bytes).map_err(|e| broken(format!("deployment {who} answered invalid JSON: {e}")))?
        }
        (None, false) => None,
    };
    Ok(Outcome { response: Response::from_parts(parts, Body::from(bytes)), deployment, usage })
}

/// Whether a response's content type starts with `prefix`.
pub fn content_type_is(response: &Response, prefix: &str) -> bool {
    response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with(prefix))
}

/// When an attempt on `d` must end: the request's deadline or the deployment's own `timeout`,
/// whichever comes first.
pub fn deadline(request: Option<Deadline>, d: &Deployment) -> Option<Deadline> {
    let own = d.params.timeout.and_then(|t| Deadline::after(Instant::now(), Duration::try_from_secs_f64(t).ok()?));
    match (request, own) {
        (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn timed_out(d: &Deployment, length: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout_error",
        format!("deployment {} did not answer within the {:.1}s timeout", d.id, length.as_secs_f64()),
    )
    .with_code("timeout")
}

/// 400: the deployment's provider does not serve this route.
/// The answer for a group none of whose deployments can be called: the first that cannot, and why.
pub fn unavailable(d: &Deployment) -> ApiError {
    let reason = d.unavailable.as_deref().unwrap_or("it cannot be called");
    let message = format!("deployment {} of model {:?} cannot serve: {reason}", d.id, d.model_name);
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message).with_code("deployment_unavailable")
}

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
