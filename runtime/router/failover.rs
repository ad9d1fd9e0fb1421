//! Failure handling around one routed request: retries on another deployment with backoff
//! (honouring `Retry-After`), cooldowns, fallbacks to other model groups, timeouts, and the
//! `x-ferrolite-*` headers that say what happened.
//!
//! Only retryable failures retry (connect errors, timeouts, 408, 429, 5xx); 400/401/403/404
//! fail at once, except that context-window and content-policy errors move to their own
//! fallback lists. A stream is retried only before its first byte reaches the client, which
//! holds by construction: an attempt's result is ready only once the upstream answered.

use super::accounting::{tap_json, tap_stream, Account};
use super::{pick, PickContext};
use crate::apps::logs::LogType;
use crate::apps::session::{Deployment, Session};
use crate::catalogue::Route;
use crate::http::dispatch::{Outcome, Payload};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::manifest::ProxyConfig;
use crate::observability::metrics;
use crate::providers::{self, ProviderCall};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The failure-handling settings of a session, from `litellm_settings` and `router_settings`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub num_retries: u32,
    /// Whole-request timeout (all attempts).
    pub timeout: Option<Duration>,
    /// Longest gap allowed between two chunks of a stream.
    pub stream_timeout: Option<Duration>,
    /// Failures a deployment may have in a minute before it cools down.
    pub allowed_fails: u64,
    pub cooldown: Duration,
    pub fallbacks: HashMap<String, Vec<String>>,
    pub context_window_fallbacks: HashMap<String, Vec<String>>,
    pub content_policy_fallbacks: HashMap<String, Vec<String>>,
    /// First retry's backoff; doubled each retry, with jitter.
    pub backoff: Duration,
    pub latency_buffer: f64,
    /// litellm's `enforce_model_rate_limits`: rpm / tpm become hard limits.
    pub enforce_rate_limits: bool,
    /// How often `: keep-alive` comments go out while a stream waits for its first token.
    pub keepalive: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            num_retries: 2,
            timeout: None,
            stream_timeout: None,
            allowed_fails: 3,
            cooldown: Duration::from_secs(5),
            fallbacks: HashMap::new(),
            context_window_fallbacks: HashMap::new(),
            content_policy_fallbacks: HashMap::new(),
            backoff: Duration::from_millis(100),
            latency_buffer: 0.0,
            enforce_rate_limits: false,
            keepalive: Duration::from_secs(15),
        }
    }
}

/// Longest wait honoured from a `Retry-After` before giving up on that deployment.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

fn seconds(v: &Value) -> Option<Duration> {
    v.as_f64().filter(|s| *s >= 0.0).map(Duration::from_secs_f64)
}

/// `[{"gpt-4": ["claude-3-opus"]}, ...]` as a map.
fn fallback_map(v: Option<&Value>) -> HashMap<String, Vec<String>> {
    let mut map = HashMap::new();
    for rule in v.and_then(Value::as_array).into_iter().flatten() {
        for (from, to) in rule.as_object().into_iter().flatten() {
            let targets: Vec<String> =
                to.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
            map.insert(from.clone(), targets);
        }
    }
    map
}

impl Policy {
    /// Reads a session's settings: `router_settings` first, then `litellm_settings`.
    pub fn from_config(config: &ProxyConfig) -> Policy {
        let litellm = serde_json::to_value(&config.litellm_settings).unwrap_or(Value::Null);
        let router = config.router_settings.clone().map(Value::Object).unwrap_or(Value::Null);
        let get =
            |key: &str| router.get(key).filter(|v| !v.is_null()).or_else(|| litellm.get(key).filter(|v| !v.is_null()));
        let default = Policy::default();
        Policy {
            num_retries: get("num_retries").and_then(Value::as_u64).map(|n| n as u32).unwrap_or(default.num_retries),
            timeout: get("timeout").and_then(seconds).or(get("request_timeout").and_then(seconds)),
            stream_timeout: get("stream_timeout").and_then(seconds),
            allowed_fails: get("allowed_fails").and_then(Value::as_u64).unwrap_or(default.allowed_fails),
            cooldown: get("cooldown_time").and_then(seconds).unwrap_or(default.cooldown),
            fallbacks: fallback_map(get("fallbacks")),
            context_window_fallbacks: fallback_map(get("context_window_fallbacks")),
            content_policy_fallbacks: fallback_map(get("content_policy_fallbacks")),
            backoff: get("retry_backoff").and_then(seconds).unwrap_or(default.backoff),
            latency_buffer: get("routing_strategy_args")
                .and_then(|a| a.get("lowest_latency_buffer"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            enforce_rate_limits: get("enforce_model_rate_limits").and_then(Value::as_bool).unwrap_or(false),
            keepalive: get("stream_keepalive_interval")
                .and_then(seconds)
                .filter(|d| !d.is_zero())
                .unwrap_or(default.keepalive),
        }
    }
}

/// What kind of failure an attempt ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying again elsewhere: connect errors, timeouts, 408, 429, 5xx.
    Retryable,
    /// The prompt is too long for the model: try `context_window_fallbacks`.
    ContextWindow,
    /// The provider refused the content: try `content_policy_fallbacks`.
    ContentPolicy,
    /// The request itself is wrong (400/401/403/404...): fail at once.
    Fatal,
}

/// Classifies an attempt's error.
pub fn classify(e: &ApiError) -> Failure {
    let code = e.code.as_deref().unwrap_or_default();
    let text = e.message.to_lowercase();
    match e.status.as_u16() {
        408 | 429 | 500..=599 => Failure::Retryable,
        _ if code == "context_length_exceeded"
            || text.contains("context length")
            || text.contains("maximum context") =>
        {
            Failure::ContextWindow
        }
        _ if code == "content_policy_violation" || code == "content_filter" || text.contains("content policy") => {
            Failure::ContentPolicy
        }
        _ => Failure::Fatal,
    }
}

/// The backoff before retry `n` (0-based): exponential with full jitter, or the upstream's
/// `Retry-After` when it asks for longer.
fn backoff(policy: &Policy, n: u32, retry_after: Option<u64>) -> Duration {
    let exp = policy.backoff.saturating_mul(1 << n.min(10));
    let jittered = exp.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    let asked = retry_after.map(Duration::from_secs).unwrap_or_default().min(MAX_RETRY_AFTER);
    jittered.max(asked)
}

/// Router-only fields a request may carry; they never reach the upstream.
const ROUTING_FIELDS: &[&str] = &["fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "num_retries"];

/// Per-request routing options (litellm accepts them in the body).
#[derive(Debug, Default)]
struct RequestOptions {
    fallbacks: Vec<String>,
    context_window_fallbacks: Vec<String>,
    content_policy_fallbacks: Vec<String>,
    num_retries: Option<u32>,
}

fn names(v: Option<Value>, group: &str) -> Vec<String> {
    match v {
        // ["model-b", ...]
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        // [{"gpt-4": ["model-b"]}]
        Some(v @ Value::Array(_)) => fallback_map(Some(&v)).remove(group).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn take_options(payload: &mut Payload, group: &str) -> RequestOptions {
    let Payload::Json(shared) = payload else { return RequestOptions::default() };
    let Value::Object(body) = shared.as_ref() else { return RequestOptions::default() };
    // Most bodies carry none: one pass over their few keys rather than a hashed look-up each.
    if !body.keys().any(|k| ROUTING_FIELDS.contains(&k.as_str())) {
        return RequestOptions::default();
    }
    // Not shared yet (no attempt has started), so this copies nothing.
    let Value::Object(body) = Arc::make_mut(shared) else { return RequestOptions::default() };
    RequestOptions {
        fallbacks: names(body.remove("fallbacks"), group),
        context_window_fallbacks: names(body.remove("context_window_fallbacks"), group),
        content_policy_fallbacks: names(body.remove("content_policy_fallbacks"), group),
        num_retries: body.remove("num_retries").and_then(|v| v.as_u64()).map(|n| n as u32),
    }
}

/// Everything an attempt needs besides the payload.
pub struct Routed<'a> {
    pub state: &'a AppState,
    pub request_id: &'a crate::observability::request_id::RequestId,
    pub session: &'a Arc<Session>,
    pub route: &'static Route,
    pub params: &'a [(&'static str, String)],
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Where a request goes: a model group, or (model-less routes) one deployment.
pub enum Target {
    Group(String),
    Deployment(usize),
}

// Built at compile time: a `&str` name is validated again on every insert.
/// What the request cost, in USD.
pub const COST_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-cost");
/// The deployment that answered.
pub const DEPLOYMENT_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-deployment");
/// How many upstream attempts the answer took.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-attempts");
/// The gateway's own time, in milliseconds (the whole minus the upstreams').
pub const OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-overhead-ms");

/// Serves a provider-routed request with retries, cooldowns and fallbacks.
pub async fn serve(r: Routed<'_>, target: Target, mut payload: Payload) -> Result<Outcome, ApiError> {
    let started = Instant::now();
    let session = r.session;
    let policy = &session.policy;
    let deadline = policy.timeout.map(|t| started + t);
    let (first_group, options) = match &target {
        Target::Group(group) => (Some(group.as_str()), take_options(&mut payload, group)),
        Target::Deployment(_) => (None, RequestOptions::default()),
    };
    let num_retries = options.num_retries.unwrap_or(policy.num_retries);
    let cluster = r.state.controller.cluster().cloned();
    if let Some(budget) = session.app_budget {
        let mut spent = session.app_spend.spent();
        // Several instances spend one budget: the shared total decides (local if Redis is away).
        if let Some(cluster) = &cluster {
            if let Some(micros) =
                cluster.spend(&session.workspace, &session.app_id, "app", session.app_spend.period_now()).await
            {
                spent = spent.max(micros as f64 / 1e6);
            }
        }
        if spent >= budget.max_usd {
            return Err(budget_exceeded("this app", spent, budget, session.app_spend.seconds_to_reset()));
        }
    }
    let client_wants_usage = payload.wants_stream_usage();
    let wants_stream = payload.flag("stream");
    // Only usage-based routing weighs the request's size; counting it costs a pass over the body.
    let request_tokens = match session.strategy {
        crate::manifest::RoutingStrategy::UsageBasedRouting | crate::manifest::RoutingStrategy::UsageBasedRoutingV2 => {
            payload
                .field("messages")
                .or_else(|| payload.field("prompt"))
                .map(crate::tokenizer::count_value)
                .unwrap_or(0)
        }
        _ => 0,
    };
    let mut attempts = 0u32;
    let mut upstream_time = Duration::ZERO;
    let mut last_error: Option<ApiError> = None;
    // Each attempt sends a copy and the original stays for the next; a streamed multipart body
    // cannot be copied and goes with the first attempt.
    let mut kept = Some(payload);

    // The groups to try, in order: the requested one, then fallbacks chosen by how it failed.
    // Groups' indices are borrowed from the session: no per-request copy of a large group.
    // Group names are borrowed from the request, its options and the policy.
    let mut plan: Vec<(Option<&str>, Cow<'_, [usize]>)> = match (&target, first_group) {
        (Target::Deployment(i), _) => vec![(None, Cow::Owned(vec![*i]))],
        (Target::Group(_), Some(group)) => {
            vec![(Some(group), Cow::Borrowed(session.group_indices(group).unwrap_or_default()))]
        }
        (Target::Group(_), None) => Vec::new(),
    };
    let mut visited: Vec<&str> = first_group.into_iter().collect();
    let mut step = 0;
    while step < plan.len() {
        let (group, indices) = plan[step].clone();
        step += 1;
        let serving = serving(session, r.route, group, &indices);
        if serving.is_empty() {
            if let Some(&i) = indices.first() {
                let d = &session.deployments[i];
                last_error.get_or_insert_with(|| unsupported_route(d, r.route));
            }
            continue;
        }
        let indices = serving;
        let mut tried: Vec<usize> = Vec::new();
        let mut failure = Failure::Fatal;
        for retry in 0..=num_retries {
            // One clock read. A first try in an unweighted simple-shuffle group looks at one
            // random deployment and takes it when it can serve (uniform over the ones that can,
            // as the scan is); otherwise every deployment of the group is looked at once.
            let now = super::stats::now_ms();
            let quick = if retry == 0 { quick_pick(session, &indices, request_tokens, now) } else { None };
            let (mut available, cooling) = match quick {
                Some(index) => (vec![index], Vec::new()),
                None => split_cooling(session, &indices, now),
            };
            let before_limits = available.len();
            available.retain(|&i| under_budget(session, i));
            if available.is_empty() && before_limits > 0 {
                let i = indices[0];
                let budget =
                    session.deployment_budgets[i].unwrap_or(super::spend::Budget { max_usd: 0.0, period: None });
                last_error = Some(budget_exceeded(
                    &format!("deployment {}", session.deployments[i].id),
                    session.deployment_spend[i].spent(),
                    budget,
                    session.deployment_spend[i].seconds_to_reset(),
                ));
                failure = Failure::Retryable;
                break;
            }
            if policy.enforce_rate_limits {
                available.retain(|&i| under_rate_limits(session, i, request_tokens));
                if available.is_empty() && before_limits > 0 {
                    let wait = 60 - (crate::auth::unix_now() % 60);
                    last_error = Some(
                        ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate_limit_error",
                            format!(
                                "every deployment of {} is at its rpm/tpm limit this minute",
                                group.unwrap_or("this route")
                            ),
                        )
                        .with_code("rate_limit_exceeded")
                        .with_retry_after(Some(wait)),
                    );
                    failure = Failure::Retryable;
                    break;
                }
            }
            if available.is_empty() {
                if let Some(shortest) = cooling.iter().min() {
                    let wait = shortest.as_secs().max(1);
                    last_error = Some(
                        ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate_limit_error",
                            format!(
                                "every deployment of {} is cooling down after failures; retry in {wait}s",
                                group.map(|g| format!("model {g:?}")).unwrap_or_else(|| "this route".into())
                            ),
                        )
                        .with_code("cooldown")
                        .with_retry_after(Some(wait)),
                    );
                    failure = Failure::Retryable;
                }
                break;
            }
            let fresh: Vec<usize> = available.iter().copied().filter(|i| !tried.contains(i)).collect();
            let pool = if fresh.is_empty() { &available } else { &fresh };
            let ctx = PickContext { latency_buffer: policy.latency_buffer, request_tokens, stream: wants_stream };
            let Some(index) = pick(session, pool, &ctx) else { break };
            tried.push(index);
            let payload = match kept.as_ref().and_then(Payload::try_clone) {
                Some(copy) => copy,
                None => match kept.take() {
                    Some(once) => once,
                    None => break, // a streamed body can be sent once only
                },
            };
            attempts += 1;
            metrics::attempt(session, index, retry, step > 1);
            let d = &session.deployments[index];
            let stats = &session.stats[index];
            let in_flight = stats.begin();
            if let Some(cluster) = cluster.clone() {
                let (ws, sid) = (session.workspace.clone(), session.id.clone());
                tokio::spawn(async move { cluster.add_load(&ws, &sid, index, 1, 1, 0).await });
            }
            let attempt_deadline =
                earliest(deadline, d.params.timeout.map(|t| Instant::now() + Duration::from_secs_f64(t)));
            let t0 = Instant::now();
            let result = attempt(&r, d, payload, attempt_deadline).await.map_err(|e| redact_credentials(e, d));
            let elapsed = t0.elapsed();
            upstream_time += elapsed;
            metrics::upstream(session, index, elapsed);
            match result {
                Ok(mut outcome) => {
                    let account = Account {
                        session: session.clone(),
                        index,
                        request_id: r.request_id.clone(),
                        cluster: cluster.clone(),
                        started: t0,
                    };
                    let stream = is_event_stream(&outcome.response);
                    let mut cost = None;
                    if stream {
                        stats.record_first_token(elapsed);
                        metrics::first_token(session, index, elapsed);
                        let gap = d.params.stream_timeout.map(Duration::from_secs_f64).or(policy.stream_timeout);
                        outcome.response = tap_stream(
                            outcome.response,
                            in_flight,
                            gap,
                            Some(policy.keepalive),
                            account,
                            client_wants_usage,
                        );
                    } else {
                        if outcome.usage.is_none() && r.route.model_field.is_some() && is_json(&outcome.response) {
                            let (response, usage) =
                                tap_json(outcome.response, r.state.limits.max_body_bytes, &d.id).await;
                            outcome.response = response;
                            outcome.usage = usage;
                        }
                        let usage = outcome.usage.unwrap_or_default();
                        stats.record_latency(elapsed, usage.completion_tokens);
                        cost = Some(account.book(usage));
                        drop(in_flight);
                    }
                    let overhead = started.elapsed().saturating_sub(upstream_time);
                    metrics::overhead(session, overhead);
                    let headers = outcome.response.headers_mut();
                    if let Some(cost) = cost {
                        headers.insert(COST_HEADER, header_value(&crate::decimal::text(cost, 8)));
                    }
                    headers.insert(DEPLOYMENT_HEADER, header_value(&d.id));
                    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
                    headers.insert(
                        OVERHEAD_HEADER,
                        header_value(&crate::decimal::text(overhead.as_secs_f64() * 1000.0, 3)),
                    );
                    return Ok(outcome);
                }
                Err(e) => {
                    drop(in_flight);
                    stats.record_usage(false, 0, 0);
                    let sample = super::history::Sample { ok: false, latency: elapsed, ..Default::default() };
                    stats.history.record(super::stats::now_ms(), sample);
                    if let Some(cluster) = cluster.clone() {
                        let (ws, sid) = (session.workspace.clone(), session.id.clone());
                        tokio::spawn(async move { cluster.add_load(&ws, &sid, index, -1, 0, 0).await });
                    }
                    failure = classify(&e);
                    if failure == Failure::Retryable {
                        let fails = stats.record_failure();
                        if e.status == StatusCode::TOO_MANY_REQUESTS || fails > policy.allowed_fails {
                            let wait = e.retry_after.map(Duration::from_secs).unwrap_or_default().max(policy.cooldown);
                            stats.cool_down(wait);
                            metrics::cooldown(session, index);
                            if let Some(cluster) = cluster.clone() {
                                let (ws, service) = (session.workspace.clone(), session.service_id.clone());
                                let millis = wait.as_millis() as u64;
                                tokio::spawn(
                                    async move { cluster.announce_cooldown(&ws, &service, index, millis).await },
                                );
                            }
                            session.logs.push(
                                LogType::Error,
                                format!(
                                    "deployment {} cools down for {:.1}s after: {}",
                                    d.id,
                                    wait.as_secs_f64(),
                                    e.message
                                ),
                            );
                        }
                    }
                    session.logs.push(
                        LogType::Error,
                        format!("attempt {attempts} on {} failed: {} {}", d.id, e.status.as_u16(), e.message),
                    );
                    let retry_after = e.retry_after;
                    last_error = Some(e);
                    let out_of_time = deadline.is_some_and(|dl| Instant::now() >= dl);
                    if failure != Failure::Retryable || retry == num_retries || kept.is_none() || out_of_time {
                        break;
                    }
                    // With every deployment of the group cooling down, waiting to retry only
                    // delays the answer: the client gets this attempt's own error now.
                    let now = super::stats::now_ms();
                    if indices.iter().all(|&i| session.stats[i].cooling_at(now).is_some()) {
                        break;
                    }
                    let wait = backoff(policy, retry, retry_after);
                    if deadline.is_some_and(|dl| Instant::now() + wait >= dl) {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        // This group is done: queue the fallbacks its failure calls for.
        let Some(origin) = first_group else { break };
        if failure == Failure::Fatal || kept.is_none() {
            break;
        }
        let (configured, requested) = match failure {
            Failure::ContextWindow => (&policy.context_window_fallbacks, &options.context_window_fallbacks),
            Failure::ContentPolicy => (&policy.content_policy_fallbacks, &options.content_policy_fallbacks),
            _ => (&policy.fallbacks, &options.fallbacks),
        };
        for next in requested.iter().chain(configured.get(origin).into_iter().flatten()) {
            if visited.contains(&next.as_str()) {
                continue;
            }
            visited.push(next);
            if let Some(indices) = session.group_indices(next) {
                plan.push((Some(next), Cow::Borrowed(indices)));
            }
        }
    }
    let mut error = last_error.unwrap_or_else(|| {
        ApiError::bad_request(format!("no deployment of this app serves {} {}", r.route.method.as_http(), r.route.path))
            .with_code("unsupported_route")
    });
    if attempts > 1 {
        error.message = format!("{} (after {attempts} attempts)", error.message);
    }
    Err(error)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One try on one deployment, bounded by the deadline (408 past it).
async fn attempt(
    r: &Routed<'_>,
    d: &Deployment,
    payload: Payload,
    deadline: Option<Instant>,
) -> Result<Outcome, ApiError> {
    let provider_route = r.route.provider_route(d.provider).ok_or_else(|| unsupported_route(d, r.route))?;
    let call = ProviderCall {
        state: r.state,
        session: r.session,
        deployment: d,
        route: r.route,
        provider_route,
        params: r.params,
        query: r.query,
        headers: r.headers,
        payload,
    };
    match deadline {
        None => providers::serve(call).await,
        Some(deadline) => {
            let budget = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout_at(deadline.into(), providers::serve(call)).await {
                Ok(result) => result,
                Err(_) => Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout_error",
                    format!("deployment {} did not answer within the {:.1}s timeout", d.id, budget.as_secs_f64()),
                )
                .with_code("timeout")),
            }
        }
    }
}

fn is_event_stream(response: &axum::response::Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

/// Masks a deployment's credentials wherever an error quotes them (an upstream may echo a key).
fn redact_credentials(mut e: ApiError, d: &Deployment) -> ApiError {
    let aws = d.aws.iter().flat_map(|a| [Some(&a.access_key_id), Some(&a.secret_access_key), a.session_token.as_ref()]);
    for secret in d.api_key.iter().chain(aws.flatten()) {
        let value = secret.expose();
        if value.len() >= 4 && e.message.contains(value) {
            e.message = e.message.replace(value, &secret.redacted());
        }
    }
    e
}

/// 400: the deployment's provider does not serve this route.
fn unsupported_route(d: &Deployment, route: &Route) -> ApiError {
    ApiError::bad_request(format!(
        "model {:?} is served by provider {}, which does not serve {} {}",
        d.model_name,
        d.provider,
        route.method.as_http(),
        route.path
    ))
    .with_code("unsupported_route")
}

fn is_json(response: &axum::response::Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// The deployments of `indices` whose provider serves `route`. A group's distinct providers are
/// known from the session's start, so when all of them serve it (the usual case) no deployment
/// is looked at, however many the group has.
fn serving<'a>(session: &Session, route: &Route, group: Option<&str>, indices: &'a [usize]) -> Cow<'a, [usize]> {
    let providers = group.and_then(|g| session.group_providers(g));
    if providers.is_some_and(|ps| ps.iter().all(|&p| route.provider_route(p).is_some())) {
        return Cow::Borrowed(indices);
    }
    indices.iter().copied().filter(|&i| route.provider_route(session.deployments[i].provider).is_some()).collect()
}

/// `indices` split into those that can take a request now and how long the others still cool.
fn split_cooling(session: &Session, indices: &[usize], now: u64) -> (Vec<usize>, Vec<Duration>) {
    let mut available = Vec::with_capacity(indices.len());
    let mut cooling = Vec::new();
    for &i in indices {
        match session.stats[i].cooling_at(now) {
            Some(left) => cooling.push(left),
            None => available.push(i),
        }
    }
    (available, cooling)
}

/// One deployment of `indices` drawn uniformly, if the group is routed by unweighted
/// simple-shuffle and the drawn one can serve now (not cooling down, under its budget and its
/// rpm / tpm when those are enforced); `None` sends the caller to the full scan.
fn quick_pick(session: &Session, indices: &[usize], request_tokens: u64, now: u64) -> Option<usize> {
    if session.strategy != crate::manifest::RoutingStrategy::SimpleShuffle || indices.len() < 2 {
        return None;
    }
    // simple-shuffle weighs only when every deployment sets a weight, rpm or tpm: one without
    // any of them means a uniform draw.
    let first = &session.deployments[indices[0]].params;
    if first.weight.is_some() || first.rpm.is_some() || first.tpm.is_some() {
        return None;
    }
    let i = indices[rand::Rng::gen_range(&mut rand::thread_rng(), 0..indices.len())];
    let can_serve = session.stats[i].cooling_at(now).is_none()
        && under_budget(session, i)
        && (!session.policy.enforce_rate_limits || under_rate_limits(session, i, request_tokens));
    can_serve.then_some(i)
}

fn under_budget(session: &Session, i: usize) -> bool {
    session.deployment_budgets[i].is_none_or(|b| session.deployment_spend[i].spent() < b.max_usd)
}

/// Whether a deployment has room under its `rpm` / `tpm` this minute.
fn under_rate_limits(session: &Session, i: usize, request_tokens: u64) -> bool {
    let params = &session.deployments[i].params;
    let minute = session.stats[i].minute();
    params.rpm.is_none_or(|rpm| minute.requests < rpm)
        && params.tpm.is_none_or(|tpm| minute.tokens + request_tokens <= tpm)
}

/// 429 `budget_exceeded`, stating spend and budget.
fn budget_exceeded(what: &str, spent: f64, budget: super::spend::Budget, reset: Option<u64>) -> ApiError {
    let period = match budget.period {
        Some(p) => format!(" per {}s period", p.as_secs()),
        None => String::new(),
    };
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "budget_exceeded",
        format!("budget exceeded: {what} has spent ${spent:.6} of its ${:.6} budget{period}", budget.max_usd),
    )
    .with_code("budget_exceeded");
    error.retry_after = reset;
    error
}
