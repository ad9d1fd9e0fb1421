//! The plan of a routed request: which model groups it may be tried on, in order. First the
//! group it asked for, then the fallbacks its failure calls for (`fallbacks`,
//! `context_window_fallbacks`, `content_policy_fallbacks`, from the request or the app), each
//! group once.

use super::breaker::Failure;
use super::policy::{fallback_map, Policy};
use super::table::Table;
use crate::exchange::Payload;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Where a request goes: a model group (its name as the table holds it), or (model-less
/// routes) one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Group(&'a str),
    Deployment(usize),
}

/// Router-only fields a request may carry; they never reach the upstream.
const ROUTING_FIELDS: &[&str] = &["fallbacks", "context_window_fallbacks", "content_policy_fallbacks", "num_retries"];

/// Per-request routing options (litellm accepts them in the body).
#[derive(Debug, Default, PartialEq)]
pub struct RequestOptions {
    pub fallbacks: Vec<String>,
    pub context_window_fallbacks: Vec<String>,
    pub content_policy_fallbacks: Vec<String>,
    pub num_retries: Option<u32>,
}

fn names(v: Option<Value>, group: &str) -> Vec<String> {
    match v {
        // ["model-b", ...]
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        // [{"gpt-4": ["model-b"]}]
        Some(v @ Value::Array(_)) => {
            let rules: Vec<BTreeMap<String, Vec<String>>> = serde_json::from_value(v).unwrap_or_default();
            fallback_map(Some(&rules)).remove(group).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Takes the routing options out of a request to `group`'s body (they are not the upstream's).
pub fn take_options(payload: &mut Payload, group: &str) -> RequestOptions {
    let Payload::Json(shared) = payload else { return RequestOptions::default() };
    // Most bodies carry none: one pass over their few keys rather than a hashed look-up each
    // (and a body not read whole stays so).
    if !shared.has_any_field(ROUTING_FIELDS) {
        return RequestOptions::default();
    }
    // Not shared yet (no attempt has started), so this copies nothing.
    let Value::Object(body) = shared.to_mut() else { return RequestOptions::default() };
    RequestOptions {
        fallbacks: names(body.remove("fallbacks"), group),
        context_window_fallbacks: names(body.remove("context_window_fallbacks"), group),
        content_policy_fallbacks: names(body.remove("content_policy_fallbacks"), group),
        num_retries: body.remove("num_retries").and_then(|v| v.as_u64()).map(|n| n as u32),
    }
}

/// One group of the plan: its name (none for a single deployment) and its deployments.
/// Indices are borrowed from the table: no per-request copy of a large group.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub group: Option<&'a str>,
    pub indices: Cow<'a, [usize]>,
    /// Whether this is a fallback rather than the group asked for.
    pub fallback: bool,
}

/// The groups to try, in order. The first is held apart from the fallbacks, so a request
/// that needs none (nearly all) allocates nothing here.
#[derive(Debug)]
pub struct Plan<'a> {
    first: Option<Step<'a>>,
    fallbacks: Vec<Step<'a>>,
    next: usize,
    /// The group asked for; fallbacks are looked up under it.
    origin: Option<&'a str>,
}

impl<'a> Plan<'a> {
    /// The plan of a request for `target`: its group (or deployment) first.
    pub fn new(table: &'a Table, target: Target<'a>) -> Plan<'a> {
        let (first, origin) = match target {
            Target::Deployment(i) => (Step { group: None, indices: Cow::Owned(vec![i]), fallback: false }, None),
            Target::Group(group) => {
                let indices = Cow::Borrowed(table.group_indices(group).unwrap_or_default());
                (Step { group: Some(group), indices, fallback: false }, Some(group))
            }
        };
        Plan { first: Some(first), fallbacks: Vec::new(), next: 0, origin }
    }

    /// The next group to try.
    pub fn next_step(&mut self) -> Option<Step<'a>> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let step = self.fallbacks.get(self.next).cloned()?;
        self.next += 1;
        Some(step)
    }

    /// Whether `group` is planned already (the origin or a queued fallback).
    fn planned(&self, group: &str) -> bool {
        self.origin == Some(group) || self.fallbacks.iter().any(|s| s.group == Some(group))
    }

    /// Queues the fallbacks a group's `failure` calls for: the request's own first, then the
    /// app's, skipping groups already planned. A fatal failure (or a single deployment's) calls
    /// for none.
    pub fn fall_back(&mut self, failure: Failure, table: &'a Table, policy: &'a Policy, options: &'a RequestOptions) {
        let Some(origin) = self.origin else { return };
        let (configured, requested) = match failure {
            Failure::Fatal => return,
            Failure::ContextWindow => (&policy.context_window_fallbacks, &options.context_window_fallbacks),
            Failure::ContentPolicy => (&policy.content_policy_fallbacks, &options.content_policy_fallbacks),
            Failure::Retryable => (&policy.fallbacks, &options.fallbacks),
        };
        for next in requested.iter().chain(configured.get(origin).into_iter().flatten()) {
            if self.planned(next) {
                continue;
            }
            // A fallback the app does not have is skipped (validation refuses it in the
            // manifest; a request may still name one).
            if let Some(indices) = table.group_indices(next) {
                self.fallbacks.push(Step { group: Some(next), indices: Cow::Borrowed(indices), fallback: true });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(config: serde_json::Value) -> Table {
        crate::router::table::for_tests(config)
    }

    #[test]
    fn groups_come_first_then_fallbacks_by_failure_each_once() {
        let t = table(json!({"model_list": [
            {"model_name": "a", "litellm_params": {"model": "m", "mock_response": "x"}},
            {"model_name": "b", "litellm_params": {"model": "m", "mock_response": "x"}},
            {"model_name": "c", "litellm_params": {"model": "m", "mock_response": "x"}}
        ], "litellm_settings": {"fallbacks": [{"a": ["b", "c"]}], "context_window_fallbacks": [{"a": ["c"]}]}}));
        let target = Target::Group("a");
        let options = RequestOptions { fallbacks: vec!["c".into(), "a".into()], ..Default::default() };
        let mut plan = Plan::new(&t, target);
        let first = plan.next_step().unwrap();
        assert_eq!((first.group, first.fallback, &*first.indices), (Some("a"), false, &[0usize][..]));
        assert!(plan.next_step().is_none());
        plan.fall_back(Failure::Retryable, &t, &t.policy, &options);
        // The request's own first, the app's after; the origin and repeats are skipped.
        let order: Vec<_> = std::iter::from_fn(|| plan.next_step()).map(|s| (s.group, s.fallback)).collect();
        assert_eq!(order, [(Some("c"), true), (Some("b"), true)]);

        let mut plan = Plan::new(&t, target);
        plan.next_step();
        plan.fall_back(Failure::Fatal, &t, &t.policy, &options);
        assert!(plan.next_step().is_none(), "a fatal failure has no fallback");
        let none = RequestOptions::default();
        let mut plan = Plan::new(&t, target);
        plan.next_step();
        plan.fall_back(Failure::ContextWindow, &t, &t.policy, &none);
        assert_eq!(plan.next_step().map(|s| s.group), Some(Some("c")));
    }

    #[test]
    fn routing_options_leave_the_body() {
        let body = json!({"model": "a", "messages": [], "fallbacks": ["b"], "num_retries": 1});
        let mut payload = Payload::json(body);
        let options = take_options(&mut payload, "a");
        assert_eq!(options.fallbacks, ["b"]);
        assert_eq!(options.num_retries, Some(1));
        let Payload::Json(left) = payload else { unreachable!() };
        assert_eq!(*left, json!({"model": "a", "messages": []}));
        let nested = names(Some(json!([{"a": ["x"]}, {"b": ["y"]}])), "a");
        assert_eq!(nested, ["x"]);
    }
}
