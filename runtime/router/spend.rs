//! Spend and budgets: what an app and each deployment have cost in the current budget
//! period, kept in micro-dollars so concurrent additions never lose a fraction.
//!
//! Ledgers live in memory on the request path and are flushed to the store every second
//! (and on stop and shutdown), so spend survives restarts; a `kill -9` can lose at most the
//! last second of it, never more. With several instances each ledger also holds what the
//! others spent, as last read from the shared state (every 200 ms); budgets count both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A spend limit: US dollars per period (or for all time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub max_usd: f64,
    pub period: Option<Duration>,
}

/// `30d`, `7d`, `24h`, `90m`, `45s` (litellm's `budget_duration`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        "mo" => n * 30 * 86_400,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The period a moment falls in: periods are aligned to the epoch (0 when unbounded).
pub fn period_index(period: Option<Duration>, at_secs: u64) -> u64 {
    period.map(|p| at_secs / p.as_secs().max(1)).unwrap_or(0)
}

/// Spend of one scope (an app, or one deployment) in the current period: this instance's own,
/// and (with several instances) the others' as last read from the shared state.
#[derive(Debug)]
pub struct Ledger {
    period: Option<Duration>,
    state: Mutex<Period>,
    dirty: AtomicBool,
}

/// A period's figures, in micro-dollars.
#[derive(Debug, Clone, Copy)]
struct Period {
    index: u64,
    own: u64,
    others: u64,
}

impl Ledger {
    pub fn new(period: Option<Duration>) -> Ledger {
        let index = period_index(period, now_secs());
        Ledger { period, state: Mutex::new(Period { index, own: 0, others: 0 }), dirty: AtomicBool::new(false) }
    }

    /// Restores a stored figure of this instance's; one of a past period is discarded.
    pub fn restore(&self, period: u64, micros: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if period == state.index {
            state.own = state.own.max(micros);
        }
    }

    /// Records what the other instances spent in `period` (read from the shared state).
    pub fn set_others(&self, period: u64, micros: u64) {
        let mut state = self.current();
        if period == state.index {
            state.others = micros;
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Period> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = period_index(self.period, now_secs());
        if state.index != now {
            *state = Period { index: now, own: 0, others: 0 };
            self.dirty.store(true, Ordering::Relaxed);
        }
        state
    }

    pub fn add(&self, usd: f64) {
        if usd <= 0.0 || !usd.is_finite() {
            return;
        }
        self.current().own += (usd * 1e6).round() as u64;
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The current period's index.
    pub fn period_now(&self) -> u64 {
        period_index(self.period, now_secs())
    }

    /// Dollars spent this period, by every instance.
    pub fn spent(&self) -> f64 {
        let p = *self.current();
        (p.own + p.others) as f64 / 1e6
    }

    /// This instance's own spend: (period index, micro-dollars).
    pub fn own(&self) -> (u64, u64) {
        let p = *self.current();
        (p.index, p.own)
    }

    /// This instance's figure to store, if it changed since the last call.
    pub fn take_dirty(&self) -> Option<(u64, u64)> {
        self.dirty.swap(false, Ordering::Relaxed).then(|| self.own())
    }

    /// Seconds until the current period ends (for `Retry-After`), if periods are bounded.
    pub fn seconds_to_reset(&self) -> Option<u64> {
        let p = self.period?.as_secs().max(1);
        Some(p - now_secs() % p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_litellm() {
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("3x"), None);
    }

    #[test]
    fn ledgers_add_restore_and_report_changes() {
        let ledger = Ledger::new(None);
        ledger.add(0.25);
        ledger.add(0.000_001);
        assert!((ledger.spent() - 0.250_001).abs() < 1e-12);
        assert_eq!(ledger.take_dirty(), Some((0, 250_001)));
        assert_eq!(ledger.take_dirty(), None);
        ledger.restore(0, 900_000);
        assert!((ledger.spent() - 0.9).abs() < 1e-12, "restore never lowers spend below what is known");
        ledger.restore(7, 5_000_000);
        assert!((ledger.spent() - 0.9).abs() < 1e-12, "another period's figure is ignored");
        ledger.set_others(0, 100_000);
        ledger.set_others(0, 50_000);
        assert!((ledger.spent() - 0.95).abs() < 1e-12, "the others' latest figure counts, once");
        assert_eq!(ledger.own(), (0, 900_000), "only this instance's own spend is stored and shared");
        ledger.set_others(3, 1_000_000);
        assert!((ledger.spent() - 0.95).abs() < 1e-12, "another period's figure is ignored");
    }
}
