//! The stamp on a routed answer: the `x-ferrolite-*` headers that say what happened (who
//! answered, after how many attempts, at what cost, and ferrolite's own time), and the overhead
//! metric. The request's log line and its per-route metrics are the door's (`http::dispatch`).

use crate::decimal;
use crate::exchange::header_value::short;
use crate::observability::metrics;
use crate::observability::metrics::SessionLabels;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

// Built at compile time: a `&str` name is validated again on every insert.
/// What the request cost, in USD.
pub const COST_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-cost");
/// The deployment that answered.
pub const DEPLOYMENT_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-deployment");
/// How many upstream attempts the answer took.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-attempts");
/// The gateway's own time, in milliseconds (the whole minus the upstreams').
pub const OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-ferrolite-overhead-ms");

/// What the stamp says.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// The deployment's id as a header value ([`deployment_value`]).
    pub deployment: &'a HeaderValue,
    pub attempts: u32,
    /// Known for whole answers; a stream is priced when it ends.
    pub cost: Option<f64>,
    /// Time in ferrolite itself: the whole so far minus the upstreams'.
    pub overhead: Duration,
}

/// Stamps an answer's headers and counts its overhead.
pub fn stamp(headers: &mut HeaderMap, labels: &SessionLabels, s: Stamp<'_>) {
    metrics::overhead(labels, s.overhead);
    if let Some(cost) = s.cost {
        headers.insert(COST_HEADER, cost_value(cost));
    }
    headers.insert(DEPLOYMENT_HEADER, s.deployment.clone());
    let attempts = usize::try_from(s.attempts).ok().and_then(|n| FEW_ATTEMPTS.get(n));
    headers.insert(ATTEMPTS_HEADER, attempts.cloned().unwrap_or_else(|| HeaderValue::from(s.attempts)));
    headers.insert(OVERHEAD_HEADER, decimal_value(s.overhead.as_secs_f64() * 1000.0, 3));
}

/// A cost in USD as the value of [`COST_HEADER`].
pub fn cost_value(cost: f64) -> HeaderValue {
    decimal_value(cost, 8)
}

/// `value` with `places` decimals as a header value, `-` where it cannot be one (`NaN`).
fn decimal_value(value: f64, places: u32) -> HeaderValue {
    let mut text = [0; decimal::FIXED_ROOM];
    let value = match decimal::fixed(&mut text, value, places) {
        Some(len) => short(&text[..len]),
        None => HeaderValue::try_from(decimal::text(value, places)),
    };
    value.unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The usual counts of attempts, as values that are not allocated for each answer.
static FEW_ATTEMPTS: [HeaderValue; 10] = [
    HeaderValue::from_static("0"),
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
    HeaderValue::from_static("3"),
    HeaderValue::from_static("4"),
    HeaderValue::from_static("5"),
    HeaderValue::from_static("6"),
    HeaderValue::from_static("7"),
    HeaderValue::from_static("8"),
    HeaderValue::from_static("9"),
];

/// A deployment's id as the value of [`DEPLOYMENT_HEADER`]: `-` where it cannot be one.
pub fn deployment_value(id: &str) -> HeaderValue {
    HeaderValue::try_from(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_says_who_answered_after_how_many_tries_at_what_cost() {
        let labels = SessionLabels::new("w", "a", std::iter::once(("m", "m/0")));
        let mut headers = HeaderMap::new();
        let overhead = Duration::from_micros(1_250);
        let id = deployment_value("m/0");
        stamp(&mut headers, &labels, Stamp { deployment: &id, attempts: 2, cost: Some(0.000_122_5), overhead });
        assert_eq!(headers[DEPLOYMENT_HEADER], "m/0");
        assert_eq!(headers[ATTEMPTS_HEADER], "2");
        assert_eq!(headers[COST_HEADER], "0.00012250");
        assert_eq!(headers[OVERHEAD_HEADER], "1.250");
        let mut stream = HeaderMap::new();
        let bad = deployment_value("m\n/0");
        stamp(&mut stream, &labels, Stamp { deployment: &bad, attempts: 1, cost: None, overhead });
        assert!(!stream.contains_key(COST_HEADER), "a stream is priced when it ends");
        assert_eq!(stream[DEPLOYMENT_HEADER], "-", "a value that cannot be a header is not sent");
        assert_eq!(stream[ATTEMPTS_HEADER], "1");
        let mut many = HeaderMap::new();
        stamp(&mut many, &labels, Stamp { deployment: &id, attempts: 12, cost: None, overhead });
        assert_eq!(many[ATTEMPTS_HEADER], "12");
    }
}
