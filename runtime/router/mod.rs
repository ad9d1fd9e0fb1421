//! Choosing a deployment within a model group.
//!
//! `simple-shuffle` is built: a random pick weighted by `weight`, else `rpm`, else `tpm`.
//! The other strategies are accepted at install and fall back to simple-shuffle until the
//! router issue builds them; a session says so in its log when it starts.

use crate::apps::session::Deployment;
use crate::manifest::RoutingStrategy;
use rand::Rng;

/// Whether `strategy` has its own implementation yet.
pub fn is_built(strategy: RoutingStrategy) -> bool {
    matches!(strategy, RoutingStrategy::SimpleShuffle)
}

/// Picks one deployment of a group; `None` only for an empty group.
pub fn pick<'a>(
    _strategy: RoutingStrategy,
    group: impl Iterator<Item = &'a Deployment> + Clone,
) -> Option<&'a Deployment> {
    simple_shuffle(group)
}

/// A random pick, weighted by the first of `weight`, `rpm`, `tpm` that every deployment sets.
fn simple_shuffle<'a>(group: impl Iterator<Item = &'a Deployment> + Clone) -> Option<&'a Deployment> {
    let weights: Option<Vec<f64>> = group.clone().map(|d| d.params.weight).collect::<Option<Vec<_>>>().or_else(|| {
        group
            .clone()
            .map(|d| d.params.rpm.map(|r| r as f64))
            .collect::<Option<Vec<_>>>()
            .or_else(|| group.clone().map(|d| d.params.tpm.map(|t| t as f64)).collect())
    });
    let count = group.clone().count();
    let mut rng = rand::thread_rng();
    match weights {
        Some(w) if w.iter().sum::<f64>() > 0.0 => {
            let mut target = rng.gen_range(0.0..w.iter().sum::<f64>());
            for (d, weight) in group.clone().zip(&w) {
                if target < *weight {
                    return Some(d);
                }
                target -= weight;
            }
            group.last()
        }
        _ if count == 0 => None,
        _ => group.clone().nth(rng.gen_range(0..count)),
    }
}
