//! What the router knows about each deployment while a session runs: requests in flight,
//! this minute's requests, tokens and failures, recent latency, and any cooldown.
//!
//! Updated on every request without blocking others: counters are atomics, the minute window
//! and latency sit behind tiny mutexes held for a few instructions.

use crate::clock::coarse_ms;
use crate::cluster::LoadFigure;
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
    /// Until when the deployment is skipped (this instance's cooldowns and the others').
    cooldown_until_ms: AtomicU64,
    /// Until when this instance's own breaker skips it (what it tells the others).
    own_cooldown_until_ms: AtomicU64,
    /// The other instances' figures, as last read from the shared state.
    others: Mutex<Others>,
    /// Per-minute usage of this instance, for the console's charts.
    pub history: super::history::History,
    /// The last background health check's answer (`general_settings.background_health_checks`).
    pub health: Mutex<Option<super::health::Checked>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Others {
    /// When they were read (unix ms): figures not refreshed for 5 s are no longer counted.
    read_ms: u64,
    in_flight: u64,
    minute: u64,
    requests: u64,
    tokens: u64,
}

/// How long the others' figures count after they were read.
const OTHERS_FRESH_MS: u64 = 5_000;

/// Counts a request as in flight until dropped (streams hold it until they end).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DeploymentStats {
    /// Requests now in flight, on every instance.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed) + self.others(coarse_ms()).in_flight
    }

    fn others(&self, now: u64) -> Others {
        let others = *self.others.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_sub(others.read_ms) > OTHERS_FRESH_MS {
            return Others::default();
        }
        others
    }

    /// Records the other instances' figures (their in-flight count, and their requests and
    /// tokens in wall-clock `minute`), as read from the shared state now.
    pub fn set_others(&self, in_flight: u64, minute: u64, requests: u64, tokens: u64) {
        let read_ms = coarse_ms();
        *self.others.lock().unwrap_or_else(|p| p.into_inner()) =
            Others { read_ms, in_flight, minute, requests, tokens };
    }

    /// This instance's own figures, for the others.
    pub fn own_figures(&self) -> LoadFigure {
        let now = coarse_ms();
        let usage = *self.lock_window().current(now);
        LoadFigure {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            minute: now / 60_000,
            requests: usage.requests,
            tokens: usage.tokens,
            cooldown_until_ms: self.own_cooldown_until_ms.load(Ordering::Relaxed),
        }
    }

    /// Marks a request in flight (and counts it in this minute's requests).
    pub fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.lock_window().current(coarse_ms()).requests += 1;
        InFlight(self.in_flight.clone())
    }

    fn lock_window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This minute's figures (requests and tokens of every instance; failures of this one).
    pub fn minute(&self) -> MinuteUsage {
        let now = coarse_ms();
        let mut usage = *self.lock_window().current(now);
        let others = self.others(now);
        if others.minute == now / 60_000 {
            usage.requests += others.requests;
            usage.tokens += others.tokens;
        }
        usage
    }

    /// Adds tokens used to this minute's count.
    pub fn add_tokens(&self, tokens: u64) {
        self.lock_window().current(coarse_ms()).tokens += tokens;
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
        let usage = w.current(coarse_ms());
        usage.failures += 1;
        usage.failures
    }

    /// Skips this deployment for `duration` from now.
    pub fn cool_down(&self, duration: Duration) {
        let until = coarse_ms() + duration.as_millis() as u64;
        self.own_cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
        self.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// Skips this deployment until `until_ms` (unix ms) because another instance does.
    pub fn adopt_cooldown(&self, until_ms: u64) {
        self.cooldown_until_ms.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// How long the cooldown still runs, if it does.
    pub fn cooling_for(&self) -> Option<Duration> {
        self.cooling_at(coarse_ms())
    }

    /// How long the cooldown still runs at `now` (from [`coarse_ms`]).
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
        s.set_others(3, coarse_ms() / 60_000, 5, 40);
        let _held = s.begin();
        assert_eq!((s.in_flight(), s.minute().requests), (4, 8), "the other instances' figures add to this one's");
        assert_eq!((s.own_figures().in_flight, s.own_figures().requests), (1, 3), "only its own go out");
        s.adopt_cooldown(coarse_ms() + 60_000);
        assert!(s.cooling_for().is_some());
        assert_eq!(
            s.own_figures().cooldown_until_ms,
            s.own_cooldown_until_ms.load(Ordering::Relaxed),
            "an adopted cooldown is not sent back"
        );
        s.record_latency(Duration::from_secs(1), 10);
        s.record_latency(Duration::from_secs(2), 10);
        let per_token = s.latency().per_token.unwrap();
        assert!((per_token - 0.13).abs() < 1e-9, "{per_token}");
    }
}
