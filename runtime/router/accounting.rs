//! What a served request used and cost: tokens read from the answer (whole or streamed, in
//! OpenAI's, Anthropic's or the Responses API's shape), priced by the price table, added to
//! the deployment's totals and the app's and deployment's spend.
//!
//! Streams are accounted when they end: the response body is re-framed event by event (each
//! event leaves as soon as it is complete), usage is read on the way, the deployment stays
//! counted as in flight until the last byte, and a stream whose upstream falls silent past
//! `stream_timeout` ends with an SSE error event.

use super::history::Sample;
use super::prices;
use super::stats::InFlight;
use crate::apps::logs::LogType;
use crate::apps::session::Session;
use crate::http::dispatch::Usage;
use crate::http::error::ApiError;
use crate::json_scan::{self, ScanError};
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Reads token usage from an answer or a stream event, whichever vocabulary it uses.
pub fn usage_from_json(v: &Value) -> Option<Usage> {
    let usage = v
        .get("usage")
        .filter(|u| u.is_object())
        .or_else(|| v.pointer("/message/usage").filter(|u| u.is_object()))
        .or_else(|| v.pointer("/response/usage").filter(|u| u.is_object()))?;
    let count = |keys: &[&str]| keys.iter().find_map(|k| usage.get(*k).and_then(Value::as_u64));
    let prompt = count(&["prompt_tokens", "input_tokens"]);
    let completion = count(&["completion_tokens", "output_tokens"]);
    (prompt.is_some() || completion.is_some())
        .then(|| Usage { prompt_tokens: prompt.unwrap_or(0), completion_tokens: completion.unwrap_or(0) })
}

/// The token counts of a JSON answer, read without building it (the whole answer is still
/// checked to be JSON): the same places [`usage_from_json`] looks, with keys as written.
pub fn answer_usage(doc: &[u8]) -> Result<Option<Usage>, ScanError> {
    let (mut usage, mut message, mut response) = (None, None, None);
    json_scan::members(doc, |key, span| match key {
        b"usage" => usage = Some(span),
        b"message" => message = Some(span),
        b"response" => response = Some(span),
        _ => {}
    })?;
    let object = |span: Option<Range<usize>>| span.map(|s| &doc[s]).filter(|v| v.first() == Some(&b'{'));
    let nested = |span: Option<Range<usize>>| {
        let outer = object(span)?;
        let mut inner = None;
        json_scan::members(outer, |key, span| {
            if key == b"usage" {
                inner = Some(span);
            }
        })
        .ok()?;
        inner.map(|s| &outer[s]).filter(|v| v.first() == Some(&b'{'))
    };
    let Some(counts) = object(usage).or_else(|| nested(message)).or_else(|| nested(response)) else {
        return Ok(None);
    };
    let (mut prompt, mut input, mut completion, mut output) = (None, None, None, None);
    json_scan::members(counts, |key, span| {
        let slot = match key {
            b"prompt_tokens" => &mut prompt,
            b"input_tokens" => &mut input,
            b"completion_tokens" => &mut completion,
            b"output_tokens" => &mut output,
            _ => return,
        };
        *slot = json_scan::whole_number(&counts[span]);
    })?;
    let (prompt, completion) = (prompt.or(input), completion.or(output));
    Ok((prompt.is_some() || completion.is_some())
        .then(|| Usage { prompt_tokens: prompt.unwrap_or(0), completion_tokens: completion.unwrap_or(0) }))
}

/// Where a request's usage and cost are booked.
#[derive(Clone)]
pub struct Account {
    pub session: Arc<Session>,
    pub index: usize,
    pub request_id: crate::observability::request_id::RequestId,
    /// Other instances share spend and load through this, when configured.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// When the attempt began: a request's latency in the usage history runs to its last byte.
    pub started: std::time::Instant,
}

impl Account {
    /// Books `usage`; returns the cost in US dollars.
    pub fn book(&self, usage: Usage) -> f64 {
        let d = &self.session.deployments[self.index];
        let stats = &self.session.stats[self.index];
        stats.record_usage(true, usage.prompt_tokens, usage.completion_tokens);
        stats.add_tokens(usage.prompt_tokens + usage.completion_tokens);
        let cost = prices::cost(d, usage.prompt_tokens, usage.completion_tokens).unwrap_or(0.0);
        self.session.app_spend.add(cost);
        self.session.deployment_spend[self.index].add(cost);
        let sample = Sample {
            ok: true,
            latency: self.started.elapsed(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost,
        };
        stats.history.record(super::stats::now_ms(), sample);
        crate::observability::metrics::booked(&self.session, self.index, usage, cost);
        if let Some(cluster) = self.cluster.clone() {
            let (s, i) = (self.session.clone(), self.index);
            let micros = (cost * 1e6).round() as u64;
            let tokens = usage.prompt_tokens + usage.completion_tokens;
            tokio::spawn(async move {
                if micros > 0 {
                    let deployment = &s.deployments[i].id;
                    cluster.add_spend(&s.workspace, &s.app_id, "app", s.app_spend.period_now(), micros).await;
                    cluster
                        .add_spend(&s.workspace, &s.app_id, deployment, s.deployment_spend[i].period_now(), micros)
                        .await;
                }
                cluster.add_load(&s.workspace, &s.id, i, -1, 0, tokens).await;
            });
        }
        cost
    }
}

/// Whether an event is the usage-only chunk OpenAI sends last (`choices: []`).
fn is_usage_only(v: &Value) -> bool {
    v["choices"].as_array().is_some_and(Vec::is_empty) && v.get("usage").is_some_and(Value::is_object)
}

/// Re-frames a streamed (SSE) body: books its usage when it ends, drops the usage-only chunk
/// the client did not ask for, holds `in_flight` to the end, and enforces the chunk gap.
pub fn tap_stream(
    response: Response,
    in_flight: InFlight,
    gap: Option<Duration>,
    keepalive: Option<Duration>,
    account: Account,
    client_wants_usage: bool,
) -> Response {
    let (parts, body) = response.into_parts();
    struct State {
        body: axum::body::BodyDataStream,
        buffer: Vec<u8>,
        usage: Usage,
        seen_usage: bool,
        account: Account,
        _in_flight: InFlight,
        gap: Option<Duration>,
        keepalive: Option<Duration>,
        since_data: std::time::Instant,
        sent_data: bool,
        client_wants_usage: bool,
        done: bool,
    }
    let state = State {
        body: body.into_data_stream(),
        buffer: Vec::new(),
        usage: Usage::default(),
        seen_usage: false,
        account,
        _in_flight: in_flight,
        gap,
        keepalive,
        since_data: std::time::Instant::now(),
        sent_data: false,
        client_wants_usage,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            // Before the first event, a comment every `keepalive` keeps proxies in between from
            // cutting a long wait for the first token; `gap` bounds the silence either way.
            let keepalive = s.keepalive.filter(|_| !s.sent_data);
            let gap_left = s.gap.map(|g| g.saturating_sub(s.since_data.elapsed()));
            let wait = match (keepalive, gap_left) {
                (Some(k), Some(g)) => Some(k.min(g)),
                (k, g) => k.or(g),
            };
            let next = match wait {
                None => s.body.next().await,
                Some(wait) => match tokio::time::timeout(wait, s.body.next()).await {
                    Ok(next) => next,
                    Err(_) if gap_left.is_some_and(|g| g <= wait) => {
                        s.done = true;
                        s.finish();
                        let gap = s.gap.unwrap_or_default();
                        let error = ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "timeout_error",
                            format!("the upstream sent nothing for {:.1}s (stream_timeout)", gap.as_secs_f64()),
                        )
                        .with_code("stream_timeout");
                        let mut out = std::mem::take(&mut s.buffer);
                        out.extend_from_slice(&crate::streaming::sse::named("error", &error.body()));
                        return Some((Ok::<Bytes, axum::Error>(Bytes::from(out)), s));
                    }
                    Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s)),
                },
            };
            match next {
                Some(Ok(bytes)) => {
                    s.since_data = std::time::Instant::now();
                    s.buffer.extend_from_slice(&bytes);
                    let out = s.complete_events();
                    if !out.is_empty() {
                        s.sent_data = true;
                        return Some((Ok(Bytes::from(out)), s));
                    }
                }
                Some(Err(e)) => {
                    // The upstream broke off: end the client's stream cleanly, with the reason.
                    s.done = true;
                    s.finish();
                    let error = ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        format!("the upstream stream broke off: {e}"),
                    )
                    .with_code("upstream_stream_error");
                    s.account.session.logs.push(LogType::Error, format!("{} {}", s.account.request_id, error.message));
                    let mut out = std::mem::take(&mut s.buffer);
                    out.extend_from_slice(&crate::streaming::sse::named("error", &error.body()));
                    return Some((Ok(Bytes::from(out)), s));
                }
                None => {
                    s.done = true;
                    s.finish();
                    let rest = std::mem::take(&mut s.buffer);
                    if rest.is_empty() {
                        return None;
                    }
                    return Some((Ok(Bytes::from(rest)), s));
                }
            }
        }
    });

    impl State {
        /// The complete events in the buffer, minus any dropped usage chunk; usage noted.
        fn complete_events(&mut self) -> Vec<u8> {
            let mut out = Vec::with_capacity(self.buffer.len());
            let mut start = 0;
            while let Some(end) = find_event_end(&self.buffer[start..]) {
                let event = &self.buffer[start..start + end];
                let mut keep = true;
                if contains(event, b"\"usage\"") {
                    for line in event.split(|b| *b == b'\n') {
                        let Some(data) = line.strip_prefix(b"data:") else { continue };
                        let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) else { continue };
                        if let Some(u) = usage_from_json(&v) {
                            self.usage.prompt_tokens = self.usage.prompt_tokens.max(u.prompt_tokens);
                            self.usage.completion_tokens = self.usage.completion_tokens.max(u.completion_tokens);
                            self.seen_usage = true;
                        }
                        if !self.client_wants_usage && is_usage_only(&v) {
                            keep = false;
                        }
                    }
                }
                if keep {
                    out.extend_from_slice(event);
                }
                start += end;
            }
            self.buffer.drain(..start);
            out
        }

        fn finish(&mut self) {
            let cost = self.account.book(self.usage);
            let line = format!(
                "{} stream ended: tokens={}/{}{} cost=${cost:.6}",
                self.account.request_id,
                self.usage.prompt_tokens,
                self.usage.completion_tokens,
                if self.seen_usage { "" } else { " (the upstream reported no usage)" }
            );
            self.account.session.logs.push(LogType::Log, line);
        }
    }

    Response::from_parts(parts, Body::from_stream(stream))
}

/// The length of the first complete SSE event (through its blank line), if there is one.
fn find_event_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\n' && bytes[i + 1] == b'\n' {
            return Some(i + 2);
        }
        if bytes[i] == b'\n' && bytes[i + 1] == b'\r' && bytes.get(i + 2) == Some(&b'\n') {
            return Some(i + 3);
        }
        i += 1;
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads a whole JSON answer to learn its usage, then serves the same bytes. An answer that
/// breaks off or is not JSON becomes a 502 saying so.
pub async fn tap_json(response: Response, limit: usize, who: &str) -> (Response, Option<Usage>) {
    let (parts, body) = response.into_parts();
    let upstream_error = |message: String| {
        let error = ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message).with_code("bad_upstream_answer");
        (axum::response::IntoResponse::into_response(error), None)
    };
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => match answer_usage(&bytes) {
            Ok(usage) => (Response::from_parts(parts, Body::from(bytes)), usage),
            Err(e) => upstream_error(format!("deployment {who} answered invalid JSON: {e}")),
        },
        Err(e) => upstream_error(format!("deployment {who}'s answer broke off: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_read_in_every_vocabulary() {
        let openai = json!({"usage": {"prompt_tokens": 9, "completion_tokens": 3}});
        let anthropic_start =
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 11, "output_tokens": 1}}});
        let anthropic_delta = json!({"type": "message_delta", "usage": {"output_tokens": 7}});
        let responses =
            json!({"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 2}}});
        assert_eq!(usage_from_json(&openai), Some(Usage { prompt_tokens: 9, completion_tokens: 3 }));
        assert_eq!(usage_from_json(&anthropic_start), Some(Usage { prompt_tokens: 11, completion_tokens: 1 }));
        assert_eq!(usage_from_json(&anthropic_delta), Some(Usage { prompt_tokens: 0, completion_tokens: 7 }));
        assert_eq!(usage_from_json(&responses), Some(Usage { prompt_tokens: 5, completion_tokens: 2 }));
        assert_eq!(usage_from_json(&json!({"usage": null})), None);
        // The answer-only reader agrees with the general one on each vocabulary.
        let odd = [
            json!({"usage": null}),
            json!({"message": "x"}),
            json!({"message": ["x", {"usage": 1}]}),
            json!({"usage": {"prompt_tokens": 1.5, "completion_tokens": 2, "details": {"a": [1]}}}),
            json!({"response": {"usage": {"input_tokens": "7"}}}),
        ];
        for v in [&openai, &anthropic_start, &anthropic_delta, &responses].into_iter().chain(&odd) {
            assert_eq!(answer_usage(&serde_json::to_vec(v).unwrap()).unwrap(), usage_from_json(v), "{v}");
        }
        assert!(answer_usage(br#"{"usage": {"prompt_tokens": 1}"#).is_err());
        assert_eq!(find_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(find_event_end(b"data: a\n"), None);
    }
}
