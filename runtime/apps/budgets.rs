//! Budgets beyond an app's and its deployments': per API key (its `max_budget`), per user (all
//! of a user's keys) and per workspace (all of its apps), set with `set_budget`. A request
//! brings the ones that apply as spend scopes: its cost is booked in each, and reserved against
//! each that has a budget in the same step as the app's (`router::reservation`).
//!
//! Their spend is kept like an app's: in memory on the request path, flushed to the store with
//! the apps' (`app_id` empty), floored in Redis with the cluster's figures; with a shared store,
//! the other instances' stored spend counts beside it (`stored_spend.rs`).

use super::{Controller, ControllerError};
use crate::auth::keys::KeyRecord;
use crate::cluster::{Floor, ScopePeriod};
use crate::router::reservation::{push_scope_id, SpendScope};
use crate::router::spend::{parse_duration, Budget, Ledger};
pub use crate::store::BudgetSetting;
use crate::store::SpendRow;
use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The store's `app_id` of a caller scope's spend: none of an app's, which is never empty.
pub const CALLER_APP: &str = "";

/// The budget a setting sets.
fn budget_of(setting: &BudgetSetting) -> Budget {
    Budget { max_usd: setting.max_budget, period: setting.budget_duration.as_deref().and_then(parse_duration) }
}

/// `buf` holding the scope id of `parts`.
fn scope_id_in<'b>(buf: &'b mut String, parts: &[&str]) -> &'b str {
    buf.clear();
    push_scope_id(buf, parts);
    buf
}

/// `buf` holding the settings map's key of `workspace`'s budget for the subject written by
/// `subject` (`["user:", "alice"]` or `["workspace"]`).
fn settings_id_in<'b>(buf: &'b mut String, workspace: &str, subject: &[&str]) -> &'b str {
    buf.clear();
    // The separator after the workspace, then the subject's parts run together.
    push_scope_id(buf, &[workspace, ""]);
    subject.iter().for_each(|part| buf.push_str(part));
    buf
}

/// What a caller scope is called, as its parts: written out only when its ledger is made or
/// renamed, not for every request.
#[derive(Debug, Clone, Copy)]
enum ScopeName<'a> {
    /// `API key key_... (sk-fl-Ab...9z)`
    Key { id: &'a str, hint: &'a str },
    /// `user alice`
    User(&'a str),
    /// `workspace team`
    Workspace(&'a str),
}

impl ScopeName<'_> {
    /// Whether `text` is this name written out.
    fn is(self, text: &str) -> bool {
        match self {
            ScopeName::Key { id, hint } => {
                let rest = text.strip_prefix("API key ").and_then(|t| t.strip_prefix(id));
                rest.and_then(|t| t.strip_prefix(" (")).and_then(|t| t.strip_suffix(')')) == Some(hint)
            }
            ScopeName::User(user) => text.strip_prefix("user ") == Some(user),
            ScopeName::Workspace(workspace) => text.strip_prefix("workspace ") == Some(workspace),
        }
    }
}

impl std::fmt::Display for ScopeName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeName::Key { id, hint } => write!(f, "API key {id} ({hint})"),
            ScopeName::User(user) => write!(f, "user {user}"),
            ScopeName::Workspace(workspace) => write!(f, "workspace {workspace}"),
        }
    }
}

/// One caller scope's ledger and what it is called.
struct Kept {
    /// The scope id the ledger is kept under, shared with every request's [`SpendScope`].
    id: Arc<str>,
    name: Arc<str>,
    ledger: Arc<Ledger>,
    /// The period the ledger counts (a changed `budget_duration` starts a new ledger).
    period: Option<u64>,
    /// The stored figure (period index, micros), taken up by the ledger of the right period.
    stored: Option<(u64, u64)>,
    /// The other instances' stored figures summed (a shared store's), taken up the same way.
    others: Option<(u64, u64)>,
}

impl Kept {
    fn new(
        id: Arc<str>,
        name: &str,
        period: Option<u64>,
        stored: Option<(u64, u64)>,
        others: Option<(u64, u64)>,
    ) -> Kept {
        let ledger = Ledger::new(period.map(std::time::Duration::from_secs));
        if let Some((index, micros)) = stored {
            ledger.restore(index, micros);
        }
        if let Some((index, micros)) = others {
            ledger.set_others(index, micros);
        }
        Kept { id, name: name.into(), ledger: Arc::new(ledger), period, stored, others }
    }
}

/// Every caller scope's ledger on this instance, and the user and workspace budgets.
#[derive(Default)]
pub struct CallerBudgets {
    ledgers: Mutex<HashMap<String, Kept>>,
    /// Settings by `scope_id([workspace, subject])`.
    settings: RwLock<HashMap<String, BudgetSetting>>,
    /// Whether any workspace budget is set: requests without a key skip the lookup otherwise.
    any_workspace: AtomicBool,
}

impl CallerBudgets {
    /// The scope with id `id` and its ledger, made (or renamed, or moved to another period)
    /// as needed. A request finds its scopes without allocating: the id is looked up as given
    /// and the name compared in parts.
    fn scope(&self, id: &str, name: ScopeName<'_>, budget: Option<Budget>) -> SpendScope {
        let period = budget.and_then(|b| b.period).map(|p| p.as_secs());
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        if !ledgers.contains_key(id) {
            ledgers.insert(id.to_owned(), Kept::new(id.into(), &name.to_string(), period, None, None));
        }
        let Some(kept) = ledgers.get_mut(id) else { unreachable!("inserted above") };
        if kept.period != period || !name.is(&kept.name) {
            // What was spent under another period stays with it; a stored figure of this
            // period (a restart's) is taken up.
            let spent = kept.ledger.own();
            let carried = if kept.period == period { Some(spent) } else { kept.stored };
            *kept = Kept::new(kept.id.clone(), &name.to_string(), period, carried, kept.others);
        }
        SpendScope { id: kept.id.clone(), name: kept.name.clone(), budget, ledger: kept.ledger.clone() }
    }

    /// The scopes a request to an app of `workspace` brings: its key's, its user's and the
    /// workspace's (a scope is booked even without a budget, so its spend can be reported).
    pub fn scopes_for(&self, workspace: &str, key: Option<&KeyRecord>) -> Vec<SpendScope> {
        let mut scopes = Vec::new();
        // A workspace token where no workspace has a budget: nothing to look up, nothing to
        // allocate.
        if key.is_none() && !self.any_workspace.load(Ordering::Relaxed) {
            return scopes;
        }
        // One buffer for every id this request looks up, long enough for the usual ids at once
        // (grown a part at a time, it was reallocated several times a request).
        let mut id = String::with_capacity(128);
        if let Some(key) = key {
            let budget = key
                .max_budget
                .map(|max_usd| Budget { max_usd, period: key.budget_duration.as_deref().and_then(parse_duration) });
            let name = ScopeName::Key { id: &key.id, hint: &key.hint };
            scopes.push(self.scope(scope_id_in(&mut id, &["key", &key.workspace, &key.id]), name, budget));
            if let Some(user) = &key.user {
                let budget = self.setting(settings_id_in(&mut id, &key.workspace, &["user:", user]));
                let id = scope_id_in(&mut id, &["user", &key.workspace, user]);
                scopes.push(self.scope(id, ScopeName::User(user), budget));
            }
        }
        let budget = self.setting(settings_id_in(&mut id, workspace, &["workspace"]));
        if key.is_some() || budget.is_some() {
            let id = scope_id_in(&mut id, &["workspace", workspace]);
            scopes.push(self.scope(id, ScopeName::Workspace(workspace), budget));
        }
        scopes
    }

    /// The budget set under `settings_id` (see [`settings_id_in`]), if any.
    fn setting(&self, settings_id: &str) -> Option<Budget> {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).get(settings_id).map(budget_of)
    }

    /// Sets (or, with `None`, clears) a user's or the workspace's budget.
    pub fn set(&self, (workspace, subject): (String, String), setting: Option<BudgetSetting>) {
        let mut key = String::new();
        settings_id_in(&mut key, &workspace, &[&subject]);
        let mut settings = self.settings.write().unwrap_or_else(|p| p.into_inner());
        match setting {
            Some(s) => settings.insert(key, s),
            None => settings.remove(&key),
        };
        let any = settings.values().any(|s| s.user.is_none());
        self.any_workspace.store(any, Ordering::Relaxed);
    }

    pub fn settings(&self, workspace: &str) -> Vec<BudgetSetting> {
        let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = settings.values().filter(|s| s.workspace == workspace).cloned().collect();
        list.sort_by_key(BudgetSetting::subject);
        list
    }

    /// Spent this period by each caller scope of `workspace`: (kind, name, dollars, reserved).
    pub fn spend(&self, workspace: &str) -> Vec<(String, String, f64, f64)> {
        let ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = ledgers
            .iter()
            .filter_map(|(id, kept)| {
                let mut parts = id.split('\u{1f}');
                let kind = parts.next()?;
                (parts.next()? == workspace).then(|| {
                    let name = parts.next().unwrap_or(workspace).to_owned();
                    (kind.to_owned(), name, kept.ledger.spent(), kept.ledger.reserved() as f64 / 1e6)
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// This instance's floors of the caller budgets (nothing spent: nothing sent).
    pub fn floors(&self) -> Vec<Floor> {
        let ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        ledgers
            .iter()
            .filter_map(|(id, kept)| {
                let (period, micros) = kept.ledger.own();
                let at = ScopePeriod { scope: id.clone(), period, length: kept.ledger.period_secs() };
                (micros > 0).then_some(Floor { at, micros })
            })
            .collect()
    }

    /// Changed spend to store: (workspace, scope id, period, period length, micros).
    fn dirty(&self) -> Vec<(String, String, u64, Option<u64>, u64)> {
        let ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        ledgers
            .iter()
            .filter_map(|(id, kept)| {
                let workspace = id.split('\u{1f}').nth(1)?.to_owned();
                let (period, micros) = kept.ledger.take_dirty()?;
                Some((workspace, id.clone(), period, kept.ledger.period_secs(), micros))
            })
            .collect()
    }

    /// Restores stored spend: kept with its scope until a request says the budget's period,
    /// when the ledger of that period takes it up.
    fn restore(&self, rows: Vec<(String, String, u64, u64)>) {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        for (_, id, period, micros) in rows {
            ledgers.insert(id.clone(), Kept::new(id.as_str().into(), "", None, Some((period, micros)), None));
        }
    }

    /// Takes up the other instances' stored spend (a shared store's): (scope id, period,
    /// micro-dollars summed). Kept with its scope like a stored figure of this instance's; of
    /// several periods, the latest counts.
    pub(super) fn take_up_others(&self, sums: Vec<(String, u64, u64)>) {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        for (id, period, micros) in sums {
            let kept = ledgers.entry(id).or_insert_with_key(|id| Kept::new(id.as_str().into(), "", None, None, None));
            if kept.others.is_none_or(|(latest, _)| period >= latest) {
                kept.others = Some((period, micros));
                kept.ledger.set_others(period, micros);
            }
        }
    }
}

impl Controller {
    /// The caller budgets every request consults.
    pub fn caller_budgets(&self) -> &CallerBudgets {
        &self.budgets
    }

    /// Sets a user's or the workspace's budget (`max_budget: None` clears it).
    pub fn set_budget(
        &self,
        workspace: &str,
        user: Option<&str>,
        max_budget: Option<f64>,
        budget_duration: Option<&str>,
    ) -> Result<Option<BudgetSetting>, ControllerError> {
        let _change = self.one_change();
        if let Some(d) = budget_duration.filter(|d| parse_duration(d).is_none()) {
            return Err(super::keys::KeySpecError {
                field: "budget_duration",
                reason: format!("{d:?} is not like 30d, 24h"),
            }
            .into());
        }
        if max_budget.is_some_and(|m| !m.is_finite() || m < 0.0) {
            return Err(
                super::keys::KeySpecError { field: "max_budget", reason: "must be a dollar amount".into() }.into()
            );
        }
        let setting = max_budget.map(|max_budget| BudgetSetting {
            workspace: workspace.to_owned(),
            user: user.map(str::to_owned),
            max_budget,
            budget_duration: budget_duration.map(str::to_owned),
        });
        let subject = user.map_or_else(|| "workspace".to_owned(), |u| format!("user:{u}"));
        if let Some(cluster) = &self.cluster {
            cluster.put_budget(workspace, &subject, setting.as_ref())?;
        }
        self.store.put_budget(workspace, &subject, setting.as_ref())?;
        self.budgets.set((workspace.to_owned(), subject), setting.clone());
        Ok(setting)
    }

    /// A budget setting another instance changed, read back from the shared state.
    pub(super) fn adopt_budget(
        &self,
        workspace: &str,
        subject: &str,
        setting: Option<BudgetSetting>,
    ) -> Result<(), ControllerError> {
        self.store.put_budget(workspace, subject, setting.as_ref())?;
        self.budgets.set((workspace.to_owned(), subject.to_owned()), setting);
        Ok(())
    }

    /// Loads the stored budget settings and caller spend (at start).
    pub(super) fn restore_budgets(&self, settings: Vec<BudgetSetting>) -> Result<(), ControllerError> {
        for setting in settings {
            self.budgets.set((setting.workspace.clone(), setting.subject()), Some(setting));
        }
        self.budgets.restore(self.store.caller_spend(CALLER_APP)?);
        self.budgets.take_up_others(super::stored_spend::caller_sums(&self.store.others_spend()?));
        Ok(())
    }

    /// Writes the caller scopes' changed spend.
    pub(super) fn write_caller_spend(&self) -> Result<(), ControllerError> {
        let dirty = self.budgets.dirty();
        let rows: Vec<SpendRow<'_>> = dirty
            .iter()
            .map(|(workspace, scope, period, period_secs, micros)| SpendRow {
                workspace,
                app_id: CALLER_APP,
                scope,
                period: *period,
                period_secs: *period_secs,
                micros: *micros,
            })
            .collect();
        Ok(self.store.put_spends(&rows)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_name_matches_exactly_its_written_form() {
        let names = [
            ScopeName::Key { id: "key_00000000000000ab", hint: "sk-fl-Ab...9z" },
            ScopeName::User("ada"),
            ScopeName::Workspace("team"),
        ];
        for name in names {
            let text = name.to_string();
            assert!(name.is(&text), "{text}");
            for other in ["", "user ", "workspace ", &format!("{text} "), &text[..text.len() - 1]] {
                assert!(!name.is(other), "{name:?} is not {other:?}");
            }
        }
        assert!(!ScopeName::User("ada").is("workspace ada"));
        assert!(!ScopeName::Key { id: "key_1", hint: "h" }.is("API key key_1 (h2)"));
    }

    #[test]
    fn a_requests_scopes_are_found_again_and_follow_their_settings() {
        let budgets = CallerBudgets::default();
        let crate::auth::keys::NewKey { mut record, .. } = crate::auth::keys::generate("team");
        record.user = Some("ada".into());
        let first = budgets.scopes_for("team", Some(&record));
        let ids: Vec<&str> = first.iter().map(|s| &*s.id).collect();
        assert_eq!(
            ids,
            [format!("key\u{1f}team\u{1f}{}", record.id).as_str(), "user\u{1f}team\u{1f}ada", "workspace\u{1f}team"]
        );
        assert!(first.iter().all(|s| s.budget.is_none()));
        // The same ledgers the next time, not fresh ones.
        let again = budgets.scopes_for("team", Some(&record));
        assert!(first.iter().zip(&again).all(|(a, b)| Arc::ptr_eq(&a.ledger, &b.ledger) && Arc::ptr_eq(&a.id, &b.id)));

        let setting = |user: Option<&str>, max_budget| BudgetSetting {
            workspace: "team".into(),
            user: user.map(str::to_owned),
            max_budget,
            budget_duration: None,
        };
        budgets.set(("team".into(), "user:ada".into()), Some(setting(Some("ada"), 5.0)));
        budgets.set(("team".into(), "workspace".into()), Some(setting(None, 50.0)));
        let budgeted = budgets.scopes_for("team", Some(&record));
        let maxima: Vec<Option<f64>> = budgeted.iter().map(|s| s.budget.map(|b| b.max_usd)).collect();
        assert_eq!(maxima, [None, Some(5.0), Some(50.0)]);
        // A token (no key) brings the workspace's scope once a workspace budget is set.
        assert_eq!(budgets.scopes_for("team", None).len(), 1);
        assert!(budgets.scopes_for("elsewhere", None).is_empty());
    }
}
