//! `least-busy`: the deployment with the fewest requests in flight; equals share at random.

use super::{Candidate, PickContext, Strategy};
use rand::Rng;

pub struct LeastBusy;

impl Strategy for LeastBusy {
    fn pick(&self, candidates: &[Candidate<'_>], _ctx: &PickContext, rng: &mut dyn rand::RngCore) -> usize {
        let in_flight: Vec<u64> = candidates.iter().map(|c| c.stats.in_flight()).collect();
        random_lowest(&in_flight, rng)
    }
}

/// The position of a lowest key, chosen uniformly at random among equal ones (0 when `keys`
/// is empty). Shared by the strategies that pick the least of some figure.
pub fn random_lowest<K: PartialOrd + Copy>(keys: &[K], rng: &mut dyn rand::RngCore) -> usize {
    let Some(best) = keys.iter().copied().reduce(|a, b| if b < a { b } else { a }) else { return 0 };
    let lowest: Vec<usize> = (0..keys.len()).filter(|&i| keys[i] == best).collect();
    match lowest.len() {
        0 => 0,
        n => lowest[rng.gen_range(0..n)],
    }
}
