//! An API key's own limits on the request path: the models it may call (403), and its
//! requests per minute, tokens per minute and requests at once (429 with `Retry-After`).
//!
//! Counted on this instance: with several instances behind a balancer each counts its own
//! share, so a key's rpm holds per instance (budgets, by contrast, are shared).

use crate::auth::keys::KeyRecord;
use crate::exchange::ApiError;
use axum::http::StatusCode;
use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Every key's counters on this instance.
#[derive(Debug, Default)]
pub struct KeyLimiter {
    keys: RwLock<HashMap<String, Arc<Counters>>>,
}

/// One key's counters: this minute's requests and tokens, and its requests in flight. A
/// request touches only atomics once its key's counters exist (no lock held, nothing made).
#[derive(Debug, Default)]
struct Counters {
    /// The minute `requests` and `tokens` count (unix minutes).
    minute: AtomicU64,
    requests: AtomicU64,
    tokens: AtomicU64,
    parallel: Arc<AtomicU64>,
}

impl Counters {
    /// Starts a new minute's counts when the minute changed.
    fn roll(&self, minute: u64) {
        let seen = self.minute.load(Ordering::Acquire);
        if seen != minute && self.minute.compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.requests.store(0, Ordering::Release);
            self.tokens.store(0, Ordering::Release);
        }
    }
}

/// One place among a key's requests at once, held until the response's body ends.
#[derive(Debug)]
pub struct ParallelPlace(Arc<AtomicU64>);

impl Drop for ParallelPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn too_many(message: String, wait: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
        .with_code("rate_limit_exceeded")
        .with_retry_after(Some(wait))
}

/// 403 when the key may not call `model` (a name the client asked for).
pub fn check_model(key: &KeyRecord, model: &str) -> Result<(), ApiError> {
    if key.allows_model(model) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "API key {} may not call model {model:?}; it may call: {}",
        key.id,
        key.models.join(", ")
    ))
    .with_param("model")
    .with_code("key_model_not_allowed"))
}

impl KeyLimiter {
    fn counters(&self, key_id: &str) -> Arc<Counters> {
        if let Some(found) = self.keys.read().unwrap_or_else(|p| p.into_inner()).get(key_id) {
            return found.clone();
        }
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.entry(key_id.to_owned()).or_default().clone()
    }

    /// Admits one request of `key`: its tpm is not spent, its rpm is counted, and a place
    /// among its requests at once is taken (when it has a limit).
    pub fn admit(&self, key: &KeyRecord) -> Result<Option<ParallelPlace>, ApiError> {
        if key.tpm.is_none() && key.rpm.is_none() && key.max_parallel.is_none() {
            return Ok(None);
        }
        let counters = self.counters(&key.id);
        let now = crate::clock::coarse_secs();
        counters.roll(now / 60);
        if let Some(tpm) = key.tpm {
            let used = counters.tokens.load(Ordering::Acquire);
            if used >= tpm {
                let message = format!("API key {} used {used} of its {tpm} tokens this minute", key.id);
                return Err(too_many(message, crate::clock::seconds_left_in_minute(now)));
            }
        }
        let place = match key.max_parallel {
            Some(max) => {
                let previous = counters.parallel.fetch_add(1, Ordering::AcqRel);
                let place = ParallelPlace(counters.parallel.clone());
                if previous >= max {
                    let message = format!("API key {} already has {max} requests in flight, its max_parallel", key.id);
                    return Err(too_many(message, 1));
                }
                Some(place)
            }
            None => None,
        };
        if let Some(rpm) = key.rpm {
            let before = counters.requests.fetch_add(1, Ordering::AcqRel);
            if before >= rpm {
                counters.requests.fetch_sub(1, Ordering::AcqRel);
                let message = format!("API key {} is at its {rpm} requests this minute", key.id);
                return Err(too_many(message, crate::clock::seconds_left_in_minute(now)));
            }
        }
        Ok(place)
    }

    /// Counts tokens a request of `key_id` used, against its tpm.
    pub fn add_tokens(&self, key_id: &str, n: u64) {
        let counters = self.counters(key_id);
        counters.roll(crate::clock::coarse_secs() / 60);
        counters.tokens.fetch_add(n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::generate;

    #[test]
    fn parallel_places_are_given_back_and_tpm_counts_used_tokens() {
        let limiter = KeyLimiter::default();
        let mut key = generate("team").record;
        key.max_parallel = Some(1);
        let first = limiter.admit(&key).unwrap();
        assert_eq!(limiter.admit(&key).unwrap_err().status, StatusCode::TOO_MANY_REQUESTS);
        drop(first);
        assert!(limiter.admit(&key).is_ok(), "the place came back");

        key.max_parallel = None;
        key.tpm = Some(100);
        limiter.add_tokens(&key.id, 100);
        let refused = limiter.admit(&key).unwrap_err();
        assert!(refused.message.contains("100 of its 100 tokens"), "{}", refused.message);
    }
}
