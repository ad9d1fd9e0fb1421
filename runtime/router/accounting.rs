//! What a served request used and cost: tokens read from the answer (whole or streamed, in any
//! vocabulary `exchange::usage` reads), priced by the deployment's price, added to its totals
//! and to the app's, the deployment's and the request's other spend scopes (which other
//! instances read from this one's figures), settling the attempt's budget reservation.
//!
//! A stream is accounted when it ends, or when the client leaves it (what the upstream
//! reported by then): [`AccountedStream`] passes its body on event by event
//! ([`super::stream_events`]: each event leaves once complete, its usage read), keeps the deployment
//! counted in flight until the last byte, sends `: keep-alive` comments while the first token
//! is awaited, and ends a stream whose upstream falls silent past `stream_timeout` with an SSE
//! error event. A stream the client leaves is booked for what it used so far. How it ended is
//! told to whoever waits on the response's [`Settlement`] (the door's spend log).

use super::history::Sample;
use super::prices::Price;
use super::reservation::{Hold, SpendScope};
use super::spend;
use super::stats::InFlight;
use super::stream_events::Events;
use super::table::Table;
use crate::exchange::{ApiError, Usage};
use crate::observability::metrics;
use crate::observability::request_id::RequestId;
use crate::observability::session_log::{LogType, StreamEndLine};
use crate::streaming::sse;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Where a request's usage and cost are booked.
pub struct Account {
    pub table: Arc<Table>,
    pub index: usize,
    pub request_id: RequestId,
    /// When the attempt began: a request's latency in the usage history runs to its last byte.
    pub started: Instant,
    /// The request's own spend scopes (keys, users, workspaces).
    pub scopes: Vec<SpendScope>,
    /// What the attempt holds against budgets: settled to the cost when it is booked.
    pub hold: Option<Hold>,
    /// The deployment's price per token (a wildcard's: the real model's).
    pub price: Option<Price>,
    /// The cost booked when the answer reports no usage (a pass-through call's: what it
    /// held), instead of nothing.
    pub if_unreported: Option<f64>,
}

impl Account {
    /// Books `usage` (once: the hold is settled); returns the cost in US dollars.
    pub fn book(&mut self, usage: Usage) -> f64 {
        let cost = self
            .price
            .map(|p| {
                p.input_per_token * usage.prompt_tokens as f64 + p.output_per_token * usage.completion_tokens as f64
            })
            .unwrap_or(0.0);
        self.book_at(usage, cost)
    }

    /// Books `usage` at `cost` US dollars, known another way (an answer that reports no
    /// usage is booked at what it held).
    pub fn book_at(&mut self, usage: Usage, cost: f64) -> f64 {
        let t = &self.table;
        let stats = &t.stats[self.index];
        stats.record_usage(true, usage.prompt_tokens, usage.completion_tokens);
        stats.add_tokens(usage.prompt_tokens + usage.completion_tokens);
        let micros = spend::micros(cost);
        // The hold books the ledgers it holds; the others are added to here.
        let (app, deployment, scopes_held) = match self.hold.take() {
            Some(hold) => {
                let held = (hold.holds_app(), hold.holds_deployment(), true);
                hold.settle(micros);
                held
            }
            None => (false, false, false),
        };
        if !app {
            t.app_spend.add_micros(micros);
        }
        if !deployment {
            t.deployment_spend[self.index].add_micros(micros);
        }
        for scope in self.scopes.iter().filter(|s| !(scopes_held && s.budget.is_some())) {
            scope.ledger.add_micros(micros);
        }
        let sample = Sample {
            ok: true,
            latency: self.started.elapsed(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost,
        };
        stats.history.record(crate::clock::coarse_ms(), sample);
        metrics::booked(&t.labels, self.index, usage, cost);
        cost
    }
}

/// How a stream's silences are bounded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pacing {
    /// Longest gap allowed between two pieces of the upstream's body (`stream_timeout`).
    pub gap: Option<Duration>,
    /// How often `: keep-alive` goes out while the first event is awaited.
    pub keepalive: Option<Duration>,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream finished it.
    Completed,
    /// The upstream broke off or fell silent past `stream_timeout`.
    Failed,
    /// The client went away before the end.
    ClientGone,
}

/// What a stream came to once it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settled {
    pub usage: Usage,
    /// US dollars, as booked.
    pub cost: f64,
    pub end: StreamEnd,
}

/// A streamed answer's final accounting, for whoever logs the request: the stream ends after
/// the router (and the door) returned, so [`AccountedStream::wrap`] puts this handle in the
/// response's extensions and the stream settles it at its end, running what waits on it.
#[derive(Clone, Default)]
pub struct Settlement(Arc<Mutex<Settling>>);

#[derive(Default)]
enum Settling {
    #[default]
    Open,
    Waiting(Box<dyn FnOnce(Settled) + Send>),
    Done(Settled),
}

impl Settlement {
    /// Runs `then` with the stream's accounting when it ends (at once if it has).
    pub fn then(&self, then: impl FnOnce(Settled) + Send + 'static) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            Settling::Done(settled) => {
                let settled = *settled;
                drop(state);
                then(settled);
            }
            _ => *state = Settling::Waiting(Box::new(then)),
        }
    }

    fn settle(&self, settled: Settled) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Settling::Waiting(then) = std::mem::replace(&mut *state, Settling::Done(settled)) {
            drop(state);
            then(settled);
        }
    }
}

/// A streamed (SSE) answer on its way to the client, accounted as it goes: see the module.
pub struct AccountedStream {
    body: BodyDataStream,
    events: Events,
    account: Account,
    _in_flight: InFlight,
    pacing: Pacing,
    /// When the upstream last sent something, and when the next keep-alive is due.
    since_data: Instant,
    next_keepalive: Instant,
    /// The one timer of the stream, moved to whichever of the two comes first.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    sent_data: bool,
    done: bool,
    settlement: Settlement,
}

/// What a stream's timer meant when it fired.
enum Silence {
    KeepAlive,
    TooLong,
}

impl AccountedStream {
    /// Wraps a streamed `response`: the deployment of `account` stays in flight until it ends,
    /// its usage is booked then, and the usage-only chunk is dropped unless the client asked.
    pub fn wrap(
        response: Response,
        in_flight: InFlight,
        pacing: Pacing,
        account: Account,
        client_wants_usage: bool,
    ) -> Response {
        let (mut parts, body) = response.into_parts();
        let settlement = Settlement::default();
        parts.extensions.insert(settlement.clone());
        let now = Instant::now();
        let stream = AccountedStream {
            body: body.into_data_stream(),
            events: Events::new(client_wants_usage),
            account,
            _in_flight: in_flight,
            pacing,
            since_data: now,
            next_keepalive: now + pacing.keepalive.unwrap_or_default(),
            timer: None,
            sent_data: false,
            done: false,
            settlement,
        };
        Response::from_parts(parts, Body::from_stream(stream))
    }

    /// Waits on the earlier of the keep-alive and the gap's end; pending when neither applies.
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<Silence> {
        let gap_ends = self.pacing.gap.map(|g| self.since_data + g);
        let keepalive = self.pacing.keepalive.filter(|_| !self.sent_data).map(|_| self.next_keepalive);
        let at = match (gap_ends, keepalive) {
            (Some(g), Some(k)) => g.min(k),
            (g, k) => match g.or(k) {
                Some(at) => at,
                None => return Poll::Pending,
            },
        };
        let at_tokio = tokio::time::Instant::from_std(at);
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at_tokio)));
        // Every piece of data moves the gap's end later. The timer is not moved after it each
        // time (a move takes it out of tokio's timer wheel and puts it back, for every chunk):
        // it fires at its earlier deadline and is moved then. A deadline that came earlier
        // moves it at once.
        if timer.deadline() > at_tokio {
            timer.as_mut().reset(at_tokio);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if timer.deadline() >= at_tokio {
                break;
            }
            timer.as_mut().reset(at_tokio);
        }
        if gap_ends.is_some_and(|g| g <= at) {
            return Poll::Ready(Silence::TooLong);
        }
        self.next_keepalive = Instant::now() + self.pacing.keepalive.unwrap_or_default();
        Poll::Ready(Silence::KeepAlive)
    }

    /// The stream is over: books its usage, notes it in the session's log and settles.
    fn finish(&mut self, end: StreamEnd) {
        self.done = true;
        let (usage, seen_usage) = (self.events.usage, self.events.seen_usage);
        let cost = match self.account.if_unreported.filter(|_| !seen_usage) {
            Some(cost) => self.account.book_at(usage, cost),
            None => self.account.book(usage),
        };
        self.account.table.logs.push_stream_end(StreamEndLine {
            request_id: self.account.request_id.clone(),
            client_left: end == StreamEnd::ClientGone,
            usage,
            reported: seen_usage,
            cost,
        });
        self.settlement.settle(Settled { usage, cost, end });
    }

    /// Ends the stream with what is left of the buffer and an SSE `error` event.
    fn end_with(&mut self, error: ApiError) -> Bytes {
        self.finish(StreamEnd::Failed);
        let mut out = self.events.rest();
        out.extend_from_slice(&sse::named("error", &error.body()));
        Bytes::from(out)
    }
}

impl Stream for AccountedStream {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.body.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.since_data = Instant::now();
                    let out = this.events.take(bytes);
                    if !out.is_empty() {
                        this.sent_data = true;
                        return Poll::Ready(Some(Ok(out)));
                    }
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    // The upstream broke off: end the client's stream cleanly, with the reason.
                    let error = ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        format!("the upstream stream broke off: {e}"),
                    )
                    .with_code("upstream_stream_error");
                    let line = format!("{} {}", this.account.request_id, error.message);
                    this.account.table.logs.push(LogType::Error, line);
                    return Poll::Ready(Some(Ok(this.end_with(error))));
                }
                Poll::Ready(None) => {
                    this.finish(StreamEnd::Completed);
                    let rest = this.events.rest();
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Bytes::from(rest))));
                }
                Poll::Pending => {}
            }
            // Before the first event, a comment every `keepalive` keeps proxies in between from
            // cutting a long wait for the first token; `gap` bounds the silence either way.
            return match this.poll_silence(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Silence::KeepAlive) => Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n")))),
                Poll::Ready(Silence::TooLong) => {
                    let gap = this.pacing.gap.unwrap_or_default();
                    let error = ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "timeout_error",
                        format!("the upstream sent nothing for {:.1}s (stream_timeout)", gap.as_secs_f64()),
                    )
                    .with_code("stream_timeout");
                    Poll::Ready(Some(Ok(this.end_with(error))))
                }
            };
        }
    }
}

impl Drop for AccountedStream {
    /// A stream dropped before its end was left by the client (or its connection): what it
    /// used so far is still booked and settled.
    fn drop(&mut self) {
        if !self.done {
            self.finish(StreamEnd::ClientGone);
        }
    }
}
