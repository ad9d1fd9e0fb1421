//! Spend, load and cooldowns across instances. Each instance writes its own figures (absolute
//! values, under its own id) and reads everyone's, every 200 ms, in one pipelined round trip:
//!
//! - spend: hash `ferrolite:spend<US>workspace<US>app`, field `scope<US>period<US>instance`,
//!   value micro-dollars. Writing a total again changes nothing, so a retried or repeated write
//!   never counts twice, and after Redis restarts empty every instance simply writes its totals
//!   again. Kept with no expiry: money spent stays spent.
//! - load: hash `ferrolite:load<US>workspace<US>session`, field `deployment<US>instance`, value
//!   `in_flight minute requests tokens cooldown_until_ms written_ms`. A figure not rewritten for
//!   [`FRESH_MS`] is ignored, so a killed instance's in-flight requests do not linger; the hash
//!   expires a minute after the last write.
//! - budgets: this instance's floors of the budgets it holds reservations on (`budgets.rs`).
//!
//! With a shared store (PostgreSQL), an emptied Redis also gets back the figures of instances
//! that are gone, from their stored spend ([`Cluster::put_back`]).

use super::{Cluster, ClusterError, SEP};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long the whole exchange may take before this round is given up.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(1);
/// Load figures older than this are another instance's that stopped writing.
pub const FRESH_MS: u64 = 5_000;
const LOAD_EXPIRY_SECS: u64 = 60;

/// One instance's spend of one scope (the app, or a deployment id) in one budget period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendFigure {
    pub scope: String,
    pub period: u64,
    pub micros: u64,
}

/// One instance's figures for one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadFigure {
    pub in_flight: u64,
    /// The wall-clock minute `requests` and `tokens` count.
    pub minute: u64,
    pub requests: u64,
    pub tokens: u64,
    /// Until when this instance skips the deployment (unix ms; 0 for none).
    pub cooldown_until_ms: u64,
}

/// What this instance sends for one running session.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub workspace: String,
    pub app_id: String,
    pub session_id: String,
    pub spend: Vec<SpendFigure>,
    /// Spend fields (of any instance) of periods that are over, to delete.
    pub forget: Vec<String>,
    /// (deployment index, figure).
    pub load: Vec<(usize, LoadFigure)>,
    /// This instance's floors of the session's budgets.
    pub floors: Vec<super::Floor>,
}

/// What the other instances' figures add up to, for one session.
#[derive(Debug, Default)]
pub struct Others {
    /// (field, figure, whether it is this instance's).
    spend: Vec<(String, SpendFigure, bool)>,
    /// Deployment index -> the others' figures summed (cooldown: the latest).
    load: HashMap<usize, LoadFigure>,
}

impl Others {
    /// The others' spend of `scope` in `period`, in micro-dollars.
    pub fn spend(&self, scope: &str, period: u64) -> u64 {
        self.spend
            .iter()
            .filter(|(_, f, mine)| !mine && f.scope == scope && f.period == period)
            .map(|(_, f, _)| f.micros)
            .sum()
    }

    /// Fields of periods before the current one of their scope (`current` says which that is,
    /// `None` for a scope the session does not know).
    pub fn over(&self, current: impl Fn(&str) -> Option<u64>) -> Vec<String> {
        self.spend
            .iter()
            .filter(|(_, f, _)| current(&f.scope).is_some_and(|now| f.period < now))
            .map(|(field, _, _)| field.clone())
            .collect()
    }

    /// The others' load of deployment `index`.
    pub fn load(&self, index: usize) -> LoadFigure {
        self.load.get(&index).copied().unwrap_or_default()
    }
}

fn spend_key(workspace: &str, app_id: &str) -> String {
    format!("ferrolite:spend{SEP}{workspace}{SEP}{app_id}")
}

fn load_key(workspace: &str, session_id: &str) -> String {
    format!("ferrolite:load{SEP}{workspace}{SEP}{session_id}")
}

fn spend_field(figure: &SpendFigure, instance: &str) -> String {
    format!("{}{SEP}{}{SEP}{instance}", figure.scope, figure.period)
}

/// `scope<US>period<US>instance`, read from the right (the period and the id hold no separator).
fn parse_spend(field: &str, value: &str) -> Option<(SpendFigure, String)> {
    let mut parts = field.rsplitn(3, SEP);
    let instance = parts.next()?.to_owned();
    let period = parts.next()?.parse().ok()?;
    let scope = parts.next()?.to_owned();
    Some((SpendFigure { scope, period, micros: value.parse().ok()? }, instance))
}

fn load_value(f: &LoadFigure, written_ms: u64) -> String {
    format!("{} {} {} {} {} {written_ms}", f.in_flight, f.minute, f.requests, f.tokens, f.cooldown_until_ms)
}

/// A load field and value: (deployment, instance, figure, written_ms).
fn parse_load(field: &str, value: &str) -> Option<(usize, String, LoadFigure, u64)> {
    let (deployment, instance) = field.split_once(SEP)?;
    let n: Vec<u64> = value.split(' ').map(str::parse).collect::<Result<_, _>>().ok()?;
    let [in_flight, minute, requests, tokens, cooldown_until_ms, written_ms] = n[..] else { return None };
    let figure = LoadFigure { in_flight, minute, requests, tokens, cooldown_until_ms };
    Some((deployment.parse().ok()?, instance.to_owned(), figure, written_ms))
}

/// Sums the others' fresh load figures per deployment.
fn others_load(all: HashMap<String, String>, me: &str, now_ms: u64) -> HashMap<usize, LoadFigure> {
    let minute = now_ms / 60_000;
    let mut out: HashMap<usize, LoadFigure> = HashMap::new();
    for (field, value) in all {
        let Some((deployment, instance, f, written)) = parse_load(&field, &value) else { continue };
        if instance == me || now_ms.saturating_sub(written) > FRESH_MS {
            continue;
        }
        let sum = out.entry(deployment).or_default();
        sum.in_flight += f.in_flight;
        if f.minute == minute {
            sum.minute = minute;
            sum.requests += f.requests;
            sum.tokens += f.tokens;
        }
        sum.cooldown_until_ms = sum.cooldown_until_ms.max(f.cooldown_until_ms);
    }
    out
}

/// Another instance's figures, put back from a shared store after Redis was emptied: an
/// instance that is gone cannot put back its own.
#[derive(Debug, Default)]
pub struct StoredFigures {
    pub instance: String,
    /// Its floors of the budgets.
    pub floors: Vec<super::Floor>,
    /// Its spend of apps: (workspace, app id, figure).
    pub spend: Vec<(String, String, SpendFigure)>,
}

impl Cluster {
    /// Puts back other instances' figures in one round trip: floors (a maximum, so what a
    /// running instance wrote since stays) and spend where the instance has none yet (a running
    /// one writes its own every round).
    pub fn put_back(&self, stored: &[StoredFigures]) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        for s in stored {
            super::budgets::add_floors(&mut pipe, &s.floors, &s.instance, |_| 0);
            for (workspace, app_id, f) in &s.spend {
                let field = spend_field(f, &s.instance);
                pipe.cmd("HSETNX").arg(spend_key(workspace, app_id)).arg(field).arg(f.micros).ignore();
            }
        }
        self.run_pipe(&pipe)
    }

    /// Writes this instance's figures and reads everyone's, one round trip for all sessions.
    /// The answer lines up with `outgoing`. Bounded by [`EXCHANGE_TIMEOUT`]; the outcome is
    /// what [`Cluster::healthy`] reports.
    pub async fn exchange(&self, outgoing: &[Outgoing], floors: &[super::Floor]) -> Result<Vec<Others>, ClusterError> {
        let now_ms = crate::clock::now_ms();
        let mut pipe = redis::pipe();
        // Floors of budgets that belong to no session (API keys, users, workspaces).
        super::budgets::add_floors(&mut pipe, floors, &self.instance, |at| self.unfolded(at));
        for o in outgoing {
            let spend = spend_key(&o.workspace, &o.app_id);
            if !o.spend.is_empty() {
                let cmd = pipe.cmd("HSET").arg(&spend);
                for f in &o.spend {
                    cmd.arg(spend_field(f, &self.instance)).arg(f.micros);
                }
                cmd.ignore();
            }
            super::budgets::add_floors(&mut pipe, &o.floors, &self.instance, |at| self.unfolded(at));
            if !o.forget.is_empty() {
                pipe.cmd("HDEL").arg(&spend).arg(&o.forget).ignore();
            }
            let load = load_key(&o.workspace, &o.session_id);
            if !o.load.is_empty() {
                let cmd = pipe.cmd("HSET").arg(&load);
                for (i, f) in &o.load {
                    cmd.arg(format!("{i}{SEP}{}", self.instance)).arg(load_value(f, now_ms));
                }
                cmd.ignore();
                pipe.cmd("EXPIRE").arg(&load).arg(LOAD_EXPIRY_SECS).ignore();
            }
            pipe.cmd("HGETALL").arg(&spend).cmd("HGETALL").arg(&load);
        }
        let mut conn = self.conn.clone();
        let answer =
            tokio::time::timeout(EXCHANGE_TIMEOUT, pipe.query_async::<Vec<HashMap<String, String>>>(&mut conn))
                .await
                .map_err(|_| ClusterError::Timeout(EXCHANGE_TIMEOUT))
                .and_then(|r| r.map_err(ClusterError::from));
        self.healthy.store(answer.is_ok(), Ordering::Relaxed);
        let mut hashes = answer?.into_iter();
        let mut out = Vec::with_capacity(outgoing.len());
        while let (Some(spend), Some(load)) = (hashes.next(), hashes.next()) {
            let spend = spend
                .into_iter()
                .filter_map(|(field, value)| {
                    let (figure, instance) = parse_spend(&field, &value)?;
                    let mine = instance == self.instance;
                    Some((field, figure, mine))
                })
                .collect();
            out.push(Others { spend, load: others_load(load, &self.instance, now_ms) });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_fields_read_back_from_the_right() {
        let f = SpendFigure { scope: "odd\u{1f}scope".into(), period: 12, micros: 7 };
        let field = spend_field(&f, "00000000000000ab");
        assert_eq!(parse_spend(&field, "7"), Some((f, "00000000000000ab".into())));
        assert_eq!(parse_spend("app\u{1f}x\u{1f}id", "7"), None, "a period that is not a number");
        assert_eq!(parse_spend("app\u{1f}1\u{1f}id", "-3"), None);
    }

    #[test]
    fn others_load_sums_fresh_figures_of_other_instances() {
        let now = 10 * 60_000 + 30_000;
        let f = |in_flight, minute, cooldown| LoadFigure {
            in_flight,
            minute,
            requests: 2,
            tokens: 50,
            cooldown_until_ms: cooldown,
        };
        let all: HashMap<String, String> = [
            ("0\u{1f}me".to_owned(), load_value(&f(9, 10, 0), now)),
            ("0\u{1f}b".to_owned(), load_value(&f(1, 10, 0), now - 100)),
            ("0\u{1f}c".to_owned(), load_value(&f(2, 9, now + 500), now - 1_000)),
            ("0\u{1f}gone".to_owned(), load_value(&f(40, 10, 0), now - FRESH_MS - 1)),
            ("1\u{1f}b".to_owned(), "garbage".to_owned()),
        ]
        .into();
        let sum = others_load(all, "me", now);
        let zero = sum[&0];
        assert_eq!(
            (zero.in_flight, zero.requests, zero.tokens),
            (3, 2, 50),
            "last minute's counts and stale instances left out"
        );
        assert_eq!(zero.cooldown_until_ms, now + 500);
        assert!(!sum.contains_key(&1));
    }

    #[test]
    fn others_spend_leaves_out_this_instance_and_other_periods() {
        let fig = |scope: &str, period, micros| SpendFigure { scope: scope.into(), period, micros };
        let others = Others {
            spend: vec![
                ("a".into(), fig("app", 5, 100), true),
                ("b".into(), fig("app", 5, 20), false),
                ("c".into(), fig("app", 4, 3), false),
                ("d".into(), fig("d-1", 5, 7), false),
            ],
            load: HashMap::new(),
        };
        assert_eq!(others.spend("app", 5), 20);
        assert_eq!(others.spend("d-1", 5), 7);
        assert_eq!(others.over(|scope| (scope == "app").then_some(5)), vec!["c".to_owned()]);
    }
}
