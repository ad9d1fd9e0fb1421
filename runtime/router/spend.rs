//! Spend and budgets: what an app and each deployment have cost in the current budget
//! period, kept in micro-dollars so concurrent additions never lose a fraction.
//!
//! Ledgers live in memory on the request path and are flushed to the store every second
//! (and on stop and shutdown), so spend survives restarts; a `kill -9` can lose at most the
//! last second of it, never more. With several instances each ledger also holds what the
//! others spent, as last read from the shared state (every 200 ms); budgets count both.
//!
//! A ledger also holds what requests in flight may still cost (their reservations, see
//! `reservation.rs`): [`reserve_all`] takes room on several ledgers in one step or on none,
//! and [`Ledger::settle`] turns a reservation into the real cost under the same lock, so no
//! check ever sees a request counted twice or not at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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

/// Periods are seconds long at least: the last clock tick's time is close enough.
fn now_secs() -> u64 {
    crate::clock::coarse_secs()
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
    /// What this instance's requests in flight may still cost. Not a period's spend: it
    /// carries over when a period ends, as those requests book into the new one.
    reserved: u64,
}

/// Dollars as the micro-dollars ledgers keep (nothing for a negative or non-finite amount).
pub fn micros(usd: f64) -> u64 {
    if usd <= 0.0 || !usd.is_finite() {
        return 0;
    }
    (usd * 1e6).round() as u64
}

/// A reservation that did not fit: which ledger (its position among those asked) and what
/// it had spent and held then, in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdrawn {
    pub position: usize,
    pub spent: u64,
    pub held: u64,
}

/// Whether `micros` more fits under `limit` beside `total`: a request that may cost nothing
/// still needs the budget not to be used up.
fn fits(total: u64, micros: u64, limit: u64) -> bool {
    total < limit && total.saturating_add(micros) <= limit
}

/// Reserves `micros` on every ledger of `ledgers` (each with its limit, in micro-dollars), or
/// on none. All are locked together (in address order, so two requests cannot deadlock): a
/// ledger at a time would let two requests each see room on one budget that only one of them
/// gets on the other.
pub fn reserve_all(ledgers: &[(&Ledger, u64)], micros: u64) -> Result<(), Overdrawn> {
    let address = |i: &usize| ledgers[*i].0 as *const Ledger as usize;
    let mut order: Vec<usize> = (0..ledgers.len()).collect();
    order.sort_by_key(address);
    // The same ledger twice would deadlock on its own lock.
    order.dedup_by_key(|i| address(i));
    let mut guards: Vec<Option<std::sync::MutexGuard<'_, Period>>> = ledgers.iter().map(|_| None).collect();
    for &i in &order {
        guards[i] = Some(ledgers[i].0.current());
    }
    for (position, guard) in guards.iter().enumerate() {
        let Some(p) = guard else { continue };
        let spent = p.own + p.others;
        if !fits(spent + p.reserved, micros, ledgers[position].1) {
            return Err(Overdrawn { position, spent, held: p.reserved });
        }
    }
    for p in guards.iter_mut().flatten() {
        p.reserved += micros;
    }
    Ok(())
}

impl Ledger {
    pub fn new(period: Option<Duration>) -> Ledger {
        let index = period_index(period, now_secs());
        let state = Period { index, own: 0, others: 0, reserved: 0 };
        Ledger { period, state: Mutex::new(state), dirty: AtomicBool::new(false) }
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
            *state = Period { index: now, own: 0, others: 0, reserved: state.reserved };
            self.dirty.store(true, Ordering::Relaxed);
        }
        state
    }

    pub fn add(&self, usd: f64) {
        self.add_micros(micros(usd));
    }

    pub fn add_micros(&self, micros: u64) {
        if micros == 0 {
            return;
        }
        self.current().own += micros;
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Gives back a reservation of `held` micro-dollars that cost nothing.
    pub fn release(&self, held: u64) {
        let mut p = self.current();
        p.reserved = p.reserved.saturating_sub(held);
    }

    /// Turns a reservation of `held` into the real `cost`, in one step.
    pub fn settle(&self, held: u64, cost: u64) {
        let mut p = self.current();
        p.reserved = p.reserved.saturating_sub(held);
        p.own += cost;
        if cost > 0 {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// What this instance's requests in flight hold, in micro-dollars.
    pub fn reserved(&self) -> u64 {
        self.current().reserved
    }

    /// The length of a period in seconds (`None`: one period for all time).
    pub fn period_secs(&self) -> Option<u64> {
        self.period.map(|p| p.as_secs().max(1))
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

    #[test]
    fn a_reservation_fits_to_the_last_micro_dollar_and_a_refused_one_holds_nothing() {
        let ledger = Ledger::new(None);
        ledger.add_micros(15_000_000);
        ledger.set_others(0, 3_000_000);
        assert_eq!(reserve_all(&[(&ledger, 20_000_000)], 1_000_000), Ok(()));
        assert_eq!(reserve_all(&[(&ledger, 20_000_000)], 1_000_000), Ok(()), "exactly the limit fits");
        let refused = reserve_all(&[(&ledger, 20_000_000)], 1);
        assert_eq!(refused, Err(Overdrawn { position: 0, spent: 18_000_000, held: 2_000_000 }));
        assert_eq!(ledger.reserved(), 2_000_000);
        ledger.release(1_000_000);
        assert_eq!(reserve_all(&[(&ledger, 20_000_000)], 0), Ok(()), "a free request fits while room is left");
        assert!(reserve_all(&[(&ledger, 18_000_000)], 0).is_err(), "but not once the budget is used up");
    }

    #[test]
    fn several_budgets_are_reserved_together_or_not_at_all() {
        let (app, key) = (Ledger::new(None), Ledger::new(None));
        key.add_micros(9);
        let refused = reserve_all(&[(&app, 100), (&key, 10), (&app, 100)], 2);
        assert_eq!(refused, Err(Overdrawn { position: 1, spent: 9, held: 0 }));
        assert_eq!((app.reserved(), key.reserved()), (0, 0), "nothing held when one budget refuses");
        assert_eq!(reserve_all(&[(&app, 100), (&key, 10)], 1), Ok(()));
        assert_eq!((app.reserved(), key.reserved()), (1, 1));
    }

    #[test]
    fn settling_turns_the_reservation_into_the_cost() {
        let ledger = Ledger::new(None);
        reserve_all(&[(&ledger, 100)], 40).unwrap();
        ledger.settle(40, 25);
        assert_eq!((ledger.reserved(), ledger.own()), (0, (0, 25)));
        assert_eq!(ledger.take_dirty(), Some((0, 25)), "the cost is stored with the next flush");
    }

    #[test]
    fn concurrent_reservations_never_pass_the_budget() {
        let ledger = std::sync::Arc::new(Ledger::new(None));
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    let fits = reserve_all(&[(&ledger, 20_000_000)], 1_000_000).is_ok();
                    if fits {
                        ledger.settle(1_000_000, 1_000_000);
                    }
                    fits
                })
            })
            .collect();
        let served = threads.into_iter().map(|t| t.join().unwrap());
        assert_eq!(served.filter(|&fits| fits).count(), 20);
        assert_eq!((ledger.own().1, ledger.reserved()), (20_000_000, 0));
    }
}
