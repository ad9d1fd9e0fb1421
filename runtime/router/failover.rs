//! The failover loop: a routed request tried along its [`Plan`] (the group, then fallbacks),
//! each group's deployments [admitted](super::admission) and [picked](super::pick) by the
//! strategy, the request's worst case [reserved](super::reservation) against every budget on
//! the picked one, one [attempt](super::attempt) at a time, failures put through the
//! [breaker](super::breaker) with backoff between retries, and the answer
//! [accounted](super::accounting) and [stamped](super::stamp). A stream is retried only before
//! its first byte reaches the client, which holds by construction: an attempt's result is ready
//! only once the upstream answered.

use super::accounting::{Account, AccountedStream, Pacing};
use super::admission::{self, Indices, Refused};
use super::attempt::{self, attempt, content_type_is, Failed};
use super::breaker::{self, Failure};
use super::plan::{take_options, Plan, RequestOptions, Step, Target};
use super::reservation::{self, Hold, Need, Refusal};
use super::stamp::{stamp, Stamp};
use super::{pick, PickContext, Routed};
use crate::catalogue::Route;
use crate::exchange::{ApiError, Outcome, Payload};
use crate::manifest::RoutingStrategy;
use crate::observability::metrics;
use crate::observability::session_log::LogType;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// What a request carries through the loop besides its plan.
struct Attempts {
    /// Each attempt sends a copy and the original stays for the next; a streamed multipart
    /// body cannot be copied and goes with the first attempt.
    kept: Option<Payload>,
    count: u32,
    started: Instant,
    upstream_time: Duration,
    deadline: Option<attempt::Deadline>,
    last_error: Option<ApiError>,
    request_tokens: u64,
    stream: bool,
    client_wants_usage: bool,
    /// What the request may cost, read from its body once a budget first applies.
    need: Option<Need>,
}

/// Serves a provider-routed request with retries, cooldowns and fallbacks.
pub async fn serve(r: Routed<'_>, target: Target<'_>, mut payload: Payload) -> Result<Outcome, ApiError> {
    let table = r.table;
    let options = match &target {
        Target::Group(group) => take_options(&mut payload, group),
        Target::Deployment(_) => RequestOptions::default(),
    };
    admission::app_budget(table)?;
    let started = r.started;
    let mut run = Attempts {
        client_wants_usage: payload.wants_stream_usage(),
        stream: payload.flag("stream"),
        request_tokens: request_tokens(table.strategy, &payload),
        kept: Some(payload),
        count: 0,
        started,
        upstream_time: Duration::ZERO,
        deadline: table.policy.timeout.and_then(|t| attempt::Deadline::after(started, t)),
        last_error: None,
        need: None,
    };
    let num_retries = options.num_retries.unwrap_or(table.policy.num_retries);
    let mut plan = Plan::new(table, target);
    while let Some(step) = plan.next_step() {
        let failure = match try_group(&r, &mut run, step, num_retries).await {
            Ok(outcome) => return Ok(outcome),
            Err(failure) => failure,
        };
        if run.kept.is_none() {
            break; // a streamed body went with its attempt
        }
        plan.fall_back(failure, table, &table.policy, &options);
    }
    let mut error = run.last_error.unwrap_or_else(|| no_deployment(r.route));
    if run.count > 1 {
        error.message = format!("{} (after {} attempts)", error.message, run.count);
    }
    Err(error)
}

/// Only usage-based routing weighs the request's size; counting it costs a pass over the body.
fn request_tokens(strategy: RoutingStrategy, payload: &Payload) -> u64 {
    match strategy {
        RoutingStrategy::UsageBasedRouting | RoutingStrategy::UsageBasedRoutingV2 => {
            payload.field_tokens("messages").or_else(|| payload.field_tokens("prompt")).map_or(0, |field| field.tokens)
        }
        _ => 0,
    }
}

/// Tries one group of the plan, retrying on its other deployments; the answer, or the kind of
/// failure it ended in (which decides its fallbacks).
async fn try_group(r: &Routed<'_>, run: &mut Attempts, step: Step<'_>, num_retries: u32) -> Result<Outcome, Failure> {
    let table = r.table;
    let indices = serving(r, step.group, &step.indices);
    if indices.is_empty() {
        let unavailable = step.indices.iter().map(|&i| &table.deployments[i]).find(|d| d.unavailable.is_some());
        if let Some(d) = unavailable {
            run.last_error.get_or_insert_with(|| attempt::unavailable(d));
        } else if let Some(&i) = step.indices.first() {
            run.last_error.get_or_insert_with(|| attempt::unsupported_route(&table.deployments[i], r.route));
        }
        return Err(Failure::Fatal);
    }
    let mut tried = Indices::new();
    // Deployments whose own budget cannot take this request.
    let mut over_budget = Indices::new();
    for retry in 0..=num_retries {
        let (index, hold) = loop {
            let quick = retry == 0 && over_budget.is_empty();
            let mut available = match admission::admit(table, &indices, step.group, run.request_tokens, quick) {
                Ok(available) => available,
                Err(Refused { error, failure }) => {
                    run.last_error = Some(error);
                    return Err(failure);
                }
            };
            if !over_budget.is_empty() {
                available.retain(|i| !over_budget.contains(&*i));
                if available.is_empty() {
                    return Err(Failure::Retryable); // the last deployment's refusal is the answer
                }
            }
            let fresh: Indices = available.iter().copied().filter(|i| !tried.contains(i)).collect();
            let pool = if fresh.is_empty() { &available } else { &fresh };
            let ctx = PickContext {
                latency_buffer: table.policy.latency_buffer,
                request_tokens: run.request_tokens,
                stream: run.stream,
            };
            let Some(index) = pick(table, pool, &ctx) else { return Err(Failure::Fatal) };
            match hold_budgets(r, run, index).await {
                Ok(hold) => break (index, hold),
                Err(Refusal { error, deployment_only }) => {
                    run.last_error = Some(error);
                    if !deployment_only {
                        return Err(Failure::Fatal);
                    }
                    over_budget.push(index);
                }
            }
        };
        tried.push(index);
        let Some(payload) = run.next_payload() else { return Err(Failure::Fatal) };
        metrics::attempt(&table.labels, index, retry, step.fallback);
        let e = match try_one(r, run, index, payload, hold).await {
            Ok(outcome) => return Ok(outcome),
            Err(Failed::Upstream(e)) => e,
            Err(Failed::Answer(e)) => {
                // The upstream took the request and answered it badly: not sent again.
                run.last_error = Some(e);
                return Err(Failure::Fatal);
            }
        };
        let failure = breaker::classify(&e);
        if failure == Failure::Retryable {
            breaker::trip(table, index, &e);
        }
        let line = format!(
            "attempt {} on {} failed: {} {}",
            run.count,
            table.deployments[index].id,
            e.status.as_u16(),
            e.message
        );
        table.logs.push(LogType::Error, line);
        let retry_after = e.retry_after;
        run.last_error = Some(e);
        let out_of_time = run.deadline.is_some_and(|dl| Instant::now() >= dl.at);
        // With every deployment of the group cooling down, waiting to retry only delays the
        // answer: the client gets this attempt's own error now.
        if failure != Failure::Retryable
            || retry == num_retries
            || run.kept.is_none()
            || out_of_time
            || breaker::all_cooling(table, &indices)
        {
            return Err(failure);
        }
        let wait = breaker::backoff(&table.policy, retry, retry_after);
        if run.deadline.is_some_and(|dl| Instant::now() + wait >= dl.at) {
            return Err(failure);
        }
        tokio::time::sleep(wait).await;
    }
    Err(Failure::Retryable)
}

/// Reserves the request's worst case on deployment `index` against every budget that applies;
/// `None` when none does (then nothing is counted or locked).
async fn hold_budgets(r: &Routed<'_>, run: &mut Attempts, index: usize) -> Result<Option<Hold>, Refusal> {
    if !reservation::applies(r, index) {
        return Ok(None);
    }
    let need = *run.need.get_or_insert_with(|| run.kept.as_ref().map(Need::of).unwrap_or_default());
    reservation::reserve(r, index, &need).await.map(Some)
}

impl Attempts {
    /// The body for the next attempt: a copy, or the one streamed body, once.
    fn next_payload(&mut self) -> Option<Payload> {
        match self.kept.as_ref().and_then(Payload::try_clone) {
            Some(copy) => Some(copy),
            None => self.kept.take(),
        }
    }
}

/// One attempt on deployment `index`: sent, then on success accounted and stamped; on failure
/// its load and its reservation given back.
async fn try_one(
    r: &Routed<'_>,
    run: &mut Attempts,
    index: usize,
    payload: Payload,
    hold: Option<Hold>,
) -> Result<Outcome, Failed> {
    let table = r.table;
    let d = r.deployment(index);
    let d = d.as_ref();
    let stats = &table.stats[index];
    run.count += 1;
    let in_flight = stats.begin();
    let t0 = Instant::now();
    let result = attempt(r, d, payload, run.stream, attempt::deadline(run.deadline, d)).await;
    let elapsed = t0.elapsed();
    run.upstream_time += elapsed;
    metrics::upstream(&table.labels, index, elapsed);
    let mut account = Account {
        table: table.clone(),
        index,
        request_id: r.request_id.clone(),
        started: t0,
        scopes: r.spend_scopes.to_vec(),
        hold,
        price: r.price(index, d),
        if_unreported: None,
    };
    let mut outcome = match result {
        Ok(outcome) => outcome,
        Err(Failed::Answer(e)) => {
            // Answered, badly: counted as served (nothing spent), not retried.
            stats.record_latency(elapsed, 0);
            account.book(Default::default());
            return Err(Failed::Answer(e));
        }
        Err(Failed::Upstream(e)) => {
            drop(in_flight);
            failed_attempt(r, index, elapsed);
            return Err(Failed::Upstream(e));
        }
    };
    let mut cost = None;
    if content_type_is(&outcome.response, "text/event-stream") {
        stats.record_first_token(elapsed);
        metrics::first_token(&table.labels, index, elapsed);
        // Between chunks: `stream_timeout` (the deployment's, the app's), else the timeout.
        let own = |s: Option<f64>| s.and_then(|s| Duration::try_from_secs_f64(s).ok());
        let gap = own(d.params.stream_timeout)
            .or(table.policy.stream_timeout)
            .or(own(d.params.timeout))
            .or(table.policy.timeout);
        let pacing = Pacing { gap, keepalive: Some(table.policy.keepalive) };
        outcome.response = AccountedStream::wrap(outcome.response, in_flight, pacing, account, run.client_wants_usage);
    } else {
        let usage = outcome.usage.unwrap_or_default();
        stats.record_latency(elapsed, usage.completion_tokens);
        cost = Some(account.book(usage));
        drop(in_flight);
    }
    outcome.deployment = Some(index);
    let overhead = run.started.elapsed().saturating_sub(run.upstream_time);
    let id = d.id_header.get_or_init(|| super::stamp::deployment_value(&d.id));
    let s = Stamp { deployment: id, attempts: run.count, cost, overhead };
    stamp(outcome.response.headers_mut(), &table.labels, s);
    Ok(outcome)
}

/// Gives a failed attempt's load back and counts it in the deployment's figures.
fn failed_attempt(r: &Routed<'_>, index: usize, elapsed: Duration) {
    let table = r.table;
    let stats = &table.stats[index];
    stats.record_usage(false, 0, 0);
    let sample = super::history::Sample { ok: false, latency: elapsed, ..Default::default() };
    stats.history.record(crate::clock::coarse_ms(), sample);
}

/// The deployments of `indices` whose provider serves the route. A group's distinct providers
/// are known from the session's start, so when all of them serve it (the usual case) no
/// deployment is looked at, however many the group has.
fn serving<'a>(r: &Routed<'_>, group: Option<&str>, indices: &'a [usize]) -> Cow<'a, [usize]> {
    let (table, route) = (r.table, r.route);
    // A catch-all's deployments serve the models of their own provider only.
    if let Some(model) = r.wildcard_model.filter(|_| group.is_some_and(|g| table.is_catch_all(g))) {
        // Resolved once for the group: its deployments share their entry.
        let target = indices.first().and_then(|&i| table.deployments[i].catch_all_target(model));
        let serves = |d: &crate::providers::Deployment| {
            d.unavailable.is_none()
                && target.as_ref().is_some_and(|t| d.catch_all_serves(t))
                && route.provider_route(d.provider).is_some()
        };
        return indices.iter().copied().filter(|&i| serves(&table.deployments[i])).collect();
    }
    let providers = group.filter(|g| table.group_all_available(g)).and_then(|g| table.group_providers(g));
    if providers.is_some_and(|ps| ps.iter().all(|&p| route.provider_route(p).is_some())) {
        return Cow::Borrowed(indices);
    }
    let serves =
        |d: &crate::providers::Deployment| d.unavailable.is_none() && route.provider_route(d.provider).is_some();
    indices.iter().copied().filter(|&i| serves(&table.deployments[i])).collect()
}

fn no_deployment(route: &Route) -> ApiError {
    ApiError::bad_request(format!("no deployment of this app serves {} {}", route.method.as_http(), route.path))
        .with_code("unsupported_route")
}
