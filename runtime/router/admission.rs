//! Admission: which deployments of a group may take a request now, or why none may. A
//! deployment cooling down after failures, over its budget, or (with
//! `enforce_model_rate_limits`) at its rpm / tpm this minute is left out; the app's own budget
//! is checked once, before any group. Once a deployment is picked, `reservation.rs` holds the
//! request's worst case against every budget.

use super::breaker::Failure;
use super::spend::Budget;
use super::table::Table;
use crate::clock::coarse_ms;
use crate::exchange::ApiError;
use crate::manifest::RoutingStrategy;
use axum::http::StatusCode;
use smallvec::SmallVec;
use std::time::Duration;

/// Deployment indices of one group: inline for the usual few, so admitting a request to a
/// group of one or two allocates nothing.
pub type Indices = SmallVec<[usize; 8]>;

/// 429 once the app's spend this period reached its `max_budget`. With several instances the
/// ledger holds the others' spend too, as last read (never waited for here).
pub fn app_budget(table: &Table) -> Result<(), ApiError> {
    let Some(budget) = table.app_budget else { return Ok(()) };
    let spent = table.app_spend.spent();
    if spent >= budget.max_usd {
        return Err(budget_exceeded("this app", spent, budget, table.app_spend.seconds_to_reset()));
    }
    Ok(())
}

/// Why no deployment of a group may take the request now.
#[derive(Debug)]
pub struct Refused {
    pub error: ApiError,
    pub failure: Failure,
}

/// The deployments of `indices` (a group, in order) that may take the request now. `quick`
/// allows the first try's shortcut: in an unweighted simple-shuffle group, one deployment drawn
/// at random is taken when it may serve (uniform over those that may, as the full look is),
/// so a large group is not scanned on every request.
pub fn admit(
    table: &Table,
    indices: &[usize],
    group: Option<&str>,
    request_tokens: u64,
    quick: bool,
) -> Result<Indices, Refused> {
    // One clock read for the whole group.
    let now = coarse_ms();
    if quick {
        if let Some(i) = quick_pick(table, indices, request_tokens, now) {
            return Ok(smallvec::smallvec![i]);
        }
    }
    let (mut available, cooling) = split_cooling(table, indices, now);
    let before_limits = available.len();
    available.retain(|i| under_budget(table, *i));
    if available.is_empty() && before_limits > 0 {
        let i = indices[0];
        let budget = table.deployment_budgets[i].unwrap_or(Budget { max_usd: 0.0, period: None });
        let spend = &table.deployment_spend[i];
        let what = format!("deployment {}", table.deployments[i].id);
        let error = budget_exceeded(&what, spend.spent(), budget, spend.seconds_to_reset());
        return Err(Refused { error, failure: Failure::Retryable });
    }
    if table.policy.enforce_rate_limits {
        available.retain(|i| under_rate_limits(table, *i, request_tokens));
        if available.is_empty() && before_limits > 0 {
            let wait = crate::clock::seconds_left_in_minute(crate::clock::coarse_secs());
            let what = group.unwrap_or("this route");
            let error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("every deployment of {what} is at its rpm/tpm limit this minute"),
            )
            .with_code("rate_limit_exceeded")
            .with_retry_after(Some(wait));
            return Err(Refused { error, failure: Failure::Retryable });
        }
    }
    if available.is_empty() {
        let Some(shortest) = cooling.iter().min() else {
            let error = ApiError::internal("a model group with no deployments");
            return Err(Refused { error, failure: Failure::Fatal });
        };
        let wait = shortest.as_secs().max(1);
        let what = group.map(|g| format!("model {g:?}")).unwrap_or_else(|| "this route".into());
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("every deployment of {what} is cooling down after failures; retry in {wait}s"),
        )
        .with_code("cooldown")
        .with_retry_after(Some(wait));
        return Err(Refused { error, failure: Failure::Retryable });
    }
    Ok(available)
}

/// `indices` split into those that can take a request now and how long the others still cool.
fn split_cooling(table: &Table, indices: &[usize], now: u64) -> (Indices, Vec<Duration>) {
    let mut available = Indices::new();
    let mut cooling = Vec::new();
    for &i in indices {
        match table.stats[i].cooling_at(now) {
            Some(left) => cooling.push(left),
            None => available.push(i),
        }
    }
    (available, cooling)
}

/// One deployment of `indices` drawn uniformly, if the group is routed by unweighted
/// simple-shuffle and the drawn one can serve now (not cooling down, under its budget and its
/// rpm / tpm when those are enforced); `None` sends the caller to the full look.
fn quick_pick(table: &Table, indices: &[usize], request_tokens: u64, now: u64) -> Option<usize> {
    if table.strategy != RoutingStrategy::SimpleShuffle || indices.len() < 2 {
        return None;
    }
    // simple-shuffle weighs only when every deployment sets a weight, rpm or tpm: one without
    // any of them means a uniform draw.
    let first = &table.deployments[indices[0]].params;
    if first.weight.is_some() || first.rpm.is_some() || first.tpm.is_some() {
        return None;
    }
    let i = indices[rand::Rng::gen_range(&mut rand::thread_rng(), 0..indices.len())];
    let can_serve = table.stats[i].cooling_at(now).is_none()
        && under_budget(table, i)
        && (!table.policy.enforce_rate_limits || under_rate_limits(table, i, request_tokens));
    can_serve.then_some(i)
}

fn under_budget(table: &Table, i: usize) -> bool {
    table.deployment_budgets[i].is_none_or(|b| table.deployment_spend[i].spent() < b.max_usd)
}

/// Whether a deployment has room under its `rpm` / `tpm` this minute.
fn under_rate_limits(table: &Table, i: usize, request_tokens: u64) -> bool {
    let params = &table.deployments[i].params;
    let minute = table.stats[i].minute();
    params.rpm.is_none_or(|rpm| minute.requests < rpm)
        && params.tpm.is_none_or(|tpm| minute.tokens + request_tokens <= tpm)
}

/// 429 `budget_exceeded`, stating spend and budget.
pub(super) fn budget_exceeded(what: &str, spent: f64, budget: Budget, reset: Option<u64>) -> ApiError {
    let period = match budget.period {
        Some(p) => format!(" per {}s period", p.as_secs()),
        None => String::new(),
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "budget_exceeded",
        format!("budget exceeded: {what} has spent ${spent:.6} of its ${:.6} budget{period}", budget.max_usd),
    )
    .with_code("budget_exceeded")
    .with_retry_after(reset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::table::Table;
    use serde_json::json;

    fn table(config: serde_json::Value) -> Table {
        crate::router::table::for_tests(config)
    }

    fn group(n: usize, params: serde_json::Value, settings: serde_json::Value) -> Table {
        let mut model = json!({"model": "m", "mock_response": "x"});
        model.as_object_mut().unwrap().extend(params.as_object().unwrap().clone());
        let list: Vec<_> = (0..n).map(|_| json!({"model_name": "g", "litellm_params": model})).collect();
        table(json!({"model_list": list, "litellm_settings": settings}))
    }

    #[test]
    fn cooling_deployments_are_left_out_and_a_group_all_cooling_says_when_to_retry() {
        let t = group(3, json!({}), json!({}));
        t.stats[0].cool_down(Duration::from_secs(30));
        assert_eq!(admit(&t, &[0, 1, 2], Some("g"), 0, false).unwrap().as_slice(), [1, 2]);
        t.stats[1].cool_down(Duration::from_secs(5));
        t.stats[2].cool_down(Duration::from_secs(9));
        let refused = admit(&t, &[0, 1, 2], Some("g"), 0, false).unwrap_err();
        assert_eq!((refused.error.status.as_u16(), refused.error.code.as_deref()), (429, Some("cooldown")));
        assert!(
            refused.error.retry_after.is_some_and(|s| (4..=5).contains(&s)),
            "the shortest wait: {:?}",
            refused.error
        );
        assert_eq!(refused.failure, Failure::Retryable);
    }

    #[test]
    fn a_deployment_over_its_budget_leaves_and_a_group_all_over_is_refused() {
        let t = group(2, json!({"max_budget": 1.0}), json!({}));
        t.deployment_spend[0].add(1.5);
        assert_eq!(admit(&t, &[0, 1], Some("g"), 0, false).unwrap().as_slice(), [1]);
        t.deployment_spend[1].add(1.0);
        let refused = admit(&t, &[0, 1], Some("g"), 0, false).unwrap_err();
        assert_eq!(refused.error.code.as_deref(), Some("budget_exceeded"));
    }

    #[test]
    fn rate_limits_count_only_when_enforced() {
        let t = group(1, json!({"rpm": 1}), json!({}));
        let _first = t.stats[0].begin();
        assert_eq!(admit(&t, &[0], Some("g"), 0, false).unwrap().as_slice(), [0], "rpm is a weight unless enforced");
        let t = group(1, json!({"rpm": 1}), json!({"enforce_model_rate_limits": true}));
        let _first = t.stats[0].begin();
        let refused = admit(&t, &[0], Some("g"), 0, false).unwrap_err();
        assert_eq!(refused.error.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(refused.error.retry_after.is_some_and(|s| (1..=60).contains(&s)));
    }

    #[test]
    fn the_quick_draw_takes_one_deployment_that_may_serve() {
        let t = group(4, json!({}), json!({}));
        t.stats[2].cool_down(Duration::from_secs(30));
        for _ in 0..200 {
            let admitted = admit(&t, &[0, 1, 2, 3], Some("g"), 0, true).unwrap();
            assert!(!admitted.contains(&2), "{admitted:?}");
        }
        let weighted = group(2, json!({"weight": 1.0}), json!({}));
        assert_eq!(
            admit(&weighted, &[0, 1], Some("g"), 0, true).unwrap().as_slice(),
            [0, 1],
            "weights need the full look"
        );
    }
}
