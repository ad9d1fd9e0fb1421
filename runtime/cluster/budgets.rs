//! Budgets held exactly across instances: a request's worst-case cost is reserved against
//! every budget that applies in one Lua script (atomic in Redis), and settled to its real cost
//! by another. Per budget scope (a stable id such as `app<US>ws<US>app`) and budget period:
//!
//! - `ferrolite:budget<US>scope<US>period`, a hash: field `@instance` is that instance's spend
//!   in micro-dollars, `held` the sum of the live reservations.
//! - `ferrolite:held<US>scope<US>period`, a sorted set of the reservations: member
//!   `instance<US>random<US>micros`, score the Unix ms it expires at (Redis's own clock). A
//!   reservation of an instance that died is dropped, and `held` lowered, by the next
//!   reservation after it expires.
//!
//! Both keys of a bounded period expire together an hour after it ends; so `held` never
//! outlives the reservations it sums. A spend figure only grows: a settle adds the real cost
//! to it in the step that drops the reservation, and every 200 ms each instance floors its
//! figures to its own books (spend minus what a settle on the way will add), which puts them
//! back after Redis restarted empty, and takes in a settle that timed out or came after its
//! reservation expired. A floor is a maximum, never an addition, so nothing counts twice.

use super::SEP;
use super::{Cluster, ClusterError, TIMEOUT};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a reservation may wait on Redis: past it the request goes on with this instance's
/// own books, and the next ones do too until the figures flow again.
const RESERVE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a past period's keys are kept after it ends.
const GRACE_SECS: u64 = 3600;

/// Sums each scope's spend and live reservations (dropping the expired ones first) and, if
/// `amount` fits under every limit, holds it on all of them. KEYS: per scope its hash and its
/// set. ARGV: ttl ms, member, amount, then per scope its limit and when its keys expire
/// (Unix s, 0 for never). Answers `{0, 0, 0}`, or `{scope number, spent, held}` of the first
/// scope it does not fit.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, member, amount = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local n = #KEYS / 2
for s = 1, n do
  local budget, held = KEYS[2 * s - 1], KEYS[2 * s]
  local gone = redis.call('ZRANGEBYSCORE', held, '-inf', now)
  if #gone > 0 then
    local freed = 0
    for _, m in ipairs(gone) do freed = freed + tonumber(string.match(m, '(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
    redis.call('HINCRBY', budget, 'held', string.format('%d', -freed))
  end
  local spent, holding = 0, 0
  local all = redis.call('HGETALL', budget)
  for i = 1, #all, 2 do
    if all[i] == 'held' then holding = tonumber(all[i + 1]) else spent = spent + tonumber(all[i + 1]) end
  end
  local limit = tonumber(ARGV[2 + 2 * s])
  if spent + holding >= limit or spent + holding + amount > limit then
    return {s, spent, holding}
  end
end
for s = 1, n do
  local budget, held = KEYS[2 * s - 1], KEYS[2 * s]
  redis.call('ZADD', held, string.format('%d', now + ttl), member)
  redis.call('HINCRBY', budget, 'held', string.format('%d', amount))
  local at = tonumber(ARGV[3 + 2 * s])
  if at > 0 then
    redis.call('EXPIREAT', budget, at)
    redis.call('EXPIREAT', held, at)
  end
end
return {0, 0, 0}
"#;

/// Drops a reservation and adds the real cost to this instance's figure, on each scope where
/// the reservation still stood (where it expired, the next floor brings the cost). KEYS: per
/// scope the reservation's hash and set, and the hash of the period the cost is booked in.
/// ARGV: member, amount, cost, `@instance`, then per scope when the booking hash expires.
const SETTLE: &str = r#"
local member, amount, cost, field = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local settled = 0
for s = 1, #KEYS / 3 do
  local budget, held, book = KEYS[3 * s - 2], KEYS[3 * s - 1], KEYS[3 * s]
  if redis.call('ZREM', held, member) == 1 then
    redis.call('HINCRBY', budget, 'held', '-' .. amount)
    if cost > 0 then
      redis.call('HINCRBY', book, field, ARGV[3])
      local at = tonumber(ARGV[4 + s])
      if at > 0 then redis.call('EXPIREAT', book, at) end
    end
    settled = settled + 1
  end
end
return settled
"#;

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

fn reserve_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(RESERVE))
}

fn settle_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(SETTLE))
}

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
    fn budget_key(&self) -> String {
        budget_key(&self.scope, self.period)
    }

    fn held_key(&self) -> String {
        format!("ferrolite:held{SEP}{}{SEP}{}", self.scope, self.period)
    }

    /// When its keys expire (Unix s; 0 for never).
    fn expire_at(&self) -> u64 {
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

/// A reservation Redis holds.
#[derive(Debug)]
pub struct SharedHold {
    member: String,
    amount: u64,
    scopes: Vec<ScopePeriod>,
}

impl SharedHold {
    /// The period of each of its scopes.
    pub fn periods(&self) -> Vec<u64> {
        self.scopes.iter().map(|s| s.period).collect()
    }
}

/// Redis's answer to a reservation.
#[derive(Debug)]
pub enum Reserved {
    Held(SharedHold),
    /// It does not fit the budget at `position` (of those asked), which has `spent` and
    /// `held` micro-dollars.
    Refused {
        position: usize,
        spent: u64,
        held: u64,
    },
}

/// One instance's floor of one scope's figure (see the module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    pub at: ScopePeriod,
    pub micros: u64,
}

impl Cluster {
    /// Reserves `amount` micro-dollars against every budget of `limits` for `ttl`, or refuses
    /// naming the one it does not fit. Bounded by [`RESERVE_TIMEOUT`]; a failure marks the
    /// shared state unhealthy, so the requests after it do not wait on Redis too.
    pub async fn reserve(&self, limits: &[Limit], amount: u64, ttl: Duration) -> Result<Reserved, ClusterError> {
        let member = format!("{}{SEP}{:016x}{SEP}{amount}", self.instance, rand::random::<u64>());
        let script = reserve_script();
        let mut call = script.prepare_invoke();
        for l in limits {
            call.key(l.at.budget_key()).key(l.at.held_key());
        }
        call.arg(ttl.as_millis() as u64).arg(&member).arg(amount);
        for l in limits {
            call.arg(l.limit).arg(l.at.expire_at());
        }
        let mut conn = self.conn.clone();
        let answer = match tokio::time::timeout(RESERVE_TIMEOUT, call.invoke_async::<(u64, u64, u64)>(&mut conn)).await
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(self.failed(e.into())),
            Err(_) => return Err(self.failed(ClusterError::Timeout(RESERVE_TIMEOUT))),
        };
        Ok(match answer {
            (0, _, _) => {
                Reserved::Held(SharedHold { member, amount, scopes: limits.iter().map(|l| l.at.clone()).collect() })
            }
            (s, spent, held) => Reserved::Refused { position: s as usize - 1, spent, held },
        })
    }

    fn failed(&self, e: ClusterError) -> ClusterError {
        self.healthy.store(false, Ordering::Relaxed);
        e
    }

    /// Settles `hold` to `cost` micro-dollars, booked in period `booked[i]` of its scope `i`.
    /// Answers on how many scopes the reservation still stood.
    pub async fn settle(&self, hold: &SharedHold, cost: u64, booked: &[u64]) -> Result<u64, ClusterError> {
        let script = settle_script();
        let mut call = script.prepare_invoke();
        for (at, &period) in hold.scopes.iter().zip(booked) {
            call.key(at.budget_key()).key(at.held_key()).key(budget_key(&at.scope, period));
        }
        call.arg(&hold.member).arg(hold.amount).arg(cost).arg(format!("@{}", self.instance));
        for (at, &period) in hold.scopes.iter().zip(booked) {
            call.arg(expire_at(period, at.length));
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(TIMEOUT, call.invoke_async::<u64>(&mut conn)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(ClusterError::Timeout(TIMEOUT)),
        }
    }
}

/// Adds the floors of `floors` to an exchange's pipeline (the script is sent whole: Redis
/// caches it, and the pipeline stays one round trip).
pub(super) fn add_floors(pipe: &mut redis::Pipeline, floors: &[Floor], instance: &str) {
    if floors.is_empty() {
        return;
    }
    let cmd = pipe.cmd("EVAL").arg(FLOOR).arg(floors.len());
    for f in floors {
        cmd.arg(f.at.budget_key());
    }
    cmd.arg(format!("@{instance}"));
    for f in floors {
        cmd.arg(f.micros).arg(f.at.expire_at());
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
