//! The breaker: what a failed attempt means and what it costs its deployment. Only retryable
//! failures retry (connect errors, timeouts, 408, 429, 5xx); 400/401/403/404 fail at once,
//! except that context-window and content-policy errors move to their own fallback lists. A
//! deployment that fails more than `allowed_fails` times in a minute, or answers 429, cools down
//! for `cooldown_time` (or the upstream's longer `Retry-After`), announced to other instances.

use super::policy::Policy;
use super::table::Table;
use crate::exchange::ApiError;
use crate::observability::metrics;
use crate::observability::session_log::LogType;
use axum::http::StatusCode;
use std::time::Duration;

/// Longest wait honoured from a `Retry-After` before giving up on that deployment.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

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

/// Records a retryable failure of deployment `index`; cools it down when it has failed too
/// often this minute or was rate limited (the other instances learn it with this one's figures).
pub fn trip(table: &Table, index: usize, e: &ApiError) {
    let stats = &table.stats[index];
    let fails = stats.record_failure();
    if e.status != StatusCode::TOO_MANY_REQUESTS && fails <= table.policy.allowed_fails {
        return;
    }
    let wait = e.retry_after.map(Duration::from_secs).unwrap_or_default().max(table.policy.cooldown);
    stats.cool_down(wait);
    metrics::cooldown(&table.labels, index);
    table.logs.push(
        LogType::Error,
        format!(
            "deployment {} cools down for {:.1}s after: {}",
            table.deployments[index].id,
            wait.as_secs_f64(),
            e.message
        ),
    );
}

/// Whether every deployment of `indices` is cooling down (waiting to retry then only delays
/// the answer).
pub fn all_cooling(table: &Table, indices: &[usize]) -> bool {
    let now = crate::clock::coarse_ms();
    indices.iter().all(|&i| table.stats[i].cooling_at(now).is_some())
}

/// The backoff before retry `n` (0-based): exponential with full jitter, or the upstream's
/// `Retry-After` when it asks for longer (up to a bound).
pub fn backoff(policy: &Policy, n: u32, retry_after: Option<u64>) -> Duration {
    let exp = policy.backoff.saturating_mul(1 << n.min(10));
    let jittered = exp.mul_f64(0.5 + rand::random::<f64>() * 0.5);
    let asked = retry_after.map(Duration::from_secs).unwrap_or_default().min(MAX_RETRY_AFTER);
    jittered.max(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_status_and_then_by_what_they_say() {
        let e = |status: u16, message: &str, code: Option<&str>| {
            let e = ApiError::new(StatusCode::from_u16(status).unwrap(), "x", message);
            match code {
                Some(c) => e.with_code(c),
                None => e,
            }
        };
        assert_eq!(classify(&e(503, "busy", None)), Failure::Retryable);
        assert_eq!(classify(&e(429, "slow down", None)), Failure::Retryable);
        assert_eq!(classify(&e(408, "timeout", None)), Failure::Retryable);
        assert_eq!(classify(&e(400, "bad", Some("context_length_exceeded"))), Failure::ContextWindow);
        assert_eq!(classify(&e(400, "This model's maximum context length is 8192", None)), Failure::ContextWindow);
        assert_eq!(classify(&e(400, "no", Some("content_filter"))), Failure::ContentPolicy);
        assert_eq!(classify(&e(401, "bad key", None)), Failure::Fatal);
        assert_eq!(classify(&e(404, "no such model", None)), Failure::Fatal);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_a_longer_retry_after_up_to_a_bound() {
        let policy = Policy { backoff: Duration::from_millis(100), ..Policy::default() };
        for n in 0..4 {
            let wait = backoff(&policy, n, None);
            let full = Duration::from_millis(100 << n);
            assert!(wait >= full / 2 && wait <= full, "retry {n}: {wait:?}");
        }
        assert_eq!(backoff(&policy, 0, Some(3)), Duration::from_secs(3));
        assert_eq!(backoff(&policy, 0, Some(3600)), MAX_RETRY_AFTER);
    }
}
