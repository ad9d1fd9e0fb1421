//! `usage-based-routing` (and `-v2`): the deployment that has used the fewest tokens this
//! minute, among those still under their `rpm` and `tpm` (counting this request's tokens);
//! when none is, the least used anyway (the executor enforces hard limits). Equals share at random.

use super::least_busy::random_lowest;
use super::stats::MinuteUsage;
use super::{Candidate, PickContext, Strategy};

pub struct UsageBased;

/// Whether `c` can take a request of `request_tokens` more this minute.
fn under_limits(c: &Candidate<'_>, usage: MinuteUsage, request_tokens: u64) -> bool {
    let params = &c.deployment.params;
    params.rpm.is_none_or(|rpm| usage.requests < rpm)
        && params.tpm.is_none_or(|tpm| usage.tokens.saturating_add(request_tokens) <= tpm)
}

impl Strategy for UsageBased {
    fn pick(&self, candidates: &[Candidate<'_>], ctx: &PickContext, rng: &mut dyn rand::RngCore) -> usize {
        let usage: Vec<MinuteUsage> = candidates.iter().map(|c| c.stats.minute()).collect();
        let mut pool: Vec<usize> =
            (0..candidates.len()).filter(|&i| under_limits(&candidates[i], usage[i], ctx.request_tokens)).collect();
        if pool.is_empty() {
            pool = (0..candidates.len()).collect();
        }
        let tokens: Vec<u64> = pool.iter().map(|&i| usage[i].tokens).collect();
        pool.get(random_lowest(&tokens, rng)).copied().unwrap_or(0)
    }
}
