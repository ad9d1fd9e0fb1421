//! Protections against too much at once: a global cap on requests in flight (503 with
//! `Retry-After` beyond it, rather than falling over) and per-workspace / per-token request
//! rates per minute (429 with `Retry-After`).

use super::AppState;
use crate::exchange::{ApiError, WholeError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Requests being served right now, bounded.
#[derive(Debug)]
pub struct InFlightLimit {
    max: usize,
    current: Arc<AtomicUsize>,
}

/// Holds one place under the limit until dropped (a stream holds it until it ends).
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlightLimit {
    pub fn new(max: usize) -> InFlightLimit {
        InFlightLimit { max, current: Arc::default() }
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    fn enter(&self) -> Option<Place> {
        let previous = self.current.fetch_add(1, Ordering::AcqRel);
        let place = Place(self.current.clone());
        (previous < self.max).then_some(place)
    }
}

/// Middleware: refuses with 503 once `max_in_flight` requests are being served.
pub async fn in_flight(State(state): State<AppState>, request: Request, next: Next) -> Response {
    within_cap(&state, next.run(request)).await
}

/// Serves `respond` under the in-flight cap: 503 beyond it; otherwise its response, holding a
/// place until the response's body ends.
pub async fn within_cap(state: &AppState, respond: impl std::future::Future<Output = Response>) -> Response {
    capped(state, respond).await
}

/// The 503 of a request past the in-flight cap.
fn overloaded(state: &AppState) -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        format!("ferrolite is serving its limit of {} requests at once; retry shortly", state.in_flight.max),
    )
    .with_code("overloaded")
    .with_retry_after(Some(1))
    .into_response()
}

/// [`within_cap`] as a future of its own, for the door's direct path: the place is taken when
/// the request arrives, and `respond` is kept in place rather than moved into an async
/// wrapper's state (which holds it twice: as argument and as the future awaited).
pub fn capped<F: std::future::Future<Output = Response>>(state: &AppState, respond: F) -> Capped<F> {
    match state.in_flight.enter() {
        Some(place) => Capped::Serving { respond, place: Some(place) },
        None => Capped::Refused { refused: Some(overloaded(state)) },
    }
}

pin_project_lite::pin_project! {
    /// The future [`capped`] returns.
    #[project = CappedProj]
    pub enum Capped<F> {
        Serving { #[pin] respond: F, place: Option<Place> },
        Refused { refused: Option<Response> },
    }
}

impl<F: std::future::Future<Output = Response>> std::future::Future for Capped<F> {
    type Output = Response;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Response> {
        match self.project() {
            CappedProj::Serving { respond, place } => {
                let response = std::task::ready!(respond.poll(cx));
                std::task::Poll::Ready(hold(response, place.take()))
            }
            // Polled again after it answered: an empty 503 rather than a panic.
            CappedProj::Refused { refused } => std::task::Poll::Ready(
                refused.take().unwrap_or_else(|| StatusCode::SERVICE_UNAVAILABLE.into_response()),
            ),
        }
    }
}

/// `response` with `guard` kept until its body ends (a stream: at its end).
pub fn hold<G: Send + Unpin + 'static>(response: Response, guard: G) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, crate::transport::held::hold(body, guard))
}

/// Requests per minute allowed per workspace and per token (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    pub per_workspace: Option<u64>,
    pub per_token: Option<u64>,
}

/// Fixed one-minute windows of request counts.
#[derive(Debug, Default)]
pub struct RateCounter {
    windows: Mutex<(u64, HashMap<String, u64>)>,
}

impl RateCounter {
    /// Counts a request against every `(key, limit)` at once, or against none when one is
    /// spent: `Err((index of the spent one, seconds to wait))`.
    pub fn hit(&self, keys: &[(String, u64)]) -> Result<(), (usize, u64)> {
        let now = crate::clock::coarse_secs();
        let minute = now / 60;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.0 != minute {
            *windows = (minute, HashMap::new());
        }
        if let Some(spent) = keys.iter().position(|(key, limit)| windows.1.get(key).copied().unwrap_or(0) >= *limit) {
            return Err((spent, crate::clock::seconds_left_in_minute(now)));
        }
        for (key, _) in keys {
            *windows.1.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(())
    }
}

/// Applies the per-workspace and per-token limits to one request.
pub fn check_rates(state: &AppState, workspace: &str, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let mut keys = Vec::new();
    let mut names = Vec::new();
    if let Some(limit) = state.rate_limits.per_workspace {
        keys.push((format!("ws:{workspace}"), limit));
        names.push(format!("workspace {workspace:?}"));
    }
    // The token is looked for only when tokens have a limit: reading it is a cost on every
    // request otherwise.
    let per_token = state.rate_limits.per_token.and_then(|limit| Some((limit, crate::auth::presented_token(headers)?)));
    if let Some((limit, token)) = per_token {
        // Keyed by the token's signature: unique per token, and not the credential itself.
        keys.push((format!("tk:{}", token.rsplit('.').next().unwrap_or(token)), limit));
        names.push("this token".to_owned());
    }
    if keys.is_empty() {
        return Ok(());
    }
    state.rates.hit(&keys).map_err(|(spent, wait)| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("{} is over its request rate; retry in {wait}s", names[spent]),
        )
        .with_code("rate_limit_exceeded")
        .with_retry_after(Some(wait))
    })
}

/// Most bytes read (and discarded) past a body limit so the client can read the 413: a client
/// still sending when the server closes would get a reset instead of the answer.
const DRAIN_PAST_LIMIT: usize = 64 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than the {0} byte limit")]
    TooLarge(usize),
    #[error("could not read the request body: {0}")]
    Broken(String),
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge(limit) => ApiError::payload_too_large(limit),
            BodyError::Broken(_) => ApiError::bad_request(e.to_string()),
        }
    }
}

/// Reads a whole body of at most `limit` bytes. Past the limit, the rest is drained (up to
/// 64 MiB more) so the 413 reaches the client intact.
pub async fn read_body(mut body: Body, limit: usize) -> Result<axum::body::Bytes, BodyError> {
    match crate::exchange::whole(&mut body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(WholeError::Broken(why)) => Err(BodyError::Broken(why)),
        Err(WholeError::TooLarge(_)) => {
            use futures::StreamExt;
            let mut rest = body.into_data_stream();
            let mut drained = 0usize;
            while let Some(Ok(more)) = rest.next().await {
                drained += more.len();
                if drained > DRAIN_PAST_LIMIT {
                    break;
                }
            }
            Err(BodyError::TooLarge(limit))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    fn pieces(parts: &[&'static str]) -> Body {
        let parts: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect();
        Body::from_stream(futures::stream::iter(parts))
    }

    #[tokio::test]
    async fn a_body_in_one_piece_is_that_piece_and_pieces_are_joined_within_the_limit() {
        let whole = Bytes::from_static(b"{\"model\":\"m\"}");
        let read = read_body(Body::from(whole.clone()), 64).await.expect("read");
        assert_eq!(read.as_ptr(), whole.as_ptr(), "one piece is handed on, not copied");
        for parts in [&["", "ab", "", "cd"][..], &["ab", "", "cd"], &["ab", "cd", ""], &["a", "b", "c", "d"]] {
            let read = read_body(pieces(parts), 4).await.expect("read");
            assert_eq!(&read[..], b"abcd", "{parts:?}");
        }
        assert!(read_body(pieces(&[]), 4).await.expect("read").is_empty());
        assert!(matches!(read_body(pieces(&["ab", "cd", "e"]), 4).await, Err(BodyError::TooLarge(4))));
        assert!(matches!(read_body(Body::from("abcde"), 4).await, Err(BodyError::TooLarge(4))));
    }
}
