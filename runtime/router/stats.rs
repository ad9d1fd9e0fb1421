//! What the router knows about each deployment while a session runs: requests in flight,
//! this minute's requests, tokens and failures, recent latency, and any cooldown.
//!
//! Updated on every request without blocking others: counters are atomics, the minute window
//! and latency sit behind tiny mutexes held for a few instructions.

use crate::clock::now_ms;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts for the current wall-clock minute.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MinuteUsage {
    pub requests: u64,
    pub tokens: u64,
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Window {
    minute: u64,
    usage: MinuteUsage,
}

impl Window {
    fn current(&mut self, now_ms: u64) -> &mut MinuteUsage {
        let minute = now_ms / 60_000;
        if self.minute != minute {
            self.minute = minute;
            self.usage = MinuteUsage::default();
        }
        &mut self.usage
    }
}

/// Exponentially weighted latency figures (seconds).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Seconds per output token of whole answers (or per request when no tokens were reported).
    pub per_token: Option<f64>,
    /// Seconds to the first streamed byte.
    pub first_token: Option<f64>,
}

/// How much a new sample moves the average.
const EWMA_WEIGHT: f64 = 0.3;

fn blend(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(match old {
        Some(avg) => avg + EWMA_WEIGHT * (sample - avg),
        None => sample,
    })
}

/// Totals since the session started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One deployment's live figures.
#[derive(Debug, Default)]
pub struct DeploymentStats {
    in_flight: Arc<AtomicU64>,
    totals: Mutex<Totals>,
    window: Mutex<Window>,
    latency: Mutex<Latency>,
    cooldown_until_ms: AtomicU64,
    /// The cluster-wide figures (all instances, this one included), refreshed from Redis.
    shared: Mutex<Shared>,
    /// Per-minute usage of this instance, for the console's charts.
    pub history: super::history::History,
}

#[derive(Debug, Default, Clone, Copy)]
struct Shared {
    minute: u64,
    in_flight: u64,
    requests: u64,
    tokens: u64,
}

/// Counts a request as in flight until dropped (streams hold it until they end).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DeploymentStats {
    /// Requests now in flight.
    pub fn in_flight(&self) -> u64 {
        let local = self.in_flight.load(Ordering::Relaxed);
        local.max(self.shared.lock().unwrap_or_else(|p| p.into_inner()).in_flight)
    }

    /// Records the cluster-wide figures read from the shared store.
    pub fn set_shared(&self, in_flight: u64, requests: u64, tokens: u64) {
        let minute = now_ms() / 60_000;
        *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = Shared { minute, in_flight, requests, tokens };
    }

    /// Marks a request in flight (and counts it in this minute's requests).
    pub fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.lock_window().current(now_ms()).requests += 1;
        InFlight(self.in_flight.clone())
    }

    fn lock_window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This minute's figures.
    pub fn minute(&self) -> MinuteUsage {
        let now = now_ms();
        let mut usage = *self.lock_window().current(now);
        let shared = *self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if shared.minute == now / 60_000 {
            usage.requests = usage.requests.max(shared.requests);
            usage.tokens = usage.tokens.max(shared.tokens);
        }
        usage
    }

    /// Adds tokens used to this minute's count.
    pub fn add_tokens(&self, tokens: u64) {
        self.lock_window().current(now_ms()).tokens += tokens;
    }

    /// Counts a finished request (and its tokens) in the session totals.
    pub fn record_usage(&self, ok: bool, prompt_tokens: u64, completion_tokens: u64) {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.requests += 1;
        t.errors += u64::from(!ok);
        t.prompt_tokens += prompt_tokens;
        t.completion_tokens += completion_tokens;
    }

    pub fn totals(&self) -> Totals {
        *self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a whole answer's latency (per output token when known).
    pub fn record_latency(&self, elapsed: Duration, output_tokens: u64) {
        let sample = elapsed.as_secs_f64() / output_tokens.max(1) as f64;
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        l.per_token = blend(l.per_token, sample);
    }

    /// Records a stream's time to its first byte.
    pub fn record_first_token(&self, elapsed: Duration) {
        let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        l.first_token = blend(l.first_token, elapsed.as_secs_f64());
    }

    pub fn latency(&self) -> Latency {
        *self.latency.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failure this minute; returns the failures so far this minute.
    pub fn record_failure(&self) -> u64 {
        let mut w = self.lock_window();
        let usage = w.current(now_ms());
        usage.failures += 1;
        usage.failures
    }

    /// Skips this deployment for `duration` from now.
    pub fn cool_down(&self, duration: Duration) {
        let until = now_ms() + duration.as_millis() as u64;
        self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// How long the cooldown still runs, if it does.
    pub fn cooling_for(&self) -> Option<Duration> {
        self.cooling_at(now_ms())
    }

    /// How long the cooldown still runs at `now` (from [`now_ms`]).
    pub fn cooling_at(&self, now: u64) -> Option<Duration> {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_is_released_on_drop_and_cooldown_expires() {
        let s = DeploymentStats::default();
        let a = s.begin();
        let b = s.begin();
        assert_eq!((s.in_flight(), s.minute().requests), (2, 2));
        drop(a);
        drop(b);
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.record_failure(), 1);
        s.cool_down(Duration::from_millis(50));
        assert!(s.cooling_for().is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.cooling_for().is_none());
        s.record_latency(Duration::from_secs(1), 10);
        s.record_latency(Duration::from_secs(2), 10);
        let per_token = s.latency().per_token.unwrap();
        assert!((per_token - 0.13).abs() < 1e-9, "{per_token}");
    }
}
