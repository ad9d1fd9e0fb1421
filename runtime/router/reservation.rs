//! Budget reservations: before an attempt, its worst-case cost is held against every budget
//! that applies (the app's, the deployment's, and any the request brings: a key's, a user's, a
//! workspace's) in one atomic step, so concurrent requests can never spend past a budget
//! together; the attempt's [`Hold`] is settled to the real cost when it is booked (a stream
//! when it ends), and given back when dropped (a failed attempt, a request the client left).
//!
//! The worst case is priced on the picked deployment: the prompt as the tokenizer estimates it
//! at the input price, plus the request's `max_tokens` / `max_completion_tokens` /
//! `max_output_tokens` (else the deployment's `max_reserved_tokens`, else
//! [`DEFAULT_MAX_RESERVED_TOKENS`]) per choice at the output price. A mock deployment's answer
//! is known, so its own length is its worst case.
//!
//! With several instances (`--redis-url`), the reservation is also taken on this instance's
//! leases of the budgets' headroom, which Redis holds against every instance's spend and
//! leases (`cluster/leases.rs`); only a request its leases have no room for waits on Redis.
//! This instance's own books are looked at first (they can only count less than Redis, so a
//! refusal there stands), and they carry on alone when Redis does not answer in time.

use super::admission;
use super::prices::Price;
use super::spend::{self, Budget, Ledger};
use super::table::Table;
use super::Routed;
use crate::cluster::{Cluster, LeaseHold, Limit, Reserved, ScopePeriod};
use crate::exchange::{ApiError, Payload};
use crate::providers::{Deployment, Provider};
use crate::tokenizer::JsonCount;
use std::sync::Arc;

/// Output tokens reserved per choice when neither the request nor the deployment
/// (`max_reserved_tokens`) says: a long answer of most chat models.
pub const DEFAULT_MAX_RESERVED_TOKENS: u64 = 4096;

/// A spend scope a request brings besides its app and deployment (an API key, a user, a
/// workspace): the request's cost is booked there too, and, when it has a budget, reserved
/// against it in the same step as the others. Whoever keeps its ledger also sends its floor
/// with the cluster's figures (as `apps/figures.rs` does for the app's and deployments'), so
/// its spend in Redis survives Redis restarting and settles that did not get through.
#[derive(Debug, Clone)]
pub struct SpendScope {
    /// Unique among all apps and instances, usable in a Redis key: see [`scope_id`].
    pub id: Arc<str>,
    /// What a refusal calls it: `key sk-fl-...abcd`, `user alice`, `workspace team`.
    pub name: Arc<str>,
    pub budget: Option<Budget>,
    pub ledger: Arc<Ledger>,
}

/// A scope id from its parts (`["key", workspace, key_id]`), joined by the unit separator no
/// identifier may contain.
pub fn scope_id(parts: &[&str]) -> String {
    let mut id = String::new();
    push_scope_id(&mut id, parts);
    id
}

/// Writes the scope id of `parts` after `out`'s text.
pub fn push_scope_id(out: &mut String, parts: &[&str]) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('\u{1f}');
        }
        out.push_str(part);
    }
}

/// The app's scope id.
pub fn app_scope(table: &Table) -> String {
    app_scope_id(&table.ident.workspace, &table.ident.app_id)
}

/// Deployment `index`'s scope id.
pub fn deployment_scope(table: &Table, index: usize) -> String {
    deployment_scope_id(&table.ident.workspace, &table.ident.app_id, &table.deployments[index].id)
}

/// An app's scope id from its names.
pub fn app_scope_id(workspace: &str, app_id: &str) -> String {
    scope_id(&["app", workspace, app_id])
}

/// A deployment's scope id from its names.
pub fn deployment_scope_id(workspace: &str, app_id: &str, deployment: &str) -> String {
    scope_id(&["deployment", workspace, app_id, deployment])
}

/// What a request may cost, as far as its body tells before a deployment is picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// The prompt, estimated.
    pub prompt_tokens: u64,
    /// The request's own limit on output tokens per choice, if it sets one.
    pub max_output_tokens: Option<u64>,
    /// Answers asked for (`n`, or a completion's `best_of`).
    pub choices: u64,
}

impl Need {
    /// Reads a request body (any route family: chat, completions, responses, messages), in
    /// one pass over its fields. The prompt is estimated by the tokenizer: chat messages with
    /// OpenAI's framing (3 per message, 3 to prime the answer), and the text of every other
    /// field a prompt is made of (tools included: providers bill their definitions as input).
    pub fn of(payload: &Payload) -> Need {
        let mut need = Need { choices: 1, ..Need::default() };
        payload.each_field(|name, field| match name {
            "max_tokens" | "max_completion_tokens" | "max_output_tokens" => {
                need.max_output_tokens = need.max_output_tokens.max(field.as_u64());
            }
            "n" | "best_of" => need.choices = need.choices.max(field.as_u64().unwrap_or(1)),
            "messages" => {
                if let JsonCount { tokens, items: Some(items) } = field.tokens() {
                    need.prompt_tokens += 3 * items as u64 + tokens + 3;
                }
            }
            "prompt" | "input" | "instructions" | "system" | "tools" | "functions" => {
                need.prompt_tokens += field.tokens().tokens;
            }
            _ => {}
        });
        need
    }

    /// The worst-case cost on `d` at `price`, in micro-dollars (nothing for an unpriced one).
    pub fn worst_case(&self, d: &Deployment, price: Option<Price>) -> u64 {
        let Some(price) = price else { return 0 };
        let per_choice = match (&d.mock_response, d.provider) {
            (Some(text), Provider::Mock) => crate::tokenizer::count(text),
            _ => self.max_output_tokens.or(d.params.max_reserved_tokens).unwrap_or(DEFAULT_MAX_RESERVED_TOKENS),
        };
        let output = per_choice.saturating_mul(self.choices) as f64;
        spend::micros(price.input_per_token * self.prompt_tokens as f64 + price.output_per_token * output)
    }
}

/// The budgets a request is held to: its app's and deployments', and its own scopes'.
#[derive(Clone, Copy)]
pub struct Budgeting<'a> {
    pub table: &'a Arc<Table>,
    pub spend_scopes: &'a [SpendScope],
    /// The shared state, where reservations hold across instances (`--redis-url`).
    pub cluster: Option<&'a Arc<Cluster>>,
}

impl<'a> Budgeting<'a> {
    pub fn of(r: &Routed<'a>) -> Budgeting<'a> {
        Budgeting { table: r.table, spend_scopes: r.spend_scopes, cluster: r.cluster }
    }

    /// Whether any budget applies to an attempt on deployment `index`: when none does,
    /// nothing is counted, locked or allocated.
    pub fn applies(&self, index: usize) -> bool {
        self.table.app_budget.is_some()
            || self.table.deployment_budgets[index].is_some()
            || self.spend_scopes.iter().any(|s| s.budget.is_some())
    }
}

/// Whether any budget applies to an attempt on deployment `index` (see [`Budgeting::applies`]).
pub fn applies(r: &Routed<'_>, index: usize) -> bool {
    Budgeting::of(r).applies(index)
}

/// Whose budget it is.
#[derive(Clone, Copy)]
enum Owner<'a> {
    App,
    Deployment,
    Scope(&'a SpendScope),
}

/// One budget an attempt is held to, in the order they are checked: the app's, the request's
/// own scopes', then the deployment's (the only one another deployment may not be held to).
struct Budgeted<'a> {
    owner: Owner<'a>,
    ledger: &'a Ledger,
    budget: Budget,
}

fn budgets<'a>(r: Budgeting<'a>, index: usize) -> Vec<Budgeted<'a>> {
    let table: &'a Table = r.table;
    let app = table.app_budget.map(|budget| Budgeted { owner: Owner::App, ledger: &table.app_spend, budget });
    let scopes = r
        .spend_scopes
        .iter()
        .filter_map(|s| s.budget.map(|budget| Budgeted { owner: Owner::Scope(s), ledger: &s.ledger, budget }));
    let deployment = table.deployment_budgets[index].map(|budget| Budgeted {
        owner: Owner::Deployment,
        ledger: &table.deployment_spend[index],
        budget,
    });
    app.into_iter().chain(scopes).chain(deployment).collect()
}

/// Why an attempt could not reserve.
#[derive(Debug)]
pub struct Refusal {
    /// 429 `budget_exceeded`, naming the budget, its spend and its limit.
    pub error: ApiError,
    /// Only the deployment's own budget refused: another deployment may still serve.
    pub deployment_only: bool,
}

/// Holds `need`'s worst case on deployment `index` against every budget that applies (see
/// [`applies`]), here and, with Redis answering, on every instance.
pub async fn reserve(r: &Routed<'_>, index: usize, need: &Need) -> Result<Hold, Refusal> {
    let d = r.deployment(index);
    reserve_micros(Budgeting::of(r), index, need.worst_case(&d, r.price(index, &d))).await
}

/// Holds `micros` on deployment `index` against every budget of `r` that applies.
pub async fn reserve_micros(r: Budgeting<'_>, index: usize, micros: u64) -> Result<Hold, Refusal> {
    let table = r.table;
    let budgets = budgets(r, index);
    let ledgers: Vec<(&Ledger, u64)> = budgets.iter().map(|b| (b.ledger, spend::micros(b.budget.max_usd))).collect();
    if let Err(o) = spend::reserve_all(&ledgers, micros) {
        return Err(refusal(table, index, &budgets[o.position], o.spent, o.held, micros));
    }
    // From here the hold gives back what it took if this future is dropped.
    let books = Books {
        table: table.clone(),
        index,
        app: table.app_budget.is_some(),
        deployment: table.deployment_budgets[index].is_some(),
        scopes: budgets
            .iter()
            .filter_map(|b| match b.owner {
                Owner::Scope(s) => Some(s.ledger.clone()),
                _ => None,
            })
            .collect(),
    };
    let mut hold = Hold { books, micros, lease: None, open: true };
    let Some(cluster) = r.cluster.filter(|c| c.healthy()) else { return Ok(hold) };
    let limits: Vec<Limit> = budgets
        .iter()
        .zip(&ledgers)
        .map(|(b, &(ledger, limit))| {
            let scope = match b.owner {
                Owner::App => app_scope(table),
                Owner::Deployment => deployment_scope(table, index),
                Owner::Scope(s) => s.id.to_string(),
            };
            Limit { at: ScopePeriod { scope, period: ledger.period_now(), length: ledger.period_secs() }, limit }
        })
        .collect();
    match cluster.reserve(&limits, micros, table.policy.reservation_ttl).await {
        Ok(Reserved::Held(lease)) => hold.lease = Some(lease),
        Ok(Reserved::Refused { position, spent, held }) => {
            if let Some(b) = budgets.get(position).or(budgets.last()) {
                drop(hold);
                return Err(refusal(table, index, b, spent, held, micros));
            }
        }
        Err(e) => tracing::warn!("budget reservation on this instance's books only: {e}"),
    }
    Ok(hold)
}

/// The refusal of a reservation of `need` micro-dollars by budget `b`.
fn refusal(table: &Table, index: usize, b: &Budgeted<'_>, spent: u64, held: u64, need: u64) -> Refusal {
    let what = match b.owner {
        Owner::App => "this app".to_owned(),
        Owner::Deployment => format!("deployment {}", table.deployments[index].id),
        Owner::Scope(s) => s.name.to_string(),
    };
    let usd = |micros: u64| micros as f64 / 1e6;
    let mut error = admission::budget_exceeded(&what, usd(spent), b.budget, b.ledger.seconds_to_reset());
    error.message.push_str(&match held {
        0 => format!("; this request may cost up to ${:.6}", usd(need)),
        _ => format!("; requests in flight hold ${:.6} and this one may cost up to ${:.6}", usd(held), usd(need)),
    });
    Refusal { error, deployment_only: matches!(b.owner, Owner::Deployment) }
}

/// The ledgers an attempt holds: the app's and the deployment's when they have budgets, and
/// the request's own budgeted scopes'.
#[derive(Clone)]
struct Books {
    table: Arc<Table>,
    index: usize,
    app: bool,
    deployment: bool,
    scopes: Vec<Arc<Ledger>>,
}

impl Books {
    /// In the order their budgets were checked (Redis's scopes line up).
    fn ledgers(&self) -> impl Iterator<Item = &Ledger> {
        let t = &self.table;
        let app = self.app.then_some(&t.app_spend);
        let deployment = self.deployment.then_some(&t.deployment_spend[self.index]);
        app.into_iter().chain(self.scopes.iter().map(|l| &**l)).chain(deployment)
    }
}

/// What an attempt holds against its budgets: settled to the real cost by [`Hold::settle`],
/// given back when dropped unsettled.
pub struct Hold {
    books: Books,
    /// Held on each ledger, in micro-dollars.
    micros: u64,
    /// Its share of this instance's leases, with Redis.
    lease: Option<LeaseHold>,
    open: bool,
}

impl Hold {
    /// What it holds on each ledger, in micro-dollars.
    pub fn micros(&self) -> u64 {
        self.micros
    }

    /// Whether the app's ledger is held (the hold books it).
    pub fn holds_app(&self) -> bool {
        self.books.app
    }

    /// Whether the deployment's ledger is held.
    pub fn holds_deployment(&self) -> bool {
        self.books.deployment
    }

    /// Turns the reservation into the real `cost` (micro-dollars) on every held ledger (and
    /// lease: first, so a floor sent in between never counts the cost twice).
    pub fn settle(mut self, cost: u64) {
        self.open = false;
        if let Some(lease) = self.lease.take() {
            lease.settle(cost);
        }
        for ledger in self.books.ledgers() {
            ledger.settle(self.micros, cost);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.open {
            for ledger in self.books.ledgers() {
                ledger.release(self.micros);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn need(body: Value) -> Need {
        Need::of(&Payload::json(body))
    }

    #[test]
    fn the_need_reads_every_route_familys_output_limit_and_choices() {
        let chat = need(json!({"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 7, "n": 2}));
        assert_eq!(chat, Need { prompt_tokens: 9, max_output_tokens: Some(7), choices: 2 }, "as the mock counts");
        assert_eq!(need(json!({"input": "hi", "max_output_tokens": 50})).max_output_tokens, Some(50));
        assert_eq!(need(json!({"prompt": "hi", "max_completion_tokens": 5, "best_of": 3})).choices, 3);
        let messages = need(json!({"system": "be brief", "messages": [], "max_tokens": 1}));
        assert_eq!((messages.prompt_tokens, messages.max_output_tokens), (5, Some(1)));
        assert_eq!(need(json!({"messages": []})).max_output_tokens, None);
    }

    #[test]
    fn a_body_the_text_check_admitted_is_priced_over_its_text_and_stays_unread() {
        let schema = crate::catalogue::Operation::ChatCompletions.route().request_schema.unwrap();
        let plan = crate::schema_check::text::Plan::compile(&serde_json::from_str(schema).unwrap()).unwrap();
        let text = r#"{"model":"m","messages":[{"role":"system","content":"Be brief.\nNo \"quotes\"."},
            {"role":"user","content":[{"type":"text","text":"caf\u00e9 at 10:30?"}]}],
            "tools":[{"type":"function","function":{"name":"clock","parameters":{"type":"object"}}}],
            "max_tokens":64,"n":2}"#;
        let unread =
            crate::exchange::JsonBody::checked(bytes::Bytes::from_static(text.as_bytes()), plan.check(text).unwrap());
        let priced = Need::of(&Payload::Json(unread.clone()));
        assert!(!unread.is_read(), "the prompt was counted over the text");
        assert_eq!(priced, need(serde_json::from_str(text).unwrap()));
        assert_eq!((priced.max_output_tokens, priced.choices), (Some(64), 2));
    }

    #[test]
    fn the_worst_case_uses_the_requests_limit_else_the_deployments_cap_else_the_default() {
        let price = Some(Price { input_per_token: 1e-6, output_per_token: 2e-6 });
        let mut d = Deployment::mock("m/0", "m");
        d.provider = Provider::OpenAi;
        let n = Need { prompt_tokens: 10, max_output_tokens: Some(100), choices: 2 };
        assert_eq!(n.worst_case(&d, price), 10 + 2 * 100 * 2);
        let open = Need { max_output_tokens: None, ..n };
        assert_eq!(open.worst_case(&d, price), 10 + 2 * DEFAULT_MAX_RESERVED_TOKENS * 2);
        d.params.max_reserved_tokens = Some(1000);
        assert_eq!(open.worst_case(&d, price), 10 + 2 * 1000 * 2);
        assert_eq!(n.worst_case(&d, None), 0, "an unpriced deployment costs nothing");
        let mut mock = Deployment::mock("m/1", "m");
        mock.mock_response = Some("four words of answer".into());
        assert_eq!(n.worst_case(&mock, price), 10 + 2 * 4 * 2, "a mock's answer is known");
    }
}
