//! Choosing a deployment and failing over: a running service's [`table::Table`], one
//! [`Strategy`] trait with one module per litellm routing strategy and the live
//! [`stats::DeploymentStats`] they decide by, and the failover loop ([`failover::serve`]) made
//! of named steps: [`plan`], [`admission`], [`reservation`], [`attempt`], [`breaker`],
//! [`accounting`], [`stamp`].
//!
//! The router sits below the apps and above the providers: a request brings what it needs (the
//! upstream client, the shared state, limits) as a [`Routed`].

pub mod accounting;
pub mod admission;
pub mod attempt;
pub mod breaker;
pub mod cost_based;
pub mod failover;
pub mod health;
pub mod history;
pub mod latency_based;
pub mod least_busy;
pub mod plan;
pub mod policy;
pub mod prices;
pub mod reservation;
pub mod simple_shuffle;
pub mod spend;
pub mod stamp;
pub mod stats;
mod stream_events;
pub mod table;
pub mod usage_based;
pub mod wildcard;

use crate::catalogue::Route;
use crate::cluster::Cluster;
use crate::manifest::RoutingStrategy;
use crate::observability::request_id::RequestId;
use crate::providers::Deployment;
use crate::transport::UpstreamClient;
use axum::http::HeaderMap;
use prices::Price;
use stats::DeploymentStats;
use std::sync::Arc;
use table::Table;

/// A routed request's context: the service, the route, and what the router is handed instead
/// of the server's state. Copied for each model turn of a tool loop (`mcp::agent`).
#[derive(Clone, Copy)]
pub struct Routed<'a> {
    pub table: &'a Arc<Table>,
    pub route: &'static Route,
    pub params: &'a [(&'static str, String)],
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub request_id: &'a RequestId,
    /// The client every upstream call goes through.
    pub upstream: &'a UpstreamClient,
    /// Largest upstream answer read whole into memory.
    pub answer_limit: usize,
    /// The body limit of the route's family.
    pub body_limit: usize,
    /// When the request was accepted: ferrolite's own time (`x-ferrolite-overhead-ms`) is
    /// counted from here.
    pub started: std::time::Instant,
    /// Spend scopes the request brings besides the app and the deployment (an API key, a user,
    /// a workspace), each booked and, with a budget, reserved against with the others.
    pub spend_scopes: &'a [reservation::SpendScope],
    /// The shared state, where reservations hold across instances (`--redis-url`).
    pub cluster: Option<&'a Arc<Cluster>>,
    /// The model the client named, when a wildcard group serves it: each deployment of the
    /// group is made concrete for it.
    pub wildcard_model: Option<&'a str>,
}

impl Routed<'_> {
    /// Deployment `index` as this request calls it: concrete for its model when the group is
    /// a wildcard's.
    pub fn deployment(&self, index: usize) -> std::borrow::Cow<'_, Deployment> {
        let d = &self.table.deployments[index];
        match self.wildcard_model.and_then(|m| d.for_model(m)) {
            Some(concrete) => std::borrow::Cow::Owned(concrete),
            None => std::borrow::Cow::Borrowed(d),
        }
    }

    /// The price per token of `d` (deployment `index` as [`Routed::deployment`] gave it): a
    /// wildcard's from the price table for the model really called.
    pub fn price(&self, index: usize, d: &Deployment) -> Option<Price> {
        if self.wildcard_model.is_some() && d.upstream_model != self.table.deployments[index].upstream_model {
            prices::price_of(d)
        } else {
            self.table.prices[index]
        }
    }
}

/// A deployment the router may pick, with its live figures.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Index into the session's deployments.
    pub index: usize,
    pub deployment: &'a Deployment,
    pub stats: &'a DeploymentStats,
    /// Its price per token, when known.
    pub price: Option<Price>,
}

/// What a strategy may consult besides the candidates.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// litellm's `lowest_latency_buffer`: deployments within this fraction of the fastest count as equals.
    pub latency_buffer: f64,
    /// Estimated tokens of the request (for tpm headroom).
    pub request_tokens: u64,
    /// Whether the request streams (latency-based routing then goes by time to first token).
    pub stream: bool,
}

/// A routing strategy: picks one of the (non-empty) candidates.
pub trait Strategy: Sync {
    /// The position in `candidates` of the chosen deployment.
    fn pick(&self, candidates: &[Candidate<'_>], ctx: &PickContext, rng: &mut dyn rand::RngCore) -> usize;
}

/// The implementation of a strategy (the match is exhaustive: every strategy has one).
pub fn strategy(s: RoutingStrategy) -> &'static dyn Strategy {
    match s {
        RoutingStrategy::SimpleShuffle => &simple_shuffle::SimpleShuffle,
        RoutingStrategy::LeastBusy => &least_busy::LeastBusy,
        RoutingStrategy::UsageBasedRouting | RoutingStrategy::UsageBasedRoutingV2 => &usage_based::UsageBased,
        RoutingStrategy::LatencyBasedRouting => &latency_based::LatencyBased,
        RoutingStrategy::CostBasedRouting => &cost_based::CostBased,
    }
}

/// Picks one of a table's deployments among `indices` by its strategy; `None` only when
/// `indices` is empty.
pub fn pick(table: &Table, indices: &[usize], ctx: &PickContext) -> Option<usize> {
    // Every strategy picks among its candidates: one is the pick, with nothing to weigh.
    if let [only] = indices {
        return Some(*only);
    }
    let candidates: Vec<Candidate<'_>> = indices
        .iter()
        .map(|&index| Candidate {
            index,
            deployment: &table.deployments[index],
            stats: &table.stats[index],
            price: table.prices[index],
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let chosen = strategy(table.strategy).pick(&candidates, ctx, &mut rand::thread_rng());
    Some(candidates[chosen.min(candidates.len() - 1)].index)
}
