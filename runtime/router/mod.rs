//! Choosing a deployment within a model group: one [`Strategy`] trait, one module per
//! litellm routing strategy, and the live [`stats::DeploymentStats`] they decide by.

pub mod accounting;
pub mod cost_based;
pub mod failover;
pub mod history;
pub mod latency_based;
pub mod least_busy;
pub mod prices;
pub mod simple_shuffle;
pub mod spend;
pub mod stats;
pub mod usage_based;

use crate::apps::session::Deployment;
use crate::manifest::RoutingStrategy;
use stats::DeploymentStats;

/// A deployment the router may pick, with its live figures.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Index into the session's deployments.
    pub index: usize,
    pub deployment: &'a Deployment,
    pub stats: &'a DeploymentStats,
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

/// Picks one of a session's deployments among `indices` by the session's strategy; `None`
/// only when `indices` is empty.
pub fn pick(session: &crate::apps::session::Session, indices: &[usize], ctx: &PickContext) -> Option<usize> {
    let candidates: Vec<Candidate<'_>> = indices
        .iter()
        .map(|&index| Candidate { index, deployment: &session.deployments[index], stats: &session.stats[index] })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let chosen = strategy(session.strategy).pick(&candidates, ctx, &mut rand::thread_rng());
    Some(candidates[chosen.min(candidates.len() - 1)].index)
}
