//! The response cache on the request path: a request's `cache` controls read (and taken out of
//! the body, so no upstream sees them), its entry looked up before routing, and a 200 answer
//! kept on its way out. A hit never reaches the router: no reservation, no spend.

use super::AppState;
use crate::apps::session::Session;
use crate::cache::record::{Recording, Saver};
use crate::cache::{self, Controls, ResponseCache, Shape};
use crate::catalogue::Operation;
use crate::cluster::Cluster;
use crate::exchange::{parse_json, ApiError, Outcome, Payload};
use crate::observability::metrics;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// What the lookup came to.
pub enum Lookup {
    /// The cached answer, ready for the client.
    Hit(Outcome),
    /// Serve the request (its body without the `cache` field), then hand the answer to
    /// `Pending::keep`, when there is an entry to keep.
    Miss(Payload, Option<Pending>),
}

/// A cacheable request on its way to a provider.
pub struct Pending {
    cache: Arc<ResponseCache>,
    cluster: Option<Arc<Cluster>>,
    key: String,
    controls: Controls,
    shape: Option<Shape>,
    limit: usize,
}

/// Whether `op` is one the cache can serve (and whose body may carry `cache` controls).
fn cacheable(op: Operation) -> bool {
    matches!(op, Operation::ChatCompletions | Operation::Completions | Operation::Embeddings)
}

/// Reads the request's controls and looks its answer up.
pub async fn lookup(
    state: &AppState,
    session: &Session,
    op: Operation,
    path: &str,
    payload: Payload,
) -> Result<Lookup, ApiError> {
    let Payload::Json(body) = &payload else { return Ok(Lookup::Miss(payload, None)) };
    if !cacheable(op) {
        return Ok(Lookup::Miss(payload, None));
    }
    let cache = session.cache.as_ref().filter(|c| c.serves(op));
    let asked = body.field("cache");
    // Controls are checked only where they act; elsewhere they are just kept from the upstream.
    let controls = match cache {
        Some(_) => Controls::of(asked).map_err(|e| {
            ApiError::bad_request(e.to_string()).with_param("cache").with_code("invalid_cache_controls")
        })?,
        None => Controls::default(),
    };
    let asked = asked.is_some();
    let mut body = body.clone();
    if asked {
        if let Value::Object(map) = body.to_mut() {
            map.shift_remove("cache");
        }
    }
    let Some(cache) = cache else {
        return Ok(Lookup::Miss(Payload::Json(body), None));
    };
    let key = cache::key::key(&format!("{}/{}", session.workspace, session.app_id), path, &body);
    let cluster = state.controller.cluster().cloned();
    let payload = Payload::Json(body);
    let labels = &session.table.labels;
    if !controls.no_cache {
        let max_age = controls.s_maxage.map(Duration::from_secs_f64);
        match cache.get(cluster.as_deref(), &key, max_age).await {
            Ok(Some(entry)) => {
                metrics::cache_lookup(labels, true);
                let stream = payload.flag("stream");
                let response = match cache::shape(op).filter(|_| stream) {
                    Some(shape) => {
                        let events = cache::replay::replay(shape, &entry.answer, payload.wants_stream_usage());
                        crate::streaming::sse::response(futures::stream::iter(events.into_iter().map(Ok)))
                    }
                    None => json_response(&entry.answer),
                };
                return Ok(Lookup::Hit(Outcome::local(mark(response, "hit", &key))));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "response cache: lookup failed, serving without it"),
        }
    }
    metrics::cache_lookup(labels, false);
    let pending = Pending {
        cache: Arc::clone(cache),
        cluster,
        key,
        controls,
        shape: cache::shape(op),
        limit: state.limits.max_body_bytes,
    };
    Ok(Lookup::Miss(payload, Some(pending)))
}

impl Pending {
    /// Marks the answer a miss and keeps it if it is a 200 the client let be stored.
    pub async fn keep(self, mut outcome: Outcome) -> Result<Outcome, ApiError> {
        let response = std::mem::take(&mut outcome.response);
        let response = mark(response, "miss", &self.key);
        if response.status() != StatusCode::OK || self.controls.no_store {
            outcome.response = response;
            return Ok(outcome);
        }
        let ttl = self.controls.ttl.map(Duration::from_secs_f64);
        let saver = Saver { cache: self.cache, cluster: self.cluster, key: self.key, ttl };
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let (parts, mut body) = response.into_parts();
        outcome.response = match (is_stream, self.shape) {
            (true, Some(shape)) => {
                let recording = Recording::new(body.into_data_stream(), shape, self.limit, saver);
                Response::from_parts(parts, Body::from_stream(recording))
            }
            (true, None) => Response::from_parts(parts, body),
            (false, _) => {
                // A whole answer is in memory already (the router read it for its usage).
                let bytes = crate::exchange::whole(&mut body, self.limit).await.map_err(|e| {
                    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("could not read the answer: {e}"))
                })?;
                if let Ok(answer) = parse_json::<Value>(&bytes) {
                    saver.save(answer).await;
                }
                Response::from_parts(parts, Body::from(bytes))
            }
        };
        Ok(outcome)
    }
}

fn json_response(answer: &Value) -> Response {
    let mut response = Response::new(Body::from(answer.to_string()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The cache's headers: `x-ferrolite-cache: hit|miss` and litellm's `x-litellm-cache-key`.
fn mark(mut response: Response, status: &'static str, key: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(cache::STATUS_HEADER, HeaderValue::from_static(status));
    if let Ok(key) = HeaderValue::from_str(key) {
        headers.insert(cache::KEY_HEADER, key);
    }
    response
}
