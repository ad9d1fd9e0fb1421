//! Budget headroom leased per instance, so a budgeted request does not wait on Redis.
//!
//! Per budget scope and period an instance holds one *lease* in Redis: a hold (a member of the
//! scope's `held` set, like any reservation, expiring unless renewed) covering its requests in
//! flight plus some headroom. Requests reserve against the lease on this instance, with no
//! round trip; a settle books the real cost here. Redis sees the lease, not the requests, so
//! what it sums (every instance's spend plus every hold) never counts less than what is spent
//! or may still be: no budget is overspent across instances.
//!
//! Only a request the lease has no room for goes to Redis: one script folds this instance's
//! settled cost into its spend figure, keeps what its requests in flight hold, and grants the
//! request plus headroom if all of it fits under every budget at once, else refuses naming
//! the budget. The headroom is an eighth of what is left, in whole requests of this one's
//! size: large when the budget is far from spent (a busy instance asks again rarely: at 50,000
//! requests a second, a room of 64 requests meant a round trip, and a turn waited for, every
//! millisecond), down to exactly the request as it nears its end, so the last dollars go one
//! request at a time to whichever instance asks.
//! Every 200 ms each instance folds in its settled cost, renews its leases, and gives back the
//! headroom of those that served nothing since the last round; what an instance leases and
//! does not use is therefore kept from the others for at most a round or two.
//!
//! A dead instance's lease expires like any reservation; the cost it settled since its last
//! round (at most 200 ms of traffic) is then counted by nobody until its data comes back
//! (restart, or a shared store's figures).

use super::budgets::{Limit, ScopePeriod};
use super::{Cluster, ClusterError, SEP};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per scope, with `AT` (ARGV[2 + AT * (s - 1) + i]): its old member or '', the new member's
/// prefix, the settled cost to fold in, what the new lease keeps without a check, the
/// request's need (checked when ARGV[2] is '1': it fits if something is left and it fits in
/// that; a free request is granted nothing, it holds nothing), the limit, when its keys expire (Unix s, 0
/// for never), and the lease's ttl in ms. ARGV[1] is this instance's spend field. KEYS: per
/// scope its hash and its set. Answers `{refused scope or 0, its spent, its held, grant...}`.
const LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local field, check = ARGV[1], ARGV[2] == '1'
local n = #KEYS / 2
local function arg(s, i) return ARGV[2 + 8 * (s - 1) + i] end
local had, base, free = {}, {}, {}
local refused = {0, 0, 0}
for s = 1, n do
  local budget, held = KEYS[2 * s - 1], KEYS[2 * s]
  local gone = redis.call('ZRANGEBYSCORE', held, '-inf', now)
  if #gone > 0 then
    local freed = 0
    for _, m in ipairs(gone) do freed = freed + tonumber(string.match(m, '(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
    redis.call('HINCRBY', budget, 'held', string.format('%d', -freed))
  end
  local old = arg(s, 1)
  had[s] = false
  if old ~= '' and redis.call('ZSCORE', held, old) then had[s] = tonumber(string.match(old, '(%d+)$')) end
  local spent, holding = tonumber(arg(s, 3)), tonumber(arg(s, 4)) - (had[s] or 0)
  local all = redis.call('HGETALL', budget)
  for i = 1, #all, 2 do
    if all[i] == 'held' then holding = holding + tonumber(all[i + 1]) else spent = spent + tonumber(all[i + 1]) end
  end
  base[s] = spent + holding
  if check and refused[1] == 0 then
    local need, limit = tonumber(arg(s, 5)), tonumber(arg(s, 6))
    free[s] = limit - base[s]
    if base[s] >= limit or base[s] + need > limit then refused = {s, spent, holding} end
  end
end
local answer = {refused[1], refused[2], refused[3]}
for s = 1, n do
  local budget, held = KEYS[2 * s - 1], KEYS[2 * s]
  local consumed, grant = tonumber(arg(s, 3)), tonumber(arg(s, 4))
  if consumed > 0 then redis.call('HINCRBY', budget, field, arg(s, 3)) end
  if had[s] then
    redis.call('ZREM', held, arg(s, 1))
    redis.call('HINCRBY', budget, 'held', string.format('%d', -had[s]))
  end
  if check and refused[1] == 0 then
    local need = tonumber(arg(s, 5))
    if need > 0 then
      local k = math.floor(free[s] / need / 8)
      grant = grant + need * math.max(k, 1)
    end
  end
  if grant > 0 then
    redis.call('ZADD', held, string.format('%d', now + tonumber(arg(s, 8))), arg(s, 2) .. string.format('%d', grant))
    redis.call('HINCRBY', budget, 'held', string.format('%d', grant))
  end
  local at = tonumber(arg(s, 7))
  if at > 0 then
    redis.call('EXPIREAT', budget, at)
    redis.call('EXPIREAT', held, at)
  end
  answer[3 + s] = grant
end
return answer
"#;

fn lease_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(LEASE))
}

/// This instance's leases, and the turn an exchange with Redis takes.
#[derive(Default)]
pub(super) struct Leases {
    map: Mutex<HashMap<(String, u64), Arc<Lease>>>,
    /// One exchange at a time: requests that missed wait here, then find the room the one
    /// before them was granted.
    turn: tokio::sync::Mutex<()>,
}

/// One scope period's lease.
#[derive(Debug)]
pub struct Lease {
    at: ScopePeriod,
    state: Mutex<LeaseState>,
}

#[derive(Debug, Default)]
struct LeaseState {
    /// What Redis holds for this lease (as of the last exchange), in micro-dollars.
    granted: u64,
    /// Settled cost not yet folded into this instance's spend figure in Redis.
    consumed: u64,
    /// Reserved by requests in flight.
    outstanding: u64,
    /// The lease's member in the scope's set.
    member: Option<String>,
    /// Whether a request reserved since the last round.
    used: bool,
    /// How long the lease lives unrenewed (the latest request's reservation ttl).
    ttl: Duration,
    /// Taken out of the map: a request that finds it retired looks again.
    retired: bool,
}

impl LeaseState {
    /// Reserves `need` if the lease has room: as a budget does, a full lease takes nothing
    /// more, not even a free request.
    fn admit(&mut self, need: u64) -> bool {
        let total = self.consumed.saturating_add(self.outstanding);
        let fits = total < self.granted && total.saturating_add(need) <= self.granted;
        if fits {
            self.outstanding += need;
            self.used = true;
        }
        fits
    }
}

impl Lease {
    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reserves `need` on every lease or on none. `None`: a lease was retired, look again.
fn admit_all(leases: &[Arc<Lease>], need: u64) -> Option<bool> {
    for (i, lease) in leases.iter().enumerate() {
        let mut state = lease.lock();
        if state.retired || !state.admit(need) {
            let retired = state.retired;
            drop(state);
            for taken in &leases[..i] {
                let mut s = taken.lock();
                s.outstanding = s.outstanding.saturating_sub(need);
            }
            return if retired { None } else { Some(false) };
        }
    }
    Some(true)
}

/// What one exchange sends for one lease, and what it took from the lease's state.
struct Sent {
    lease: Arc<Lease>,
    consumed: u64,
    keep: u64,
    member: String,
}

/// A reservation on this instance's leases: settled with [`LeaseHold::settle`], given back
/// when dropped.
#[derive(Debug)]
pub struct LeaseHold {
    leases: Vec<Arc<Lease>>,
    amount: u64,
}

impl LeaseHold {
    /// Books the real `cost` (micro-dollars): folded into this instance's spend in Redis by
    /// the next exchange. Call it before the ledgers book the cost, so a floor sent meanwhile
    /// never counts it twice (see [`Cluster::unfolded`]).
    pub fn settle(mut self, cost: u64) {
        for lease in std::mem::take(&mut self.leases) {
            let mut s = lease.lock();
            s.outstanding = s.outstanding.saturating_sub(self.amount);
            s.consumed = s.consumed.saturating_add(cost);
        }
    }
}

impl Drop for LeaseHold {
    fn drop(&mut self) {
        for lease in &self.leases {
            let mut s = lease.lock();
            s.outstanding = s.outstanding.saturating_sub(self.amount);
        }
    }
}

/// Redis's answer to a reservation.
#[derive(Debug)]
pub enum Reserved {
    Held(LeaseHold),
    /// It does not fit the budget at `position` (of those asked), which has `spent` and
    /// `held` micro-dollars.
    Refused {
        position: usize,
        spent: u64,
        held: u64,
    },
}

/// How long a request may wait for its turn and Redis's answer: past it the request goes on
/// with this instance's own books, and the next ones do too until the figures flow again.
const RESERVE_TIMEOUT: Duration = Duration::from_millis(500);

impl Cluster {
    fn lease(&self, at: &ScopePeriod) -> Arc<Lease> {
        let mut map = self.leases.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (at.scope.clone(), at.period);
        map.entry(key).or_insert_with(|| Arc::new(Lease { at: at.clone(), state: Mutex::default() })).clone()
    }

    fn leases_of(&self, limits: &[Limit]) -> Vec<Arc<Lease>> {
        limits.iter().map(|l| self.lease(&l.at)).collect()
    }

    /// Reserves `amount` micro-dollars against every budget of `limits` (held at least `ttl`),
    /// on this instance's leases when they have room, else through Redis; or refuses naming
    /// the budget it does not fit. A failure marks the shared state unhealthy, so the requests
    /// after it do not wait on Redis too.
    pub async fn reserve(
        self: &Arc<Self>,
        limits: &[Limit],
        amount: u64,
        ttl: Duration,
    ) -> Result<Reserved, ClusterError> {
        if let Some(hold) = self.admit(limits, amount) {
            return Ok(Reserved::Held(hold));
        }
        // The exchange runs to its end even when this request stops waiting for it, so the
        // leases always know what Redis holds for them.
        let (cluster, limits) = (self.clone(), limits.to_vec());
        let exchange = tokio::spawn(async move { cluster.extend(&limits, amount, ttl).await });
        match tokio::time::timeout(RESERVE_TIMEOUT, exchange).await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(e))) => Err(self.failed(e)),
            Ok(Err(_)) | Err(_) => Err(self.failed(ClusterError::Timeout(RESERVE_TIMEOUT))),
        }
    }

    fn failed(&self, e: ClusterError) -> ClusterError {
        self.healthy.store(false, std::sync::atomic::Ordering::Relaxed);
        e
    }

    /// Reserves `amount` on the leases of `limits` if they all have room.
    fn admit(&self, limits: &[Limit], amount: u64) -> Option<LeaseHold> {
        loop {
            let leases = self.leases_of(limits);
            match admit_all(&leases, amount) {
                Some(true) => return Some(LeaseHold { leases, amount }),
                Some(false) => return None,
                None => continue,
            }
        }
    }

    /// Asks Redis for room on the leases of `limits` (in its turn, unless the exchange before
    /// found some).
    async fn extend(&self, limits: &[Limit], amount: u64, ttl: Duration) -> Result<Reserved, ClusterError> {
        let _turn = self.leases.turn.lock().await;
        if let Some(hold) = self.admit(limits, amount) {
            return Ok(Reserved::Held(hold));
        }
        let leases = self.leases_of(limits);
        // Unused room is given up for the exchange: only what requests in flight hold is kept,
        // so nothing reserved meanwhile goes uncovered, and the room asked for is all new.
        let sent: Vec<Sent> = leases
            .iter()
            .map(|lease| {
                let mut s = lease.lock();
                s.ttl = s.ttl.max(ttl);
                s.granted = s.consumed.saturating_add(s.outstanding);
                Sent { lease: lease.clone(), consumed: s.consumed, keep: s.outstanding, member: member(self) }
            })
            .collect();
        let checks: Vec<(u64, u64)> = limits.iter().map(|l| (amount, l.limit)).collect();
        let answer = self.run_lease(&sent, Some(&checks)).await?;
        let (refused, spent, held, grants) = answer;
        apply(&sent, &grants);
        if refused > 0 {
            return Ok(Reserved::Refused { position: refused - 1, spent, held });
        }
        if amount == 0 {
            // A free request holds nothing: it only had to find room left.
            return Ok(Reserved::Held(LeaseHold { leases, amount }));
        }
        // Nothing retires a lease while this exchange holds the turn.
        match admit_all(&leases, amount) {
            Some(true) => Ok(Reserved::Held(LeaseHold { leases, amount })),
            // Cannot happen: the grant covers what is kept plus this request, and nothing else
            // reserved in between. Said as a refusal of the first budget rather than assumed.
            _ => Ok(Reserved::Refused { position: 0, spent, held }),
        }
    }

    /// One round of upkeep (every 200 ms, in the figures' turn): folds every lease's settled
    /// cost into this instance's spend, renews the leases, gives back the room of those no
    /// request used since the last round, and forgets the empty ones.
    pub async fn tend_leases(&self) -> Result<(), ClusterError> {
        let _turn = self.leases.turn.lock().await;
        let all: Vec<Arc<Lease>> = {
            let mut map = self.leases.map.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, lease| {
                let mut s = lease.lock();
                let empty = s.granted == 0 && s.consumed == 0 && s.outstanding == 0 && s.member.is_none();
                s.retired = empty;
                !empty
            });
            map.values().cloned().collect()
        };
        if all.is_empty() {
            return Ok(());
        }
        let sent: Vec<Sent> = all
            .iter()
            .map(|lease| {
                let mut s = lease.lock();
                let keep = if std::mem::take(&mut s.used) {
                    s.outstanding.max(s.granted.saturating_sub(s.consumed))
                } else {
                    s.granted = s.consumed.saturating_add(s.outstanding);
                    s.outstanding
                };
                Sent { lease: lease.clone(), consumed: s.consumed, keep, member: member(self) }
            })
            .collect();
        let (_, _, _, grants) = self.run_lease(&sent, None).await?;
        apply(&sent, &grants);
        Ok(())
    }

    /// Runs the lease script for `sent`, checking `checks` (need, limit) per lease if given.
    async fn run_lease(
        &self,
        sent: &[Sent],
        checks: Option<&[(u64, u64)]>,
    ) -> Result<(usize, u64, u64, Vec<u64>), ClusterError> {
        let mut call = lease_script().prepare_invoke();
        call.arg(format!("@{}", self.instance)).arg(if checks.is_some() { "1" } else { "0" });
        for (i, s) in sent.iter().enumerate() {
            let at = &s.lease.at;
            let (old, ttl) = {
                let state = s.lease.lock();
                (state.member.clone().unwrap_or_default(), state.ttl)
            };
            let (need, limit) = checks.and_then(|c| c.get(i).copied()).unwrap_or((0, 0));
            call.key(at.budget_key()).key(at.held_key());
            call.arg(old).arg(&s.member).arg(s.consumed).arg(s.keep).arg(need).arg(limit);
            call.arg(at.expire_at()).arg(ttl.as_millis() as u64);
        }
        let mut conn = self.conn.clone();
        let answer: Vec<i64> = tokio::time::timeout(super::TIMEOUT, call.invoke_async(&mut conn))
            .await
            .map_err(|_| ClusterError::Timeout(super::TIMEOUT))??;
        let number = |i: usize| answer.get(i).map_or(0, |&v| v.max(0) as u64);
        let grants = (0..sent.len()).map(|i| number(3 + i)).collect();
        Ok((number(0) as usize, number(1), number(2), grants))
    }

    /// Settled cost of `at` this instance has not folded into its spend in Redis yet: a floor
    /// sent now leaves it out, since the lease that covers it is still held there.
    pub(super) fn unfolded(&self, at: &ScopePeriod) -> u64 {
        let map = self.leases.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(at.scope.clone(), at.period)).map_or(0, |l| l.lock().consumed)
    }
}

/// A fresh member prefix for a lease: this instance, a random part, then the amount.
fn member(cluster: &Cluster) -> String {
    format!("{}{SEP}{:016x}{SEP}", cluster.instance, rand::random::<u64>())
}

/// Takes up Redis's grants: the folded cost leaves `consumed`, the lease is what was granted.
fn apply(sent: &[Sent], grants: &[u64]) {
    for (s, &grant) in sent.iter().zip(grants) {
        let mut state = s.lease.lock();
        state.consumed = state.consumed.saturating_sub(s.consumed);
        state.granted = grant;
        state.member = (grant > 0).then(|| format!("{}{grant}", s.member));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_admits_what_fits_and_a_full_one_not_even_a_free_request() {
        let mut s = LeaseState { granted: 3, ..LeaseState::default() };
        assert!(s.admit(2));
        assert!(!s.admit(2), "one micro-dollar is left");
        assert!(s.admit(1));
        assert!(!s.admit(0), "a full lease takes nothing more");
        s.outstanding -= 2;
        s.consumed += 2;
        assert!(!s.admit(1), "settled cost still counts until it is folded in");
    }

    #[test]
    fn several_leases_are_reserved_together_or_not_at_all() {
        let lease = |granted| {
            let at = ScopePeriod { scope: "s".into(), period: 0, length: None };
            Arc::new(Lease { at, state: Mutex::new(LeaseState { granted, ..LeaseState::default() }) })
        };
        let (roomy, tight) = (lease(10), lease(1));
        assert_eq!(admit_all(&[roomy.clone(), tight.clone()], 2), Some(false));
        assert_eq!(roomy.lock().outstanding, 0, "the first lease's share is given back");
        assert_eq!(admit_all(&[roomy.clone(), tight.clone()], 1), Some(true));
        assert_eq!((roomy.lock().outstanding, tight.lock().outstanding), (1, 1));
        tight.lock().retired = true;
        assert_eq!(admit_all(&[roomy.clone(), tight], 1), None, "a retired lease sends the caller to look again");
        assert_eq!(roomy.lock().outstanding, 1);
    }
}
