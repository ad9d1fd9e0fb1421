//! `latency-based-routing`: the fastest deployments lately, by time to first token for streams
//! and seconds per output token otherwise. A deployment with no figure yet counts as 0, so new
//! ones get tried; those within `latency_buffer` (a fraction) of the fastest share at random.

use super::{Candidate, PickContext, Strategy};
use rand::Rng;

pub struct LatencyBased;

impl Strategy for LatencyBased {
    fn pick(&self, candidates: &[Candidate<'_>], ctx: &PickContext, rng: &mut dyn rand::RngCore) -> usize {
        let latency: Vec<f64> = candidates
            .iter()
            .map(|c| {
                let l = c.stats.latency();
                if ctx.stream { l.first_token } else { l.per_token }.filter(|s| s.is_finite()).unwrap_or(0.0)
            })
            .collect();
        let best = latency.iter().copied().fold(f64::INFINITY, f64::min);
        let buffer = if ctx.latency_buffer.is_finite() { ctx.latency_buffer.max(0.0) } else { 0.0 };
        let limit = best * (1.0 + buffer);
        let near: Vec<usize> = (0..latency.len()).filter(|&i| latency[i] <= limit).collect();
        match near.len() {
            0 => 0,
            n => near[rng.gen_range(0..n)],
        }
    }
}
