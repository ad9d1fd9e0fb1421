//! What the router keeps of one running service: its deployments by model group, how it
//! chooses among them and fails over, their budgets, and their live figures.
//!
//! Built once when a session starts and shared read-only (`Arc<Table>`) by every request, so the
//! request path never clones a group or takes a lock to read one; the live figures are atomics.

use super::policy::Policy;
use super::prices::{price_of, Price};
use super::spend::{parse_duration, Budget, Ledger};
use super::stats::DeploymentStats;
use crate::catalogue::{Provider, Route, Translator};
use crate::manifest::{LitellmSettings, ProxyConfig, RoutingStrategy};
use crate::observability::metrics::{self, SessionLabels};
use crate::observability::session_log::LogBuffer;
use crate::providers::Deployment;
use foldhash::HashMap;
use std::sync::Arc;

/// Which service a table belongs to: the keys its shared counters and log lines carry.
#[derive(Debug, Clone)]
pub struct Ident {
    pub workspace: String,
    pub app_id: String,
    pub session_id: String,
    pub service_id: String,
}

/// One running service's routing state.
#[derive(Debug)]
pub struct Table {
    pub ident: Ident,
    pub settings: LitellmSettings,
    pub strategy: RoutingStrategy,
    /// Retries, timeouts, cooldowns and fallbacks.
    pub policy: Policy,
    pub deployments: Vec<Deployment>,
    /// Each deployment's price per token (same order), worked out once at start.
    pub prices: Vec<Option<Price>>,
    /// model_name -> its deployments.
    groups: HashMap<String, ModelGroup>,
    /// The distinct providers of all the deployments, in order of first appearance.
    providers: Vec<Provider>,
    /// model names in the order they first appear in the manifest.
    pub model_names: Vec<String>,
    /// The model names that are patterns (`openai/*`), most specific first.
    wildcards: Vec<String>,
    /// `model_group_alias`: alias -> the group it names (`router_settings`' winning).
    aliases: HashMap<String, String>,
    /// The aliases `/v1/models` lists (not hidden), in order.
    pub listed_aliases: Vec<String>,
    /// How often background health checks probe the deployments, when they are on
    /// (`general_settings.background_health_checks`, `health_check_interval`).
    pub health_check_interval: Option<std::time::Duration>,
    /// The app's spend limit (`max_budget`, `budget_duration`) and its spend this period.
    pub app_budget: Option<Budget>,
    pub app_spend: Ledger,
    /// Each deployment's limit and spend (same order as `deployments`).
    pub deployment_budgets: Vec<Option<Budget>>,
    pub deployment_spend: Vec<Ledger>,
    /// Live routing figures, one per deployment (same order).
    pub stats: Vec<DeploymentStats>,
    /// The session's log, shared with the streams still open when it stops.
    pub logs: Arc<LogBuffer>,
    /// Metric label values (workspace, app, each deployment's model name and id), built once.
    pub labels: SessionLabels,
}

/// The deployments sharing one model_name.
#[derive(Debug, Default)]
struct ModelGroup {
    /// Indices into `deployments`, in manifest order.
    indices: Vec<usize>,
    /// The distinct providers among them, in order of first appearance.
    providers: Vec<Provider>,
    /// Whether one of them cannot be called (`Deployment::unavailable`).
    has_unavailable: bool,
    /// A catch-all's (`model: "*"`): each deployment serves the models of one provider.
    catch_all: bool,
}

impl Table {
    /// The table of `deployments` (in manifest order, their ids `model_name/n`) run by `config`.
    pub fn new(ident: Ident, deployments: Vec<Deployment>, config: &ProxyConfig) -> Table {
        let mut groups: HashMap<String, ModelGroup> = HashMap::default();
        let mut model_names = Vec::new();
        let mut providers = Vec::new();
        for (i, d) in deployments.iter().enumerate() {
            if !providers.contains(&d.provider) {
                providers.push(d.provider);
            }
            let group = groups.entry(d.model_name.clone()).or_default();
            if group.indices.is_empty() {
                model_names.push(d.model_name.clone());
            }
            group.indices.push(i);
            group.has_unavailable |= d.unavailable.is_some();
            group.catch_all |= d.catch_all.is_some();
            if !group.providers.contains(&d.provider) {
                group.providers.push(d.provider);
            }
        }
        let settings = config.litellm_settings.clone();
        let (litellm, router) = (&settings.routing, config.router_settings.as_ref());
        let duration = router.and_then(|r| r.budget_duration.as_deref()).or(litellm.budget_duration.as_deref());
        let max_budget = router.and_then(|r| r.max_budget).or(litellm.max_budget);
        let app_budget = budget_of(max_budget, duration);
        let deployment_budgets: Vec<_> =
            deployments.iter().map(|d| budget_of(d.params.max_budget, d.params.budget_duration.as_deref())).collect();
        let strategy = router
            .and_then(|r| r.routing_strategy)
            .or(litellm.routing_strategy)
            .unwrap_or(RoutingStrategy::SimpleShuffle);
        let mut aliases = HashMap::default();
        let mut listed_aliases = Vec::new();
        let alias_maps = [router.and_then(|r| r.model_group_alias.as_ref()), litellm.model_group_alias.as_ref()];
        for (alias, target) in alias_maps.into_iter().flatten().flatten() {
            if groups.contains_key(alias) || aliases.contains_key(alias) {
                continue; // a real group's name is never an alias; router_settings' comes first
            }
            aliases.insert(alias.clone(), target.group().to_owned());
            if !target.hidden() {
                listed_aliases.push(alias.clone());
            }
        }
        let labels = SessionLabels::new(
            &ident.workspace,
            &ident.app_id,
            deployments.iter().map(|d| (d.model_name.as_str(), d.id.as_str())),
        );
        Table {
            ident,
            settings,
            strategy,
            policy: Policy::from_config(config),
            prices: deployments.iter().map(price_of).collect(),
            app_spend: Ledger::new(app_budget.and_then(|b| b.period)),
            app_budget,
            deployment_spend: deployment_budgets.iter().map(|b| Ledger::new(b.and_then(|b| b.period))).collect(),
            deployment_budgets,
            stats: (0..deployments.len()).map(|_| Default::default()).collect(),
            providers,
            deployments,
            groups,
            wildcards: super::wildcard::ordered(model_names.iter()),
            aliases,
            listed_aliases,
            health_check_interval: health_check_interval(config),
            model_names,
            logs: Arc::default(),
            labels,
        }
    }

    /// Indices (into `deployments`) of the group serving `model_name`.
    pub fn group_indices(&self, model_name: &str) -> Option<&[usize]> {
        self.groups.get(model_name).map(|g| g.indices.as_slice())
    }

    /// `model_name` as the table holds it, if this app has that model (an alias: the group it
    /// names).
    pub fn group_name(&self, model_name: &str) -> Option<&str> {
        self.named_group(model_name).map(|(name, _)| name.as_str())
    }

    /// `model_name`'s group and its name as the table holds them (an alias: the group it names).
    fn named_group(&self, model_name: &str) -> Option<(&String, &ModelGroup)> {
        let name = self.aliases.get(model_name).map_or(model_name, String::as_str);
        self.groups.get_key_value(name)
    }

    /// The wildcard group that serves `model_name` when no group has that exact name.
    pub fn wildcard_group(&self, model_name: &str) -> Option<&str> {
        let pattern = self.wildcards.iter().find(|p| super::wildcard::captures(p, model_name).is_some())?;
        Some(pattern.as_str())
    }

    /// Whether `model_name` is a catch-all's group (`model: "*"`), whose deployments each serve
    /// one provider's models.
    pub fn is_catch_all(&self, model_name: &str) -> bool {
        self.groups.get(model_name).is_some_and(|g| g.catch_all)
    }

    /// Whether every deployment of `model_name` can be called.
    pub fn group_all_available(&self, model_name: &str) -> bool {
        self.groups.get(model_name).is_some_and(|g| !g.has_unavailable)
    }

    /// Whether every deployment that would serve `route` for the request's model takes the
    /// client's body as sent (an OpenAI-compatible pass-through, no translation), so that
    /// nothing on the way reads the whole of it. Where the app's deployments all do, or none
    /// does, that is the answer; in an app that mixes them, `model`'s group (through an alias or
    /// a pattern) decides, or all the app's deployments when it names no group. `model` is asked
    /// only then. Asked once per distinct provider.
    pub fn forwards_as_sent<'m>(&self, route: &Route, model: impl FnOnce() -> Option<&'m str>) -> bool {
        let as_sent = |&p: &Provider| route.provider_route(p).is_none_or(|r| r.translate == Translator::Passthrough);
        let taking = self.providers.iter().filter(|p| as_sent(p)).count();
        if taking == 0 || taking == self.providers.len() {
            return taking > 0;
        }
        // The group routing would pick (as `http::dispatch` finds its target): by name or
        // alias, else by pattern.
        let group = model().and_then(|m| {
            let named = self.named_group(m).map(|(_, group)| group);
            named.or_else(|| self.wildcard_group(m).and_then(|pattern| self.groups.get(pattern)))
        });
        group.is_some_and(|g| g.providers.iter().all(as_sent))
    }

    /// The distinct providers of `model_name`'s deployments: what a route's support is asked
    /// of, once per provider rather than once per deployment.
    pub fn group_providers(&self, model_name: &str) -> Option<&[Provider]> {
        self.groups.get(model_name).map(|g| g.providers.as_slice())
    }

    /// The deployments serving `model_name`, if this app has that model.
    pub fn group(&self, model_name: &str) -> Option<impl Iterator<Item = &Deployment> + Clone> {
        self.groups.get(model_name).map(|g| g.indices.iter().map(|&i| &self.deployments[i]))
    }

    /// The index of deployment `model_name/n` without scanning the table (apps may have thousands).
    pub fn deployment_index(&self, id: &str) -> Option<usize> {
        let (model_name, n) = id.rsplit_once('/')?;
        let i = *self.group_indices(model_name)?.get(n.parse::<usize>().ok()?)?;
        (self.deployments.get(i)?.id == id).then_some(i)
    }

    /// The index of `model_name`'s first deployment, as metric labels name a model group.
    pub fn group_label(&self, model_name: &str) -> Option<usize> {
        self.group_indices(model_name).and_then(|ix| ix.first()).copied()
    }

    /// Sets the gauges read from live state: in flight and budget remaining.
    pub fn sample_gauges(&self) {
        for (i, stats) in self.stats.iter().enumerate() {
            metrics::in_flight(&self.labels, i, stats.in_flight());
            if let Some(budget) = self.deployment_budgets.get(i).copied().flatten() {
                metrics::budget_remaining(&self.labels, Some(i), budget.max_usd - self.deployment_spend[i].spent());
            }
        }
        if let Some(budget) = self.app_budget {
            metrics::budget_remaining(&self.labels, None, budget.max_usd - self.app_spend.spent());
        }
    }
}

/// litellm's default `health_check_interval`, in seconds.
const DEFAULT_HEALTH_CHECK_INTERVAL: f64 = 300.0;

/// The background health checks' interval, when `general_settings` turns them on.
fn health_check_interval(config: &ProxyConfig) -> Option<std::time::Duration> {
    let general = config.extra.get("general_settings")?;
    // `general_settings` is not typed in the schema, so its YAML 1.1 scalars are read here.
    let on = match general.get("background_health_checks") {
        Some(serde_json::Value::Bool(on)) => *on,
        Some(serde_json::Value::String(text)) => crate::manifest::yaml11::boolean(text.trim()) == Some(true),
        _ => false,
    };
    if !on {
        return None;
    }
    let seconds = general.get("health_check_interval").and_then(|v| match v {
        serde_json::Value::String(text) => text.replace('_', "").trim().parse().ok(),
        other => other.as_f64(),
    });
    std::time::Duration::try_from_secs_f64(seconds.unwrap_or(DEFAULT_HEALTH_CHECK_INTERVAL).max(1.0)).ok()
}

fn budget_of(max: Option<f64>, duration: Option<&str>) -> Option<Budget> {
    let period = duration.and_then(parse_duration);
    max.map(|max_usd| Budget { max_usd, period })
}

/// A table of mock deployments run by `config` (a manifest's `config`), each with its
/// `litellm_params`: what the router's unit tests route over.
#[cfg(test)]
pub fn for_tests(config: serde_json::Value) -> Table {
    let config: ProxyConfig = serde_json::from_value(config).expect("a test config");
    let deployments = config
        .model_list
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut d = Deployment::mock(&format!("{}/{i}", e.model_name), &e.model_name);
            d.params = e.litellm_params.clone();
            d
        })
        .collect();
    let ident = Ident { workspace: "w".into(), app_id: "a".into(), session_id: "s".into(), service_id: "x".into() };
    Table::new(ident, deployments, &config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Operation;
    use serde_json::json;

    /// A table of `(model_name, model)` deployments, each of the provider its model names.
    fn table(entries: &[(&str, &str)]) -> Table {
        let list: Vec<_> = entries
            .iter()
            .map(|(name, model)| json!({"model_name": name, "litellm_params": {"model": model}}))
            .collect();
        let config: ProxyConfig = serde_json::from_value(json!({"service_id": "x", "model_list": list,
            "router_settings": {"model_group_alias": {"fast": "gpt", "smart": "claude"}}}))
        .expect("a test config");
        let deployments = entries
            .iter()
            .enumerate()
            .map(|(i, (name, model))| {
                let mut d = Deployment::mock(&format!("{name}/{i}"), name);
                d.provider = if model.starts_with("anthropic/") { Provider::Anthropic } else { Provider::OpenAi };
                d
            })
            .collect();
        let ident = Ident { workspace: "w".into(), app_id: "a".into(), session_id: "s".into(), service_id: "x".into() };
        Table::new(ident, deployments, &config)
    }

    #[test]
    fn the_models_group_says_whether_a_body_goes_as_sent() {
        let chat = Operation::ChatCompletions.route();
        let mixed =
            table(&[("gpt", "openai/gpt-4o"), ("claude", "anthropic/claude-3-5-sonnet"), ("openai/*", "openai/*")]);
        let as_sent = |model| mixed.forwards_as_sent(chat, || model);
        assert!(as_sent(Some("gpt")) && as_sent(Some("fast")) && as_sent(Some("openai/gpt-4.1")));
        assert!(!as_sent(Some("claude")) && !as_sent(Some("smart")));
        // A model the app does not have, or none: every deployment of the app counts.
        assert!(!as_sent(Some("unknown")) && !as_sent(None));
        // Where all the app's deployments agree, the model is not even asked.
        let unasked = || -> Option<&str> { panic!("the model was asked") };
        assert!(table(&[("gpt", "openai/gpt-4o")]).forwards_as_sent(chat, unasked));
        assert!(!table(&[("claude", "anthropic/claude-3-5-sonnet")]).forwards_as_sent(chat, unasked));
    }
}
