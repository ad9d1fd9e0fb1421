//! The budgets of all instances in Redis. Per budget scope (a stable id such as
//! `app<US>ws<US>app`) and budget period:
//!
//! - `ferrolite:budget<US>scope<US>period`, a hash: field `@instance` is that instance's spend
//!   in micro-dollars, `held` the sum of the live holds.
//! - `ferrolite:held<US>scope<US>period`, a sorted set of the holds (each instance's lease,
//!   `leases.rs`): member `instance<US>random<US>micros`, score the Unix ms it expires at
//!   (Redis's own clock). A hold of an instance that died is dropped, and `held` lowered, by
//!   the next exchange after it expires.
//!
//! Both keys of a bounded period expire together an hour after it ends; so `held` never
//! outlives the holds it sums. A spend figure only grows: an exchange adds the cost an
//! instance settled, and every 200 ms each instance floors its figures to its own books (spend
//! minus what it has not folded in yet), which puts them back after Redis restarted empty.
//! A floor is a maximum, never an addition, so nothing counts twice.

use super::SEP;

/// How long a past period's keys are kept after it ends.
const GRACE_SECS: u64 = 3600;

/// Raises this instance's figure of each scope to at least its floor. KEYS: the hashes.
/// ARGV: `@instance`, then per hash the floor and when it expires (Unix s, 0 for never).
const FLOOR: &str = r#"
local field = ARGV[1]
for i, key in ipairs(KEYS) do
  local floor = tonumber(ARGV[2 * i])
  local have = tonumber(redis.call('HGET', key, field) or '0')
  if floor > have then redis.call('HSET', key, field, ARGV[2 * i]) end
  local at = tonumber(ARGV[2 * i + 1])
  if at > 0 then redis.call('EXPIREAT', key, at) end
end
return 0
"#;

/// A budget period of one scope: the keys it is kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePeriod {
    /// A stable id naming the budget's owner: `app<US>ws<US>app`, `deployment<US>ws<US>app<US>id`.
    pub scope: String,
    pub period: u64,
    /// The period's length in seconds (`None`: one period for all time).
    pub length: Option<u64>,
}

impl ScopePeriod {
    pub(super) fn budget_key(&self) -> String {
        budget_key(&self.scope, self.period)
    }

    pub(super) fn held_key(&self) -> String {
        format!("ferrolite:held{SEP}{}{SEP}{}", self.scope, self.period)
    }

    /// When its keys expire (Unix s; 0 for never).
    pub(super) fn expire_at(&self) -> u64 {
        expire_at(self.period, self.length)
    }
}

fn budget_key(scope: &str, period: u64) -> String {
    format!("ferrolite:budget{SEP}{scope}{SEP}{period}")
}

fn expire_at(period: u64, length: Option<u64>) -> u64 {
    length.map_or(0, |l| (period + 1).saturating_mul(l).saturating_add(GRACE_SECS))
}

/// One budget a reservation must fit under.
#[derive(Debug, Clone)]
pub struct Limit {
    pub at: ScopePeriod,
    /// Micro-dollars.
    pub limit: u64,
}

/// One instance's floor of one scope's figure (see the module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    pub at: ScopePeriod,
    pub micros: u64,
}

/// Adds the floors of `floors` to an exchange's pipeline (the script is sent whole: Redis
/// caches it, and the pipeline stays one round trip).
/// `unfolded` is what to leave out of a floor: cost the instance settled on a lease it holds
/// and has not folded into its figure yet (`leases.rs`).
pub(super) fn add_floors(
    pipe: &mut redis::Pipeline,
    floors: &[Floor],
    instance: &str,
    unfolded: impl Fn(&ScopePeriod) -> u64,
) {
    if floors.is_empty() {
        return;
    }
    let cmd = pipe.cmd("EVAL").arg(FLOOR).arg(floors.len());
    for f in floors {
        cmd.arg(f.at.budget_key());
    }
    cmd.arg(format!("@{instance}"));
    for f in floors {
        cmd.arg(f.micros.saturating_sub(unfolded(&f.at))).arg(f.at.expire_at());
    }
    cmd.ignore();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_scope_and_period_and_bounded_periods_expire_after_their_end() {
        let at = ScopePeriod { scope: "app\u{1f}w\u{1f}a".into(), period: 3, length: Some(60) };
        assert_eq!(at.budget_key(), "ferrolite:budget\u{1f}app\u{1f}w\u{1f}a\u{1f}3");
        assert_eq!(at.held_key(), "ferrolite:held\u{1f}app\u{1f}w\u{1f}a\u{1f}3");
        assert_eq!(at.expire_at(), 240 + GRACE_SECS);
        assert_eq!(ScopePeriod { length: None, ..at }.expire_at(), 0, "an all-time budget's keys stay");
    }
}
