//! `simple-shuffle` (litellm's default): a random pick, weighted by `weight`, else `rpm`,
//! else `tpm` when every candidate sets it; uniform otherwise.

use super::{Candidate, PickContext, Strategy};
use rand::Rng;

pub struct SimpleShuffle;

/// The weights simple-shuffle uses, if every candidate has one of the same kind.
pub fn weights(candidates: &[Candidate<'_>]) -> Option<Vec<f64>> {
    let all = |f: &dyn Fn(&Candidate<'_>) -> Option<f64>| candidates.iter().map(f).collect::<Option<Vec<f64>>>();
    all(&|c| c.deployment.params.weight)
        .or_else(|| all(&|c| c.deployment.params.rpm.map(|r| r as f64)))
        .or_else(|| all(&|c| c.deployment.params.tpm.map(|t| t as f64)))
        .filter(|w| w.iter().sum::<f64>() > 0.0)
}

impl Strategy for SimpleShuffle {
    fn pick(&self, candidates: &[Candidate<'_>], _ctx: &PickContext, rng: &mut dyn rand::RngCore) -> usize {
        match weights(candidates) {
            Some(w) => {
                let mut target = rng.gen_range(0.0..w.iter().sum::<f64>());
                for (i, weight) in w.iter().enumerate() {
                    if target < *weight {
                        return i;
                    }
                    target -= weight;
                }
                w.len() - 1
            }
            None => rng.gen_range(0..candidates.len()),
        }
    }
}
