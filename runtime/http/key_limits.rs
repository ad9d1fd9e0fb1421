//! An API key's own limits on the request path: the models it may call (403), and its
//! requests per minute, tokens per minute and requests at once (429 with `Retry-After`).
//!
//! Counted on this instance: with several instances behind a balancer each counts its own
//! share, so a key's rpm holds per instance (budgets, by contrast, are shared).

use super::limits::RateCounter;
use crate::auth::keys::KeyRecord;
use crate::exchange::ApiError;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every key's counters on this instance.
#[derive(Debug, Default)]
pub struct KeyLimiter {
    requests: RateCounter,
    /// (minute, key id -> tokens used in it).
    tokens: Mutex<(u64, HashMap<String, u64>)>,
    parallel: Mutex<HashMap<String, Arc<AtomicU64>>>,
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

fn seconds_to_next_minute() -> u64 {
    60 - crate::clock::unix_now() % 60
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
    /// Admits one request of `key`: its tpm is not spent, its rpm is counted, and a place
    /// among its requests at once is taken (when it has a limit).
    pub fn admit(&self, key: &KeyRecord) -> Result<Option<ParallelPlace>, ApiError> {
        if let Some(tpm) = key.tpm {
            let used = self.tokens_this_minute(&key.id);
            if used >= tpm {
                let message = format!("API key {} used {used} of its {tpm} tokens this minute", key.id);
                return Err(too_many(message, seconds_to_next_minute()));
            }
        }
        let place = match key.max_parallel {
            Some(max) => {
                let counter = {
                    let mut parallel = self.parallel.lock().unwrap_or_else(|p| p.into_inner());
                    parallel.entry(key.id.clone()).or_default().clone()
                };
                let previous = counter.fetch_add(1, Ordering::AcqRel);
                let place = ParallelPlace(counter);
                if previous >= max {
                    let message = format!("API key {} already has {max} requests in flight, its max_parallel", key.id);
                    return Err(too_many(message, 1));
                }
                Some(place)
            }
            None => None,
        };
        if let Some(rpm) = key.rpm {
            self.requests.hit(&[(key.id.clone(), rpm)]).map_err(|(_, wait)| {
                too_many(format!("API key {} is at its {rpm} requests this minute", key.id), wait)
            })?;
        }
        Ok(place)
    }

    fn tokens_this_minute(&self, key_id: &str) -> u64 {
        let minute = crate::clock::unix_now() / 60;
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.0 != minute {
            return 0;
        }
        tokens.1.get(key_id).copied().unwrap_or(0)
    }

    /// Counts tokens a request of `key_id` used, against its tpm.
    pub fn add_tokens(&self, key_id: &str, n: u64) {
        let minute = crate::clock::unix_now() / 60;
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.0 != minute {
            *tokens = (minute, HashMap::new());
        }
        *tokens.1.entry(key_id.to_owned()).or_insert(0) += n;
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
