//! This instance's share of the cluster's figures: every 200 ms it sends each running
//! session's own spend, in-flight count, this minute's requests and tokens and its own
//! cooldowns, and takes up what the other instances sent (`cluster/figures.rs` says how they
//! are kept), and floors its figures in the shared budgets (`cluster/budgets.rs`). The request
//! path only ever reads the figures taken up here.

use super::{Registry, APP_SCOPE};
use crate::clock::now_ms;
use crate::cluster::{Cluster, ClusterError, Floor, LoadFigure, Others, Outgoing, ScopePeriod, SpendFigure};
use crate::router::reservation::{app_scope, deployment_scope};
use crate::router::spend::Ledger;
use crate::router::table::Table;
use std::collections::HashMap;

/// The exchange rounds of one instance.
#[derive(Default)]
pub struct Exchange {
    /// Per (workspace, app): spend fields of periods that are over, deleted next round.
    forget: HashMap<(String, String), Vec<String>>,
}

impl Exchange {
    /// One round: send this instance's figures of every running session, take up the others'.
    /// `unowned`: this instance's floors of the budgets that belong to no session (API keys,
    /// users, workspaces).
    pub async fn round(
        &mut self,
        registry: &Registry,
        cluster: &Cluster,
        unowned: &[Floor],
    ) -> Result<(), ClusterError> {
        let sessions = registry.all();
        let outgoing: Vec<Outgoing> = sessions
            .iter()
            .map(|s| {
                let forget = self.forget.remove(&(s.workspace.clone(), s.app_id.clone())).unwrap_or_default();
                Outgoing {
                    workspace: s.workspace.clone(),
                    app_id: s.app_id.clone(),
                    session_id: s.id.clone(),
                    spend: own_spend(&s.table),
                    forget,
                    load: own_load(&s.table),
                    floors: floors(&s.table),
                }
            })
            .collect();
        let answers = cluster.exchange(&outgoing, unowned).await?;
        for (session, others) in sessions.iter().zip(answers) {
            take_up(&session.table, &others);
            let over = others.over(|scope| ledger(&session.table, scope).map(|l| l.period_now()));
            if !over.is_empty() {
                self.forget.insert((session.workspace.clone(), session.app_id.clone()), over);
            }
        }
        Ok(())
    }
}

/// The app's ledger and each deployment's, with their scopes in the store (`app`, or the id).
pub(super) fn ledgers(table: &Table) -> impl Iterator<Item = (&str, &Ledger)> {
    std::iter::once((APP_SCOPE, &table.app_spend))
        .chain(table.deployments.iter().map(|d| d.id.as_str()).zip(&table.deployment_spend))
}

fn ledger<'a>(table: &'a Table, scope: &str) -> Option<&'a Ledger> {
    ledgers(table).find(|(s, _)| *s == scope).map(|(_, l)| l)
}

/// This instance's spend of the app and of each deployment (nothing spent: nothing sent).
fn own_spend(table: &Table) -> Vec<SpendFigure> {
    ledgers(table)
        .filter_map(|(scope, ledger)| {
            let (period, micros) = ledger.own();
            (micros > 0).then(|| SpendFigure { scope: scope.to_owned(), period, micros })
        })
        .collect()
}

/// This instance's floors of the app's and deployments' budgets (nothing spent: nothing sent).
fn floors(table: &Table) -> Vec<Floor> {
    let floor = |scope: String, ledger: &Ledger| {
        let (period, micros) = ledger.own();
        (micros > 0).then(|| Floor { at: ScopePeriod { scope, period, length: ledger.period_secs() }, micros })
    };
    let app = table.app_budget.and_then(|_| floor(app_scope(table), &table.app_spend));
    let deployments = table
        .deployment_budgets
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_some())
        .filter_map(|(i, _)| floor(deployment_scope(table, i), &table.deployment_spend[i]));
    app.into_iter().chain(deployments).collect()
}

/// This instance's load of each deployment.
fn own_load(table: &Table) -> Vec<(usize, LoadFigure)> {
    table.stats.iter().enumerate().map(|(i, stats)| (i, stats.own_figures())).collect()
}

/// Records the others' figures where routing and budgets read them.
fn take_up(table: &Table, others: &Others) {
    for (scope, ledger) in ledgers(table) {
        let period = ledger.period_now();
        ledger.set_others(period, others.spend(scope, period));
    }
    let now = now_ms();
    for (i, stats) in table.stats.iter().enumerate() {
        let load = others.load(i);
        stats.set_others(load.in_flight, load.minute, load.requests, load.tokens);
        if load.cooldown_until_ms > now {
            stats.adopt_cooldown(load.cooldown_until_ms);
        }
    }
}
