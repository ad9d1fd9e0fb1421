//! The other instances' spend as a shared store (`--database-url`) keeps it: one row per
//! instance and scope, so instances never overwrite each other's figures and a restarted one
//! takes up its own. Every budget counts the others' rows beside this instance's own: taken up
//! when a session starts and after every flush (without Redis, the only way the others' spend
//! arrives; with it, Redis's figures replace the app's and deployments' every 200 ms), and put
//! back into an emptied Redis, where an instance that is gone cannot put back its own.

use super::budgets::CALLER_APP;
use super::{figures, Controller, ControllerError, APP_SCOPE};
use crate::cluster::{Cluster, Floor, ScopePeriod, SpendFigure, StoredFigures};
use crate::router::reservation::{app_scope_id, deployment_scope_id};
use crate::router::spend::period_index;
use crate::router::table::Table;
use crate::store::InstanceSpend;
use std::collections::HashMap;
use std::time::Duration;

/// (workspace, app id, scope, period) -> the other instances' micro-dollars, summed.
pub(super) type Sums = HashMap<(String, String, String, u64), u64>;

pub(super) fn sums(rows: &[InstanceSpend]) -> Sums {
    let mut sums = Sums::new();
    for r in rows {
        let at = (r.workspace.clone(), r.app_id.clone(), r.scope.clone(), r.period);
        *sums.entry(at).or_default() += r.micros;
    }
    sums
}

/// The caller scopes' sums: (scope id, period, micro-dollars).
pub(super) fn caller_sums(rows: &[InstanceSpend]) -> Vec<(String, u64, u64)> {
    sums(rows)
        .into_iter()
        .filter(|((_, app_id, _, _), _)| app_id == CALLER_APP)
        .map(|((_, _, scope, period), micros)| (scope, period, micros))
        .collect()
}

/// Sets the others' spend of the app's and its deployments' current periods.
pub(super) fn take_up_app(table: &Table, workspace: &str, app_id: &str, sums: &Sums) {
    for (scope, ledger) in figures::ledgers(table) {
        let period = ledger.period_now();
        if let Some(&micros) = sums.get(&(workspace.to_owned(), app_id.to_owned(), scope.to_owned(), period)) {
            ledger.set_others(period, micros);
        }
    }
}

impl Controller {
    /// Takes up the other instances' stored spend (nothing without a shared store): the caller
    /// scopes', and, without Redis, the running apps'.
    pub fn take_up_others_spend(&self) -> Result<(), ControllerError> {
        if !self.store.is_shared() {
            return Ok(());
        }
        let rows = self.store.others_spend()?;
        if self.cluster.is_none() {
            let sums = sums(&rows);
            for session in self.registry.all() {
                take_up_app(&session.table, &session.workspace, &session.app_id, &sums);
            }
        }
        self.budgets.take_up_others(caller_sums(&rows));
        Ok(())
    }

    /// Puts the other instances' stored spend of the current periods back into an emptied
    /// Redis: their floors of every budget scope, and their figures of the apps.
    pub(super) fn put_back_others_spend(&self, cluster: &Cluster) -> Result<(), ControllerError> {
        let now = crate::clock::unix_now();
        let mut by_instance: HashMap<String, StoredFigures> = HashMap::new();
        for r in self.store.others_spend()? {
            if r.period != period_index(r.period_secs.map(Duration::from_secs), now) {
                continue;
            }
            let figures = by_instance
                .entry(r.instance.clone())
                .or_insert_with(|| StoredFigures { instance: r.instance.clone(), ..Default::default() });
            let scope = if r.app_id == CALLER_APP {
                r.scope.clone()
            } else {
                let figure = SpendFigure { scope: r.scope.clone(), period: r.period, micros: r.micros };
                figures.spend.push((r.workspace.clone(), r.app_id.clone(), figure));
                match r.scope.as_str() {
                    APP_SCOPE => app_scope_id(&r.workspace, &r.app_id),
                    deployment => deployment_scope_id(&r.workspace, &r.app_id, deployment),
                }
            };
            let at = ScopePeriod { scope, period: r.period, length: r.period_secs };
            figures.floors.push(Floor { at, micros: r.micros });
        }
        let stored: Vec<StoredFigures> = by_instance.into_values().collect();
        if !stored.is_empty() {
            cluster.put_back(&stored)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(instance: &str, app_id: &str, scope: &str, period: u64, micros: u64) -> InstanceSpend {
        InstanceSpend {
            instance: instance.into(),
            workspace: "w".into(),
            app_id: app_id.into(),
            scope: scope.into(),
            period,
            period_secs: None,
            micros,
        }
    }

    #[test]
    fn the_others_rows_sum_per_scope_and_period_and_caller_scopes_come_apart() {
        let rows = [
            row("a", "app", "app", 0, 5),
            row("b", "app", "app", 0, 7),
            row("b", "app", "app-dep", 0, 1),
            row("a", "", "key\u{1f}w\u{1f}k", 3, 2),
            row("b", "", "key\u{1f}w\u{1f}k", 3, 4),
            row("c", "", "key\u{1f}w\u{1f}k", 2, 100),
        ];
        let sums = sums(&rows);
        assert_eq!(sums[&("w".into(), "app".into(), "app".into(), 0)], 12);
        assert_eq!(sums[&("w".into(), "app".into(), "app-dep".into(), 0)], 1);
        let mut callers = caller_sums(&rows);
        callers.sort();
        assert_eq!(callers, [("key\u{1f}w\u{1f}k".into(), 2, 100), ("key\u{1f}w\u{1f}k".into(), 3, 6)]);
    }
}
