//! Background health checks, as litellm's `general_settings.background_health_checks` (every
//! `health_check_interval` seconds, default 300): each deployment of an app is probed, the
//! answers kept for `/health`, and a deployment that fails sits out of the rotation (a cooldown
//! as long as the interval) until a check finds it answering again.

use super::stats::DeploymentStats;
use super::table::Table;
use crate::clock::now_ms;
use crate::providers::health::probe;
use crate::providers::Deployment;
use crate::transport::UpstreamClient;
use std::time::Duration;

/// A background check's answer for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Unix ms.
    pub at_ms: u64,
    /// Why it did not answer, when it did not.
    pub error: Option<String>,
}

/// Probes every deployment of `table` at once and acts on the answers.
pub async fn check(table: &Table, upstream: &UpstreamClient) {
    let Some(interval) = table.health_check_interval else { return };
    let probes = table.deployments.iter().map(|d| probe(upstream, d));
    let answers = futures::future::join_all(probes).await;
    for ((d, stats), answer) in table.deployments.iter().zip(&table.stats).zip(answers) {
        record(d, stats, interval, answer);
    }
}

/// Acts on a check's answer for one deployment: kept for `/health`, and a failure takes it out
/// of the rotation for `interval`. `/health` asked before the first background check probes the
/// deployment itself and acts on the answer the same way, so what it reports is what routes.
pub fn record(d: &Deployment, stats: &DeploymentStats, interval: Duration, answer: Result<(), String>) {
    if let Err(reason) = &answer {
        // Out of the rotation until the next check: a deployment that answers again comes
        // back when this cooldown lapses.
        stats.cool_down(interval);
        tracing::warn!(deployment = %d.id, "health check failed: {reason}");
    }
    *stats.health.lock().unwrap_or_else(|p| p.into_inner()) = Some(Checked { at_ms: now_ms(), error: answer.err() });
}
