//! `cost-based-routing`: the cheapest deployment by input plus output price per token (see
//! [`super::prices`]); one of unknown price counts as the most expensive. Equals share at random.

use super::least_busy::random_lowest;
use super::{Candidate, PickContext, Strategy};

pub struct CostBased;

impl Strategy for CostBased {
    fn pick(&self, candidates: &[Candidate<'_>], _ctx: &PickContext, rng: &mut dyn rand::RngCore) -> usize {
        let cost: Vec<f64> = candidates
            .iter()
            .map(|c| c.price.map(|p| p.per_token_sum()).filter(|s| !s.is_nan()).unwrap_or(f64::INFINITY))
            .collect();
        random_lowest(&cost, rng)
    }
}
