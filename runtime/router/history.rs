//! A deployment's recent usage over time, for the console's charts: one bucket per wall-clock
//! minute (requests, errors, tokens, cost and a latency histogram), the last hour kept.
//!
//! Recording takes one short lock and allocates nothing except when a new minute starts;
//! percentiles come from a fixed log-scale histogram, so buckets of several deployments merge.

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// How long one bucket spans.
pub const BUCKET_MS: u64 = 60_000;
/// Buckets kept (one hour of minutes); older ones are dropped first.
pub const CAPACITY: usize = 60;

/// Latency histogram bins: bin `i` holds latencies up to `FIRST_BOUND_MS * 2^(i/2)`, so each
/// bin is ~41% wider than the last, from 0.1 ms to ~100 s; the last bin takes the rest.
const BINS: usize = 42;
const FIRST_BOUND_MS: f64 = 0.1;

fn bound_ms(bin: usize) -> f64 {
    FIRST_BOUND_MS * 2f64.powf(bin as f64 / 2.0)
}

fn bin_of(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms <= FIRST_BOUND_MS {
        return 0;
    }
    // Smallest i with bound_ms(i) >= ms.
    let i = (2.0 * (ms / FIRST_BOUND_MS).log2()).ceil();
    (i as usize).min(BINS - 1)
}

/// One minute of one deployment (or of several, merged).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Unix milliseconds at the start of the minute.
    pub start_ms: u64,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// US dollars.
    pub cost: f64,
    latency: [u32; BINS],
}

impl Bucket {
    fn empty(start_ms: u64) -> Bucket {
        Bucket {
            start_ms,
            requests: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
            latency: [0; BINS],
        }
    }

    fn merge(&mut self, other: &Bucket) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost += other.cost;
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a = a.saturating_add(*b);
        }
    }

    /// The latency (ms) below which a fraction `q` of this bucket's requests finished: the
    /// upper bound of the bin where the count crosses `q`, so it may overstate by one bin.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        let n: u64 = self.latency.iter().map(|&c| u64::from(c)).sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.latency.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(bound_ms(i));
            }
        }
        Some(bound_ms(BINS - 1))
    }

    /// The bucket as `get_usage` reports it.
    pub fn to_json(&self) -> Value {
        let ms = |q| self.percentile_ms(q).map(|v| (v * 1000.0).round() / 1000.0);
        json!({
            "start": self.start_ms / 1000,
            "requests": self.requests, "errors": self.errors,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "latency_ms": {"p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99)},
        })
    }
}

/// What one finished request adds to the history.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub ok: bool,
    pub latency: Duration,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
}

/// The per-minute history of one deployment.
#[derive(Debug, Default)]
pub struct History {
    buckets: Mutex<VecDeque<Bucket>>,
}

impl History {
    /// Adds a finished request to the bucket of `now_ms`.
    pub fn record(&self, now_ms: u64, sample: Sample) {
        let start = now_ms - now_ms % BUCKET_MS;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Clocks may step back: a late sample joins the newest bucket rather than reorder them.
        let fresh = buckets.back().is_none_or(|b| b.start_ms < start);
        if fresh {
            if buckets.len() == CAPACITY {
                buckets.pop_front();
            }
            buckets.push_back(Bucket::empty(start));
        }
        let Some(b) = buckets.back_mut() else { return };
        b.requests += 1;
        b.errors += u64::from(!sample.ok);
        b.prompt_tokens += sample.prompt_tokens;
        b.completion_tokens += sample.completion_tokens;
        b.cost += sample.cost;
        let bin = bin_of(sample.latency);
        b.latency[bin] = b.latency[bin].saturating_add(1);
    }

    /// The kept buckets, oldest first (minutes without requests have none).
    pub fn buckets(&self) -> Vec<Bucket> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }
}

/// Merges several deployments' buckets minute by minute, oldest first.
pub fn merge<'a>(histories: impl IntoIterator<Item = &'a [Bucket]>) -> Vec<Bucket> {
    let mut by_minute: std::collections::BTreeMap<u64, Bucket> = Default::default();
    for buckets in histories {
        for b in buckets {
            by_minute.entry(b.start_ms).or_insert_with(|| Bucket::empty(b.start_ms)).merge(b);
        }
    }
    by_minute.into_values().collect()
}

/// How the history is laid out, for readers of `get_usage`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Layout {
    pub bucket_seconds: u64,
    pub buckets_kept: usize,
}

pub const LAYOUT: Layout = Layout { bucket_seconds: BUCKET_MS / 1000, buckets_kept: CAPACITY };

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ok: bool, ms: u64) -> Sample {
        Sample { ok, latency: Duration::from_millis(ms), prompt_tokens: 3, completion_tokens: 5, cost: 0.25 }
    }

    #[test]
    fn requests_land_in_their_minute_and_old_minutes_drop_out() {
        let h = History::default();
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % BUCKET_MS;
        h.record(t0 + 10, sample(true, 10));
        h.record(t0 + 59_999, sample(false, 20));
        h.record(t0 + BUCKET_MS, sample(true, 30));
        let b = h.buckets();
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].start_ms, b[0].requests, b[0].errors, b[0].prompt_tokens), (t0, 2, 1, 6));
        assert_eq!((b[1].requests, b[1].completion_tokens, b[1].cost), (1, 5, 0.25));
        for m in 2..(CAPACITY as u64 + 5) {
            h.record(t0 + m * BUCKET_MS, sample(true, 1));
        }
        let b = h.buckets();
        assert_eq!(b.len(), CAPACITY);
        assert_eq!(b[0].start_ms, t0 + 5 * BUCKET_MS);
    }

    #[test]
    fn percentiles_come_from_the_histogram_within_one_bin() {
        let h = History::default();
        for ms in 1..=100 {
            h.record(0, sample(true, ms));
        }
        let b = h.buckets()[0];
        for (q, exact) in [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0)] {
            let got = b.percentile_ms(q).unwrap();
            assert!(got >= exact && got <= exact * 1.42, "p{q}: {got} vs {exact}");
        }
        assert_eq!(Bucket::empty(0).percentile_ms(0.5), None);
        assert_eq!(bin_of(Duration::ZERO), 0);
        assert_eq!(bin_of(Duration::from_secs(10_000)), BINS - 1);
    }

    #[test]
    fn merging_adds_minutes_of_several_deployments() {
        let (a, b) = (History::default(), History::default());
        a.record(0, sample(true, 1));
        b.record(10, sample(false, 1000));
        b.record(BUCKET_MS, sample(true, 1));
        let merged = merge([a.buckets().as_slice(), b.buckets().as_slice()]);
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].requests, merged[0].errors), (2, 1));
        assert!(merged[0].percentile_ms(0.99).unwrap() >= 1000.0);
    }
}
